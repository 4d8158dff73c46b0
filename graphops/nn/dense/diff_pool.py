r"""DiffPool's pooling step as functions: :func:`dense_diff_pool` on padded dense batches and
:func:`sparse_diff_pool` straight from a sparse mini-batch (the first pooling level).

Both implement `"Hierarchical Graph Representation Learning with Differentiable Pooling"
<https://arxiv.org/abs/1806.08804>`_ (Ying et al., NeurIPS 2018), eqs. (3)-(4) and the two
auxiliary losses of its Section 3.3, and return the same values for the same graphs. The trainable
module (embedding and pooling GNNs) is :class:`graphops.nn.dense.diff_pool_block.DiffPool`.

Adjacency convention (PyG's ``to_dense_adj``): ``adj[b, i, j]`` is the weight of the edge
``i -> j`` of graph ``b``; an ``edge_index`` column ``(i, j)`` is that same edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graphops.ops import spmm, to_csr
from graphops.ops.batch_dense import (
    graph_sizes,
    per_graph_transpose_matmul,
    segment_sum,
)
from graphops.ops.validate import (
    check_condition,
    check_float,
    check_same_device,
    check_tensor,
    defers_value_checks,
)

LOSS_NORMS = ('paper', 'pyg')


def _check_loss_norm(loss_norm: str, normalize: bool) -> None:
    if loss_norm not in LOSS_NORMS:
        raise ValueError(f"loss_norm must be 'paper' or 'pyg', got {loss_norm!r}")
    if not isinstance(normalize, bool):
        raise TypeError(f'normalize must be a bool, got {type(normalize).__name__}')
    if loss_norm == 'paper' and not normalize:
        raise ValueError(
            "normalize=False does not apply to loss_norm='paper', whose link loss is the plain "
            "per-graph Frobenius norm (never divided); drop normalize or use loss_norm='pyg'"
        )


def _safe_sqrt(squared: Tensor) -> Tensor:
    # Clamped so a (rounding-)negative or zero squared norm gives a finite value and gradient.
    return squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt()


def _check_same_dtype(tensors: list[tuple[str, Tensor]]) -> None:
    first_name, first = tensors[0]
    for name, tensor in tensors[1:]:
        if tensor.dtype != first.dtype:
            raise TypeError(
                f'{name} is {tensor.dtype} but {first_name} is {first.dtype}; cast them to one '
                f'dtype (e.g. {name}.to({first_name}.dtype))'
            )


def _reduce_losses(
    squared_link: Tensor,
    entropy_sum: Tensor,
    num_real: Tensor,
    max_num_nodes: int | Tensor,
    loss_norm: str,
    normalize: bool,
) -> tuple[Tensor, Tensor]:
    """Per-graph squared link residuals and entropy sums -> the two scalar losses."""
    num_graphs = squared_link.numel()
    if loss_norm == 'paper':
        link_loss = _safe_sqrt(squared_link).mean()
        entropy_loss = (entropy_sum / num_real.to(entropy_sum.dtype)).mean()
    else:  # PyG: one norm over the padded batch (/ its number of entries); entropy over all rows
        link_loss = _safe_sqrt(squared_link.sum())
        if normalize:
            link_loss = link_loss / (num_graphs * max_num_nodes**2)
        entropy_loss = entropy_sum.sum() / (num_graphs * max_num_nodes)
    return link_loss, entropy_loss


def _squared_link_by_trace(
    adj: Tensor, assign: Tensor, out_adj: Tensor, mask: Tensor | None
) -> Tensor:
    r"""Per-graph :math:`\|A - SS^T\|_F^2 = \|A\|_F^2 - 2 tr(S^T A S) + \|S^T S\|_F^2` over the
    real block (``assign`` is zero on padded rows): no ``[B, N, N]`` residual is formed."""
    squared_entries = adj.pow(2)
    if mask is None:
        squared_adj = squared_entries.sum(dim=(1, 2))
    else:
        real = mask.to(adj.dtype)
        squared_adj = ((squared_entries @ real.unsqueeze(-1)).squeeze(-1) * real).sum(-1)
    del squared_entries
    trace = out_adj.diagonal(dim1=1, dim2=2).sum(-1)
    squared_gram = (assign.transpose(1, 2) @ assign).pow(2).sum(dim=(1, 2))
    return squared_adj - 2 * trace + squared_gram


def dense_diff_pool(
    x: Tensor,
    adj: Tensor,
    s: Tensor,
    mask: Tensor | None = None,
    normalize: bool = True,
    *,
    loss_norm: str = 'pyg',
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The differentiable pooling step of `"Hierarchical Graph Representation Learning with
    Differentiable Pooling" <https://arxiv.org/abs/1806.08804>`_ on a padded dense batch.

    With :math:`\mathbf{S} = \mathrm{softmax}(\mathbf{s})` taken row-wise over the clusters, for
    each graph :math:`b` with :math:`n_b` real (unmasked) nodes:

    .. math::
        \mathbf{X}^{\prime}_b = \mathbf{S}_b^{\top} \mathbf{X}_b, \qquad
        \mathbf{A}^{\prime}_b = \mathbf{S}_b^{\top} \mathbf{A}_b \mathbf{S}_b,

    and two auxiliary losses. By default (``loss_norm='pyg'``) they are those of PyG's
    :func:`torch_geometric.nn.dense_diff_pool`, of which this is a drop-in (same arguments,
    defaults and numbers, for a zero-padded ``adj``): one Frobenius norm over the whole padded
    batch, divided by its number of entries :math:`B N^2` when ``normalize=True``, and the entropy
    averaged over all :math:`B N` rows (padded rows count as zero):

    .. math::
        \mathcal{L}_{LP} = \frac{1}{B N^2} \Big( \sum_{b=1}^{B}
            \left\| \mathbf{A}_b - \mathbf{S}_b \mathbf{S}_b^{\top} \right\|_F^2 \Big)^{1/2},
        \qquad
        \mathcal{L}_{E} = \frac{1}{B N} \sum_{b=1}^{B} \sum_{i=1}^{n_b} H(\mathbf{S}_{b,i}),
        \quad H(\mathbf{p}) = -\sum_c p_c \log p_c.

    ``loss_norm='paper'`` gives the paper's losses instead, each computed over graph :math:`b`'s
    real nodes only and then averaged over the :math:`B` graphs, so padding does not dilute them:

    .. math::
        \mathcal{L}_{LP} = \frac{1}{B} \sum_{b=1}^{B}
            \left\| \mathbf{A}_b - \mathbf{S}_b \mathbf{S}_b^{\top} \right\|_F, \qquad
        \mathcal{L}_{E} = \frac{1}{B} \sum_{b=1}^{B} \frac{1}{n_b} \sum_{i=1}^{n_b}
            H(\mathbf{S}_{b,i}).

    The paper's link loss is the plain Frobenius norm, not divided by any size (it grows like
    :math:`\sqrt{|E_b|}`), so ``normalize=False`` has no meaning there and is rejected. The
    authors' code uses a binary cross-entropy link loss and no entropy term; neither is offered.

    Padded rows of ``x`` and ``s`` and padded rows/columns of ``adj`` are ignored. When
    :math:`N > C` the link loss is computed as :math:`\|\mathbf{A}\|_F^2 - 2\operatorname{tr}
    (\mathbf{S}^{\top}\mathbf{A}\mathbf{S}) + \|\mathbf{S}^{\top}\mathbf{S}\|_F^2` (exact, as in
    :func:`sparse_diff_pool`: :math:`O(N C^2)` work and no :math:`N \times N` residual), otherwise
    from the residual itself (:math:`O(N^2 C)`, the cheaper one then).

    Args:
        x (Tensor): node features :math:`\mathbf{X}` (the embedding GNN's output ``Z``),
            ``[B, N, F]`` or ``[N, F]``.
        adj (Tensor): adjacency, ``[B, N, N]`` or ``[N, N]``; ``adj[b, i, j]`` weighs edge
            ``i -> j``.
        s (Tensor): assignment logits (before the softmax), ``[B, N, C]`` or ``[N, C]``.
        mask (Tensor, optional): ``[B, N]`` boolean, ``True`` for real nodes; every graph needs at
            least one. (default: ``None``, every node is real)
        normalize (bool): divide PyG's link loss by the number of entries of ``adj``, as PyG.
            (default: ``True``)
        loss_norm (str, keyword-only): ``'pyg'`` (default) or ``'paper'``, see above.

    Returns:
        ``(x_pooled [B, C, F], adj_pooled [B, C, C], link_loss, entropy_loss)``, the losses
        scalars.

    Shapes:
        - **input:** ``x`` :math:`(B, N, F)`, ``adj`` :math:`(B, N, N)`, ``s`` :math:`(B, N, C)`,
          ``mask`` :math:`(B, N)`
        - **output:** :math:`(B, C, F)`, :math:`(B, C, C)`, :math:`()`, :math:`()`
    """
    _check_loss_norm(loss_norm, normalize)
    check_float(x, 'x')
    check_float(adj, 'adj')
    check_float(s, 's')
    x = x.unsqueeze(0) if x.dim() == 2 else x
    adj = adj.unsqueeze(0) if adj.dim() == 2 else adj
    s = s.unsqueeze(0) if s.dim() == 2 else s
    if x.dim() != 3:
        raise ValueError(f'x must be [B, N, F] or [N, F], got shape {tuple(x.shape)}')
    num_graphs, num_nodes = x.shape[:2]
    if s.dim() != 3 or s.shape[:2] != x.shape[:2]:
        raise ValueError(
            f's must be [B, N, C] with the same B and N as x {tuple(x.shape[:2])}, got shape '
            f'{tuple(s.shape)}: s needs one row of cluster logits per node of x'
        )
    if adj.dim() != 3 or adj.shape != (num_graphs, num_nodes, num_nodes):
        raise ValueError(
            f'adj must be [B, N, N] = {(num_graphs, num_nodes, num_nodes)} to match x, got '
            f'{tuple(adj.shape)}'
        )
    check_same_device([('x', x), ('adj', adj), ('s', s), ('mask', mask)])
    _check_same_dtype([('x', x), ('adj', adj), ('s', s)])
    if num_nodes == 0 or s.size(-1) == 0:
        raise ValueError(
            f'x has {num_nodes} nodes and s {s.size(-1)} clusters; both must be at least 1'
        )

    log_assign = F.log_softmax(s, dim=-1)
    assign = log_assign.exp()
    if mask is None:
        num_real = torch.full((num_graphs,), num_nodes, device=x.device)
    else:
        check_tensor(mask, 'mask')
        if mask.dtype != torch.bool:
            raise TypeError(f'mask must be a torch.bool tensor, got {mask.dtype}; use mask.bool()')
        if mask.shape != (num_graphs, num_nodes):
            raise ValueError(
                f'mask must be [B, N] = {(num_graphs, num_nodes)} to match x, got shape '
                f'{tuple(mask.shape)}'
            )
        num_real = mask.sum(1)
        if defers_value_checks(num_real):
            # No read-back under torch.compile (a graph break) or on a device (a sync).
            torch._assert_async(
                (num_real > 0).all(), 'mask marks no real node in some graph of the batch'
            )
        elif bool((num_real == 0).any()):
            empty = int((num_real == 0).nonzero()[0])
            raise ValueError(
                f'mask marks no real node in graph {empty}; every graph needs at least one node'
            )
        assign = assign * mask.unsqueeze(-1).to(assign.dtype)

    # Padded rows of S are zero, so S^T X and S^T A S never read padded rows of x or padded
    # rows/columns of adj, and no masked copy of adj is needed.
    assign_t = assign.transpose(1, 2)
    out = assign_t @ x
    out_adj = assign_t @ (adj @ assign)
    if num_nodes <= assign.size(-1):
        # Few nodes per cluster: the residual itself ([B, N, N]) is the cheaper form.
        residual = adj - assign @ assign_t
        if mask is not None:
            residual = residual.masked_fill(~(mask.unsqueeze(-1) & mask.unsqueeze(-2)), 0.0)
        squared_link = residual.pow(2).sum(dim=(1, 2))
    else:
        squared_link = _squared_link_by_trace(adj, assign, out_adj, mask)
    # Padded rows have assign = 0, so they add nothing to the entropy.
    entropy_sum = -(assign * log_assign).sum(dim=(1, 2))
    link_loss, entropy_loss = _reduce_losses(
        squared_link, entropy_sum, num_real, num_nodes, loss_norm, normalize
    )
    return out, out_adj, link_loss, entropy_loss


def sparse_diff_pool(
    x: Tensor,
    edge_index,
    s: Tensor,
    batch: Tensor | None = None,
    edge_weight: Tensor | None = None,
    normalize: bool = True,
    *,
    loss_norm: str = 'pyg',
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The first DiffPool level straight from a sparse mini-batch: the same outputs as
    :func:`dense_diff_pool` on the padded batch, without ever forming an :math:`N \times N` matrix.

    :math:`\mathbf{S}^{\top} \mathbf{A} \mathbf{S}` is a sparse-times-dense product followed by
    per-graph :math:`C \times C` products, and the link loss uses, per graph,

    .. math::
        \left\| \mathbf{A} - \mathbf{S}\mathbf{S}^{\top} \right\|_F^2 =
        \|\mathbf{A}\|_F^2 - 2 \operatorname{tr}(\mathbf{S}^{\top}\mathbf{A}\mathbf{S})
        + \left\| \mathbf{S}^{\top}\mathbf{S} \right\|_F^2,

    exact (duplicate edges are summed first, as in the dense adjacency). Extra memory is
    :math:`O(N C + |E| + B C^2)`. Gradients flow to ``x``, ``s`` and ``edge_weight``.
    Losses and ``loss_norm`` are those of :func:`dense_diff_pool` (``'pyg'`` takes :math:`N`
    as the largest graph's size, the padding a dense batch would have).

    Args:
        x (Tensor): ``[N, F]`` node features (the embedding GNN's output), sorted by graph.
        edge_index: ``[2, E]`` edges (row 0 source, row 1 target), or any adjacency
            :func:`graphops.ops.to_csr` accepts (``SparseTensor``, ``torch.sparse``, ``CSR``;
            those are ``adj_t``, rows = targets). Edges must stay inside one graph.
        s (Tensor): ``[N, C]`` assignment logits (before the softmax).
        batch (Tensor, optional): ``[N]`` sorted graph id of each node. (default: ``None``, one
            graph)
        edge_weight (Tensor, optional): ``[E]`` edge weights. (default: ``None``, all ones)
        normalize (bool): as in :func:`dense_diff_pool`. (default: ``True``)
        loss_norm (str, keyword-only): ``'pyg'`` (default) or ``'paper'``, as in
            :func:`dense_diff_pool`.

    Returns:
        ``(x_pooled [B, C, F], adj_pooled [B, C, C], link_loss, entropy_loss)``.

    Shapes:
        - **input:** ``x`` :math:`(N, F)`, ``edge_index`` :math:`(2, E)`, ``s`` :math:`(N, C)`,
          ``batch`` :math:`(N)`
        - **output:** :math:`(B, C, F)`, :math:`(B, C, C)`, :math:`()`, :math:`()`
    """
    _check_loss_norm(loss_norm, normalize)
    check_float(x, 'x')
    check_float(s, 's')
    if x.dim() != 2:
        raise ValueError(f'x must be [N, F], got shape {tuple(x.shape)}')
    num_nodes = x.size(0)
    if s.dim() != 2 or s.size(0) != num_nodes:
        raise ValueError(
            f's must be [N, C] with N = {num_nodes} rows (one per node of x), got shape '
            f'{tuple(s.shape)}'
        )
    if s.size(1) == 0:
        raise ValueError('s has 0 clusters; pass at least one')
    check_same_device([('x', x), ('s', s), ('batch', batch)])
    _check_same_dtype([('x', x), ('s', s)])
    sizes = graph_sizes(batch, num_nodes).to(x.device)
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=x.device)
    num_graphs = sizes.numel()

    adj_t = to_csr(edge_index, edge_weight, num_nodes)  # adj_t[j, i] = weight of i -> j
    if adj_t.shape != (num_nodes, num_nodes):
        raise ValueError(
            f'the adjacency has shape {adj_t.shape} but x has {num_nodes} nodes; it must be '
            f'[{num_nodes}, {num_nodes}]'
        )
    check_same_device([('x', x), ('edge_index', adj_t.col)])
    target_graph = batch[adj_t.row().long()]
    source_graph = batch[adj_t.col.long()]
    message = (
        'edge_index has edges between different graphs of the batch; every edge must join '
        'two nodes with the same batch id'
    )
    check_condition((target_graph == source_graph).all(), message)

    log_assign = F.log_softmax(s, dim=-1)
    assign = log_assign.exp()
    out = per_graph_transpose_matmul(assign, x, batch, sizes)
    # (A^T S)^T S = S^T A S: adj_t is A^T, so its spmm gathers along incoming edges.
    out_adj = per_graph_transpose_matmul(spmm(adj_t, assign), assign, batch, sizes)

    # duplicate edges are one summed entry of A (merged in nnz slots: no size read back)
    groups = adj_t.entry_groups()
    merged = adj_t.values(x.dtype).new_zeros(adj_t.nnz).index_add(0, groups, adj_t.values(x.dtype))
    group_graph = torch.zeros_like(groups).index_copy(0, groups, target_graph)
    squared_adj = segment_sum(merged.pow(2), group_graph, num_graphs)
    trace = out_adj.diagonal(dim1=1, dim2=2).sum(-1)
    squared_gram = per_graph_transpose_matmul(assign, assign, batch, sizes).pow(2).sum((1, 2))
    squared_link = squared_adj - 2 * trace + squared_gram
    entropy_sum = segment_sum(-(assign * log_assign).sum(-1), batch, num_graphs)
    link_loss, entropy_loss = _reduce_losses(
        squared_link, entropy_sum, sizes, sizes.max(), loss_norm, normalize
    )
    return out, out_adj, link_loss, entropy_loss
