"""The Graph U-Net models' GCN propagation, built once per graph (and per pooled graph)."""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops import spmm
from graphops.ops.csr import CSR

__all__ = ['GCNPropagation']


class GCNPropagation:
    r"""The propagation :math:`\hat{\mathbf{D}}^{-1/2} \hat{\mathbf{A}} \hat{\mathbf{D}}^{-1/2}`
    of PyG's ``GCNConv(improved=True)``: :math:`\hat{\mathbf{A}}` is :math:`\mathbf{A}` with a
    self-loop of weight 2 on every node that has none (the paper's :math:`\mathbf{A} +
    2\mathbf{I}`), while a node's existing self-loop keeps its own weight (the last one listed,
    if repeated), as PyG's ``add_remaining_self_loops`` does. Kept as the normalised off-diagonal part plus a diagonal,
    so no entries are inserted and the CSR needs no re-sort. Differentiable in the edge weights
    (through the degrees too): :func:`graphops.ops.spmm` differentiates its values."""

    def __init__(self, adj: CSR, dtype: torch.dtype):
        value = adj.values(dtype)
        n = adj.num_rows
        row, col = adj.row().long(), adj.col.long()
        loop = row == col
        loop_weight = value.new_full((n,), 2.0)
        if bool(loop.any()):
            # Like PyG, one of a node's repeated self-loops (the last one) sets its weight.
            loop_weight = loop_weight.index_put((row[loop],), value[loop])
            adj = adj.with_value(value).remove_self_loops()
            value = adj.values(dtype)
            row, col = adj.row().long(), adj.col.long()
        degree = loop_weight.index_add(0, row, value)
        positive = degree > 0
        # where() twice keeps the gradient finite at isolated zero-degree nodes.
        inv_sqrt = torch.where(positive, torch.where(positive, degree, 1.0).rsqrt(), 0.0)
        self.off = adj.with_value(inv_sqrt[row] * value * inv_sqrt[col])
        self.diag = (loop_weight * inv_sqrt.square()).unsqueeze(-1)

    def __call__(self, x: Tensor) -> Tensor:
        return spmm(self.off, x) + self.diag * x
