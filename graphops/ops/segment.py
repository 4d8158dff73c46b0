r"""Per-type dense transforms for relational layers (R-GCN): sparse products whose values may be
learnable, grouped (segment) matmul, and the relational propagation

.. math::
    \mathbf{y}_i = \sum_{r \in \mathcal{R}} \sum_{j \in \mathcal{N}_r(i)} c_{i,r}\,
    \mathbf{W}_r \mathbf{x}_j

computed without a Python loop over relations. Three strategies compute the same sum (see
:func:`relational_matmul`); :func:`choose_strategy` picks one per shape from a cost model whose
constants were measured with ``benchmarks/rgcn.py``. With a basis decomposition
:math:`\mathbf{W}_r = \sum_b a_{rb} \mathbf{V}_b` the bases are mixed per edge (``'aggregate'``,
``'transform'``, featureless input) or per tile of one relation, at most ``R // 2`` tiles at a time
(``'pairs'``): neither the ``[R, in, out]`` weight tensor nor its gradient is ever formed.

Everything here is device-agnostic torch (CSR x dense as ``embedding_bag``, ``sampled_addmm``,
``bmm``, GEMM) and knows nothing of ``nn.Module`` or PyG's ``Data``. Inputs are validated by the caller
(the layer) through :mod:`graphops.ops.validate`; :class:`RelationalGraph` re-checks only shapes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from graphops.ops.validate import check_index

_INT32_MAX = 2**31 - 1
AGGRS = ('sum', 'mean', 'max', 'min')
STRATEGIES = ('auto', 'pairs', 'aggregate', 'transform')


def _index_dtype(*sizes: int) -> torch.dtype:
    return torch.int32 if max(sizes, default=0) <= _INT32_MAX else torch.int64


# --- CSR products with values that may require grad ----------------------------------------------


class CSRPattern:
    r"""The sparsity structure of a ``[num_rows, num_cols]`` matrix in CSR order (rows sorted,
    columns sorted and distinct within a row, as torch's CSR invariants ask). Values are supplied
    per product, so one pattern serves constant weights and learnable ones alike. The transpose is
    built on first use.

    Build one with :meth:`from_coo`.
    """

    def __init__(self, rowptr: Tensor, col: Tensor, num_rows: int, num_cols: int):
        self.rowptr = rowptr
        self.col = col
        self.num_rows = num_rows
        self.num_cols = num_cols
        self._transpose: tuple[CSRPattern, Tensor] | None = None

    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.col.device

    def __repr__(self) -> str:
        return f'CSRPattern(shape=({self.num_rows}, {self.num_cols}), nnz={self.nnz})'

    @classmethod
    def from_coo(
        cls, row: Tensor, col: Tensor, num_rows: int, num_cols: int, *, is_sorted: bool = False
    ) -> tuple[CSRPattern, Tensor]:
        """The pattern of the elements ``(row[k], col[k])``, duplicates merged into one entry, and
        ``entry`` with element ``k`` stored in entry ``entry[k]``: the values of the pattern are
        ``zeros(nnz).index_add(0, entry, element_values)`` (see :meth:`merge`).

        ``is_sorted`` promises the elements are already sorted by ``(row, col)``.
        """
        row, col = row.long(), col.long()
        key = row * max(num_cols, 1) + col
        perm = None
        if not is_sorted and key.numel() > 1 and bool((key[1:] < key[:-1]).any()):
            perm = torch.sort(key, stable=True).indices
            key = key[perm]
        first = torch.ones_like(key, dtype=torch.bool)
        first[1:] = key[1:] != key[:-1]
        entry = torch.cumsum(first.long(), 0) - 1
        if perm is not None:
            entry = torch.empty_like(entry).scatter_(0, perm, entry)
        unique = key[first]
        unique_row = unique // max(num_cols, 1)
        dtype = _index_dtype(num_rows, num_cols, unique.numel())
        rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=col.device)
        if unique.numel():
            torch.cumsum(torch.bincount(unique_row, minlength=num_rows), 0, out=rowptr[1:])
        pattern = cls(rowptr.to(dtype), (unique % max(num_cols, 1)).to(dtype), num_rows, num_cols)
        return pattern, entry

    def merge(self, entry: Tensor, element_values: Tensor) -> Tensor:
        """Values of the entries: the sum of the values of the elements stored in each
        (differentiable)."""
        out = element_values.new_zeros(self.nnz)
        return out.index_add(0, entry, element_values)

    def row(self) -> Tensor:
        """``[nnz]`` row of each entry (int64)."""
        counts = (self.rowptr[1:] - self.rowptr[:-1]).long()
        rows = torch.arange(self.num_rows, device=self.device)
        return torch.repeat_interleave(rows, counts, output_size=self.nnz)

    def transpose(self) -> tuple[CSRPattern, Tensor]:
        """``(pattern of the transpose, perm)``: transposed entry ``t`` is entry ``perm[t]``."""
        if self._transpose is None:
            pattern, entry = CSRPattern.from_coo(self.col, self.row(), self.num_cols, self.num_rows)
            perm = torch.empty_like(entry).scatter_(
                0, entry, torch.arange(self.nnz, device=self.device)
            )
            self._transpose = (pattern, perm)
        return self._transpose

    def tensor(self, values: Tensor) -> Tensor:
        with warnings.catch_warnings():  # torch flags every sparse CSR tensor as beta
            warnings.simplefilter('ignore', UserWarning)
            return torch.sparse_csr_tensor(
                self.rowptr,
                self.col,
                values,
                size=(self.num_rows, self.num_cols),
                check_invariants=False,
            )


def _csr_product(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor) -> Tensor:
    """``[len(rowptr) - 1, F]`` CSR times dense. ``embedding_bag`` is CSR x dense with per-entry
    weights, and on CPU ran about 5x faster than ``torch.sparse.mm`` on rows of one or two entries
    (measured on the R-GCN benchmark's pair aggregation)."""
    num_rows = rowptr.numel() - 1
    if col.numel() == 0 or x.size(1) == 0 or num_rows == 0:
        return x.new_zeros(num_rows, x.size(1))
    return F.embedding_bag(
        col, x, rowptr, mode='sum', per_sample_weights=values, include_last_offset=True
    )


def _spmm(pattern: CSRPattern, values: Tensor, x: Tensor) -> Tensor:
    return _csr_product(pattern.rowptr, pattern.col, values, x)


class _CSRMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, pattern: CSRPattern) -> Tensor:
        ctx.pattern = pattern
        # x is needed only for the values' gradient (a sampled dense-dense product).
        ctx.save_for_backward(values, x if ctx.needs_input_grad[0] else None)
        return _spmm(pattern, values, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        values, x = ctx.saved_tensors
        pattern: CSRPattern = ctx.pattern
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:
            transposed, perm = pattern.transpose()
            grad_x = _spmm(transposed, values[perm], grad)
        if ctx.needs_input_grad[0]:
            if pattern.nnz == 0 or pattern.num_rows == 0 or x.size(1) == 0:
                grad_values = torch.zeros_like(values)
            else:
                sampled = torch.sparse.sampled_addmm(
                    pattern.tensor(values), grad.contiguous(), x.t(), beta=0.0
                )
                grad_values = sampled.values()
        return grad_values, grad_x, None


def csr_matmul(pattern: CSRPattern, values: Tensor, x: Tensor) -> Tensor:
    r"""``M @ x`` for the sparse ``M`` with structure ``pattern`` and entries ``values`` (in the
    pattern's order), differentiable in both ``values`` and ``x``. The gradient of ``x`` uses the
    transposed pattern (built once and kept); that of ``values`` is the sampled product
    :math:`(\nabla_y\, x^\top)_{ij}` on the pattern, so no ``[nnz, F]`` tensor is formed.

    Shapes:
        ``values``: :math:`(nnz,)`, ``x``: :math:`(N_{cols}, F)` -> :math:`(N_{rows}, F)`.
    """
    if values.dim() != 1 or values.numel() != pattern.nnz:
        raise ValueError(
            f'values must be 1-dimensional with one entry per stored element ({pattern.nnz}), '
            f'got shape {tuple(values.shape)}'
        )
    if x.dim() != 2 or x.size(0) != pattern.num_cols:
        raise ValueError(
            f'x must have shape [{pattern.num_cols}, F] to multiply a {pattern.num_rows} x '
            f'{pattern.num_cols} sparse matrix, got {tuple(x.shape)}'
        )
    if values.dtype != x.dtype:
        raise TypeError(f'values ({values.dtype}) and x ({x.dtype}) must share one dtype')
    return _CSRMatmul.apply(values, x, pattern)


# --- grouped (segment) matmul ----------------------------------------------------------------------


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


TILE_SIZES = (16, 32, 64, 128, 256, 512, 1024)


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
    device = counts.device
    num_types = counts.numel()
    tiles_per_type = (counts + tile_size - 1) // tile_size
    tile_ptr = torch.zeros(num_types + 1, dtype=torch.long, device=device)
    torch.cumsum(tiles_per_type, 0, out=tile_ptr[1:])
    row_ptr = torch.zeros(num_types + 1, dtype=torch.long, device=device)
    torch.cumsum(counts, 0, out=row_ptr[1:])
    num_rows = int(row_ptr[-1])
    type_of_row = torch.repeat_interleave(
        torch.arange(num_types, device=device), counts, output_size=num_rows
    )
    position = torch.arange(num_rows, device=device) - row_ptr[type_of_row]
    slot = tile_ptr[type_of_row] * tile_size + position
    tile_type = torch.repeat_interleave(
        torch.arange(num_types, device=device), tiles_per_type, output_size=int(tile_ptr[-1])
    )
    return TileLayout(slot, tile_type, tile_size)


def tiled_matmul(x_tiles: Tensor, tile_type: Tensor, weight: Tensor) -> Tensor:
    """Multiplies tile ``t`` of ``x_tiles`` by ``weight[tile_type[t]]`` in one batched product.

    ``x_tiles`` is ``[num_tiles * T, in]``; ``weight`` is ``[S, in, out]`` or, block-diagonal,
    ``[S, num_blocks, in / num_blocks, out / num_blocks]``. Returns ``[num_tiles * T, out]``.
    """
    num_tiles = tile_type.numel()
    if num_tiles == 0:
        out_channels = weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1)
        return x_tiles.new_zeros(0, out_channels)
    per_tile = weight.index_select(0, tile_type)
    if weight.dim() == 3:
        out = torch.bmm(x_tiles.view(num_tiles, -1, weight.size(1)), per_tile)
        return out.view(-1, weight.size(2))
    num_blocks, block_in, block_out = weight.shape[1:]
    x_blocks = x_tiles.view(num_tiles, -1, num_blocks, block_in)
    out = torch.einsum('tsbi,tbio->tsbo', x_blocks, per_tile)
    return out.reshape(-1, num_blocks * block_out)


def segment_matmul(x: Tensor, ptr: Tensor, weight: Tensor, tile_size: int | None = None) -> Tensor:
    r"""Grouped matmul: rows ``ptr[s]:ptr[s + 1]`` of ``x`` times ``weight[s]``, for every ``s`` at
    once (pyg_lib's ``segment_matmul``, without pyg_lib). Segments are padded to tiles and run as
    one ``bmm``; gradients flow through torch ops.

    Args:
        x (Tensor): ``[N, in]`` rows sorted by segment.
        ptr (Tensor): ``[S + 1]`` segment offsets, ``ptr[0] = 0``, ``ptr[-1] = N``.
        weight (Tensor): ``[S, in, out]``, or ``[S, blocks, in / blocks, out / blocks]`` for
            block-diagonal weights.
        tile_size (int, optional): rows per tile (default: chosen by :func:`choose_tile_size`).

    Shapes:
        ``x``: :math:`(N, F_{in})` -> :math:`(N, F_{out})`.
    """
    check_index(ptr, 'ptr', dim=1)
    if weight.dim() not in (3, 4):
        raise ValueError(
            f'weight must be [S, in, out] or [S, blocks, bi, bo], got {weight.dim()}-D'
        )
    num_segments = weight.size(0)
    in_channels = weight.size(1) * (weight.size(2) if weight.dim() == 4 else 1)
    out_channels = weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1)
    if ptr.numel() != num_segments + 1:
        raise ValueError(
            f'ptr must have num_segments + 1 = {num_segments + 1} entries (weight.size(0) + 1), '
            f'got {ptr.numel()}'
        )
    counts = (ptr[1:] - ptr[:-1]).long()
    if ptr.numel() and (int(ptr[0]) != 0 or bool((counts < 0).any())):
        raise ValueError('ptr must start at 0 and be non-decreasing')
    if x.dim() != 2 or x.size(1) != in_channels or x.size(0) != int(ptr[-1]):
        raise ValueError(
            f'x must have shape [ptr[-1], in] = [{int(ptr[-1])}, {in_channels}], '
            f'got {tuple(x.shape)}'
        )
    if tile_size is None:
        tile_size = choose_tile_size(counts, in_channels, out_channels)
    layout = tile_layout(counts.to(x.device), tile_size)
    padded = x.new_zeros(layout.num_slots, in_channels).index_copy(0, layout.slot, x)
    out = tiled_matmul(padded, layout.tile_type, weight)
    return out.index_select(0, layout.slot)


# --- aggregate-first products over (target, relation) pairs, in chunks ---------------------------

# Elements of intermediate per chunk (hidden + output): chunks stay below glibc's mmap threshold
# (32 MiB), so their buffers are recycled instead of faulted in fresh on every call, which on the
# CPU this was measured on cost more than the arithmetic.
CHUNK_ELEMENTS = 4 * 2**20


@dataclass(eq=False)
class PairPlan:
    """The (target, relation) pairs of a :class:`RelationalGraph` laid out for
    :func:`pairs_matmul`: pairs padded to tiles of one relation; ``gather``, the ``[slots,
    num_src]`` pattern of the edges feeding each slot (duplicate edges merged into one entry,
    ``entry_of_edge`` says where each sorted edge went); and chunks of whole tiles.

    ``chunks[k] = (slot0, slot1, entry0, entry1, tile0, tile1)``; ``dst_of_slot`` maps a slot to
    its target (padding slots map to 0: their rows are zero going forward and unused going back).
    """

    layout: TileLayout
    num_src: int
    num_dst: int
    gather: CSRPattern
    entry_of_edge: Tensor
    entry_src: Tensor
    src: Tensor
    slot_of_edge: Tensor
    dst_of_slot: Tensor
    chunks: list[tuple[int, int, int, int, int, int]]
    chunk_rowptr: list[Tensor]
    chunk_rows: list[Tensor]

    def values(self, edge_scale: Tensor) -> Tensor:
        """Entry values of ``gather`` from one weight per sorted edge."""
        return self.gather.merge(self.entry_of_edge, edge_scale)


def _build_pair_plan(graph: RelationalGraph, tile_size: int, chunk_tiles: int) -> PairPlan:
    if chunk_tiles < 1:
        raise ValueError(f'chunk_tiles must be >= 1, got {chunk_tiles}')
    layout = tile_layout(graph.pairs_per_relation, tile_size)
    slot_of_edge = layout.slot[graph.pair_of_sorted]
    src = graph.src[graph.order]
    # Sorted edges are in (pair, source) order and slots grow with pairs: already CSR order.
    gather, entry_of_edge = CSRPattern.from_coo(
        slot_of_edge, src, layout.num_slots, graph.num_src, is_sorted=True
    )
    dst_of_slot = torch.zeros(layout.num_slots, dtype=torch.long, device=graph.device)
    dst_of_slot[layout.slot] = graph.pair_dst
    rowptr = gather.rowptr.long()
    entry_row = gather.row()
    bounds = rowptr[:: tile_size * chunk_tiles].tolist() + [int(rowptr[-1])]
    chunks, chunk_rowptr, chunk_rows = [], [], []
    for k, tile0 in enumerate(range(0, layout.num_tiles, chunk_tiles)):
        tile1 = min(tile0 + chunk_tiles, layout.num_tiles)
        slot0, slot1 = tile0 * tile_size, tile1 * tile_size
        entry0, entry1 = bounds[k], int(rowptr[slot1])
        chunks.append((slot0, slot1, entry0, entry1, tile0, tile1))
        chunk_rowptr.append((rowptr[slot0 : slot1 + 1] - entry0).to(gather.rowptr.dtype))
        chunk_rows.append(entry_row[entry0:entry1] - slot0)
    return PairPlan(
        layout=layout,
        num_src=graph.num_src,
        num_dst=graph.num_dst,
        gather=gather,
        entry_of_edge=entry_of_edge,
        entry_src=gather.col.long(),
        src=src,
        slot_of_edge=slot_of_edge,
        dst_of_slot=dst_of_slot,
        chunks=chunks,
        chunk_rowptr=chunk_rowptr,
        chunk_rows=chunk_rows,
    )


def _chunk_hidden(plan: PairPlan, k: int, source: Tensor, scale, aggregate: bool) -> Tensor:
    """``[slots of chunk k, in]``: each slot's aggregated input (or a slice of given ones)."""
    slot0, slot1, entry0, entry1, _, _ = plan.chunks[k]
    if not aggregate:
        return source[slot0:slot1]
    return _csr_product(
        plan.chunk_rowptr[k], plan.gather.col[entry0:entry1], scale[entry0:entry1], source
    )


def _chunk_weight(plan: PairPlan, k: int, weight: Tensor, comp: Tensor | None) -> Tensor:
    """The weight of each tile of chunk ``k``; with bases, mixed here from the bases (only this
    chunk's tiles, at most ``R // 2`` of them, ever hold mixed weights)."""
    _, _, _, _, tile0, tile1 = plan.chunks[k]
    tile_type = plan.layout.tile_type[tile0:tile1]
    if comp is None:
        return weight.index_select(0, tile_type)
    mixed = comp.index_select(0, tile_type) @ weight.reshape(weight.size(0), -1)
    return mixed.view(-1, *weight.shape[1:])


def _tile_forward(hidden: Tensor, per_tile: Tensor) -> Tensor:
    tiles = per_tile.size(0)
    if per_tile.dim() == 3:
        return torch.bmm(hidden.view(tiles, -1, per_tile.size(1)), per_tile).view(
            -1, per_tile.size(2)
        )
    blocks, block_in, block_out = per_tile.shape[1:]
    out = torch.einsum('tsbi,tbio->tsbo', hidden.view(tiles, -1, blocks, block_in), per_tile)
    return out.reshape(-1, blocks * block_out)


def _tile_grads(hidden, grad_y, per_tile, need_weight: bool, need_input: bool):
    tiles = per_tile.size(0)
    grad_weight = grad_input = None
    if per_tile.dim() == 3:
        h = hidden.view(tiles, -1, per_tile.size(1))
        g = grad_y.view(tiles, -1, per_tile.size(2))
        if need_weight:
            grad_weight = torch.bmm(h.transpose(1, 2), g)
        if need_input:
            grad_input = torch.bmm(g, per_tile.transpose(1, 2)).view(-1, per_tile.size(1))
        return grad_weight, grad_input
    blocks, block_in, block_out = per_tile.shape[1:]
    h = hidden.view(tiles, -1, blocks, block_in)
    g = grad_y.view(tiles, -1, blocks, block_out)
    if need_weight:
        grad_weight = torch.einsum('tsbi,tsbo->tbio', h, g)
    if need_input:
        grad_input = torch.einsum('tsbo,tbio->tsbi', g, per_tile).reshape(-1, blocks * block_in)
    return grad_weight, grad_input


class _PairsMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, source, weight, comp, scale, plan: PairPlan, aggregate: bool):
        ctx.plan, ctx.aggregate = plan, aggregate
        ctx.save_for_backward(source, weight, comp, scale)
        out_channels = weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1)
        out = source.new_zeros(plan.num_dst, out_channels)
        for k, (slot0, slot1, *_) in enumerate(plan.chunks):
            hidden = _chunk_hidden(plan, k, source, scale, aggregate)
            y = _tile_forward(hidden, _chunk_weight(plan, k, weight, comp))
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
        for k, (slot0, slot1, entry0, entry1, tile0, tile1) in enumerate(plan.chunks):
            per_tile = _chunk_weight(plan, k, weight, comp)
            grad_y = grad_out.index_select(0, plan.dst_of_slot[slot0:slot1])
            # The hidden rows are recomputed rather than kept: cheaper here than holding them.
            hidden = (
                _chunk_hidden(plan, k, source, scale, ctx.aggregate) if need_any_weight else None
            )
            grad_tiles, grad_hidden = _tile_grads(
                hidden, grad_y, per_tile, need_any_weight, need_source
            )
            tile_type = plan.layout.tile_type[tile0:tile1]
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
                elif entry1 > entry0:
                    rows = grad_hidden.index_select(0, plan.chunk_rows[k])
                    rows.mul_(scale[entry0:entry1].unsqueeze(-1))
                    grad_source.index_add_(0, plan.entry_src[entry0:entry1], rows)
        return grad_source, grad_weight, grad_comp, None, None, None


def pairs_matmul(
    plan: PairPlan,
    source: Tensor,
    weight: Tensor,
    comp: Tensor | None = None,
    scale: Tensor | None = None,
) -> Tensor:
    r"""Aggregate-first relational product over the (target, relation) pairs of ``plan``:

    .. math::
        \mathbf{y}_i = \sum_{(i, r)} \mathbf{W}_r \mathbf{h}_{i,r}, \qquad
        \mathbf{h}_{i,r} = \sum_{j \in \mathcal{N}_r(i)} s_{j \to i}\, \mathbf{x}_j

    chunk by chunk: each chunk aggregates its pairs (one CSR product), multiplies every tile by
    its relation's weight (one ``bmm``; with bases the tile's weight is mixed from the bases on the
    spot) and adds the result into the targets. Nothing of size ``[pairs, F]`` is kept for the
    backward pass, which recomputes each chunk's aggregation.

    Args:
        plan (PairPlan): from :meth:`RelationalGraph.pair_plan`.
        source (Tensor): ``[num_src, in]`` features to aggregate with ``scale`` (one weight per
            entry of ``plan.gather``, see :meth:`PairPlan.values`), or, with ``scale=None``, ready
            ``[slots, in]`` pair inputs.
        weight (Tensor): ``[R, in, out]``, ``[R, blocks, in/blocks, out/blocks]``, or the bases
            ``[B, in, out]`` with ``comp`` ``[R, B]``.

    Shapes:
        -> :math:`(N_{dst}, F_{out})`.
    """
    aggregate = scale is not None
    if scale is None:
        scale = source.new_zeros(0)
    return _PairsMatmul.apply(source, weight, comp, scale, plan, aggregate)


# --- the relational graph and its plans ----------------------------------------------------------


class RelationalGraph:
    r"""Edges ``src -> dst`` of type ``rel`` and every structure the strategies derive from them:
    the grouping into (target, relation) pairs with the per-pair counts :math:`|\mathcal{N}_r(i)|`
    and the sparse patterns of each strategy, built on first use and kept. Keep one instance per
    static graph to pay the sorting once.

    Args:
        src (Tensor): ``[E]`` source of each edge, in ``[0, num_src)``.
        dst (Tensor): ``[E]`` target of each edge, in ``[0, num_dst)``.
        rel (Tensor): ``[E]`` relation of each edge, in ``[0, num_relations)``.
        num_src, num_dst, num_relations (int): sizes.

    The caller validates ranges (the layer does, through :mod:`graphops.ops.validate`).
    """

    def __init__(
        self,
        src: Tensor,
        dst: Tensor,
        rel: Tensor,
        num_src: int,
        num_dst: int,
        num_relations: int,
    ):
        if not (src.numel() == dst.numel() == rel.numel()):
            raise ValueError(
                f'src, dst and rel must have one entry per edge, got {src.numel()}, '
                f'{dst.numel()} and {rel.numel()}'
            )
        self.src, self.dst, self.rel = src.long(), dst.long(), rel.long()
        self.num_src, self.num_dst, self.num_relations = num_src, num_dst, num_relations
        self._cache: dict = {}
        self._group()

    @property
    def num_edges(self) -> int:
        return self.src.numel()

    @property
    def device(self) -> torch.device:
        return self.src.device

    def __repr__(self) -> str:
        return (
            f'RelationalGraph(num_src={self.num_src}, num_dst={self.num_dst}, '
            f'num_relations={self.num_relations}, num_edges={self.num_edges}, '
            f'num_pairs={self.num_pairs})'
        )

    def _group(self) -> None:
        """Sorts edges by (relation, target, source) once: pairs, counts and mean norms follow."""
        num_pairs_max = self.num_relations * self.num_dst
        pair_key = self.rel * self.num_dst + self.dst
        if self.num_edges == 0:
            order = pair_key
        elif num_pairs_max * max(self.num_src, 1) < 2**62:
            order = torch.sort(pair_key * max(self.num_src, 1) + self.src).indices
        else:  # the combined key would overflow: two stable passes give the same order
            order = torch.sort(self.src, stable=True).indices
            order = order[torch.sort(pair_key[order], stable=True).indices]
        sorted_key = pair_key[order]
        new_pair = torch.ones_like(sorted_key, dtype=torch.bool)
        new_pair[1:] = sorted_key[1:] != sorted_key[:-1]
        pair_of_sorted = torch.cumsum(new_pair.long(), 0) - 1
        keys = sorted_key[new_pair]
        self.order = order  # edges in (relation, target, source) order
        self.pair_of_sorted = pair_of_sorted  # pair id of each sorted edge
        self.pair_rel = keys // max(self.num_dst, 1)
        self.pair_dst = keys % max(self.num_dst, 1)
        self.num_pairs = keys.numel()
        counts = torch.bincount(pair_of_sorted, minlength=self.num_pairs)
        self.pair_count = counts
        self.pairs_per_relation = torch.bincount(self.pair_rel, minlength=self.num_relations)
        # 1 / |N_r(i)| of each sorted edge: the paper's per-relation normalisation.
        self._mean_scale = 1.0 / counts[pair_of_sorted].double()

    # --- per-entry values ---
    def edge_scale(self, aggr: str, dtype: torch.dtype) -> Tensor:
        """``c_{i,r}`` of each edge in sorted order: ``1 / |N_r(i)|`` for ``'mean'``, else 1."""
        key = ('scale', aggr, dtype)
        if key not in self._cache:
            if aggr == 'mean':
                scale = self._mean_scale.to(dtype)
            else:
                scale = torch.ones(self.num_edges, dtype=dtype, device=self.device)
            self._cache[key] = scale
        return self._cache[key]

    def _cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # --- plans ---
    def pair_plan(self, tile_size: int, chunk_tiles: int) -> PairPlan:
        """Pairs padded to tiles of one relation, cut into chunks of ``chunk_tiles`` tiles."""
        return self._cached(
            ('pairs', tile_size, chunk_tiles),
            lambda: _build_pair_plan(self, tile_size, chunk_tiles),
        )

    def edge_pattern(self, kind: str) -> tuple[CSRPattern, Tensor]:
        """``(pattern, entry)``: sorted edge ``e`` is stored in entry ``entry[e]``. Kinds:

        * ``'target'``: ``[num_dst, num_src]`` (basis mixing per edge);
        * ``'target_relation'``: ``[num_dst * R, num_src]``, row ``i * R + r``;
        * ``'relation_source'``: ``[num_dst, R * num_src]``, column ``r * num_src + j``.
        """

        def build():
            src = self.src[self.order]
            dst = self.dst[self.order]
            rel = self.rel[self.order]
            if kind == 'target':
                row, col, shape = dst, src, (self.num_dst, self.num_src)
            elif kind == 'target_relation':
                row = dst * self.num_relations + rel
                col, shape = src, (self.num_dst * self.num_relations, self.num_src)
            elif kind == 'relation_source':
                row, col = dst, rel * self.num_src + src
                shape = (self.num_dst, self.num_relations * self.num_src)
            else:
                raise ValueError(f'unknown edge pattern {kind!r}')
            return CSRPattern.from_coo(row, col, *shape)

        return self._cached(('edge', kind), build)

    def edge_values(self, kind: str, aggr: str, dtype: torch.dtype) -> Tensor:
        """Entry values of :meth:`edge_pattern` ``kind``: the summed ``c_{i,r}`` of its edges."""

        def build():
            pattern, entry = self.edge_pattern(kind)
            return pattern.merge(entry, self.edge_scale(aggr, dtype))

        return self._cached(('edge_values', kind, aggr, dtype), build)

    def mixed_values(self, kind: str, aggr: str, coefficient: Tensor) -> Tensor:
        """Entry values of :meth:`edge_pattern` ``kind`` when edge ``e`` of relation ``r``
        weighs ``c_{i,r} * coefficient[r]`` (differentiable in ``coefficient``)."""
        pattern, entry = self.edge_pattern(kind)
        relation = self._cached(('sorted_rel',), lambda: self.rel[self.order])
        scale = self.edge_scale(aggr, coefficient.dtype)
        return pattern.merge(entry, scale * coefficient.index_select(0, relation))


# --- strategy choice -------------------------------------------------------------------------------

# Seconds per unit of work on one thread of the 2-core CPU this project is developed on, from
# `python -m benchmarks.rgcn --strategies` and micro-timings: a sparse multiply-add (CSR x dense,
# or a gather + index_add), a dense multiply-add (GEMM, or bmm on tiles), an element of fresh
# intermediate memory above the allocator's recycling threshold (page faults dominate), and the
# fixed cost of one chunk of the pairs strategy. Only their ratios matter.
COST_SPARSE = 2.5e-9
COST_DENSE = 0.035e-9
COST_MEMORY = 2.5e-9
COST_CHUNK = 4e-4


def pair_layout(
    graph: RelationalGraph,
    in_channels: int,
    out_channels: int,
    num_bases: int | None = None,
    tile_size: int | None = None,
) -> tuple[int, int]:
    """``(tile_size, chunk_tiles)`` for :meth:`RelationalGraph.pair_plan`: chunks of at most
    :data:`CHUNK_ELEMENTS` intermediate elements and, with bases, at most ``R // 2`` tiles, so
    mixed weights never reach ``[R, in, out]``."""
    if tile_size is None:
        tile_size = choose_tile_size(graph.pairs_per_relation, in_channels, out_channels)
    chunk_tiles = max(1, CHUNK_ELEMENTS // (tile_size * max(in_channels + out_channels, 1)))
    if num_bases is not None:
        chunk_tiles = min(chunk_tiles, max(1, graph.num_relations // 2))
    return tile_size, chunk_tiles


def strategy_costs(
    graph: RelationalGraph,
    in_channels: int,
    out_channels: int,
    *,
    num_bases: int | None = None,
    num_blocks: int | None = None,
    aggr: str = 'mean',
    featureless: bool = False,
) -> dict[str, float]:
    """Estimated seconds of forward + backward for each strategy valid for this call."""
    E, R = graph.num_edges, graph.num_relations
    n_src, n_dst = graph.num_src, graph.num_dst
    fin, fout = in_channels, out_channels
    block = num_blocks or 1
    costs: dict[str, float] = {}
    if featureless:
        # Rows of the weights are the transformed features: only 'transform' applies.
        mixes = num_bases or 1
        costs['transform'] = 3 * mixes * E * fout * COST_SPARSE
        if aggr in ('max', 'min'):
            costs['transform'] += 3 * E * fout * (COST_SPARSE + COST_MEMORY)
        return costs
    tile, chunk_tiles = pair_layout(graph, fin, fout, num_bases)
    tiles = int(((graph.pairs_per_relation + tile - 1) // tile).sum())
    slots = tiles * tile
    costs['pairs'] = (
        3 * E * fin * COST_SPARSE
        + 3 * slots * fin * fout / block * COST_DENSE
        + 2 * slots * fout * COST_SPARSE
        + -(-tiles // chunk_tiles) * COST_CHUNK
    )
    if aggr in ('max', 'min'):
        costs['pairs'] += 2 * E * fin * (COST_SPARSE + COST_MEMORY)
    if num_bases is None:
        costs['aggregate'] = (
            3 * E * fin * COST_SPARSE
            + 3 * n_dst * R * fin * fout / block * COST_DENSE
            + 2 * n_dst * R * fin * COST_MEMORY
        )
        if aggr in ('sum', 'mean'):
            costs['transform'] = (
                3 * n_src * R * fin * fout / block * COST_DENSE
                + 3 * E * fout * COST_SPARSE
                + 2 * n_src * R * fout * COST_MEMORY
            )
        return costs
    B = num_bases
    if aggr in ('sum', 'mean'):
        costs['aggregate'] = (
            3 * B * E * fin * COST_SPARSE
            + 3 * n_dst * B * fin * fout * COST_DENSE
            + 2 * n_dst * B * fin * COST_MEMORY
        )
        costs['transform'] = (
            3 * n_src * B * fin * fout * COST_DENSE
            + 3 * B * E * fout * COST_SPARSE
            + 2 * n_src * B * fout * COST_MEMORY
        )
    return costs


def choose_strategy(graph: RelationalGraph, in_channels: int, out_channels: int, **kwargs) -> str:
    """The cheapest strategy by :func:`strategy_costs`."""
    costs = strategy_costs(graph, in_channels, out_channels, **kwargs)
    return min(costs, key=costs.get)


# --- the relational product ----------------------------------------------------------------------


def _reduce_into(rows: int, index: Tensor, values: Tensor, aggr: str) -> Tensor:
    """``out[index[k]] = max/min over k of values[k]``; rows nothing reaches stay zero (as PyG)."""
    channels = values.size(1)
    out = values.new_zeros(rows, channels)
    if index.numel() == 0:
        return out
    reduce = 'amax' if aggr == 'max' else 'amin'
    return out.scatter_reduce(
        0, index.view(-1, 1).expand(-1, channels), values, reduce=reduce, include_self=False
    )


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
      product per chunk over pairs padded to tiles of one relation (:func:`pairs_matmul`; with
      bases each tile's weight is mixed from the bases on the spot);
    * ``'aggregate'``: aggregate into a dense ``[N_dst, R * in]`` (bases: ``[N_dst, B * in]``
      with the coefficients on the edges), then one GEMM;
    * ``'transform'``: transform first (``x @ W_r`` for all ``r``, or ``x @ V_b`` for all ``b``),
      then one sparse product with per-edge weights (bases: coefficients on the edges).

    With ``comp`` no ``[R, in, out]`` tensor is formed on any path.

    Args:
        graph (RelationalGraph): edges, relations and their cached plans.
        x (Tensor or None): ``[num_src, in]`` float features, or ``None`` for featureless input
            (source ``j`` is the one-hot vector ``e_j``; ``in = num_src``).
        weight (Tensor): ``[R, in, out]``; ``[R, blocks, in/blocks, out/blocks]`` (block-diagonal);
            or, with ``comp``, the bases ``[B, in, out]``.
        comp (Tensor, optional): ``[R, B]`` basis coefficients :math:`a_{rb}`.
        aggr (str): ``'mean'`` (default), ``'sum'``, ``'max'`` or ``'min'``.
        strategy (str): ``'auto'`` (default: :func:`choose_strategy`), ``'pairs'``,
            ``'aggregate'`` or ``'transform'``.
        tile_size (int, optional): rows per tile for ``'pairs'``.

    Shapes:
        ``x``: :math:`(N_{src}, F_{in})` -> :math:`(N_{dst}, F_{out})`.
    """
    if aggr == 'add':
        aggr = 'sum'
    if aggr not in AGGRS:
        raise ValueError(f"aggr must be one of 'sum', 'mean', 'max', 'min', got {aggr!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f'strategy must be one of {STRATEGIES}, got {strategy!r}')
    blocks = weight.dim() == 4
    bases = comp is not None
    if blocks and bases:
        raise ValueError('comp (basis coefficients) cannot be combined with block weights')
    featureless = x is None
    if featureless and blocks:
        raise ValueError(
            'block-diagonal weights need float features; featureless input (x=None or node ids) '
            'works with plain or basis weights'
        )
    if bases and (comp.dim() != 2 or comp.size(0) != graph.num_relations):
        raise ValueError(
            f'comp must have shape [num_relations, num_bases] = [{graph.num_relations}, B], '
            f'got {tuple(comp.shape)}'
        )
    if bases and comp.size(1) != weight.size(0):
        raise ValueError(f'comp has {comp.size(1)} bases but weight has {weight.size(0)}')
    if not bases and weight.size(0) != graph.num_relations:
        raise ValueError(
            f'weight must hold one matrix per relation ({graph.num_relations}), '
            f'got {weight.size(0)}'
        )
    num_blocks = weight.size(1) if blocks else None
    in_channels = weight.size(1) * weight.size(2) if blocks else weight.size(1)
    out_channels = weight.size(-1) * (num_blocks or 1)
    if not featureless and (x.dim() != 2 or x.size(1) != in_channels or x.size(0) != graph.num_src):
        raise ValueError(
            f'x must have shape [num_src, in] = [{graph.num_src}, {in_channels}], '
            f'got {tuple(x.shape)}'
        )
    if featureless and in_channels != graph.num_src:
        raise ValueError(
            f'featureless input needs weight rows for every source node: in_channels = '
            f'{in_channels} but the graph has {graph.num_src} source nodes'
        )
    key = ('costs', in_channels, out_channels, comp.size(1) if bases else None, num_blocks)
    costs = graph._cached(
        (*key, aggr, featureless),
        lambda: strategy_costs(
            graph,
            in_channels,
            out_channels,
            num_bases=comp.size(1) if bases else None,
            num_blocks=num_blocks,
            aggr=aggr,
            featureless=featureless,
        ),
    )
    if strategy == 'auto':
        strategy = min(costs, key=costs.get)
    elif strategy not in costs:
        raise ValueError(
            f'strategy {strategy!r} does not apply here (aggr={aggr!r}, '
            f'{"featureless" if featureless else "features"}, '
            f'{"bases" if bases else "blocks" if blocks else "plain"}); use one of {sorted(costs)}'
        )
    if graph.num_edges == 0 or graph.num_dst == 0:
        return zeros_touching(graph.num_dst, out_channels, weight, comp, x)
    if featureless:
        return _featureless(graph, weight, comp, aggr)
    if strategy == 'pairs':
        tile, chunk_tiles = graph._cached(
            ('layout', *key, tile_size),
            lambda: pair_layout(
                graph, in_channels, out_channels, comp.size(1) if bases else None, tile_size
            ),
        )
        plan = graph.pair_plan(tile, chunk_tiles)
        if aggr in ('sum', 'mean'):
            values = graph._cached(
                ('pair_values', tile, chunk_tiles, aggr, x.dtype),
                lambda: plan.values(graph.edge_scale(aggr, x.dtype)),
            )
            return pairs_matmul(plan, x, weight, comp, values)
        messages = x.index_select(0, plan.src)
        hidden = _reduce_into(plan.layout.num_slots, plan.slot_of_edge, messages, aggr)
        return pairs_matmul(plan, hidden, weight, comp)
    if strategy == 'aggregate':
        return _aggregate(graph, x, weight, comp, aggr)
    return _transform(graph, x, weight, comp, aggr)


def _mix_bases(graph: RelationalGraph, aggr: str, comp: Tensor, x: Tensor) -> Tensor:
    r"""``[num_dst, B * in]``: block ``b`` is ``M_b @ x``, ``M_b`` weighting an edge of relation
    ``r`` by ``c_{i,r} a_{rb}``. A loop over the B bases (never over relations); each step is one
    sparse product whose coefficient gradient is a sampled product."""
    pattern, _ = graph.edge_pattern('target')
    parts = [
        csr_matmul(pattern, graph.mixed_values('target', aggr, comp[:, b]), x)
        for b in range(comp.size(1))
    ]
    return torch.cat(parts, dim=1)


def _aggregate(graph, x, weight, comp, aggr):
    if comp is not None:
        mixed = _mix_bases(graph, aggr, comp, x)
        return mixed @ weight.reshape(-1, weight.size(-1))
    R, n_dst = graph.num_relations, graph.num_dst
    if aggr in ('sum', 'mean'):
        pattern, _ = graph.edge_pattern('target_relation')
        hidden = csr_matmul(pattern, graph.edge_values('target_relation', aggr, x.dtype), x)
    else:
        index = graph.dst[graph.order] * R + graph.rel[graph.order]
        messages = x.index_select(0, graph.src[graph.order])
        hidden = _reduce_into(n_dst * R, index, messages, aggr)
    if weight.dim() == 3:
        return hidden.view(n_dst, -1) @ weight.reshape(-1, weight.size(2))
    num_blocks, block_in, block_out = weight.shape[1:]
    hidden = hidden.view(n_dst, R, num_blocks, block_in)
    out = torch.einsum('nrbi,rbio->nbo', hidden, weight)
    return out.reshape(n_dst, num_blocks * block_out)


def _transform(graph, x, weight, comp, aggr):
    if comp is not None:
        pattern, _ = graph.edge_pattern('target')
        out = None
        for b in range(comp.size(1)):  # over bases, never relations
            values = graph.mixed_values('target', aggr, comp[:, b])
            part = csr_matmul(pattern, values, x @ weight[b])
            out = part if out is None else out + part
        return out
    if weight.dim() == 3:
        transformed = torch.matmul(x.unsqueeze(0), weight)  # [R, N_src, out]
    else:
        num_blocks, block_in, _ = weight.shape[1:]
        blocks = x.view(x.size(0), num_blocks, block_in)
        transformed = torch.einsum('nbi,rbio->rnbo', blocks, weight)
    transformed = transformed.reshape(graph.num_relations * graph.num_src, -1)
    pattern, _ = graph.edge_pattern('relation_source')
    return csr_matmul(pattern, graph.edge_values('relation_source', aggr, x.dtype), transformed)


def _featureless(graph, weight, comp, aggr):
    """Source ``j`` is ``e_j``: the message of an edge of type ``r`` is row ``j`` of ``W_r``."""
    out_channels, dtype = weight.size(-1), weight.dtype
    if aggr in ('sum', 'mean'):
        if comp is None:
            pattern, _ = graph.edge_pattern('relation_source')
            values = graph.edge_values('relation_source', aggr, dtype)
            return csr_matmul(pattern, values, weight.reshape(-1, out_channels))
        pattern, _ = graph.edge_pattern('target')
        out = None
        for b in range(comp.size(1)):  # over bases, never relations
            values = graph.mixed_values('target', aggr, comp[:, b])
            part = csr_matmul(pattern, values, weight[b])
            out = part if out is None else out + part
        return out
    # max / min: form each edge's message, reduce per pair, sum the pairs of each target.
    src, rel = graph.src[graph.order], graph.rel[graph.order]
    if comp is None:
        messages = weight.reshape(-1, out_channels).index_select(0, rel * graph.num_src + src)
    else:
        num_bases = comp.size(1)

        def build():
            # Row e holds B entries, one per basis: message_e = sum_b comp[r_e, b] V_b[src_e].
            row = torch.arange(graph.num_edges, device=graph.device).repeat_interleave(num_bases)
            basis = torch.arange(num_bases, device=graph.device).repeat(graph.num_edges)
            col = basis * graph.num_src + src.repeat_interleave(num_bases)
            pattern, entry = CSRPattern.from_coo(
                row, col, graph.num_edges, num_bases * graph.num_src, is_sorted=True
            )
            return pattern, entry, rel.repeat_interleave(num_bases) * num_bases + basis

        pattern, entry, comp_index = graph._cached(('edge_bases', num_bases), build)
        values = pattern.merge(entry, comp.reshape(-1).index_select(0, comp_index))
        messages = csr_matmul(pattern, values, weight.reshape(-1, out_channels))
    plan = graph.pair_plan(1, max(1, graph.num_pairs))
    hidden = _reduce_into(plan.layout.num_slots, plan.slot_of_edge, messages, aggr)
    return hidden.new_zeros(graph.num_dst, out_channels).index_add(0, plan.dst_of_slot, hidden)


# --- the relational product with static shapes (the torch.compile path) -------------------------


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


@dataclass(eq=False)
class StaticRelationalPlan:
    """What :func:`static_relational_matmul` reads from a :class:`RelationalGraph`, built
    beforehand (eagerly, by :func:`static_plan`) so that a compiled forward sees only Python
    ints and ready index tensors: no sort, no data-dependent size, no value read back.

    Edges are in the graph's (relation, target, source) order: ``src``, ``dst``, ``rel``, the
    mean scale ``1 / |N_r(i)|`` (float64), the (target, relation) pair of each edge and, with
    features, the tile slot of each edge (pairs padded to tiles of one relation, as
    :meth:`RelationalGraph.pair_plan`).
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
    order = graph.order
    plan = StaticRelationalPlan(
        num_src=graph.num_src,
        num_dst=graph.num_dst,
        num_relations=graph.num_relations,
        src=graph.src[order],
        dst=graph.dst[order],
        rel=graph.rel[order],
        scale=graph._mean_scale,
        pair=graph.pair_of_sorted,
        pair_dst=graph.pair_dst,
        num_pairs=graph.num_pairs,
    )
    if in_channels is not None and out_channels is not None and graph.num_edges:
        tile, chunk_tiles = pair_layout(graph, in_channels, out_channels, num_bases)
        pairs = graph.pair_plan(tile, chunk_tiles)
        plan.slot = pairs.slot_of_edge
        plan.tile_type = pairs.layout.tile_type
        plan.dst_of_slot = pairs.dst_of_slot
        plan.num_slots = pairs.layout.num_slots
    return plan


def _mixed(weight: Tensor, comp: Tensor | None) -> Tensor:
    """``[R, in, out]`` from bases ``[B, in, out]`` and coefficients ``[R, B]`` (or ``weight``)."""
    if comp is None:
        return weight
    return (comp @ weight.reshape(weight.size(0), -1)).view(-1, *weight.shape[1:])


def _reduce_rows(rows: int, index: Tensor, values: Tensor, aggr: str) -> Tensor:
    """``out[index[k]] (+)= values[k]``: a sum for ``'sum'``/``'mean'`` (scale applied by the
    caller), else the element-wise max/min (rows nothing reaches stay zero)."""
    out = values.new_zeros(rows, values.size(1))
    if aggr in ('sum', 'mean'):
        return out.index_add(0, index, values)
    reduce = 'amax' if aggr == 'max' else 'amin'
    return out.scatter_reduce(
        0, index.view(-1, 1).expand(-1, values.size(1)), values, reduce=reduce, include_self=False
    )


def _check_static_args(x, weight, comp, aggr, num_src, num_relations):
    if aggr == 'add':
        aggr = 'sum'
    if aggr not in AGGRS:
        raise ValueError(f"aggr must be one of 'sum', 'mean', 'max', 'min', got {aggr!r}")
    if comp is not None and weight.dim() == 4:
        raise ValueError('comp (basis coefficients) cannot be combined with block weights')
    if x is None and weight.dim() == 4:
        raise ValueError(
            'block-diagonal weights need float features; featureless input (x=None or node ids) '
            'works with plain or basis weights'
        )
    if (weight.size(0) if comp is None else comp.size(0)) != num_relations:
        raise ValueError(
            f'weight (or comp) must hold one row per relation ({num_relations}), got '
            f'{tuple((weight if comp is None else comp).shape)}'
        )
    return aggr


def static_relational_matmul(
    plan: StaticRelationalPlan,
    x: Tensor | None,
    weight: Tensor,
    comp: Tensor | None = None,
    *,
    aggr: str = 'mean',
) -> Tensor:
    r""":func:`relational_matmul` on a :class:`StaticRelationalPlan`, in torch ops of static
    shape only: what a layer runs inside ``torch.compile`` (``fullgraph=True``), where the
    eager strategies' data-dependent chunking cannot be traced. Same sum, same result:

    with float features the edges are aggregated into their (target, relation) pairs padded to
    tiles of one relation, every tile is multiplied by its relation's weight in one ``bmm`` (with
    bases, each tile's weight is mixed from the bases) and the pairs are added into their targets;
    without features (``x=None``), row ``j`` of :math:`\mathbf{W}_r` is the message of an edge
    ``j -> i`` of type ``r`` (with bases the ``[R, num_src, out]`` weights are mixed first, as
    PyG does).

    Shapes:
        ``x``: :math:`(N_{src}, F_{in})` or :obj:`None` -> :math:`(N_{dst}, F_{out})`.
    """
    aggr = _check_static_args(x, weight, comp, aggr, plan.num_src, plan.num_relations)
    out_channels = weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1)
    if plan.num_edges == 0 or plan.num_dst == 0:
        return zeros_touching(plan.num_dst, out_channels, weight, comp, x)
    scale = plan.scale.to(weight.dtype).unsqueeze(-1) if aggr == 'mean' else None
    if x is None:
        mixed = _mixed(weight, comp).reshape(-1, out_channels)
        messages = mixed.index_select(0, plan.rel * plan.num_src + plan.src)
        if aggr in ('sum', 'mean'):
            if scale is not None:
                messages = messages * scale
            return _reduce_rows(plan.num_dst, plan.dst, messages, aggr)
        hidden = _reduce_rows(plan.num_pairs, plan.pair, messages, aggr)
        return _reduce_rows(plan.num_dst, plan.pair_dst, hidden, 'sum')
    if plan.slot is None:
        raise ValueError(
            'this plan has no tile layout: build it with static_plan(graph, in_channels, '
            'out_channels) for float features'
        )
    messages = x.index_select(0, plan.src)
    if scale is not None:
        messages = messages * scale
    hidden = _reduce_rows(plan.num_slots, plan.slot, messages, aggr)
    if comp is None:
        per_tile = weight.index_select(0, plan.tile_type)
    else:
        mixed = comp.index_select(0, plan.tile_type) @ weight.reshape(weight.size(0), -1)
        per_tile = mixed.view(-1, *weight.shape[1:])
    y = _tile_forward(hidden, per_tile)
    return _reduce_rows(plan.num_dst, plan.dst_of_slot, y, 'sum')


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
    r""":func:`relational_matmul` on raw edges, with no plan: torch ops of static shape only,
    so it traces into one graph under ``torch.compile``. What a layer without a cached plan runs
    there. The counts :math:`|\mathcal{N}_r(i)|` come from one scatter into ``num_dst * R`` slots;
    with float features the edges are aggregated into a dense ``[num_dst, R * in]`` and
    multiplied by the stacked weights in one GEMM, or, when ``num_src * out < num_dst * in`` and
    the aggregation is a sum or mean, transformed first (``x @ W_r`` for every ``r``) and summed
    per edge. With bases the ``[R, in, out]`` weights are mixed first (as PyG does); a cached plan
    (:func:`static_relational_matmul`) avoids that.

    Args:
        src, dst, rel (Tensor): ``[E]`` source, target and relation of each edge (validated).
        num_src, num_dst, num_relations (int): sizes.
        x, weight, comp, aggr: as :func:`relational_matmul`.

    Shapes:
        ``x``: :math:`(N_{src}, F_{in})` or :obj:`None` -> :math:`(N_{dst}, F_{out})`.
    """
    aggr = _check_static_args(x, weight, comp, aggr, num_src, num_relations)
    R = num_relations
    out_channels = weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1)
    if src.numel() == 0 or num_dst == 0:
        return zeros_touching(num_dst, out_channels, weight, comp, x)
    src, dst, rel = src.long(), dst.long(), rel.long()
    key = dst * R + rel
    scale = None
    if aggr == 'mean':
        count = torch.zeros(num_dst * R, dtype=weight.dtype, device=weight.device)
        count = count.index_add(0, key, torch.ones_like(key, dtype=weight.dtype))
        scale = (1.0 / count.index_select(0, key)).unsqueeze(-1)
    mixed = _mixed(weight, comp)
    if x is None:
        messages = mixed.reshape(-1, out_channels).index_select(0, rel * num_src + src)
        if aggr in ('sum', 'mean'):
            if scale is not None:
                messages = messages * scale
            return _reduce_rows(num_dst, dst, messages, aggr)
        hidden = _reduce_rows(num_dst * R, key, messages, aggr)
        return hidden.view(num_dst, R, out_channels).sum(1)
    in_channels = x.size(1)
    if (
        mixed.dim() == 3
        and aggr in ('sum', 'mean')
        and num_src * out_channels < num_dst * in_channels
    ):
        transformed = x @ mixed.permute(1, 0, 2).reshape(in_channels, R * out_channels)
        messages = transformed.view(num_src * R, out_channels).index_select(0, src * R + rel)
        if scale is not None:
            messages = messages * scale
        return _reduce_rows(num_dst, dst, messages, 'sum')
    messages = x.index_select(0, src)
    if scale is not None:
        messages = messages * scale
    hidden = _reduce_rows(num_dst * R, key, messages, aggr)
    if mixed.dim() == 3:
        return hidden.view(num_dst, R * in_channels) @ mixed.reshape(R * in_channels, -1)
    num_blocks, block_in, block_out = mixed.shape[1:]
    hidden = hidden.view(num_dst, R, num_blocks, block_in)
    out = torch.einsum('nrbi,rbio->nbo', hidden, mixed)
    return out.reshape(num_dst, num_blocks * block_out)
