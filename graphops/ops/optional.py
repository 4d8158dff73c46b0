"""Lazy access to the optional extras: torch_sparse / torch_scatter, and numba (extra ``fast``).

Nothing here imports them at module import time: ``import graphops`` must stay free of them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from typing import Any


def has_numba() -> bool:
    """True when the optional ``numba`` package can be imported (the fast CPU kernels).

    ``GRAPHOPS_DISABLE_NUMBA=1`` forces the pure-torch paths.
    """
    if os.environ.get('GRAPHOPS_DISABLE_NUMBA'):
        return False
    return _numba_installed()


@functools.cache
def _numba_installed() -> bool:
    # find_spec walks sys.path (tens of microseconds); whether numba is installed does not change
    return importlib.util.find_spec('numba') is not None


# numba's threading layer is process-wide and fixed at the first parallel launch. Its default
# on Linux is GNU OpenMP, which aborts a forked child (DataLoader workers) once the parent used it,
# and which shares libgomp's thread count with torch, so launching it overrides
# ``torch.set_num_threads``. The workqueue layer does neither; it is not safe for concurrent
# launches from several threads, hence one lock around every launch.
FORK_SAFE_THREADING_LAYER = 'workqueue'
_launch_lock = threading.Lock()


def _numba_module():
    """numba, imported on first use, with the fork-safe threading layer unless the user chose
    one (``NUMBA_THREADING_LAYER``) or numba's threads already run."""
    import numba

    if not os.environ.get('NUMBA_THREADING_LAYER') and numba.config.THREADING_LAYER == 'default':
        numba.config.THREADING_LAYER = FORK_SAFE_THREADING_LAYER
    return numba


def kernel_threads() -> int:
    """Threads a CPU kernel may use: ``torch.get_num_threads()`` read at call time (so
    ``torch.set_num_threads`` and DataLoader workers' one thread are respected), capped by the
    threads numba was started with. It never changes torch's setting."""
    import torch

    threads = torch.get_num_threads()
    if has_numba():
        threads = min(threads, _numba_module().config.NUMBA_NUM_THREADS)
    return max(1, threads)


class ParallelKernel:
    """A compiled ``parallel=True`` numba kernel run with :func:`kernel_threads` threads (or
    ``threads=`` given), one launch at a time in the process.

    Args:
        dispatcher: the numba dispatcher.
    """

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher

    def __call__(self, *args, threads: int | None = None):
        numba = _numba_module()
        threads = kernel_threads() if threads is None else max(1, min(threads, kernel_threads()))
        with _launch_lock:
            # set_num_threads is thread-local: it never changes another thread's (or torch's) count
            numba.set_num_threads(threads)
            return self.dispatcher(*args)


class NumbaKernels:
    """A module's numba kernels, compiled on the first call (nothing imports numba before a
    kernel runs); the call returns them in order, parallel ones as :class:`ParallelKernel`.

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
            numba = _numba_module()
            self._namespace['_numba'] = numba
            compiled = []
            for function, parallel in self._kernels:
                dispatcher = numba.njit(parallel=parallel, cache=True, nogil=True)(function)
                compiled.append(ParallelKernel(dispatcher) if parallel else dispatcher)
            self._compiled = tuple(compiled)
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


# The pure-torch fallbacks are correct but several times slower on big graphs; below this many
# entries (edges, nonzeros) the difference is milliseconds and not worth a warning.
FALLBACK_WARN_ENTRIES = 1 << 20
_fallback_warned = False
_fallback_lock = threading.Lock()


def warn_torch_fallback(what: str, tensors, reason: str | None = None) -> bool:
    """Issues one ``UserWarning`` per process when a CPU dispatch point runs its pure-torch
    fallback on a large input because the fast kernels are unavailable.

    Call it where the numba/LLVM kernel was not chosen. It warns only when ``reason`` is given or
    numba is missing (or ``GRAPHOPS_DISABLE_NUMBA`` is set), every tensor of ``tensors``
    (``None`` skipped) is on the CPU without autograd (autograd paths run torch regardless), and
    the first holds at least :data:`FALLBACK_WARN_ENTRIES` elements. Returns whether it warned.
    """
    global _fallback_warned
    if _fallback_warned:
        return False
    tensors = [t for t in tensors if t is not None]
    if not tensors or tensors[0].numel() < FALLBACK_WARN_ENTRIES:
        return False
    if any(t.device.type != 'cpu' or t.requires_grad for t in tensors):
        return False
    if reason is None:
        if has_numba():
            return False
        reason = (
            'GRAPHOPS_DISABLE_NUMBA is set; unset it'
            if os.environ.get('GRAPHOPS_DISABLE_NUMBA')
            else 'numba is not installed; pip install numba (a core dependency of graphops)'
        )
    with _fallback_lock:
        if _fallback_warned:
            return False
        _fallback_warned = True
    import warnings

    warnings.warn(
        f'graphops: {what} runs its pure-torch CPU fallback on {tensors[0].numel():,} entries, '
        f'several times slower than the numba kernels, because {reason}. This warning is shown '
        'once per process.',
        UserWarning,
        stacklevel=3,
    )
    return True
