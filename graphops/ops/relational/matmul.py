r"""The relational sum of R-GCN (without root term and bias) on a
``RelationalGraph``, by the strategy
``choose_strategy`` picks."""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops.csr import CSR
from graphops.ops.relational.cost import choose_strategy, pair_layout
from graphops.ops.relational.graph import RelationalGraph
from graphops.ops.relational.plans import pair_plan, pairs_matmul
from graphops.ops.spmm import spmm_unchecked

AGGRS = ('sum', 'mean', 'max', 'min')


def check_relational_args(
    num_src: int, num_relations: int, x: Tensor | None, weight: Tensor, comp: Tensor | None, aggr
) -> tuple[str, int, int, int | None]:
    """Checks the shapes of a relational product's operands (Python ints only, so it traces
    under ``torch.compile``); returns ``(aggr, in_channels, out_channels, num_blocks)`` with
    ``'add'`` spelled ``'sum'``."""
    aggr = 'sum' if aggr == 'add' else aggr
    if aggr not in AGGRS:
        raise ValueError(f"aggr must be one of 'sum', 'mean', 'max', 'min', got {aggr!r}")
    blocks = weight.dim() == 4
    if blocks and comp is not None:
        raise ValueError('comp (basis coefficients) cannot be combined with block weights')
    if x is None and blocks:
        raise ValueError(
            'block-diagonal weights need float features; featureless input (x=None or node ids) '
            'works with plain or basis weights'
        )
    if comp is not None and (comp.dim() != 2 or comp.size(0) != num_relations):
        raise ValueError(
            f'comp must have shape [num_relations, num_bases] = [{num_relations}, B], '
            f'got {tuple(comp.shape)}'
        )
    if comp is not None and comp.size(1) != weight.size(0):
        raise ValueError(f'comp has {comp.size(1)} bases but weight has {weight.size(0)}')
    if comp is None and weight.size(0) != num_relations:
        raise ValueError(
            f'weight must hold one matrix per relation ({num_relations}), got {weight.size(0)}'
        )
    num_blocks = weight.size(1) if blocks else None
    in_channels = weight.size(1) * weight.size(2) if blocks else weight.size(1)
    out_channels = weight.size(-1) * (num_blocks or 1)
    if x is not None and (x.dim() != 2 or x.size(1) != in_channels or x.size(0) != num_src):
        raise ValueError(
            f'x must have shape [num_src, in] = [{num_src}, {in_channels}], got {tuple(x.shape)}'
        )
    if x is None and in_channels != num_src:
        raise ValueError(
            f'featureless input needs weight rows for every source node: in_channels = '
            f'{in_channels} but the graph has {num_src} source nodes'
        )
    return aggr, in_channels, out_channels, num_blocks


def reduce_rows(rows: int, index: Tensor, values: Tensor, aggr: str) -> Tensor:
    """``out[index[k]] (+)= values[k]``: a sum for ``'sum'``/``'mean'`` (the caller applies the
    mean's scale), else the element-wise max/min (rows nothing reaches stay zero, as PyG)."""
    out = values.new_zeros(rows, values.size(1))
    if aggr in ('sum', 'mean'):
        return out.index_add(0, index, values)
    reduce = 'amax' if aggr == 'max' else 'amin'
    return out.scatter_reduce(
        0, index.view(-1, 1).expand(-1, values.size(1)), values, reduce=reduce, include_self=False
    )


def gather_reduce(rows: Tensor, row: Tensor, target: Tensor, size: int, scale, aggr: str):
    """``reduce_rows(size, target, rows[row] * scale, aggr)``: one message per edge, reduced."""
    messages = rows.index_select(0, row)
    return reduce_rows(size, target, messages if scale is None else messages * scale, aggr)


def stacked_matmul(hidden: Tensor, weight: Tensor, num_dst: int) -> Tensor:
    """``[num_dst, out]``: each target's ``[R, in]`` aggregated inputs (``hidden``, one row per
    (target, relation)) times the stacked ``[R, in, out]`` weights in one GEMM, or block by block
    for block-diagonal ``[R, blocks, in / blocks, out / blocks]`` weights."""
    if weight.dim() == 3:
        return hidden.view(num_dst, -1) @ weight.reshape(-1, weight.size(2))
    num_blocks, block_in, block_out = weight.shape[1:]
    hidden = hidden.view(num_dst, weight.size(0), num_blocks, block_in)
    out = torch.einsum('nrbi,rbio->nbo', hidden, weight)
    return out.reshape(num_dst, num_blocks * block_out)


def zeros_touching(rows: int, cols: int, *inputs: Tensor | None) -> Tensor:
    """``[rows, cols]`` zeros (dtype and device of the first input) that depend on ``inputs``:
    their gradients are zeros rather than ``None``, as when the sum is over no terms in PyG.

    The link is the sum of an empty slice of each input: exactly 0, never NaN, and traceable.
    """
    first = next(t for t in inputs if t is not None)
    out = first.new_zeros(rows, cols)
    for tensor in inputs:
        if tensor is not None and tensor.requires_grad:
            out = out + tensor.reshape(-1)[:0].sum().to(out.dtype)
    return out


def relational_matmul(
    graph: RelationalGraph,
    x: Tensor | None,
    weight: Tensor,
    comp: Tensor | None = None,
    *,
    aggr: str = 'mean',
    strategy: str = 'auto',
    tile_size: int | None = None,
) -> Tensor:
    r"""The relational sum of R-GCN (without root term and bias):

    .. math::
        \mathbf{y}_i = \sum_{r} \sum_{j \in \mathcal{N}_r(i)} c_{i,r}\, \mathbf{W}_r \mathbf{x}_j

    with :math:`c_{i,r} = 1/|\mathcal{N}_r(i)|` for ``aggr='mean'`` and 1 for ``'sum'``; for
    ``'max'``/``'min'`` the inputs of each (target, relation) pair are reduced element-wise and then
    transformed, as PyG's ``RGCNConv`` does (with no features, the rows of :math:`\mathbf{W}_r` are
    the messages and are reduced). Strategies, all exact:

    * ``'pairs'``: aggregate-first into the unique (target, relation) pairs, then one batched
      product per chunk over pairs padded to tiles of one relation
      (``pairs_matmul``; with bases each tile's weight is mixed
      from the bases on the spot);
    * ``'aggregate'``: aggregate into a dense ``[N_dst, R * in]`` (bases: ``[N_dst, B * in]``
      with the coefficients on the edges), then one GEMM;
    * ``'transform'``: transform first (``x @ W_r`` for all ``r``, or ``x @ V_b`` for all ``b``),
      then one sparse product with per-edge weights (bases: coefficients on the edges).

    Every sparse product is :func:`graphops.ops.spmm`, differentiable in its values. With
    ``comp`` no ``[R, in, out]`` tensor is formed on any path.

    Args:
        graph (RelationalGraph): edges, relations and their cached plans.
        x (Tensor or None): ``[num_src, in]`` float features, or ``None`` for featureless input
            (source ``j`` is the one-hot vector ``e_j``; ``in = num_src``).
        weight (Tensor): ``[R, in, out]``; ``[R, blocks, in/blocks, out/blocks]`` (block-diagonal);
            or, with ``comp``, the bases ``[B, in, out]``.
        comp (Tensor, optional): ``[R, B]`` basis coefficients :math:`a_{rb}`.
        aggr (str): ``'mean'`` (default), ``'sum'``, ``'max'`` or ``'min'``.
        strategy (str): ``'auto'`` (default: :func:`~graphops.ops.relational.choose_strategy`),
            ``'pairs'``, ``'aggregate'`` or ``'transform'``.
        tile_size (int, optional): rows per tile for ``'pairs'``.

    Shapes:
        ``x``: :math:`(N_{src}, F_{in})` -> :math:`(N_{dst}, F_{out})`.
    """
    aggr, in_channels, out_channels, num_blocks = check_relational_args(
        graph.num_src, graph.num_relations, x, weight, comp, aggr
    )
    num_bases = None if comp is None else comp.size(1)
    strategy = choose_strategy(
        graph, in_channels, out_channels, strategy=strategy, num_bases=num_bases,
        num_blocks=num_blocks, aggr=aggr, featureless=x is None,
    )  # fmt: skip
    if graph.num_edges == 0 or graph.num_dst == 0:
        return zeros_touching(graph.num_dst, out_channels, weight, comp, x)
    if x is None:
        return _featureless(graph, weight, comp, aggr)
    if strategy == 'pairs':
        tile, chunk_tiles = graph.cached(
            ('layout', in_channels, out_channels, num_bases, tile_size),
            lambda: pair_layout(graph, in_channels, out_channels, num_bases, tile_size),
        )
        plan = pair_plan(graph, tile, chunk_tiles)
        if aggr in ('sum', 'mean'):
            return pairs_matmul(plan, x, weight, comp, graph.edge_scale(aggr, x.dtype))
        hidden = gather_reduce(x, plan.src, plan.slot_of_edge, plan.layout.num_slots, None, aggr)
        return pairs_matmul(plan, hidden, weight, comp)
    if strategy == 'aggregate':
        return _aggregate(graph, x, weight, comp, aggr)
    return _transform(graph, x, weight, comp, aggr)


def _per_basis_sum(graph: RelationalGraph, aggr: str, comp: Tensor, weight: Tensor, x=None):
    """``sum_b M_b @ X_b``, ``M_b`` the ``'target'`` matrix weighting an edge of relation ``r`` by
    ``c_{i,r} a_{rb}`` and ``X_b`` basis ``b`` (featureless) or ``x @ V_b``: a loop over the
    bases, never over relations. The bases are unbound once, so the backward stacks their B
    gradients into one tensor (indexing ``weight[b]`` would allocate and sum B full-size ones)."""
    out = None
    for coefficient, basis in zip(comp.unbind(1), weight.unbind(0), strict=True):
        part = spmm_unchecked(
            graph.mixed_values('target', aggr, coefficient), basis if x is None else x @ basis
        )
        out = part if out is None else out + part
    return out


def _aggregate(graph, x, weight, comp, aggr):
    if comp is not None:
        # [num_dst, B * in]: block b is M_b @ x; then one GEMM with the stacked bases
        matrices = [graph.mixed_values('target', aggr, comp[:, b]) for b in range(comp.size(1))]
        mixed = torch.cat([spmm_unchecked(m, x) for m in matrices], dim=1)
        return mixed @ weight.reshape(-1, weight.size(-1))
    R, n_dst = graph.num_relations, graph.num_dst
    if aggr in ('sum', 'mean'):
        hidden = spmm_unchecked(graph.edge_values('target_relation', aggr, x.dtype), x)
    else:
        index = graph.sorted_dst * R + graph.sorted_rel
        hidden = gather_reduce(x, graph.sorted_src, index, n_dst * R, None, aggr)
    return stacked_matmul(hidden, weight, n_dst)


def _transform(graph, x, weight, comp, aggr):
    if comp is not None:
        return _per_basis_sum(graph, aggr, comp, weight, x)
    if weight.dim() == 3:
        transformed = torch.matmul(x.unsqueeze(0), weight)  # [R, N_src, out]
    else:
        num_blocks, block_in, _ = weight.shape[1:]
        blocks = x.view(x.size(0), num_blocks, block_in)
        transformed = torch.einsum('nbi,rbio->rnbo', blocks, weight)
    transformed = transformed.reshape(graph.num_relations * graph.num_src, -1)
    return spmm_unchecked(graph.edge_values('relation_source', aggr, x.dtype), transformed)


def _featureless(graph, weight, comp, aggr):
    """Source ``j`` is ``e_j``: the message of an edge of type ``r`` is row ``j`` of ``W_r``."""
    out_channels, dtype = weight.size(-1), weight.dtype
    if aggr in ('sum', 'mean'):
        if comp is None:
            matrix = graph.edge_values('relation_source', aggr, dtype)
            return spmm_unchecked(matrix, weight.reshape(-1, out_channels))
        return _per_basis_sum(graph, aggr, comp, weight)
    # max / min: form each edge's message, reduce per pair, sum the pairs of each target.
    src, rel = graph.sorted_src, graph.sorted_rel
    if comp is None:
        messages = weight.reshape(-1, out_channels).index_select(0, rel * graph.num_src + src)
    else:
        num_bases = comp.size(1)

        def build():
            # Row e holds B entries, one per basis: message_e = sum_b comp[r_e, b] V_b[src_e].
            row = torch.arange(graph.num_edges, device=graph.device).repeat_interleave(num_bases)
            basis = torch.arange(num_bases, device=graph.device).repeat(graph.num_edges)
            col = basis * graph.num_src + src.repeat_interleave(num_bases)
            matrix = CSR.from_coo(
                row, col, None, graph.num_edges, num_bases * graph.num_src,
                is_sorted=True, trust_data=True,
            )  # fmt: skip
            return matrix, rel.repeat_interleave(num_bases) * num_bases + basis

        matrix, comp_index = graph.cached(('edge_bases', num_bases), build)
        values = comp.reshape(-1).index_select(0, comp_index)
        messages = spmm_unchecked(matrix.with_value(values), weight.reshape(-1, out_channels))
    hidden = reduce_rows(graph.num_pairs, graph.pair_of_sorted, messages, aggr)
    return reduce_rows(graph.num_dst, graph.pair_dst, hidden, 'sum')
