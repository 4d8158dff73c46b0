r"""Sparse x dense products :math:`Y = M X` for a :class:`~graphops.ops.csr.CSR` ``M``.

The single SpMM entry point every layer and the precompute engine call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops.csr import CSR
from graphops.ops.validate import check_float, check_length, check_same_device


def spmm(csr: CSR, x: Tensor, reduce: str = 'sum') -> Tensor:
    r"""Returns :math:`Y_i = \bigoplus_{j} M_{ij} X_j` with :math:`\bigoplus` a sum or a mean.

    Args:
        csr (CSR): ``[N_dst, N_src]`` matrix.
        x (Tensor): ``[N_src, F]`` dense features (float).
        reduce (str): ``'sum'`` (default) or ``'mean'`` (divides by the number of stored entries
            of each row; empty rows give zeros).

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
    if csr.nnz == 0 or x.size(1) == 0:
        out = x.new_zeros(csr.num_rows, x.size(1))
    else:
        out = torch.sparse.mm(csr.to_torch_csr(dtype=x.dtype), x)
    if reduce == 'mean':
        count = csr.row_counts().clamp_(min=1).to(x.dtype).unsqueeze(-1)
        out = out / count
    return out
