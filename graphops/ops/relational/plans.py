r"""Aggregate-first products over the (target, relation) pairs of a
``RelationalGraph``: pairs padded to tiles of one relation,
each tile multiplied by its relation's weight in one ``bmm``, chunk by chunk.

.. math::
    \mathbf{y}_i = \sum_{(i, r)} \mathbf{W}_r \mathbf{h}_{i,r}, \qquad
    \mathbf{h}_{i,r} = \sum_{j \in \mathcal{N}_r(i)} s_{j \to i}\, \mathbf{x}_j
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from graphops.ops.csr import CSR, segment_arange
from graphops.ops.relational.graph import RelationalGraph
from graphops.ops.spmm import spmm_unchecked

# Elements of intermediate per chunk (hidden + output): chunks stay below glibc's mmap threshold
# (32 MiB), so their buffers are recycled instead of faulted in fresh on every call, which on the
# CPU this was measured on cost more than the arithmetic.
CHUNK_ELEMENTS = 4 * 2**20
TILE_SIZES = (16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class TileLayout:
    """Rows grouped by type, each group padded to whole tiles of ``tile_size`` rows.

    ``slot[k]`` is the padded position of row ``k``; ``tile_type[t]`` the type of tile ``t``.
    """

    slot: Tensor
    tile_type: Tensor
    tile_size: int

    @property
    def num_tiles(self) -> int:
        return self.tile_type.numel()

    @property
    def num_slots(self) -> int:
        return self.num_tiles * self.tile_size


def choose_tile_size(counts: Tensor, in_channels: int, out_channels: int) -> int:
    """The tile size that minimises padded work plus per-tile weight traffic.

    A tile costs its rows' product (``T * in * out``, padding included) plus a copy of its type's
    weight and a fixed per-batch overhead, estimated as 4 weight copies and 2,000 multiply-adds.
    """
    counts = counts.long().cpu()
    best, best_cost = TILE_SIZES[0], math.inf
    for size in TILE_SIZES:
        tiles = int(((counts + size - 1) // size).sum())
        cost = tiles * (size * in_channels * out_channels + 4 * in_channels * out_channels + 2000)
        if cost < best_cost:
            best, best_cost = size, cost
    return best


def tile_layout(counts: Tensor, tile_size: int) -> TileLayout:
    """Tiles for rows sorted by type, with ``counts[s]`` rows of type ``s``."""
    if tile_size < 1:
        raise ValueError(f'tile_size must be >= 1, got {tile_size}')
    counts = counts.long()
    types = torch.arange(counts.numel(), device=counts.device)
    tiles_per_type = (counts + tile_size - 1) // tile_size
    tile_ptr = torch.cumsum(tiles_per_type, 0) - tiles_per_type
    slot, _ = segment_arange(tile_ptr * tile_size, counts, int(counts.sum()))
    num_tiles = int(tiles_per_type.sum())
    tile_type = torch.repeat_interleave(types, tiles_per_type, output_size=num_tiles)
    return TileLayout(slot, tile_type, tile_size)


@dataclass(eq=False)
class PairPlan:
    """The (target, relation) pairs of a graph laid out for :func:`pairs_matmul`: pairs padded to
    tiles of one relation, and chunks of whole tiles.

    ``chunks[k] = (slot0, slot1, edge0, edge1, tile0, tile1)``: its slots, its sorted edges and its
    tiles; ``chunk_matrices[k]`` is the unweighted ``[slot1 - slot0, num_src]`` CSR of the edges
    feeding its slots (one entry per sorted edge, in order). ``dst_of_slot`` maps a slot to its
    target (padding slots map to 0: their rows are zero going forward and unused going back).
    """

    layout: TileLayout
    num_src: int
    num_dst: int
    src: Tensor
    slot_of_edge: Tensor
    dst_of_slot: Tensor
    chunks: list[tuple[int, int, int, int, int, int]]
    chunk_matrices: list[CSR]


def pair_plan(graph: RelationalGraph, tile_size: int, chunk_tiles: int) -> PairPlan:
    """The :class:`PairPlan` of ``graph`` with chunks of ``chunk_tiles`` tiles (kept on it)."""
    if chunk_tiles < 1:
        raise ValueError(f'chunk_tiles must be >= 1, got {chunk_tiles}')
    return graph.cached(
        ('pairs', tile_size, chunk_tiles), lambda: _build_pair_plan(graph, tile_size, chunk_tiles)
    )


def _build_pair_plan(graph: RelationalGraph, tile_size: int, chunk_tiles: int) -> PairPlan:
    layout = tile_layout(graph.pairs_per_relation, tile_size)
    slot_of_edge = layout.slot[graph.pair_of_sorted]
    # Sorted edges are in (pair, source) order and slots grow with pairs: already CSR order.
    gather = CSR.from_coo(
        slot_of_edge, graph.sorted_src, None, layout.num_slots, graph.num_src,
        is_sorted=True, trust_data=True,
    )  # fmt: skip
    dst_of_slot = torch.zeros(layout.num_slots, dtype=torch.long, device=graph.device)
    dst_of_slot[layout.slot] = graph.pair_dst
    rowptr = gather.rowptr.long()
    bounds = rowptr[:: tile_size * chunk_tiles].tolist() + [int(rowptr[-1])]
    chunks, matrices = [], []
    for k, tile0 in enumerate(range(0, layout.num_tiles, chunk_tiles)):
        tile1 = min(tile0 + chunk_tiles, layout.num_tiles)
        slot0, slot1 = tile0 * tile_size, tile1 * tile_size
        edge0, edge1 = bounds[k], int(rowptr[slot1])
        chunks.append((slot0, slot1, edge0, edge1, tile0, tile1))
        chunk_rowptr = (rowptr[slot0 : slot1 + 1] - edge0).to(gather.rowptr.dtype)
        matrices.append(
            CSR(chunk_rowptr, gather.col[edge0:edge1], None, slot1 - slot0, graph.num_src,
                trust_data=True)
        )  # fmt: skip
    return PairPlan(
        layout=layout,
        num_src=graph.num_src,
        num_dst=graph.num_dst,
        src=graph.sorted_src,
        slot_of_edge=slot_of_edge,
        dst_of_slot=dst_of_slot,
        chunks=chunks,
        chunk_matrices=matrices,
    )


def mix_weights(weight: Tensor, comp: Tensor | None, rows: Tensor | None = None) -> Tensor:
    """The weight of relation ``rows[t]`` for each ``t`` (all relations when ``rows`` is None):
    ``weight[rows]``, or mixed from the bases ``weight`` ``[B, ...]`` by ``comp`` ``[R, B]``."""
    if comp is None:
        return weight if rows is None else weight.index_select(0, rows)
    coefficient = comp if rows is None else comp.index_select(0, rows)
    return (coefficient @ weight.reshape(weight.size(0), -1)).view(-1, *weight.shape[1:])


def tile_forward(hidden: Tensor, per_tile: Tensor) -> Tensor:
    """Tile ``t`` of ``hidden`` (``[tiles * T, in]``) times ``per_tile[t]`` (``[in, out]`` or
    block-diagonal ``[blocks, in / blocks, out / blocks]``), in one batched product."""
    tiles = per_tile.size(0)
    if per_tile.dim() == 3:
        out = torch.bmm(hidden.view(tiles, -1, per_tile.size(1)), per_tile)
        return out.view(-1, per_tile.size(2))
    blocks, block_in, block_out = per_tile.shape[1:]
    out = torch.einsum('tsbi,tbio->tsbo', hidden.view(tiles, -1, blocks, block_in), per_tile)
    return out.reshape(-1, blocks * block_out)


def _tile_grads(hidden, grad_y, per_tile, need_weight: bool, need_input: bool):
    tiles = per_tile.size(0)
    grad_weight = grad_input = None
    if per_tile.dim() == 3:
        h = hidden.view(tiles, -1, per_tile.size(1)) if need_weight else None
        g = grad_y.view(tiles, -1, per_tile.size(2))
        if need_weight:
            grad_weight = torch.bmm(h.transpose(1, 2), g)
        if need_input:
            grad_input = torch.bmm(g, per_tile.transpose(1, 2)).view(-1, per_tile.size(1))
        return grad_weight, grad_input
    blocks, block_in, block_out = per_tile.shape[1:]
    g = grad_y.view(tiles, -1, blocks, block_out)
    if need_weight:
        grad_weight = torch.einsum('tsbi,tsbo->tbio', hidden.view(tiles, -1, blocks, block_in), g)
    if need_input:
        grad_input = torch.einsum('tsbo,tbio->tsbi', g, per_tile).reshape(-1, blocks * block_in)
    return grad_weight, grad_input


def _chunk_hidden(plan: PairPlan, k: int, source: Tensor, scale, aggregate: bool) -> Tensor:
    """``[slots of chunk k, in]``: each slot's aggregated input (or a slice of given ones)."""
    slot0, slot1, edge0, edge1, _, _ = plan.chunks[k]
    if not aggregate:
        return source[slot0:slot1]
    return spmm_unchecked(plan.chunk_matrices[k].with_value(scale[edge0:edge1]), source)


def _chunk_tile_types(plan: PairPlan, k: int) -> Tensor:
    _, _, _, _, tile0, tile1 = plan.chunks[k]
    return plan.layout.tile_type[tile0:tile1]


class _PairsMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, source, weight, comp, scale, plan: PairPlan, aggregate: bool):
        ctx.plan, ctx.aggregate = plan, aggregate
        ctx.save_for_backward(source, weight, comp, scale)
        out_channels = weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1)
        out = source.new_zeros(plan.num_dst, out_channels)
        for k, (slot0, slot1, *_) in enumerate(plan.chunks):
            hidden = _chunk_hidden(plan, k, source, scale, aggregate)
            y = tile_forward(hidden, mix_weights(weight, comp, _chunk_tile_types(plan, k)))
            out.index_add_(0, plan.dst_of_slot[slot0:slot1], y)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        source, weight, comp, scale = ctx.saved_tensors
        plan: PairPlan = ctx.plan
        need_source, need_weight, need_comp = ctx.needs_input_grad[:3]
        need_any_weight = need_weight or need_comp
        grad_source = torch.zeros_like(source) if need_source else None
        grad_weight = torch.zeros_like(weight) if need_weight else None
        grad_comp = torch.zeros_like(comp) if need_comp else None
        grad_out = grad_out.contiguous()
        for k, (slot0, slot1, edge0, edge1, _, _) in enumerate(plan.chunks):
            tile_type = _chunk_tile_types(plan, k)
            per_tile = mix_weights(weight, comp, tile_type)
            grad_y = grad_out.index_select(0, plan.dst_of_slot[slot0:slot1])
            # The hidden rows are recomputed rather than kept: cheaper here than holding them.
            hidden = (
                _chunk_hidden(plan, k, source, scale, ctx.aggregate) if need_any_weight else None
            )
            grad_tiles, grad_hidden = _tile_grads(
                hidden, grad_y, per_tile, need_any_weight, need_source
            )
            if comp is None and need_weight:
                grad_weight.index_add_(0, tile_type, grad_tiles)
            elif comp is not None and need_any_weight:
                flat = grad_tiles.reshape(grad_tiles.size(0), -1)
                if need_comp:
                    grad_comp.index_add_(
                        0, tile_type, flat @ weight.reshape(weight.size(0), -1).t()
                    )
                if need_weight:
                    coeff = comp.index_select(0, tile_type)
                    grad_weight += (coeff.t() @ flat).view_as(weight)
            if need_source:
                if not ctx.aggregate:
                    grad_source[slot0:slot1] = grad_hidden
                elif edge1 > edge0:
                    rows = grad_hidden.index_select(0, plan.slot_of_edge[edge0:edge1] - slot0)
                    rows.mul_(scale[edge0:edge1].unsqueeze(-1))
                    grad_source.index_add_(0, plan.src[edge0:edge1], rows)
        return grad_source, grad_weight, grad_comp, None, None, None


def pairs_matmul(
    plan: PairPlan,
    source: Tensor,
    weight: Tensor,
    comp: Tensor | None = None,
    scale: Tensor | None = None,
) -> Tensor:
    r"""Aggregate-first relational product over the (target, relation) pairs of ``plan`` (see
    the module docstring), chunk by chunk: each chunk aggregates its pairs (one
    :func:`~graphops.ops.spmm`), multiplies every tile by its relation's weight (one ``bmm``; with
    bases the tile's weight is mixed from the bases on the spot) and adds the result into the
    targets. Nothing of size ``[pairs, F]`` is kept for the backward pass, which recomputes each
    chunk's aggregation.

    Args:
        plan (PairPlan): from :func:`pair_plan`.
        source (Tensor): ``[num_src, in]`` features to aggregate with ``scale`` (one weight per
            sorted edge), or, with ``scale=None``, ready ``[slots, in]`` pair inputs.
        weight (Tensor): ``[R, in, out]``, ``[R, blocks, in/blocks, out/blocks]``, or the bases
            ``[B, in, out]`` with ``comp`` ``[R, B]``.

    Shapes:
        -> :math:`(N_{dst}, F_{out})`.
    """
    aggregate = scale is not None
    if scale is None:
        scale = source.new_zeros(0)
    return _PairsMatmul.apply(source, weight, comp, scale, plan, aggregate)
