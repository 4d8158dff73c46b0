"""Sphinx configuration of graphops' API reference (autodoc, napoleon, MathJax; PyG's layout).

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors). Besides Sphinx's
own checks (broken references to graphops names: ``nitpicky``), the build fails when a public name
(an entry of a subpackage's ``__all__``) has no entry in the reference.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # document this checkout, installed or not

import graphops  # noqa: E402

project = 'graphops'
author = 'graphops developers'
copyright = 'graphops developers'
release = version = graphops.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
    'myst_parser',  # the examples table is read from examples/README.md, never copied
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build']
myst_heading_anchors = 3
suppress_warnings = ['myst.xref_missing']  # README links to repo files that are not doc pages

autodoc_member_order = 'bysource'
autodoc_typehints = 'none'  # PyG's style: types are in the Args: section
autodoc_default_options = {'members': True, 'undoc-members': False, 'show-inheritance': False}
autodoc_mock_imports = ['torch_sparse', 'torch_scatter']
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ['Shapes']  # PyG's section, rendered as written

# A reference to a graphops name that does not resolve is an error; references to torch, numpy,
# PyG and the standard library are not checked (no intersphinx: the build runs offline).
nitpicky = True
nitpick_ignore_regex = [(r'py:.*', r'(?!graphops\b).*')]

# MathJax: Sphinx's default (a CDN) unless $GRAPHOPS_MATHJAX names a local MathJax 2 ``MathJax.js``
# (Debian's libjs-mathjax: /usr/share/javascript/mathjax/MathJax.js) for an offline build.
if os.environ.get('GRAPHOPS_MATHJAX'):
    _mathjax = Path(os.environ['GRAPHOPS_MATHJAX']).resolve()
    if not _mathjax.is_file():
        raise FileNotFoundError(
            f'GRAPHOPS_MATHJAX={_mathjax} is not a file; point it at MathJax.js'
        )
    mathjax_path = _mathjax.as_uri() + '?config=TeX-AMS-MML_HTMLorMML'

html_theme = 'sphinx_rtd_theme'
html_title = f'graphops {version}'
html_show_sourcelink = False

# Subpackages whose __all__ is the public API the reference must cover.
PUBLIC = ['ops', 'nn', 'nn.models', 'transforms', 'precompute', 'datasets']


def public_names() -> list[str]:
    """``graphops.<sub>.<name>`` for every public non-module name."""
    names = []
    for sub in PUBLIC:
        module = importlib.import_module(f'graphops.{sub}')
        for name in module.__all__:
            if not isinstance(getattr(module, name), types.ModuleType):
                names.append(f'graphops.{sub}.{name}')
    return names


def check_public_names(app, env) -> None:
    documented = set(env.get_domain('py').objects)
    logger = logging.getLogger('graphops.docs')
    for name in public_names():
        if name not in documented:
            logger.warning(
                f'public name {name} has no entry in the API reference; add it to a page'
            )


def _lookup(dotted: str):
    """The object a dotted name points at, or None."""
    module_name, _, attr = dotted.rpartition('.')
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None


def resolve_by_object(app, env, node, contnode):
    """Docstrings may name an object by its defining module (``graphops.ops.spgemm.spgemm``);
    the reference documents it under its public path (``graphops.ops.spgemm``): link to that."""
    target = node.get('reftarget', '')
    if node.get('refdomain') != 'py' or not target.startswith('graphops.'):
        return None
    obj = _lookup(target)
    if obj is None:
        return None
    domain = env.get_domain('py')
    for name in domain.objects:
        if _lookup(name) is obj:
            return domain.resolve_xref(
                env, node['refdoc'], app.builder, node['reftype'], name, node, contnode
            )
    return None


def setup(app):
    app.connect('missing-reference', resolve_by_object)
    app.connect('env-check-consistency', check_public_names)
