import importlib
import subprocess
import sys

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
]


def test_import_does_not_pull_optional_extras():
    code = (
        'import sys, graphops; '
        "bad = [m for m in ('torch_sparse', 'torch_scatter') if m in sys.modules]; "
        'sys.exit(f"imported {bad}" if bad else 0)'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


def test_every_subpackage_exports_all():
    assert isinstance(graphops.__version__, str)
    for name in SUBPACKAGES:
        module = importlib.import_module(f'graphops.{name}')
        assert isinstance(module.__all__, list)
        for exported in module.__all__:
            assert hasattr(module, exported), f'graphops.{name} exports missing {exported}'
