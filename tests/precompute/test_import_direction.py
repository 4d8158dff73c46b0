"""Inside graphops.precompute, imports point one way, read from every module's source (ast).

From the bottom: the leaves ``feature_store``, ``plan``, ``dropedge`` and ``npy_member``;
``slices`` (a slice job and how it runs) and ``disk_csr``; ``converted_dataset``; the backends
(``base``, ``local``, ``ray``), then the ``backends`` package; ``engine`` and ``out_of_core``;
the package's ``__init__``. A module imports only modules below it, absolutely and at module
level, so that no function-level import can hide a cycle (an optional third-party package such
as ``ray`` may still be imported lazily).
"""

import ast
from pathlib import Path

import pytest

import graphops.precompute

PACKAGE = Path(graphops.precompute.__file__).resolve().parent
NAME = 'graphops.precompute'
RANK = {
    'feature_store': 0,
    'plan': 0,
    'dropedge': 0,
    'npy_member': 0,
    'slices': 1,
    'disk_csr': 1,
    'converted_dataset': 2,
    'backends.base': 2,
    'backends.local': 2,
    'backends.ray': 2,
    'backends': 3,
    'engine': 4,
    'out_of_core': 4,
    '': 5,
}


def module_of(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def precompute_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(module of graphops.precompute, line, at module level)`` for each import of one;
    a relative import is ``('<relative>', line, ...)``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append(('<relative>', node.lineno, id(node) in top))
            continue
        elif isinstance(node, ast.ImportFrom):
            # `from graphops.precompute import slices` names the module in the alias
            names = [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
        else:
            continue
        inner = [n[len(NAME) + 1 :] for n in names if n == NAME or n.startswith(NAME + '.')]
        # the deepest module the statement names (an alias may be a class, not a module)
        modules = [m for m in inner if m in RANK]
        if modules:
            found.append((max(modules, key=len), node.lineno, id(node) in top))
    return found


def violations(path: Path, root: Path = PACKAGE) -> list[str]:
    me = module_of(path, root)
    out = []
    for module, line, top_level in precompute_imports(path):
        where = f'{path.relative_to(root)}:{line}'
        if module == '<relative>':
            out.append(f'{where}: a relative import; write graphops.precompute.<module>')
        elif not top_level:
            out.append(f'{where}: imports {module} inside a function (a hidden cycle)')
        elif RANK[module] >= RANK[me]:
            out.append(
                f'{where}: {me or "__init__"} (rank {RANK[me]}) imports {module or "__init__"} '
                f'(rank {RANK[module]}); imports in graphops.precompute point down only'
            )
    return out


MODULES = sorted(PACKAGE.rglob('*.py'))


def test_every_module_has_a_place():
    assert {module_of(p) for p in MODULES} == set(RANK), (
        'a new module in graphops.precompute needs a place in RANK (and in ARCHITECTURE.md)'
    )


@pytest.mark.parametrize('path', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    assert violations(path) == []


def test_slices_imports_no_backend_and_backends_no_engine():
    for path in MODULES:
        me = module_of(path)
        imported = {module for module, _, _ in precompute_imports(path)}
        if me == 'slices':
            assert not {m for m in imported if m.startswith('backends') or m == 'engine'}
        if me.startswith('backends'):
            assert 'engine' not in imported and '' not in imported


def test_the_rule_catches_cycles_hidden_or_not(tmp_path):
    root = tmp_path / 'precompute'
    (root / 'backends').mkdir(parents=True)
    cases = {
        'slices.py': 'import torch\n\ndef f():\n    from graphops.precompute.engine import x\n',
        'backends/ray.py': 'from graphops.precompute import engine\n',
        'backends/local.py': 'from graphops.precompute.slices import SliceJob\n',
        'engine.py': 'from .backends import resolve_backend\n',
        'plan.py': 'import graphops.precompute.backends.base\n',
    }
    for name, text in cases.items():
        (root / name).write_text(text)
    found = {name: violations(root / name, root) for name in cases}
    assert 'imports engine inside a function' in found['slices.py'][0]
    assert 'backends.ray (rank 2) imports engine (rank 4)' in found['backends/ray.py'][0]
    assert found['backends/local.py'] == []
    assert 'a relative import' in found['engine.py'][0]
    assert 'plan (rank 0) imports backends.base (rank 2)' in found['plan.py'][0]
