r"""Dense references for Graph U-Nets (Gao & Ji, ICML 2019, https://arxiv.org/abs/1905.05178),
written straight from the paper's equations with a Python loop over graphs. Small graphs only.

gPool (per graph, :math:`k = \lceil \mathrm{ratio} \cdot N \rceil` or :math:`\min(k, N)`):

.. math::
    y = X p / \|p\|, \quad idx = \mathrm{rank}(y, k), \quad \tilde{y} = \sigma(y_{idx}),
    \quad X' = X_{idx,:} \odot (\tilde{y} 1^\top), \quad A' = A_{idx, idx}
    \ \text{or}\ ((A - \mathrm{diag}(A) + I)^2)_{idx, idx} \text{ without its diagonal}.

gUnpool: :math:`X' = \mathrm{distribute}(0_{N \times C}, X, idx)`.
GCN: :math:`\hat{D}^{-1/2} (A + 2I) \hat{D}^{-1/2} X W^\top + b` (a node with a self-loop keeps
its weight instead of 2, as PyG's ``GCNConv(improved=True)``).

Adjacencies are dense ``adj_t`` matrices (``A[i, j]`` = weight of edge ``j -> i``), as
:func:`graphops.testing.dense_adjacency` makes them. Kept nodes are listed in ascending order;
equal scores keep the lower index.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def dense_keep_count(num_nodes: int, ratio: float | int) -> int:
    if isinstance(ratio, float):
        return min(num_nodes, math.ceil(ratio * num_nodes))
    return min(num_nodes, ratio)


def dense_topk(score: Tensor, ratio: float | int, batch: Tensor) -> Tensor:
    """Kept nodes per graph, each graph ranked on its own (ties: lower index first)."""
    kept = []
    for graph in batch.unique().tolist():
        nodes = (batch == graph).nonzero().view(-1).tolist()
        ranked = sorted(nodes, key=lambda i: (-float(score[i]), i))
        kept += ranked[: dense_keep_count(len(nodes), ratio)]
    return torch.tensor(sorted(kept), dtype=torch.long)


def dense_gpool(
    x: Tensor,
    adj_t: Tensor,
    weight: Tensor,
    ratio: float | int,
    batch: Tensor | None = None,
    gate=torch.sigmoid,
    augment: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(x', adj', batch', perm, score)`` of gPool on a dense ``adj_t``."""
    num_nodes = x.size(0)
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long)
    p = weight.view(-1)
    y = (x @ p) / p.norm()
    perm = dense_topk(y, ratio, batch)
    score = gate(y[perm])
    x_out = x[perm] * score.unsqueeze(-1)
    if augment:
        # The input's self-loops are replaced by unit ones (PyG's GraphUNet.augment_adj).
        loops = adj_t - torch.diag(torch.diagonal(adj_t)) + torch.eye(num_nodes, dtype=adj_t.dtype)
        pooled = (loops @ loops)[perm][:, perm]
        pooled = pooled - torch.diag(torch.diagonal(pooled))
    else:
        pooled = adj_t[perm][:, perm]
    return x_out, pooled, batch[perm], perm, score


def dense_gunpool(x: Tensor, perm: Tensor, num_nodes: int) -> Tensor:
    out = torch.zeros(num_nodes, x.size(1), dtype=x.dtype)
    for t, node in enumerate(perm.tolist()):
        out[node] = x[t]
    return out


def dense_gcn(adj_t: Tensor, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The paper's GCN layer with :math:`\\hat{A} = A + 2I`, sym-normalised by in-degree; a node
    with a self-loop keeps its weight instead of 2 (PyG's ``add_remaining_self_loops``)."""
    loops = torch.diagonal(adj_t)
    a_hat = adj_t - torch.diag(loops) + torch.diag(torch.where(loops != 0, loops, 2.0))
    degree = a_hat.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.pow(-0.5), torch.zeros_like(degree))
    return inv_sqrt[:, None] * a_hat * inv_sqrt[None, :] @ x @ weight.t() + bias


def dense_graph_unet(model, x: Tensor, adj_t: Tensor, batch: Tensor | None = None) -> Tensor:
    """Dense forward of a :class:`graphops.nn.models.graph_unet.GraphUNet` (eval mode), reading
    its parameters: GCN, then per level gPool + GCN, then per level gUnpool + skip + GCN."""
    act = model.act
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long)

    def conv(layer, a, h):
        return dense_gcn(a, h, layer.weight, layer.bias)

    h = act(conv(model.down_convs[0], adj_t, x))
    skips, adjs, perms = [h], [adj_t], []
    a = adj_t
    for level in range(1, model.depth + 1):
        pool = model.pools[level - 1]
        h, a, batch, perm, _ = dense_gpool(
            h, a, pool.weight, pool.ratio, batch, pool.gate, pool.augment
        )
        h = act(conv(model.down_convs[level], a, h))
        perms.append(perm)
        if level < model.depth:
            skips.append(h)
            adjs.append(a)
    for i in range(model.depth):
        level = model.depth - 1 - i
        res = skips[level]
        up = dense_gunpool(h, perms[level], res.size(0))
        h = res + up if model.sum_res else torch.cat((res, up), dim=-1)
        h = conv(model.up_convs[i], adjs[level], h)
        if i < model.depth - 1:
            h = act(h)
    return h


def make_batch(graphs, *, weighted: bool = False) -> tuple[Tensor, Tensor | None, Tensor, int]:
    """Glues graphs (:class:`graphops.testing.Graph`) into one batch as
    :class:`torch_geometric.data.Batch` does: ``(edge_index, edge_weight, batch, num_nodes)``."""
    edges, weights, batch, offset = [], [], [], 0
    for graph_id, graph in enumerate(graphs):
        edges.append(graph.edge_index + offset)
        if weighted:
            weight = graph.edge_weight
            if weight is None:
                weight = torch.ones(graph.edge_index.size(1), dtype=torch.float64)
            weights.append(weight)
        batch.append(torch.full((graph.num_nodes,), graph_id, dtype=torch.long))
        offset += graph.num_nodes
    edge_weight = torch.cat(weights) if weighted else None
    return torch.cat(edges, dim=1), edge_weight, torch.cat(batch), offset
