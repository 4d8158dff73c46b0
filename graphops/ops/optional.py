"""Lazy access to the optional extras: torch_sparse / torch_scatter, and numba (extra ``fast``).

Nothing here imports them at module import time: ``import graphops`` must stay free of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any


def has_numba() -> bool:
    """True when the optional ``numba`` package can be imported (the fast CPU kernels).

    ``GRAPHOPS_DISABLE_NUMBA=1`` forces the pure-torch paths.
    """
    if os.environ.get('GRAPHOPS_DISABLE_NUMBA'):
        return False
    return importlib.util.find_spec('numba') is not None


def has_torch_sparse() -> bool:
    """True when torch_sparse can be imported (the ``sparse`` extra is installed)."""
    if 'torch_sparse' in sys.modules:
        return sys.modules['torch_sparse'] is not None
    try:
        return importlib.util.find_spec('torch_sparse') is not None
    except ValueError:  # a module entry without a spec
        return False


def is_sparse_tensor(obj: Any) -> bool:
    """True for a ``torch_sparse.SparseTensor`` without importing torch_sparse.

    If the user holds a SparseTensor, torch_sparse is already in ``sys.modules``.
    """
    module = sys.modules.get('torch_sparse')
    if module is None:
        return False
    return isinstance(obj, module.SparseTensor)


def torch_sparse():
    """Import and return torch_sparse, or raise an ImportError that says how to get it."""
    try:
        return importlib.import_module('torch_sparse')
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "torch_sparse is not installed. Install graphops' 'sparse' extra: "
            'pip install --no-build-isolation torch_scatter torch_sparse'
        ) from err
