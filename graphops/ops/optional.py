"""Lazy access to the optional extras: torch_sparse / torch_scatter, and numba (extra ``fast``).

Nothing here imports them at module import time: ``import graphops`` must stay free of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any


def has_numba() -> bool:
    """True when the optional ``numba`` package can be imported (the fast CPU kernels).

    ``GRAPHOPS_DISABLE_NUMBA=1`` forces the pure-torch paths.
    """
    if os.environ.get('GRAPHOPS_DISABLE_NUMBA'):
        return False
    return importlib.util.find_spec('numba') is not None


def numba_applies(tensors, min_entries: int) -> bool:
    """True when a CPU numba kernel should run on ``tensors`` (``None`` entries skipped): numba
    present, every tensor on the CPU and without autograd (kernels are not differentiable), and
    the first holding at least ``min_entries`` elements (smaller inputs stay on torch paths,
    which need no compilation)."""
    if not has_numba() or not tensors:
        return False
    for tensor in tensors:
        if tensor is not None and (tensor.device.type != 'cpu' or tensor.requires_grad):
            return False
    return tensors[0].numel() >= min_entries


class NumbaKernels:
    """A module's numba kernels, compiled on the first call (numba is the optional ``fast``
    extra, so nothing imports it before a kernel runs); the call returns them in order.

    Kernels are module-level functions, not closures, so numba's on-disk cache finds them again in
    a new process. They reach ``prange`` and friends through their module's global ``_numba``,
    which is bound in ``namespace`` (the module's ``globals()``) just before compiling.

    Args:
        namespace (dict): the kernels' module globals.
        *kernels: ``(function, parallel)`` pairs.
    """

    def __init__(self, namespace: dict, *kernels: tuple[Callable, bool]):
        self._namespace = namespace
        self._kernels = kernels
        self._compiled: tuple | None = None

    def __call__(self) -> tuple:
        if self._compiled is None:
            import numba

            self._namespace['_numba'] = numba
            self._compiled = tuple(
                numba.njit(parallel=parallel, cache=True, nogil=True)(function)
                for function, parallel in self._kernels
            )
        return self._compiled


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
