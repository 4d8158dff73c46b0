"""The one-way import rule of ARCHITECTURE.md, read from every module's import statements."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'graphops'
# what each layer may import from graphops (besides itself)
ALLOWED = {
    'ops': set(),
    # test helpers sit on top: the fuzz harness drives layers too; nothing imports them back
    'testing': {'ops', 'nn', 'transforms', 'datasets', 'precompute'},
    'nn': {'ops'},
    'transforms': {'ops'},
    'datasets': {'ops'},
    'precompute': {'ops', 'transforms'},
    'apps': {'ops', 'nn', 'transforms', 'datasets', 'precompute'},
}


def imported_modules(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
            # `from graphops import nn` names the layer in the alias
            if node.module == 'graphops':
                modules += [f'graphops.{alias.name}' for alias in node.names]
    return modules


def layer_of(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


MODULES = sorted(p for p in PACKAGE.rglob('*.py') if layer_of(p) is not None)


def test_every_layer_is_known():
    assert {layer_of(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize('path', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    layer = layer_of(path)
    for module in imported_modules(path):
        root = module.split('.')[0]
        assert root not in ('benchmarks', 'examples', 'tests'), f'{path} imports {module}'
        if root != 'graphops' or module.count('.') == 0:
            continue
        target = module.split('.')[1]
        if target in ('__version__',) or target == layer:
            continue
        assert target in ALLOWED[layer], (
            f'{path.relative_to(PACKAGE)} ({layer}) imports {module}; {layer} may import only '
            f'{sorted(ALLOWED[layer]) or "nothing else in graphops"} (ARCHITECTURE.md)'
        )


def test_the_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('from graphops.nn import RGCNConv\nimport graphops.apps.runtime\n')
    assert imported_modules(bad) == ['graphops.nn', 'graphops.apps.runtime']
    assert 'nn' not in ALLOWED['ops'] and 'apps' not in ALLOWED['precompute']


def test_nothing_imports_testing():
    for path in MODULES:
        if layer_of(path) == 'testing':
            continue
        for module in imported_modules(path):
            assert not module.startswith('graphops.testing'), f'{path} imports {module}'


def private_imports(path: Path) -> list[str]:
    """``module.name`` for every private name ``path`` imports from another graphops module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('graphops'):
            for alias in node.names:
                if alias.name.startswith('_') and not alias.name.startswith('__'):
                    found.append(f'{node.module}.{alias.name}')
    return found


@pytest.mark.parametrize('path', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_is_imported_across_modules(path):
    assert not private_imports(path), (
        f'{path.relative_to(PACKAGE)} imports private names {private_imports(path)}: make the '
        'shared helper public where it lives (ARCHITECTURE.md: one implementation of each idea)'
    )


def test_the_private_import_check_catches_one(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('from graphops.ops.csr import CSR, _from_coo\n')
    assert private_imports(bad) == ['graphops.ops.csr._from_coo']


# Inside ops, one way too: kernels and the dispatch rules know nothing of the products built on
# them, and the relational engine sits on top (nothing else in ops imports it).
OPS = PACKAGE / 'ops'
OPS_ALLOWED = {
    'optional': set(),
    'dispatch': {'optional'},
    'kernels': {'optional', 'dispatch'},
}


def ops_part(module: str) -> str | None:
    parts = module.split('.')
    return parts[2] if len(parts) > 2 and parts[:2] == ['graphops', 'ops'] else None


@pytest.mark.parametrize(
    'path', sorted(OPS.rglob('*.py')), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_ops_imports_point_one_way(path):
    own = path.relative_to(OPS).parts[0].removesuffix('.py')
    for module in imported_modules(path):
        target = ops_part(module)
        if target is None or target == own:
            continue
        if own in OPS_ALLOWED:
            assert target in OPS_ALLOWED[own], f'ops/{own} imports {module} (ARCHITECTURE.md)'
        if own != '__init__':
            assert target != 'relational', f'ops/{own} imports the relational engine ({module})'
