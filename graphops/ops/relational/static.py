r"""The relational product in torch ops of static shape: what a layer runs inside
``torch.compile(fullgraph=True)``, where the eager strategies' data-dependent chunking cannot be
traced. Same sum and result as :func:`~graphops.ops.relational.relational_matmul`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from graphops.ops.relational.cost import pair_layout
from graphops.ops.relational.graph import RelationalGraph
from graphops.ops.relational.matmul import (
    check_relational_args,
    gather_reduce,
    reduce_rows,
    stacked_matmul,
    zeros_touching,
)
from graphops.ops.relational.plans import mix_weights, pair_plan, tile_forward


@dataclass(eq=False)
class StaticRelationalPlan:
    """What :func:`static_relational_matmul` reads from a :class:`RelationalGraph`, built
    beforehand (eagerly, by :func:`static_plan`) so that a compiled forward sees only Python
    ints and ready index tensors: no sort, no data-dependent size, no value read back.

    Edges are in the graph's (relation, target, source) order: ``src``, ``dst``, ``rel``, the
    mean scale ``1 / |N_r(i)|`` (float64), the (target, relation) pair of each edge and, with
    features, the tile slot of each edge (pairs padded to tiles of one relation, as
    ``pair_plan``).
    """

    num_src: int
    num_dst: int
    num_relations: int
    src: Tensor
    dst: Tensor
    rel: Tensor
    scale: Tensor
    pair: Tensor
    pair_dst: Tensor
    num_pairs: int
    slot: Tensor | None = None
    tile_type: Tensor | None = None
    dst_of_slot: Tensor | None = None
    num_slots: int = 0

    @property
    def num_edges(self) -> int:
        return self.src.numel()


def static_plan(
    graph: RelationalGraph,
    in_channels: int | None = None,
    out_channels: int | None = None,
    num_bases: int | None = None,
) -> StaticRelationalPlan:
    """The :class:`StaticRelationalPlan` of ``graph``; with ``in_channels`` and
    ``out_channels`` (float features) it includes the tile layout of the pairs, with the tile
    size of the eager ``'pairs'`` strategy."""
    plan = StaticRelationalPlan(
        num_src=graph.num_src,
        num_dst=graph.num_dst,
        num_relations=graph.num_relations,
        src=graph.sorted_src,
        dst=graph.sorted_dst,
        rel=graph.sorted_rel,
        scale=graph.mean_scale,
        pair=graph.pair_of_sorted,
        pair_dst=graph.pair_dst,
        num_pairs=graph.num_pairs,
    )
    if in_channels is not None and out_channels is not None and graph.num_edges:
        pairs = pair_plan(graph, *pair_layout(graph, in_channels, out_channels, num_bases))
        plan.slot = pairs.slot_of_edge
        plan.tile_type = pairs.layout.tile_type
        plan.dst_of_slot = pairs.dst_of_slot
        plan.num_slots = pairs.layout.num_slots
    return plan


def static_relational_matmul(
    plan: StaticRelationalPlan,
    x: Tensor | None,
    weight: Tensor,
    comp: Tensor | None = None,
    *,
    aggr: str = 'mean',
) -> Tensor:
    r""":func:`~graphops.ops.relational.relational_matmul` on a :class:`StaticRelationalPlan`:

    with float features the edges are aggregated into their (target, relation) pairs padded to
    tiles of one relation, every tile is multiplied by its relation's weight in one ``bmm`` (with
    bases, each tile's weight is mixed from the bases) and the pairs are added into their targets;
    without features (``x=None``), row ``j`` of :math:`\mathbf{W}_r` is the message of an edge
    ``j -> i`` of type ``r`` (with bases the ``[R, num_src, out]`` weights are mixed first, as
    PyG does).

    Shapes:
        ``x``: :math:`(N_{src}, F_{in})` or :obj:`None` -> :math:`(N_{dst}, F_{out})`.
    """
    aggr, _, out_channels, _ = check_relational_args(
        plan.num_src, plan.num_relations, x, weight, comp, aggr
    )
    if plan.num_edges == 0 or plan.num_dst == 0:
        return zeros_touching(plan.num_dst, out_channels, weight, comp, x)
    scale = plan.scale.to(weight.dtype).unsqueeze(-1) if aggr == 'mean' else None
    if x is None:
        rows = mix_weights(weight, comp).reshape(-1, out_channels)
        row = plan.rel * plan.num_src + plan.src
        if aggr in ('sum', 'mean'):
            return gather_reduce(rows, row, plan.dst, plan.num_dst, scale, aggr)
        hidden = gather_reduce(rows, row, plan.pair, plan.num_pairs, None, aggr)
        return reduce_rows(plan.num_dst, plan.pair_dst, hidden, 'sum')
    if plan.slot is None:
        raise ValueError(
            'this plan has no tile layout: build it with static_plan(graph, in_channels, '
            'out_channels) for float features'
        )
    hidden = gather_reduce(x, plan.src, plan.slot, plan.num_slots, scale, aggr)
    y = tile_forward(hidden, mix_weights(weight, comp, plan.tile_type))
    return reduce_rows(plan.num_dst, plan.dst_of_slot, y, 'sum')


def dense_relational_matmul(
    src: Tensor,
    dst: Tensor,
    rel: Tensor,
    num_src: int,
    num_dst: int,
    num_relations: int,
    x: Tensor | None,
    weight: Tensor,
    comp: Tensor | None = None,
    *,
    aggr: str = 'mean',
) -> Tensor:
    r""":func:`~graphops.ops.relational.relational_matmul` on raw edges, with no plan, so it
    traces into one graph under ``torch.compile``: what a layer without a cached plan runs there.
    The counts :math:`|\mathcal{N}_r(i)|` come from one scatter into ``num_dst * R`` slots;
    with float features the edges are aggregated into a dense ``[num_dst, R * in]`` and
    multiplied by the stacked weights in one GEMM, or, when ``num_src * out < num_dst * in`` and
    the aggregation is a sum or mean, transformed first (``x @ W_r`` for every ``r``) and summed
    per edge. With bases the ``[R, in, out]`` weights are mixed first (as PyG does); a cached plan
    (:func:`static_relational_matmul`) avoids that.

    Args:
        src, dst, rel (Tensor): ``[E]`` source, target and relation of each edge (validated).
        num_src, num_dst, num_relations (int): sizes.
        x, weight, comp, aggr: as :func:`~graphops.ops.relational.relational_matmul`.

    Shapes:
        ``x``: :math:`(N_{src}, F_{in})` or :obj:`None` -> :math:`(N_{dst}, F_{out})`.
    """
    aggr, _, out_channels, _ = check_relational_args(num_src, num_relations, x, weight, comp, aggr)
    R = num_relations
    if src.numel() == 0 or num_dst == 0:
        return zeros_touching(num_dst, out_channels, weight, comp, x)
    src, dst, rel = src.long(), dst.long(), rel.long()
    key = dst * R + rel
    scale = None
    if aggr == 'mean':
        count = torch.zeros(num_dst * R, dtype=weight.dtype, device=weight.device)
        count = count.index_add(0, key, torch.ones_like(key, dtype=weight.dtype))
        scale = (1.0 / count.index_select(0, key)).unsqueeze(-1)
    mixed = mix_weights(weight, comp)
    if x is None:
        rows, row = mixed.reshape(-1, out_channels), rel * num_src + src
        if aggr in ('sum', 'mean'):
            return gather_reduce(rows, row, dst, num_dst, scale, aggr)
        hidden = gather_reduce(rows, row, key, num_dst * R, None, aggr)
        return hidden.view(num_dst, R, out_channels).sum(1)
    in_channels = x.size(1)
    if (
        mixed.dim() == 3
        and aggr in ('sum', 'mean')
        and num_src * out_channels < num_dst * in_channels
    ):
        transformed = x @ mixed.permute(1, 0, 2).reshape(in_channels, R * out_channels)
        rows = transformed.view(num_src * R, out_channels)
        return gather_reduce(rows, src * R + rel, dst, num_dst, scale, 'sum')
    hidden = gather_reduce(x, src, key, num_dst * R, scale, aggr)
    return stacked_matmul(hidden, mixed, num_dst)
