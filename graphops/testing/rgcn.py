r"""Dense per-relation reference for R-GCN, written from the paper's equation (2)
(Schlichtkrull et al., 2018, https://arxiv.org/abs/1703.06103):

.. math::
    \mathbf{x}'_i = \mathbf{W}_0 \mathbf{x}_i + \sum_{r \in \mathcal{R}}
    \sum_{j \in \mathcal{N}_r(i)} \frac{1}{c_{i,r}} \mathbf{W}_r \mathbf{x}_j + \mathbf{b},
    \qquad c_{i,r} = |\mathcal{N}_r(i)|,

with the basis decomposition :math:`\mathbf{W}_r = \sum_b a_{rb} \mathbf{V}_b` (eq. 3) and the
block-diagonal one :math:`\mathbf{W}_r = \operatorname{diag}(\mathbf{Q}_{1r}, \dots,
\mathbf{Q}_{Br})` (eq. 4). One dense adjacency matrix per relation, one loop over relations: slow
and obvious, for small graphs in tests only.

``aggr='sum'`` drops the :math:`1/c_{i,r}`; ``'max'``/``'min'`` follow PyG's ``RGCNConv``: the
features of :math:`\mathcal{N}_r(i)` are reduced element-wise and then multiplied by
:math:`\mathbf{W}_r` (featureless: the rows of :math:`\mathbf{W}_r` are the reduced messages).
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.testing.core import dense_adjacency


def relation_weights(
    weight: Tensor, comp: Tensor | None = None, num_blocks: int | None = None
) -> Tensor:
    """``[R, in, out]`` dense :math:`\\mathbf{W}_r` from plain, basis or block parameters."""
    if comp is not None:
        return torch.einsum('rb,bio->rio', comp, weight)
    if num_blocks is not None:
        return torch.stack([torch.block_diag(*blocks) for blocks in weight])
    return weight


def dense_rgcn(
    x: Tensor | None,
    edge_index: Tensor,
    edge_type: Tensor,
    weight: Tensor,
    *,
    comp: Tensor | None = None,
    num_blocks: int | None = None,
    root: Tensor | None = None,
    bias: Tensor | None = None,
    aggr: str = 'mean',
    x_dst: Tensor | None = None,
    num_nodes: tuple[int, int] | None = None,
) -> Tensor:
    r"""The R-GCN layer on dense matrices.

    Args:
        x (Tensor or None): ``[N_src, in]`` float features, ``[N_src]`` node ids (rows of the
            weights are embeddings), or ``None`` (ids ``0..in-1``).
        edge_index (Tensor): ``[2, E]``, row 0 source, row 1 target.
        edge_type (Tensor): ``[E]`` relation of each edge.
        weight (Tensor): plain ``[R, in, out]``, bases ``[B, in, out]`` (with ``comp``), or blocks
            ``[R, blocks, in/blocks, out/blocks]`` (with ``num_blocks``).
        comp (Tensor, optional): ``[R, B]`` basis coefficients.
        num_blocks (int, optional): number of diagonal blocks.
        root (Tensor, optional): ``[in_dst, out]`` self-connection :math:`\mathbf{W}_0`.
        bias (Tensor, optional): ``[out]``.
        aggr (str): ``'mean'`` (paper), ``'sum'``/``'add'``, ``'max'`` or ``'min'``.
        x_dst (Tensor, optional): target features or ids for bipartite graphs (default: ``x``).
        num_nodes ((int, int), optional): ``(N_src, N_dst)``; default from ``x`` / ``x_dst``.
    """
    dense_w = relation_weights(weight, comp, num_blocks)
    num_relations, in_channels, out_channels = dense_w.shape
    if x is None:
        x = torch.arange(in_channels)
    featureless = not x.is_floating_point()
    if x_dst is None:
        x_dst = x
    if num_nodes is None:
        num_nodes = (x.size(0), x_dst.size(0))
    num_src, num_dst = num_nodes
    dtype = dense_w.dtype
    # Featureless sources are one-hot rows: x_j = e_{id_j}.
    x_in = torch.eye(in_channels, dtype=dtype)[x] if featureless else x.to(dtype)
    out = torch.zeros(num_dst, out_channels, dtype=dtype)
    for r in range(num_relations):
        mask = edge_type == r
        adj = dense_adjacency(edge_index[:, mask], (num_src, num_dst), dtype=dtype)
        if aggr in ('mean', 'sum', 'add'):
            if aggr == 'mean':
                count = adj.sum(1, keepdim=True)
                adj = torch.where(count > 0, adj / count.clamp(min=1), adj)
            out = out + adj @ x_in @ dense_w[r]
            continue
        # max / min over each target's relation-r neighbours; targets without any stay zero.
        values = x_in @ dense_w[r] if featureless else x_in
        reduced = torch.zeros(num_dst, values.size(1), dtype=dtype)
        for i in range(num_dst):
            neighbours = adj[i] > 0
            if neighbours.any():
                rows = values[neighbours]
                reduced[i] = rows.max(0).values if aggr == 'max' else rows.min(0).values
        out = out + (reduced if featureless else reduced @ dense_w[r])
    if root is not None:
        if x_dst.is_floating_point():
            out = out + x_dst.to(dtype) @ root
        else:
            out = out + root[x_dst]
    if bias is not None:
        out = out + bias
    return out
