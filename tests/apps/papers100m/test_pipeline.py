"""The papers100M scripts on a tiny ogbn-papers100M written in ogb's own on-disk layout.

Nothing is mocked: ``SyntheticPapers.write_ogb`` writes the files ogb's papers100M download holds,
and the scripts read them through ``ogb.nodeproppred.NodePropPredDataset``.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphops.apps.papers100m import precompute as pc
from graphops.apps.papers100m import train as tr
from graphops.apps.papers100m.config import (
    CONFIG_DIR,
    add_config_arguments,
    config_from_args,
    load_config,
    load_saved,
    to_dict,
)
from graphops.datasets.synthetic_papers import SyntheticPapers

DROPEDGE_OFF = ['operators.0.dropedge=0.0', 'operators.1.dropedge=0.0', 'operators.2.dropedge=0.0']
SMALL = [
    *DROPEDGE_OFF,
    'threads=1',
    'model.hidden_channels=16',
    'train.batch_size=64',
    'train.eval_batch_size=512',
    'train.lr=0.01',
]


@pytest.fixture(scope='module')
def ogb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('ogb')
    SyntheticPapers(3000, label_fraction=0.5, num_classes=5, seed=1).write_ogb(root)
    return root


@pytest.fixture(scope='module')
def pipeline(ogb_root, tmp_path_factory):
    """precompute.py then train.py on the fake dataset, in-process, through their CLIs."""
    output = tmp_path_factory.mktemp('out')
    common = ['--dataset', 'ogbn-papers100M', '--root', str(ogb_root), '--output', str(output)]
    common += ['--config', 'sign_authors', '--no-progress', '--cfg-options', *SMALL]
    record = pc.main(common)
    summary = tr.main([*common, 'train.epochs=3', 'train.runs=2'])
    return {'output': output, 'record': record, 'summary': summary, 'argv': common}


def authors_adjacency(row, col, n, symmetric_norm):
    """The authors' get_adj (preprocessing.py of twitter-research/sign) with scipy."""
    adj = sp.coo_matrix((np.ones(row.size), (row, col)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # duplicates collapse to one edge, as in a SparseTensor
    adj = adj.tolil()
    adj.setdiag(1.0 if symmetric_norm else 0.0)
    adj = adj.tocsr()
    adj.eliminate_zeros()
    deg = np.asarray(adj.sum(1)).ravel()
    with np.errstate(divide='ignore'):
        if symmetric_norm:
            inv = np.where(deg > 0, deg**-0.5, 0.0)
            return sp.diags(inv) @ adj @ sp.diags(inv)
        return sp.diags(np.where(deg > 0, 1.0 / deg, 0.0)) @ adj


def test_precompute_reads_ogb_layout_and_keeps_labelled_rows(ogb_root, pipeline):
    raw = np.load(ogb_root / 'ogbn_papers100M' / 'raw' / 'data.npz')
    x, edge_index = raw['node_feat'].astype(np.float64), raw['edge_index']
    n = int(raw['num_nodes_list'][0])
    labels = np.load(ogb_root / 'ogbn_papers100M' / 'raw' / 'node-label.npz')['node_label']
    split = SyntheticPapers(3000, label_fraction=0.5, num_classes=5, seed=1).get_idx_split()
    rows = np.concatenate([split[k].numpy() for k in ('train', 'valid', 'test')])

    stage = pc.Stage.from_config(config_from_args(_args(pipeline['argv'])))
    stores = pc.open_store(stage.store_dir)
    keys, hops, _ = pc.store_keys(stores)
    assert keys == ['x'] + [
        f'{p}{h}' for p in ('undirected', 'directed', 'transposed') for h in (1, 2, 3)
    ]
    assert hops == [0, 1, 2, 3, 1, 2, 3, 1, 2, 3]
    assert torch.equal(stores[0].rows, torch.from_numpy(rows))
    targets = np.load(stage.store_dir / pc.TARGETS_FILE)
    np.testing.assert_array_equal(targets['y'], labels[rows, 0].astype(np.int64))
    assert targets['train'].size + targets['valid'].size + targets['test'].size == rows.size
    assert pipeline['record']['num_rows'] == rows.size

    # Each block is the authors' operator (their preprocessing.py, in scipy) applied k times.
    src, dst = edge_index
    undirected = authors_adjacency(np.r_[src, dst], np.r_[dst, src], n, symmetric_norm=True)
    directed = authors_adjacency(src, dst, n, symmetric_norm=False)
    transposed = authors_adjacency(dst, src, n, symmetric_norm=False)
    block = dict(zip(keys, [s for s in stores for _ in s.keys()]))  # noqa: SIM118
    np.testing.assert_allclose(block['x']['x'].numpy(), x[rows], rtol=1e-6)
    for prefix, adj in (
        ('undirected', undirected),
        ('directed', directed),
        ('transposed', transposed),
    ):
        h = x
        for hop in (1, 2, 3):
            h = adj @ h
            key = f'{prefix}{hop}'
            np.testing.assert_allclose(block[key][key].numpy(), h[rows], rtol=1e-4, atol=1e-5)


def _args(argv):
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def test_train_writes_results_for_mlp_and_sign(pipeline):
    summary = pipeline['summary']
    assert set(summary['variants']) == {'mlp', 'sign'}
    mlp, sign = summary['variants']['mlp'], summary['variants']['sign']
    assert mlp['blocks'] == ['x'] and len(sign['blocks']) == 10
    assert mlp['num_input_features'] == 128 and sign['num_input_features'] == 1280
    runs_dir = pipeline['output'] / 'runs' / 'sign_authors'
    for variant in ('mlp', 'sign'):
        results = json.loads((runs_dir / variant / 'results.json').read_text())
        assert results['runs'] == 2 and len(results['per_run']) == 2
        for run in results['per_run']:
            assert [h['epoch'] for h in run['history']] == [1, 2, 3]
            best = max(run['history'], key=lambda h: h['valid_acc'])
            assert run['test_acc'] == best['test_acc']  # test at the best valid epoch
        accs = [r['test_acc'] for r in results['per_run']]
        assert results['test_acc_mean'] == pytest.approx(np.mean(accs))
        assert results['test_acc_std'] == pytest.approx(np.std(accs, ddof=1))
        assert 0.0 <= results['test_acc_mean'] <= 1.0
        assert results['epoch_time_s'] > 0 and results['precompute_time_s'] > 0
        assert results['peak_rss_bytes'] > 0
        assert (runs_dir / variant / 'checkpoints' / 'run1_best.pt').is_file()
        assert (runs_dir / variant / 'curves.png').stat().st_size > 1000
        # The resolved config is saved beside the results it made.
        saved = load_saved(runs_dir / variant / 'config.yaml')
        assert saved['train']['max_hops'] == (0 if variant == 'mlp' else None)
    assert (runs_dir / 'curves.png').is_file()
    expected = config_from_args(_args([*pipeline['argv'], 'train.epochs=3', 'train.runs=2']))
    assert load_saved(runs_dir / 'config.yaml') == expected
    assert load_saved(runs_dir / 'sign' / 'config.yaml') == expected
    # The learnt model is the authors' concat MLP over the ten blocks.
    assert (
        'SIGNClassifier([128, 128, 128, 128, 128, 128, 128, 128, 128, 128], 16, 172'
        in sign['model']
    )
    assert "mode='concat-mlp'" in sign['model']


def test_rerunning_precompute_reuses_the_store(pipeline, capsys):
    argv = pipeline['argv']
    stage = pc.Stage.from_config(config_from_args(_args(argv)))
    before = {p: p.stat().st_mtime_ns for p in stage.store_dir.rglob('*') if p.is_file()}
    assert pc.main(argv) == pipeline['record']
    assert 'reusing the finished FeatureStore' in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in stage.store_dir.rglob('*') if p.is_file()}
    assert after == before


def test_dropedge_gives_its_own_store_and_subsampled_operators(ogb_root, tmp_path):
    # The authors' rates (0.4 undirected, 0.2 directed/transposed): two subsampled graphs.
    argv = [
        '--dataset',
        'ogbn-papers100M',
        '--root',
        str(ogb_root),
        '--output',
        str(tmp_path),
        '--config',
        'sign_authors',
        '--no-progress',
        '--set',
        'operators.0.hops=1',
        'operators.1.hops=1',
        'operators.2.hops=1',
    ]
    record = pc.main(argv)
    assert record['keys'] == ['x', 'undirected1', 'directed1', 'transposed1']
    stage = pc.Stage.from_config(config_from_args(_args(argv)))
    assert [p.name for p in pc.part_dirs(stage.store_dir)] == ['part0', 'part1']
    edges = np.load(ogb_root / 'ogbn_papers100M' / 'raw' / 'data.npz')['edge_index']
    kept = pc.drop_edges(edges, 0.2, 1)
    assert 0.75 < kept.shape[1] / edges.shape[1] < 0.85
    np.testing.assert_array_equal(kept, pc.drop_edges(edges, 0.2, 1))  # seeded

    # A damaged store is not reused: the checksums catch it and the stage recomputes it.
    target = stage.store_dir / 'part0' / 'undirected1.npy'
    good = target.read_bytes()
    damaged = bytearray(good)
    damaged[-1] ^= 0xFF
    target.write_bytes(bytes(damaged))
    pc.main(argv)
    assert target.read_bytes() == good


def test_missing_real_dataset_is_never_downloaded(tmp_path):
    argv = [
        '--dataset',
        'ogbn-papers100M',
        '--root',
        str(tmp_path / 'none'),
        '--output',
        str(tmp_path / 'out'),
        '--no-progress',
    ]
    with pytest.raises(FileNotFoundError, match='never download'):
        pc.main(argv)
    assert not (tmp_path / 'none' / 'ogbn_papers100M').exists()


def test_real_dataset_needs_root(tmp_path):
    with pytest.raises(ValueError, match='needs --root'):
        pc.main(['--dataset', 'ogbn-papers100M', '--output', str(tmp_path), '--no-progress'])


def test_train_before_precompute_says_what_to_run(ogb_root, tmp_path):
    argv = [
        '--dataset',
        'ogbn-papers100M',
        '--root',
        str(ogb_root),
        '--output',
        str(tmp_path),
        '--no-progress',
    ]
    with pytest.raises(FileNotFoundError, match='run the precompute stage first'):
        tr.main(argv)


def _train_command(argv):
    return [sys.executable, '-m', 'graphops.apps.papers100m.train', *argv]


def test_resume_after_sigkill_matches_an_uninterrupted_run(pipeline, tmp_path):
    import shutil

    epochs = 30
    stage_argv = pipeline['argv']
    store = pc.Stage.from_config(config_from_args(_args(stage_argv))).store_dir
    outputs = {}
    for name in ('killed', 'straight'):
        outputs[name] = tmp_path / name
        shutil.copytree(store, outputs[name] / 'stores' / store.name)
    settings = [
        f'train.epochs={epochs}',
        'train.runs=1',
        'train.compare_mlp=false',
        'model.mode=inception',
        'train.max_hops=1',
    ]

    def argv(output):
        out = list(stage_argv)
        out[out.index('--output') + 1] = str(output)
        return out + settings

    # From a folder outside the repository: the installed package is what runs.
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    straight = subprocess.Popen(
        _train_command(argv(outputs['straight'])),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = subprocess.Popen(
        _train_command(argv(outputs['killed'])),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last = outputs['killed'] / 'runs' / 'sign_authors' / 'sign' / 'checkpoints' / 'run0_last.pt'
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.05)
    assert killed.poll() is None, 'train.py finished before it could be killed'
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stderr.close()
    epoch_at_kill = torch.load(last, weights_only=False)['state']['epoch']
    assert 1 <= epoch_at_kill < epochs

    resumed = subprocess.run(
        _train_command(argv(outputs['killed'])),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'resuming from the checkpoint after epoch' in resumed.stderr + resumed.stdout
    assert straight.wait(timeout=300) == 0

    def results(output):
        path = output / 'runs' / 'sign_authors' / 'sign' / 'results.json'
        return json.loads(path.read_text())['per_run'][0]

    a, b = results(outputs['killed']), results(outputs['straight'])
    assert b['resumed_from_epoch'] is None
    assert a['resumed_from_epoch'] == epoch_at_kill
    assert a['epochs_done'] == b['epochs_done'] == epochs
    drop_time = ('epoch_time_s',)
    assert [{k: v for k, v in h.items() if k not in drop_time} for h in a['history']] == [
        {k: v for k, v in h.items() if k not in drop_time} for h in b['history']
    ]
    ckpt = 'runs/sign_authors/sign/checkpoints/run0_best.pt'
    state_a = torch.load(outputs['killed'] / ckpt, weights_only=False)['model']
    state_b = torch.load(outputs['straight'] / ckpt, weights_only=False)['model']
    for key in state_b:
        assert torch.equal(state_a[key], state_b[key]), key
    assert not list(last.parent.glob('.*.tmp-*'))


# --- operators from configs ---------------------------------------------------------------------


@pytest.mark.parametrize('path', sorted(CONFIG_DIR.glob('*.yaml')), ids=lambda p: p.stem)
def test_every_shipped_config_builds(path):
    config = to_dict(load_config(path))
    assert set(config) >= {'dataset', 'operators', 'precompute', 'model', 'train'}
    if path.stem != 'base':
        ops = pc.build_operators(config['operators'])
        assert ops
        keys = [k for op, _ in ops for k in op.keys()]  # noqa: SIM118
        assert len(keys) == len(set(keys))


def test_bad_operator_entries():
    with pytest.raises(ValueError, match=r'operators\[0\].type must be one of'):
        pc.build_operators([{'type': 'Adj', 'hops': 2}])
    with pytest.raises(ValueError, match=r'operators\[0\].dropedge'):
        pc.build_operators([{'type': 'Adjacency', 'hops': 2, 'dropedge': 1.0}])
    with pytest.raises(TypeError, match=r'operators\[0\] \(Adjacency\)'):
        pc.build_operators([{'type': 'Adjacency', 'hops': 2, 'alpha': 0.1}])
    with pytest.raises(ValueError, match='lists no operators'):
        pc.build_operators([])


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
def test_precompute_on_device_matches_cpu(ogb_root, tmp_path, device):
    pytest.importorskip('ogb')
    stores = {}
    for name in ('cpu', device.type):
        argv = ['--dataset', 'ogbn-papers100M', '--root', str(ogb_root)]
        argv += ['--output', str(tmp_path / name), '--config', 'sign_authors', '--no-progress']
        argv += ['--cfg-options', *SMALL, f'precompute.device={name}']
        record = pc.main(argv)
        assert record['device'] == name
        stage = pc.Stage.from_config(config_from_args(_args(argv)))
        stores[name] = pc.open_store(stage.store_dir)
    expected, got = stores['cpu'], stores[device.type]
    assert pc.store_keys(got) == pc.store_keys(expected)
    for mine, theirs in zip(got, expected):
        assert mine.identity['device'] == device.type
        for key in theirs.keys():  # noqa: SIM118 - FeatureStore.keys() is a method
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-5)


def test_out_of_core_and_in_memory_paths_give_identical_stores(ogb_root, tmp_path):
    """The authors' operators with DropEdge on: the converted, budgeted path (the default) and
    ogb's in-memory loader write byte-identical blocks; a budget small enough for several column
    slices and row blocks changes nothing either."""
    base = ['--dataset', 'ogbn-papers100M', '--root', str(ogb_root), '--config', 'sign_authors']
    base += ['--no-progress', '--set', 'operators.0.hops=2', 'operators.1.hops=2']
    stores = {}
    for name, extra in (
        ('memory', ['precompute.memory_budget_bytes=null']),
        ('ooc', []),
        ('ooc-small', ['precompute.memory_budget_bytes=4194304']),
    ):
        argv = [*base, *extra, '--output', str(tmp_path / name)]
        record = pc.main(argv)
        assert record['backend'] == ('out-of-core' if name != 'memory' else 'local')
        stage = pc.Stage.from_config(config_from_args(_args(argv)))
        stores[name] = {
            key: store.array(key).tobytes()
            for store in pc.open_store(stage.store_dir)
            for key in store.keys()  # noqa: SIM118
        }
    assert stores['ooc'] == stores['memory']
    assert stores['ooc-small'] == stores['memory']


def test_both_budgets_set_is_an_error(ogb_root, tmp_path):
    argv = ['--dataset', 'ogbn-papers100M', '--root', str(ogb_root), '--output', str(tmp_path)]
    argv += ['--no-progress', '--set', 'precompute.column_budget_bytes=1000000']
    with pytest.raises(ValueError, match='not both'):
        pc.main(argv)
