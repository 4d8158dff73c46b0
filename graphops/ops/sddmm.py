r"""Sampled dense-dense products: :math:`\mathrm{out}_e = \langle L_{i_e}, R_{j_e} \rangle` for
every stored entry :math:`e = (i_e, j_e)` of a :class:`~graphops.ops.csr.CSR`.

This is the gradient of :func:`graphops.ops.spmm` with respect to the matrix's values, and it
never forms the ``[nnz, F]`` product of gathered rows: the numba kernel walks each row once and
keeps :math:`L_i` in cache; the torch fallback works in bounded chunks of entries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops.csr import CSR, check_csr
from graphops.ops.dispatch import SDDMM_SERIAL_WORK, numba_kernel_applies, threads_for
from graphops.ops.kernels import sddmm as sddmm_kernels
from graphops.ops.kernels.llvm_spmm import row_chunks
from graphops.ops.validate import check_float, check_length, check_same_device

__all__ = ['sddmm']

#: the torch fallback gathers at most this many elements at once
CHUNK_ELEMENTS = 1 << 24
_KERNEL_DTYPES = (torch.float32, torch.float64)


def sddmm(csr: CSR, left: Tensor, right: Tensor) -> Tensor:
    r"""Returns :math:`\mathrm{out}_e = \sum_f L_{i_e f} R_{j_e f}` for each stored entry
    :math:`e` of ``csr`` (in its storage order; duplicates each get their own value).

    Args:
        csr (CSR): ``[N_dst, N_src]`` sparsity pattern (its values are not used).
        left (Tensor): ``[N_dst, F]`` rows, indexed by each entry's row.
        right (Tensor): ``[N_src, F]`` rows, indexed by each entry's column.

    Shapes:
        ``left``: :math:`(N_{dst}, F)`, ``right``: :math:`(N_{src}, F)` -> :math:`(nnz,)`.
    """
    check_csr(csr)
    check_float(left, 'left', finite=False)
    check_float(right, 'right', finite=False)
    if left.dim() != 2 or right.dim() != 2 or left.size(1) != right.size(1):
        raise ValueError(
            f'left and right must be 2-dimensional with one feature width, got '
            f'{tuple(left.shape)} and {tuple(right.shape)}'
        )
    if left.dtype != right.dtype:
        raise TypeError(f'left ({left.dtype}) and right ({right.dtype}) must share one dtype')
    check_length(left, csr.num_rows, 'left', 'the number of rows of the matrix')
    check_length(right, csr.num_cols, 'right', 'the number of columns of the matrix')
    check_same_device([('matrix', csr.col), ('left', left), ('right', right)])
    return sddmm_unchecked(csr, left, right)


def sddmm_unchecked(csr: CSR, left: Tensor, right: Tensor) -> Tensor:
    """:func:`sddmm` for validated inputs (the SpMM backward calls this)."""
    nnz, features = csr.nnz, left.size(1)
    if nnz == 0 or features == 0:
        return left.new_zeros(nnz)
    if left.dtype in _KERNEL_DTYPES and numba_kernel_applies((csr.col, left, right), 0):
        (kernel,) = sddmm_kernels.loaded()
        out = torch.empty(nnz, dtype=left.dtype)
        threads = threads_for(nnz * features, SDDMM_SERIAL_WORK)
        bounds = row_chunks(csr.rowptr.numpy(), 8 * threads)
        kernel(
            csr.rowptr.numpy(),
            csr.col.numpy(),
            left.detach().contiguous().numpy(),
            right.detach().contiguous().numpy(),
            bounds,
            out.numpy(),
            threads=threads,
        )
        return out
    row, col = csr.row().long(), csr.col.long()
    out = left.new_empty(nnz)
    step = max(1, CHUNK_ELEMENTS // features)
    for begin in range(0, nnz, step):
        end = begin + step
        out[begin:end] = (left[row[begin:end]] * right[col[begin:end]]).sum(1)
    return out
