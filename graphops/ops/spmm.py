r"""Sparse x dense products :math:`Y = M X` for a :class:`~graphops.ops.csr.CSR` ``M``.

The single SpMM entry point every layer and the precompute engine call.

Backends (``backend='auto'`` picks the first that applies):

* ``'cuda'``: ``torch.sparse.mm`` on a CSR tensor, i.e. cuSPARSE, for CUDA inputs;
* ``'llvm'``: the row-parallel CPU kernel of :mod:`graphops.ops.kernels.llvm_spmm`; each output
  row sums its entries in CSR order, so the result is bit-identical whatever the thread count and
  however the columns are sliced;
* ``'torch'``: ``torch.sparse.mm`` on CPU (MKL when torch has it), or, on rows of a few entries,
  ``embedding_bag`` (CSR x dense with per-entry weights on torch's OpenMP threads), which
  ``'auto'`` prefers to the LLVM kernel there (``graphops.ops.dispatch.SPMM_SHORT_ROWS``).

Autograd: one :class:`torch.autograd.Function` for every backend. The forward runs the chosen
kernel on detached inputs; the backward runs the same kernel on the transposed matrix for
:math:`\nabla X = M^\top \nabla Y` (the transposed pattern is built once per matrix and kept on
it) and :func:`graphops.ops.sddmm` for the values,
:math:`\nabla M_{e} = \langle \nabla Y_{i_e}, X_{j_e} \rangle`, so duplicate entries each get
their own gradient and no ``[nnz, F]`` tensor is formed. Under :func:`torch.compile` the product
is a gather and an ``index_add`` that the compiler traces and differentiates itself.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from graphops.ops import dispatch
from graphops.ops.csr import CSR, check_csr, torch_csr_tensor
from graphops.ops.dispatch import BACKENDS, choose_backend
from graphops.ops.kernels import llvm_spmm
from graphops.ops.kernels.llvm_spmm import row_chunks
from graphops.ops.optional import has_numba
from graphops.ops.sddmm import sddmm_unchecked
from graphops.ops.validate import check_float, check_length, check_same_device

_LLVM_DTYPES = (torch.float32, torch.float64)
_TORCH_SPARSE_CPU_DTYPES = (torch.float32, torch.float64)
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}
# Large host buffers start on a 2 MiB boundary: a whole huge page, and every row on a cache line.
HUGE_PAGE = 2 << 20

__all__ = ['spmm', 'spmm_unchecked', 'host_empty', 'has_numba', 'row_chunks']


def spmm(
    csr: CSR,
    x: Tensor,
    reduce: str = 'sum',
    *,
    out: Tensor | None = None,
    backend: str = 'auto',
) -> Tensor:
    r"""Returns :math:`Y_i = \bigoplus_{j} M_{ij} X_j` with :math:`\bigoplus` a sum or a mean.

    Args:
        csr (CSR): ``[N_dst, N_src]`` matrix.
        x (Tensor): ``[N_src, F]`` dense features (float).
        reduce (str): ``'sum'`` (default) or ``'mean'`` (divides by the number of stored entries
            of each row; empty rows give zeros).
        out (Tensor, optional): a contiguous ``[N_dst, F]`` tensor of ``x``'s dtype and device to
            write into (its old contents are overwritten). Default: a new tensor.
        backend (str): ``'auto'`` (default: the ``graphops.ops.dispatch`` override, else the
            first that applies), ``'llvm'``, ``'torch'`` or ``'cuda'``; see the module docstring.

    Shapes:
        ``x``: :math:`(N_{src}, F)` -> output :math:`(N_{dst}, F)`.
    """
    check_csr(csr)
    check_features(x, csr.num_cols)
    check_same_device([('adjacency', csr.col), ('x', x)])
    if reduce not in ('sum', 'mean'):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if backend == 'numba':
        raise ValueError(
            "backend='numba' is now backend='llvm': the CPU kernel is LLVM IR compiled by "
            'llvmlite, not a numba function'
        )
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if out is not None:
        check_out(out, csr.num_rows, x)
    return spmm_unchecked(csr, x, reduce == 'mean', out=out, backend=backend)


def spmm_unchecked(
    csr: CSR, x: Tensor, mean: bool = False, *, out: Tensor | None = None, backend: str = 'auto'
) -> Tensor:
    """:func:`spmm` for inputs already validated (the layers' hot paths call this), with autograd
    in ``x`` and ``csr.value``."""
    value = None if csr.value is None else csr.value.to(x.dtype)
    if torch.compiler.is_compiling():
        result = _gather_scatter(csr, value, x, mean)
        return result if out is None else out.copy_(result)
    chosen = _choose_backend(csr, x, backend)
    if _needs_grad(csr, x):
        result = _SpMM.apply(value, x, csr, mean, chosen)
        return result if out is None else out.copy_(result)
    return _product(csr, value, x, mean, chosen, out)


class _SpMM(torch.autograd.Function):
    """The one SpMM autograd: the chosen kernel forward, its transposed twin and SDDMM backward."""

    @staticmethod
    def forward(ctx, value, x, csr, mean, backend):
        ctx.csr, ctx.mean, ctx.backend = csr, mean, backend
        ctx.save_for_backward(value, x)
        detached = None if value is None else value.detach()
        return _product(csr, detached, x.detach(), mean, backend, None)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        value, x = ctx.saved_tensors
        csr = ctx.csr
        grad = grad.contiguous()
        if ctx.mean:
            grad = grad / csr.row_counts().clamp(min=1).to(grad.dtype).unsqueeze(-1)
        grad_value = grad_x = None
        if ctx.needs_input_grad[1]:
            pattern, perm = csr.transposed_pattern()
            moved = None if value is None else value.detach()[perm]
            grad_x = _product(pattern, moved, grad, False, ctx.backend, None)
        if ctx.needs_input_grad[0]:
            grad_value = sddmm_unchecked(csr, grad, x.detach())
        return grad_value, grad_x, None, None, None


def _product(
    csr: CSR, value: Tensor | None, x: Tensor, mean: bool, backend: str, out: Tensor | None
) -> Tensor:
    """``M @ x`` (``value`` overriding ``csr.value``) without autograd, written into ``out`` when
    given (the torch backends too: no ``[N, F]`` temporary and copy)."""
    if csr.nnz == 0 or x.size(1) == 0 or csr.num_rows == 0:
        return x.new_zeros(csr.num_rows, x.size(1)) if out is None else out.zero_()
    if backend == 'llvm':
        result = host_empty(csr.num_rows, x.size(1), x.dtype) if out is None else out
        weights = None if value is None else value.contiguous()
        llvm_spmm.spmm_into(
            csr.rowptr.contiguous(), csr.col.contiguous(), weights, x.contiguous(), result, mean
        )
        return result
    if x.device.type == 'cpu' and x.dtype not in _TORCH_SPARSE_CPU_DTYPES:
        result = _gather_scatter(csr, value, x, mean)  # MKL's sparse product lacks half types
        return result if out is None else out.copy_(result)
    weights = torch.ones(csr.nnz, dtype=x.dtype, device=x.device) if value is None else value
    if x.device.type == 'cpu' and _short_rows(csr, x):
        result = F.embedding_bag(
            csr.col, x, csr.rowptr, mode='sum', per_sample_weights=weights,
            include_last_offset=True,
        )  # fmt: skip
        result = result if out is None else out.copy_(result)
    else:
        matrix = torch_csr_tensor(csr.rowptr, csr.col, weights, csr.shape)
        result = torch.sparse.mm(matrix, x) if out is None else torch.mm(matrix, x, out=out)
    if mean:
        result.div_(csr.row_counts().clamp_(min=1).to(x.dtype).unsqueeze(-1))
    return result


def _gather_scatter(csr: CSR, value: Tensor | None, x: Tensor, mean: bool) -> Tensor:
    """``M @ x`` as a row gather and an ``index_add``: plain tensor ops that any dtype and
    :func:`torch.compile` handle, and that autograd differentiates without help."""
    messages = x.index_select(0, csr.col.long())
    if value is not None:
        messages = messages * value.unsqueeze(-1)
    result = x.new_zeros(csr.num_rows, x.size(1)).index_add_(0, csr.row().long(), messages)
    if mean:
        result = result / csr.row_counts().clamp(min=1).to(x.dtype).unsqueeze(-1)
    return result


def host_empty(num_rows: int, num_cols: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """An uninitialised CPU ``[num_rows, num_cols]`` tensor laid out for random row gathers.

    Buffers of 2 MiB and more start on a 2 MiB boundary and ask Linux for transparent huge pages
    (numpy's ``madvise(MADV_HUGEPAGE)``; torch's allocator does not): a product gathering random
    rows of a huge-paged ``x`` misses the TLB far less. The alignment matters as much: numpy's own
    large arrays start 16 bytes into a page, so every 512-byte row straddles nine cache lines, and
    the same product runs about 1.3x slower. Smaller buffers, and dtypes numpy lacks, come from
    ``torch.empty`` (64-byte aligned).
    """
    numpy_dtype = _NUMPY_DTYPES.get(dtype)
    nbytes = num_rows * num_cols * dtype.itemsize
    if numpy_dtype is None or nbytes < HUGE_PAGE:
        return torch.empty(num_rows, num_cols, dtype=dtype)
    raw = np.empty(nbytes + HUGE_PAGE, dtype=np.uint8)
    offset = -raw.ctypes.data % HUGE_PAGE
    array = raw[offset : offset + nbytes].view(numpy_dtype).reshape(num_rows, num_cols)
    return torch.from_numpy(array)


def check_features(x, num_cols: int) -> Tensor:
    """The ``x`` of ``M @ x``: a ``[num_cols, F]`` float tensor (NaN/Inf allowed)."""
    check_float(x, 'x', finite=False)
    if x.dim() != 2:
        raise ValueError(f'x must be 2-dimensional [num_src_nodes, F], got {tuple(x.shape)}')
    return check_length(x, num_cols, 'x', 'the number of source nodes (adjacency columns)')


def check_out(out, num_rows: int, x: Tensor, contiguous: bool = True) -> None:
    """A result buffer for ``M @ x``: ``[num_rows, F]``, ``x``'s dtype and device."""
    if not isinstance(out, Tensor):
        raise TypeError(f'out must be a torch.Tensor, got {type(out).__name__}')
    if tuple(out.shape) != (num_rows, x.size(1)) or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f'out must be a [{num_rows}, {x.size(1)}] {x.dtype} tensor on {x.device} (where x '
            f'is), got {list(out.shape)} {out.dtype} on {out.device}; allocate it like '
            'x.new_empty(...)'
        )
    if contiguous and not out.is_contiguous():
        raise ValueError('out must be contiguous; pass out.contiguous() or let spmm allocate it')


def _needs_grad(csr: CSR, x: Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or (csr.value is not None and csr.value.requires_grad)


def _short_rows(csr: CSR, x: Tensor) -> bool:
    """Rows of a few entries on a product of moderate size (``dispatch.SPMM_SHORT_ROWS``)."""
    return (
        csr.nnz < dispatch.SPMM_SHORT_ROWS * csr.num_rows
        and (csr.nnz + csr.num_rows) * x.size(1) < dispatch.SPMM_SHORT_ROWS_MAX_WORK
    )


def _choose_backend(csr: CSR, x: Tensor, backend: str) -> str:
    dtype_ok = x.dtype in _LLVM_DTYPES
    ready = dtype_ok and llvm_spmm.available()
    if not dtype_ok:
        unready = f"it handles float32/float64 inputs, got {x.dtype}; use backend='torch'"
    else:
        unready = "llvmlite (pip install numba) could not compile the kernel; use backend='torch'"
    # a fallback warning only where the kernel could run on this dtype but is missing
    reason = (
        'llvmlite cannot compile the kernel for this CPU' if not ready and has_numba() else None
    )
    chosen = choose_backend(
        'spmm', backend, x.device, kernel='llvm', kernel_ready=ready, unready=unready, gpu='cuda',
        inputs=(csr.col, x) if dtype_ok else (), fallback_reason=reason,
    )  # fmt: skip
    if chosen == 'llvm' and backend == 'auto' and _short_rows(csr, x):
        return 'torch'  # its embedding_bag beats the kernel here (see dispatch.SPMM_SHORT_ROWS)
    return chosen
