r"""Dense references for Graph Transformer Networks (`"Graph Transformer Networks"
<https://arxiv.org/abs/1911.06455>`_, FastGTN `<https://arxiv.org/abs/2106.06218>`_), written
straight from the papers' equations on dense ``adj_t`` matrices (row = aggregating node), for
small graphs only. Nothing here calls the sparse code it checks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.testing.core import dense_adjacency, dense_normalize


def dense_edge_type_stack(
    edge_index: Tensor,
    edge_type: Tensor,
    num_nodes: int,
    num_edge_types: int,
    edge_weight: Tensor | None = None,
    identity: bool = True,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""``[K (+1), N, N]``: :math:`\mathbf{A}_k` (``adj_t`` of edge type :math:`k`), then
    :math:`\mathbf{I}` when ``identity``."""
    mats = []
    for k in range(num_edge_types):
        mask = edge_type == k
        weight = None if edge_weight is None else edge_weight[mask]
        mats.append(dense_adjacency(edge_index[:, mask], num_nodes, weight, dtype))
    if identity:
        mats.append(torch.eye(num_nodes, dtype=dtype))
    return torch.stack(mats)


def dense_gt_conv(stack: Tensor, weight: Tensor) -> Tensor:
    r""":math:`\mathbf{Q}_c = \sum_k \mathrm{softmax}(\mathbf{W}_c)_k \mathbf{A}_k`, ``[C, N, N]``."""
    filt = torch.softmax(weight.to(stack.dtype), dim=1)
    return torch.einsum('ck,kij->cij', filt, stack)


def dense_top_k_rows(matrix: Tensor, k: int | None) -> Tensor:
    """Keeps the ``k`` largest-magnitude *stored* entries of each row (ties: smaller column);
    ``stored`` marks structural entries, here the non-zeros of the product pattern."""
    if k is None:
        return matrix
    out = torch.zeros_like(matrix)
    for i in range(matrix.size(0)):
        cols = torch.nonzero(matrix[i] != 0).view(-1).tolist()
        cols.sort(key=lambda j: (-abs(float(matrix[i, j])), j))
        for j in cols[:k]:
            out[i, j] = matrix[i, j]
    return out


def dense_gt_layer(
    stack: Tensor,
    weights: list[Tensor],
    prev: Tensor | None = None,
    node_index: Tensor | None = None,
    topk: int | None = None,
) -> Tensor:
    r"""One GT layer, ``[C, R, N]``: :math:`\mathbf{D}^{-1}\mathbf{Q}^{(a)}_c\mathbf{Q}^{(b)}_c`
    (first layer, ``weights = [W_a, W_b]``) or
    :math:`\mathbf{D}^{-1}\mathbf{H}_c\mathbf{Q}_c` (``prev = H``, ``weights = [W]``), with
    :math:`\mathbf{D}` the row sums; ``node_index`` keeps those rows of the first factor."""
    if prev is None:
        left = dense_gt_conv(stack, weights[0])
        if node_index is not None:
            left = left[:, node_index]
        right = dense_gt_conv(stack, weights[1])
    else:
        left, right = prev, dense_gt_conv(stack, weights[0])
    out = []
    for c in range(left.size(0)):
        product = dense_top_k_rows(left[c] @ right[c], topk)
        out.append(dense_normalize(product, 'rw'))
    return torch.stack(out)


def dense_gcn_self_loop_replaced(h: Tensor, xw: Tensor, rows: Tensor) -> Tensor:
    r""":math:`\tilde{\mathbf{D}}^{-1}(\mathbf{H} - \mathrm{diag}(\mathbf{H}) + \mathbf{I})
    \mathbf{XW}` for the rows ``rows`` of a square :math:`\mathbf{H}` given as ``h = H[rows]``."""
    tilde = h.clone()
    r = torch.arange(rows.numel())
    tilde[r, rows] = 1.0
    return dense_normalize(tilde, 'rw') @ xw


def dense_gtn(
    x: Tensor,
    stack: Tensor,
    layer_weights: list[list[Tensor]],
    gcn_weight: Tensor,
    gcn_bias: Tensor,
    lin_weight: Tensor,
    lin_bias: Tensor,
    node_index: Tensor | None = None,
    topk: int | None = None,
) -> Tensor:
    """GTN logits for ``node_index`` (default all nodes): GT layers, a GCN per channel with a
    shared weight, ReLU, concatenation, a linear layer."""
    n = x.size(0)
    rows = torch.arange(n) if node_index is None else node_index
    h = None
    for i, weights in enumerate(layer_weights):
        h = dense_gt_layer(stack, weights, h, node_index if i == 0 else None, topk)
    xw = x @ gcn_weight
    outs = [
        torch.relu(dense_gcn_self_loop_replaced(h[c], xw, rows) + gcn_bias)
        for c in range(h.size(0))
    ]
    return torch.cat(outs, dim=1) @ lin_weight.t() + lin_bias


def dense_fast_type_normalize(stack: Tensor, num_edge_types: int) -> Tensor:
    """FastGTN's input: each :math:`\\mathbf{A}_k` row-normalised, empty rows replaced by the
    unit row of the node itself; the identity (if stacked last) is left as is."""
    out = stack.clone()
    n = stack.size(1)
    for k in range(num_edge_types):
        a = stack[k]
        empty = a.sum(1) == 0
        a = dense_normalize(a, 'rw')
        a[empty] = torch.eye(n, dtype=stack.dtype)[empty]
        out[k] = a
    return out


def dense_fast_gtn(
    x: Tensor,
    stack: Tensor,
    conv_weights: list[Tensor],
    channel_weights: Tensor,
    lin_channels: tuple[Tensor, Tensor] | None,
    lin_weight: Tensor,
    lin_bias: Tensor,
    beta: float = 0.0,
    node_index: Tensor | None = None,
) -> Tensor:
    r"""FastGTN logits: :math:`\mathbf{H}_c = \mathbf{Q}^{(L)}_c\cdots\mathbf{Q}^{(1)}_c
    \mathbf{X}\mathbf{W}_c`, ReLU of the :math:`\beta` mix, ``'concat'`` (``lin_channels``
    given) or ``'mean'`` aggregation, linear layer. ``stack`` is already type-normalised."""
    outs = []
    for c in range(channel_weights.size(0)):
        base = x @ channel_weights[c]
        h = base
        for weight in conv_weights:
            h = dense_gt_conv(stack, weight)[c] @ h
        z = torch.relu(beta * base + (1 - beta) * h)
        outs.append(z if node_index is None else z[node_index])
    if lin_channels is not None:
        z = torch.relu(torch.cat(outs, dim=1) @ lin_channels[0].t() + lin_channels[1])
    else:
        z = torch.stack(outs).mean(0)
    return z @ lin_weight.t() + lin_bias


def dense_hgb_gtn(
    x: Tensor,
    stack: Tensor,
    layer_weights: list[list[Tensor]],
    gcn_weight: Tensor,
    gcn_bias: Tensor | None,
    lin_channels: tuple[Tensor, Tensor] | None,
    lin_weight: Tensor,
    lin_bias: Tensor,
    node_index: Tensor | None = None,
) -> Tensor:
    r"""The GTN of HGB's benchmark code (THUDM/HGB ``NC/benchmark/methods/GTN/model.py``,
    ``GTN.forward``, ``GTN.norm``, ``GTConv.forward``), transcribed in HGB's own convention:
    ``A[h, t]`` for an edge h -> t (``stack`` is ``adj_t``, transposed here) and the GCN
    aggregating with ``H.t()``. ``layer_weights[0] = [W_source, W_next]`` are the first layer's
    selections in HGB's order (its ``conv1`` is the source hop), later layers ``[W]``.
    ``lin_channels`` is HGB's ``linear1`` (or ``None`` for a single linear layer)."""
    a = stack.transpose(1, 2)
    eye = torch.eye(a.size(1), dtype=a.dtype)

    def conv(weight: Tensor) -> Tensor:  # sum(A * softmax(weight, dim=1), dim=1)
        return torch.einsum('ck,kij->cij', torch.softmax(weight.to(a.dtype), dim=1), a)

    def norm(h: Tensor, add: bool) -> Tensor:
        h = h.t() * (1 - eye)
        if add:
            h = h + eye
        deg = h.sum(1)
        # HGB sets the inf of an empty row to 0; the double where keeps the gradient finite
        inv = torch.where(deg == 0, 0.0, 1 / torch.where(deg == 0, 1.0, deg))
        return (inv[:, None] * h).t()

    h = torch.bmm(conv(layer_weights[0][0]), conv(layer_weights[0][1]))
    for weights in layer_weights[1:]:
        h = torch.bmm(torch.stack([norm(hc, False) for hc in h]), conv(weights[0]))
    xw = x @ gcn_weight
    bias = 0.0 if gcn_bias is None else gcn_bias
    z = torch.cat([torch.relu(norm(hc, True).t() @ xw + bias) for hc in h], dim=1)
    if lin_channels is not None:
        z = torch.relu(z @ lin_channels[0].t() + lin_channels[1])
    y = z @ lin_weight.t() + lin_bias
    return y if node_index is None else y[node_index]


def dblp_subgraph(num_authors: int = 25, num_features: int = 6):
    """HGB DBLP's typed subgraph around its first ``num_authors`` authors (their papers, those
    papers' venues and co-authors: real structure, a few hundred nodes) as the homogeneous
    edge-type stack GTN reads, with random float64 features per node type (drawn from torch's
    global generator)."""
    from graphops.datasets import load
    from graphops.transforms import ToEdgeTypeStack

    hetero = load('HGB/DBLP', val_ratio=0.2)[0].node_type_subgraph(['author', 'paper', 'venue'])
    writes = hetero['author', 'to', 'paper'].edge_index
    papers = writes[1][writes[0] < num_authors].unique()
    authors = writes[0][torch.isin(writes[1], papers)]
    authors = torch.cat([torch.arange(num_authors), authors]).unique()
    published = hetero['paper', 'to', 'venue'].edge_index
    venues = published[1][torch.isin(published[0], papers)].unique()
    sub = hetero.subgraph({'author': authors, 'paper': papers, 'venue': venues})
    for node_type in sub.node_types:
        sub[node_type].x = torch.randn(sub[node_type].num_nodes, num_features, dtype=torch.float64)
    return ToEdgeTypeStack()(sub)
