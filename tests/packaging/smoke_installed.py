"""Smoke script for an installed graphops (run by test_wheel.py from a temporary folder, in a fresh
venv): every public name imports, RGCNConv and SIGN run and match PyG, and the papers100M pipeline
runs end to end through its console script on a tiny synthetic graph.

Usage: python smoke_installed.py OUTPUT_DIR
"""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.nn import RGCNConv as PyGRGCNConv

import graphops

SUBPACKAGES = [
    'ops',
    'nn',
    'nn.conv',
    'nn.pool',
    'nn.dense',
    'nn.models',
    'transforms',
    'precompute',
    'datasets',
    'testing',
    'apps',
    'apps.papers100m',
]


def main(output: Path) -> None:
    package_dir = Path(graphops.__file__).resolve().parent
    assert 'site-packages' in package_dir.parts, f'graphops imported from {package_dir}'
    assert not (package_dir.parent / 'pyproject.toml').exists(), 'a source checkout, not the wheel'
    assert (package_dir / 'py.typed').is_file()
    assert sorted(p.name for p in (package_dir / 'apps/papers100m/configs').glob('*.yaml'))

    names = 0
    for sub in SUBPACKAGES:
        module = importlib.import_module(f'graphops.{sub}')
        for name in module.__all__:
            if sub.startswith('apps'):  # the apps export their modules, imported on demand
                importlib.import_module(f'graphops.{sub}.{name}')
            else:
                assert getattr(module, name) is not None, f'graphops.{sub}.{name}'
            names += 1
    assert graphops.ops.has_numba(), 'numba is a core dependency: the fast kernels must be on'

    from graphops.nn import RGCNConv
    from graphops.transforms import SIGN

    torch.manual_seed(0)
    x = torch.randn(50, 8)
    edge_index = torch.randint(0, 50, (2, 300))
    edge_type = torch.randint(0, 3, (300,))
    ours = RGCNConv(8, 4, num_relations=3, num_bases=2)
    theirs = PyGRGCNConv(8, 4, num_relations=3, num_bases=2)
    theirs.load_state_dict(ours.state_dict())
    assert torch.allclose(
        ours(x, edge_index, edge_type), theirs(x, edge_index, edge_type), atol=1e-5
    )

    data = Data(x=x, edge_index=torch.cat([edge_index, edge_index.flip(0)], 1), num_nodes=50)
    a, b = SIGN(2)(data.clone()), T.SIGN(2)(data.clone())
    for k in (1, 2):
        assert torch.allclose(a[f'x{k}'], b[f'x{k}'], atol=1e-5), k

    script = Path(sys.executable).parent / 'graphops-papers100m'  # the wheel's console script
    assert script.is_file(), script
    tiny = [
        'dataset.synthetic.num_nodes=3000',
        'dataset.synthetic.num_classes=5',
        'dataset.synthetic.label_fraction=0.5',
        'operators.0.hops=2',
        'operators.1.hops=1',
        'operators.2.hops=1',
        'threads=1',
        'model.hidden_channels=16',
        'train.runs=1',
        'train.epochs=2',
        'train.batch_size=128',
        'train.eval_batch_size=1024',
        'train.eval_train_rows=200',
    ]
    command = [str(script), 'run', '--output', str(output), '--no-progress', '--cfg-options', *tiny]
    subprocess.run(command, check=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    runs = output / 'runs' / 'synthetic_default'
    summary = json.loads((runs / 'summary.json').read_text())
    assert set(summary['variants']) == {'mlp', 'sign'}, summary
    assert (runs / 'config.yaml').is_file() and (runs / 'sign' / 'results.json').is_file()
    print(json.dumps({'public_names': names, 'pipeline_variants': sorted(summary['variants'])}))


if __name__ == '__main__':
    main(Path(sys.argv[1]))
