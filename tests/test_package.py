import ast
import importlib
import subprocess
import sys
from pathlib import Path

import graphops

OPTIONAL = ('torch_sparse', 'torch_scatter')
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


def test_import_works_without_optional_extras():
    # Simulates an install without the `sparse` extra: importing either module raises ImportError.
    code = (
        'import sys; '
        "sys.modules['torch_sparse'] = None; sys.modules['torch_scatter'] = None; "
        'import graphops, graphops.nn, graphops.ops, graphops.datasets; '
        'assert not graphops.ops.has_torch_sparse()'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


def test_no_module_imports_optional_extras_eagerly():
    """graphops' own modules import torch_sparse/torch_scatter only inside functions.

    (PyG itself imports torch_sparse when it is installed, so sys.modules cannot tell us this in
    an install that has the extra.)
    """
    root = Path(graphops.__file__).parent
    for path in root.rglob('*.py'):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split('.')[0] not in OPTIONAL, f'{path} imports {name} at module level'


def test_every_subpackage_exports_all():
    assert isinstance(graphops.__version__, str)
    for name in SUBPACKAGES:
        module = importlib.import_module(f'graphops.{name}')
        assert isinstance(module.__all__, list)
        for exported in module.__all__:
            assert hasattr(module, exported), f'graphops.{name} exports missing {exported}'
