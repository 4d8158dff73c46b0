r"""Which kernel runs: the backend names, the one user override, the size thresholds below which a
kernel is not worth starting or a thread pool not worth waking, and the thread policy.

Backends are named for what runs:

* ``'llvm'``: the CPU SpMM kernel, LLVM IR compiled by llvmlite (``graphops.ops.kernels.llvm_spmm``);
* ``'numba'``: the CPU numba kernels (SpGEMM, triangles, SDDMM, CSR construction, gPool);
* ``'torch'``: plain torch ops on any device (the fallback when numba or llvmlite is absent);
* ``'cuda'``: torch's CUDA sparse kernels (cuSPARSE) for CUDA tensors.

An operation whose ``backend`` argument is ``'auto'`` (the default) follows the override, set for a
block with :func:`use_backend` or for the process with :func:`set_backend` (like PyG's
``torch_geometric.backend.use_segment_matmul``)::

    with graphops.ops.use_backend('torch'):   # every op runs its pure-torch path here
        y = spmm(csr, x)

``'torch'`` sends every operation to its torch path; ``'llvm'``, ``'numba'`` or ``'cuda'`` ask
for that kernel where an operation has one (and raise where it cannot run, as an explicit
``backend=`` does) and leave the others on ``'auto'``. An explicit ``backend=`` argument wins
over the override.

Threads: every CPU kernel runs :func:`kernel_threads` threads (``torch.get_num_threads()`` read
at call time), and one thread below its ``*_SERIAL_WORK`` threshold, where starting the others
costs more than the work.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

from graphops.ops.optional import has_numba, kernel_threads, warn_torch_fallback

BACKENDS = ('auto', 'llvm', 'numba', 'torch', 'cuda')

#: the LLVM SpMM runs on one thread below this many (entries + rows) x features: waking its pool
#: costs about 0.5 ms on a loaded 2-core machine, as much as a serial product of this size
SPMM_SERIAL_WORK = 1 << 23
#: below this many entries per row on average (and ``SPMM_SHORT_ROWS_MAX_WORK`` (entries +
#: rows) x features), ``'auto'`` SpMM runs torch's ``embedding_bag`` instead of the LLVM kernel:
#: on R-GCN's (target, relation) pairs (1-2 entries a row) and random rows of 2-8 entries it ran
#: 1.6-1.8x faster on 2 cores; from 32 entries a row the kernel was 1.5x faster
SPMM_SHORT_ROWS = 16
SPMM_SHORT_ROWS_MAX_WORK = 1 << 26
#: numba kernels run on one thread below this many units of work (terms, entries x features)
SDDMM_SERIAL_WORK = 1 << 18
SPGEMM_SERIAL_WORK = 1 << 16
#: CSR construction / normalisation stay on torch below this many entries (no compilation)
CSR_NUMBA_MIN_ENTRIES = 1 << 16
#: gPool's top-k and induced-subgraph kernels stay on torch below this many nodes or edges
POOL_NUMBA_MIN_ENTRIES = 4096

_global_backend = 'auto'
_scoped_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    'graphops_backend', default=None
)


def _check(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    return backend


def set_backend(backend: str) -> None:
    """Sets the process-wide backend override (``'auto'`` clears it)."""
    global _global_backend
    _global_backend = _check(backend)


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Overrides the backend of every ``backend='auto'`` operation inside the block (this thread
    or task only; blocks nest)."""
    token = _scoped_backend.set(_check(backend))
    try:
        yield
    finally:
        _scoped_backend.reset(token)


def current_backend() -> str:
    """The override in force: the innermost :func:`use_backend`, else :func:`set_backend`'s."""
    scoped = _scoped_backend.get()
    return _global_backend if scoped is None else scoped


def choose_backend(
    op: str,
    requested: str,
    device: torch.device,
    *,
    kernel: str,
    kernel_ready: bool,
    unready: str = '',
    gpu: str = 'torch',
    inputs=(),
    fallback_reason: str | None = None,
) -> str:
    """The backend that runs ``op``: its CPU ``kernel`` (``'llvm'`` or ``'numba'``) when that
    applies (``kernel_ready``; ``unready`` says why not), else ``'torch'``, or ``gpu``
    (``'cuda'`` or ``'torch'``) on a CUDA device. ``requested='auto'`` follows the override.
    Where neither asked for it and the kernel is missing, the torch fallback warns once on large
    ``inputs`` (:func:`~graphops.ops.optional.warn_torch_fallback`, with ``fallback_reason``)."""
    explicit = _check(requested) != 'auto'
    choice = requested if explicit else current_backend()
    if choice not in ('auto', 'torch', kernel, gpu):
        if explicit:
            names = ['auto', kernel, 'torch'] + (['cuda'] if gpu == 'cuda' else [])
            raise ValueError(f'{op} has no {choice!r} backend; use one of {names}')
        choice = 'auto'  # the override names a kernel this op lacks
    if choice == 'auto':
        if device.type == 'cuda':
            return gpu
        if kernel_ready and device.type == 'cpu':
            return kernel
        if not explicit and current_backend() == 'auto':
            warn_torch_fallback(op, inputs, fallback_reason)
        return 'torch'
    if choice == 'torch':
        return 'torch'
    if choice == 'cuda':
        if device.type != 'cuda':
            raise ValueError(f"backend='cuda' needs CUDA tensors, got {op}'s input on {device}")
        return 'cuda'
    if device.type != 'cpu':
        raise ValueError(f"backend={kernel!r} runs on CPU tensors only, got {device}; use 'auto'")
    if kernel == 'numba' and not has_numba():
        raise ImportError("backend='numba' needs the numba package: pip install numba")
    if not kernel_ready:
        raise ValueError(f'backend={kernel!r} cannot run {op} here: {unready}')
    return kernel


def numba_kernel_applies(tensors, min_entries: int, fallback: str | None = None) -> bool:
    """True when a CPU numba kernel should run on ``tensors`` (``None`` entries skipped): numba
    present, not inside ``torch.compile`` (a kernel is opaque to the compiler), the override not
    ``'torch'``, every tensor on the CPU and without autograd (kernels are not differentiable),
    and the first holding at least ``min_entries`` elements (smaller inputs stay on torch paths,
    which need no compilation). Where it does not apply, the op named ``fallback`` warns once
    on a large input (:func:`~graphops.ops.optional.warn_torch_fallback`)."""
    applies = (
        not torch.compiler.is_compiling()
        and current_backend() != 'torch'
        and has_numba()
        and all(t is None or (t.device.type == 'cpu' and not t.requires_grad) for t in tensors)
        and tensors[0].numel() >= min_entries
    )
    if not applies and fallback is not None:
        warn_torch_fallback(fallback, tensors)
    return applies


def threads_for(work: int, serial_work: int) -> int:
    """Threads for a kernel of ``work`` units: :func:`kernel_threads`, or 1 below
    ``serial_work``."""
    return kernel_threads() if work >= serial_work else 1
