"""The cost model of the relational strategies and the one place a strategy is chosen."""

from __future__ import annotations

from graphops.ops.relational.graph import RelationalGraph
from graphops.ops.relational.plans import CHUNK_ELEMENTS, choose_tile_size

STRATEGIES = ('auto', 'pairs', 'aggregate', 'transform')

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
    """``(tile_size, chunk_tiles)`` for ``pair_plan``: chunks
    of at most ``graphops.ops.relational.plans.CHUNK_ELEMENTS`` intermediate elements and,
    with bases, at most ``R // 2`` tiles, so mixed weights never reach ``[R, in, out]``."""
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


def choose_strategy(
    graph: RelationalGraph,
    in_channels: int,
    out_channels: int,
    *,
    strategy: str = 'auto',
    num_bases: int | None = None,
    num_blocks: int | None = None,
    aggr: str = 'mean',
    featureless: bool = False,
) -> str:
    """The strategy to run: the cheapest by :func:`strategy_costs` (kept on ``graph`` per call
    shape) for ``strategy='auto'``, else ``strategy`` itself once it is checked to apply."""
    if strategy not in STRATEGIES:
        raise ValueError(f'strategy must be one of {STRATEGIES}, got {strategy!r}')
    key = ('costs', in_channels, out_channels, num_bases, num_blocks, aggr, featureless)
    costs = graph.cached(
        key,
        lambda: strategy_costs(
            graph,
            in_channels,
            out_channels,
            num_bases=num_bases,
            num_blocks=num_blocks,
            aggr=aggr,
            featureless=featureless,
        ),
    )
    if strategy == 'auto':
        return min(costs, key=costs.get)
    if strategy not in costs:
        kind = 'bases' if num_bases else 'blocks' if num_blocks else 'plain'
        raise ValueError(
            f'strategy {strategy!r} does not apply here (aggr={aggr!r}, '
            f'{"featureless" if featureless else "features"}, {kind}); use one of {sorted(costs)}'
        )
    return strategy
