r"""Sparse x dense products :math:`Y = M X` for a :class:`~graphops.ops.csr.CSR` ``M``.

The single SpMM entry point every layer and the precompute engine call.

Backends (``backend='auto'`` picks the first that applies):

* ``'cuda'``: ``torch.sparse.mm`` on a CSR tensor, i.e. cuSPARSE, for CUDA inputs;
* ``'numba'``: a row-parallel CPU kernel (needs the optional ``numba`` package). Rows are split
  into chunks of equal *nnz* (not equal row counts) so power-law graphs stay balanced; each output
  row is written by one thread, summing its entries in CSR order, so the result is bit-identical
  whatever the thread count. It reads ``int32`` indices as they are, skips the value array of an
  unweighted matrix, and does not build a ``torch.sparse_csr_tensor``;
* ``'torch'``: ``torch.sparse.mm`` on CPU (MKL when torch has it).

Autograd: when ``x`` or the weights require a gradient (and grad mode is on) the product goes
through ``torch.sparse.mm``, which differentiates; the numba kernel is for inference only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from graphops.ops.csr import CSR, torch_csr_tensor
from graphops.ops.optional import has_numba
from graphops.ops.validate import check_float, check_length, check_same_device

BACKENDS = ('auto', 'numba', 'torch', 'cuda')
_NUMBA_DTYPES = (torch.float32, torch.float64)
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}
_kernels = None
# Entries ahead whose source row is prefetched: enough misses in flight to hide DRAM latency.
PREFETCH_DISTANCE = 16
# Below this many (entries + rows) x columns the product runs on one thread.
SERIAL_WORK = 1 << 18


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
        backend (str): ``'auto'`` (default), ``'numba'``, ``'torch'`` or ``'cuda'``; see the
            module docstring.

    Shapes:
        ``x``: :math:`(N_{src}, F)` -> output :math:`(N_{dst}, F)`.
    """
    check_float(x, 'x', finite=False)
    if x.dim() != 2:
        raise ValueError(f'x must be 2-dimensional [num_src_nodes, F], got {tuple(x.shape)}')
    check_length(x, csr.num_cols, 'x', 'the number of source nodes (adjacency columns)')
    check_same_device([('adjacency', csr.col), ('x', x)])
    if reduce not in ('sum', 'mean'):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if out is not None:
        _check_out(out, (csr.num_rows, x.size(1)), x)
    chosen = _choose_backend(csr, x, backend)

    if csr.nnz == 0 or x.size(1) == 0 or csr.num_rows == 0:
        result = x.new_zeros(csr.num_rows, x.size(1)) if out is None else out.zero_()
        return result
    if chosen == 'numba':
        result = _numba_spmm(csr, x, reduce == 'mean', out)
        return result
    value = csr.values(x.dtype)
    result = torch.sparse.mm(torch_csr_tensor(csr.rowptr, csr.col, value, csr.shape), x)
    if reduce == 'mean':
        count = csr.row_counts().clamp_(min=1).to(x.dtype).unsqueeze(-1)
        result = result / count
    if out is not None:
        return out.copy_(result)
    return result


def host_empty(num_rows: int, num_cols: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """An uninitialised CPU ``[num_rows, num_cols]`` tensor whose memory numpy allocates.

    numpy asks Linux for transparent huge pages on large arrays (``madvise(MADV_HUGEPAGE)``),
    torch's allocator does not: a product gathering random rows of a 2 MiB-paged ``x`` misses the
    TLB far less, and runs about 1.3x faster on a 512 MB ``x``. Dtypes numpy lacks fall back to
    ``torch.empty``.
    """
    numpy_dtype = _NUMPY_DTYPES.get(dtype)
    if numpy_dtype is None:
        return torch.empty(num_rows, num_cols, dtype=dtype)
    return torch.from_numpy(np.empty((num_rows, num_cols), dtype=numpy_dtype))


def _check_out(out: Tensor, shape: tuple[int, int], x: Tensor) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(f'out must be a torch.Tensor, got {type(out).__name__}')
    if tuple(out.shape) != shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f'out must be a {list(shape)} {x.dtype} tensor on {x.device}, got '
            f'{list(out.shape)} {out.dtype} on {out.device}; allocate it like x.new_empty(...)'
        )
    if not out.is_contiguous():
        raise ValueError('out must be contiguous; pass out.contiguous() or let spmm allocate it')


def _needs_grad(csr: CSR, x: Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or (csr.value is not None and csr.value.requires_grad)


def _choose_backend(csr: CSR, x: Tensor, backend: str) -> str:
    if x.device.type == 'cuda':
        if backend == 'numba':
            raise ValueError("backend='numba' runs on CPU tensors only; use 'cuda' or 'auto'")
        return 'cuda'
    if backend == 'cuda':
        raise ValueError(f"backend='cuda' needs CUDA tensors, got x on {x.device}")
    numba_ok = has_numba() and x.dtype in _NUMBA_DTYPES and not _needs_grad(csr, x)
    if backend == 'numba':
        if not has_numba():
            raise ImportError("backend='numba' needs the numba package: pip install numba")
        if not numba_ok:
            raise ValueError(
                "backend='numba' handles float32/float64 inputs without autograd; use "
                "backend='torch' for other dtypes or when gradients are needed"
            )
        return 'numba'
    if backend == 'auto' and numba_ok:
        return 'numba'
    return 'torch'


# --- the numba kernel -------------------------------------------------------------------------


def _prefetch_intrinsic():
    """``prefetch(x, j, c)``: a software prefetch of ``&x[j, c]`` (LLVM's ``llvm.prefetch``).

    The product is bound by random reads of source rows; asking for row ``col[k + D]`` while row
    ``col[k]`` is summed keeps several misses in flight per core."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, array, row, column):
        def codegen(context, builder, signature, args):
            array_type, row_type, column_type = signature.args
            array_struct = context.make_array(array_type)(context, builder, args[0])
            index = [
                context.cast(builder, args[1], row_type, types.intp),
                context.cast(builder, args[2], column_type, types.intp),
            ]
            pointer = cgutils.get_item_pointer2(
                context,
                builder,
                array_struct.data,
                cgutils.unpack_tuple(builder, array_struct.shape),
                cgutils.unpack_tuple(builder, array_struct.strides),
                array_type.layout,
                index,
                wraparound=False,
                boundscheck=False,
            )
            byte_pointer = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
            function = cgutils.get_or_insert_function(
                builder.module, function_type, 'llvm.prefetch.p0'
            )
            # read access, keep in all cache levels, data cache
            arguments = [ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)]
            builder.call(function, [builder.bitcast(pointer, byte_pointer), *arguments])
            return context.get_dummy_value()

        return types.void(array, row, column), codegen

    return prefetch


# Module-level (not a closure) so numba's on-disk cache can find it again in a new process; the
# globals ``_numba`` and ``_prefetch`` are bound by :func:`_build_kernels` before compiling.
_numba = None
_prefetch = None


def _spmm_rows(rowptr, col, value, weighted, x, bounds, mean, distance, line, out):
    num_features = x.shape[1]
    nnz = col.shape[0]
    for chunk in _numba.prange(bounds.shape[0] - 1):
        # the row is summed in a private buffer that stays in L1, then written once
        acc = np.empty(num_features, dtype=out.dtype)
        for i in range(bounds[chunk], bounds[chunk + 1]):
            acc[:] = 0
            start, end = rowptr[i], rowptr[i + 1]
            for k in range(start, end):
                if k + distance < nnz:
                    ahead = col[k + distance]
                    for c in range(0, num_features, line):
                        _prefetch(x, ahead, c)
                j = col[k]
                # An unweighted matrix passes an empty value array that is never read: 4 bytes
                # less traffic per entry.
                if weighted:
                    w = value[k]
                    for c in range(num_features):
                        acc[c] += w * x[j, c]
                else:
                    for c in range(num_features):
                        acc[c] += x[j, c]
            if mean and end > start:
                inv = 1.0 / (end - start)
                for c in range(num_features):
                    out[i, c] = acc[c] * inv
            else:
                for c in range(num_features):
                    out[i, c] = acc[c]


def _build_kernels(with_prefetch: bool = True):
    global _numba, _prefetch
    import numba

    _numba = numba
    if with_prefetch:
        _prefetch = _prefetch_intrinsic()
    else:

        @numba.njit(inline='always')
        def no_prefetch(array, row, column):
            pass

        _prefetch = no_prefetch
    kernel = numba.njit(parallel=True, cache=with_prefetch, nogil=True)(_spmm_rows)
    # small products finish before a thread pool wakes up: one thread, no fork/join
    serial = numba.njit(parallel=False, cache=with_prefetch, nogil=True)(_spmm_rows)
    return numba, kernel, serial


def _kernels_loaded():
    global _kernels
    if _kernels is None:
        try:
            _kernels = _build_kernels(with_prefetch=True)
            _smoke_test(_kernels[1])
            _smoke_test(_kernels[2])
        except Exception:  # an LLVM without ``llvm.prefetch.p0`` (older llvmlite): no prefetch
            _kernels = _build_kernels(with_prefetch=False)
    return _kernels


def _smoke_test(kernel) -> None:
    """Compiles (or loads from the cache) the common case: int32 indices, float32 features."""
    rowptr = np.array([0, 1], dtype=np.int32)
    col = np.zeros(1, dtype=np.int32)
    x = np.ones((1, 1), dtype=np.float32)
    out = np.empty((1, 1), dtype=np.float32)
    kernel(rowptr, col, x[0], True, x, np.array([0, 1], dtype=np.int64), False, 0, 16, out)


def row_chunks(rowptr: np.ndarray, num_chunks: int) -> np.ndarray:
    """Row boundaries ``[num_chunks + 1]`` splitting the rows into runs of about equal nnz (plus
    one unit per row, so long runs of empty rows are split too)."""
    num_rows = rowptr.shape[0] - 1
    num_chunks = max(1, min(num_chunks, num_rows))
    work = rowptr.astype(np.int64) + np.arange(num_rows + 1, dtype=np.int64)
    targets = np.linspace(0, work[-1], num_chunks + 1)
    bounds = np.searchsorted(work, targets, side='left').astype(np.int64)
    bounds[0], bounds[-1] = 0, num_rows
    return np.maximum.accumulate(bounds)


def _numba_spmm(csr: CSR, x: Tensor, mean: bool, out: Tensor | None) -> Tensor:
    numba, kernel, serial = _kernels_loaded()
    x_np = x.detach().contiguous().numpy()
    result = host_empty(csr.num_rows, x.size(1), x.dtype) if out is None else out
    out_np = result.numpy()
    rowptr = csr.rowptr.numpy()
    small = (csr.nnz + csr.num_rows) * max(x.size(1), 1) < SERIAL_WORK
    bounds = row_chunks(rowptr, 1 if small else 8 * numba.get_num_threads())
    if csr.value is None:
        value, weighted = np.empty(0, dtype=x_np.dtype), False
    else:
        value, weighted = csr.value.detach().to(x.dtype).numpy(), True
    line = max(1, 64 // x_np.itemsize)  # one prefetch per 64-byte cache line of a source row
    (serial if small else kernel)(
        rowptr,
        csr.col.numpy(),
        value,
        weighted,
        x_np,
        bounds,
        mean,
        PREFETCH_DISTANCE,
        line,
        out_np,
    )
    return result
