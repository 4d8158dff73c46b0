import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from graphops.ops.relational import (
    RelationalGraph,
    choose_strategy,
    dense_relational_matmul,
    pair_layout,
    pair_plan,
    pairs_matmul,
    relational_matmul,
    static_plan,
    static_relational_matmul,
    strategy_costs,
    tile_layout,
    zeros_touching,
)
from graphops.testing import random_graph
from graphops.testing.rgcn import dense_rgcn


def random_relational(num_nodes=12, num_edges=50, num_relations=4, seed=0):
    graph = random_graph(num_nodes, num_edges, seed=seed)  # self-loops and duplicates included
    gen = torch.Generator().manual_seed(seed)
    edge_type = torch.randint(0, num_relations, (graph.edge_index.size(1),), generator=gen)
    return graph.edge_index, edge_type


def relational_graph(edge_index, edge_type, num_nodes, num_relations):
    src, dst = edge_index
    return RelationalGraph(src, dst, edge_type, num_nodes, num_nodes, num_relations)


# --- tile layout ------------------------------------------------------------------------------


def test_tile_layout_pads_each_type_to_whole_tiles():
    layout = tile_layout(torch.tensor([3, 0, 5]), 2)
    assert layout.tile_type.tolist() == [0, 0, 2, 2, 2]
    assert layout.slot.tolist() == [0, 1, 2, 4, 5, 6, 7, 8]
    assert layout.num_slots == 10
    with pytest.raises(ValueError, match='tile_size'):
        tile_layout(torch.tensor([1]), 0)


# --- relational graph and pairs -------------------------------------------------------------------


def test_relational_graph_counts_pairs():
    edge_index, edge_type = random_relational(num_nodes=10, num_edges=60, num_relations=3)
    graph = relational_graph(edge_index, edge_type, 10, 3)
    keys = edge_type * 10 + edge_index[1]
    unique, counts = torch.unique(keys, return_counts=True)
    assert graph.num_pairs == unique.numel()
    assert torch.equal(graph.pair_count, counts)
    assert torch.equal(graph.pair_rel * 10 + graph.pair_dst, unique)
    scale = graph.edge_scale('mean', torch.float64)
    sorted_keys = keys[graph.order]
    expected = 1.0 / counts[torch.searchsorted(unique, sorted_keys)].double()
    assert torch.allclose(scale, expected)
    assert torch.equal(graph.edge_scale('sum', torch.float32), torch.ones(keys.numel()))


@pytest.mark.parametrize('kind', ['plain', 'blocks', 'bases'])
@pytest.mark.parametrize('aggregate', [True, False])
@pytest.mark.parametrize('tile_size,chunk_tiles', [(2, 3), (16, 100)])
def test_pairs_matmul_gradcheck(kind, aggregate, tile_size, chunk_tiles):
    gen = torch.Generator().manual_seed(2)
    edge_index, edge_type = random_relational(num_nodes=7, num_edges=20, num_relations=3)
    graph = relational_graph(edge_index, edge_type, 7, 3)
    plan = pair_plan(graph, tile_size, chunk_tiles)
    comp = None
    if kind == 'plain':
        weight = torch.randn(3, 4, 2, generator=gen, dtype=torch.float64)
    elif kind == 'blocks':
        weight = torch.randn(3, 2, 2, 1, generator=gen, dtype=torch.float64)
    else:
        weight = torch.randn(2, 4, 2, generator=gen, dtype=torch.float64)
        comp = torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_()
    weight.requires_grad_()
    if aggregate:
        source = torch.randn(7, 4, generator=gen, dtype=torch.float64).requires_grad_()
        scale = graph.edge_scale('mean', torch.float64)
    else:
        source = torch.zeros(plan.layout.num_slots, 4, dtype=torch.float64)
        source[plan.layout.slot] = torch.randn(graph.num_pairs, 4, generator=gen).double()
        source.requires_grad_()
        scale = None
    inputs = (source, weight) if comp is None else (source, weight, comp)

    def fn(*args):
        return pairs_matmul(plan, args[0], args[1], args[2] if comp is not None else None, scale)

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


# --- relational_matmul: every strategy equals the dense reference ---------------------------------


def _weights(kind, gen, num_relations, in_channels, out_channels):
    if kind == 'plain':
        return torch.randn(num_relations, in_channels, out_channels, generator=gen).double(), None
    if kind == 'blocks':
        shape = (num_relations, 2, in_channels // 2, out_channels // 2)
        return torch.randn(shape, generator=gen, dtype=torch.float64), None
    weight = torch.randn(3, in_channels, out_channels, generator=gen, dtype=torch.float64)
    return weight, torch.randn(num_relations, 3, generator=gen, dtype=torch.float64)


CASES = [
    (kind, aggr, strategy)
    for kind in ('plain', 'blocks', 'bases')
    for aggr in ('mean', 'sum', 'max', 'min')
    for strategy in ('pairs', 'aggregate', 'transform')
    if not (strategy == 'transform' and aggr in ('max', 'min'))
    and not (kind == 'bases' and aggr in ('max', 'min') and strategy != 'pairs')
]


@pytest.mark.parametrize('kind,aggr,strategy', CASES)
def test_relational_matmul_equals_dense_reference(kind, aggr, strategy):
    gen = torch.Generator().manual_seed(3)
    edge_index, edge_type = random_relational(num_nodes=11, num_edges=45, num_relations=4)
    graph = relational_graph(edge_index, edge_type, 11, 4)
    weight, comp = _weights(kind, gen, 4, 4, 6)
    x = torch.randn(11, 4, generator=gen, dtype=torch.float64)
    out = relational_matmul(graph, x, weight, comp, aggr=aggr, strategy=strategy, tile_size=2)
    expected = dense_rgcn(
        x, edge_index, edge_type, weight, comp=comp, num_blocks=2 if kind == 'blocks' else None,
        aggr=aggr,
    )  # fmt: skip
    assert torch.allclose(out, expected, atol=1e-10)


@pytest.mark.parametrize('aggr', ['mean', 'sum', 'max'])
@pytest.mark.parametrize('bases', [False, True])
def test_relational_matmul_featureless(aggr, bases):
    gen = torch.Generator().manual_seed(4)
    edge_index, edge_type = random_relational(num_nodes=10, num_edges=40, num_relations=3)
    graph = relational_graph(edge_index, edge_type, 10, 3)
    if bases:
        weight = torch.randn(2, 10, 5, generator=gen, dtype=torch.float64)
        comp = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    else:
        weight, comp = torch.randn(3, 10, 5, generator=gen, dtype=torch.float64), None
    out = relational_matmul(graph, None, weight, comp, aggr=aggr)
    expected = dense_rgcn(None, edge_index, edge_type, weight, comp=comp, aggr=aggr)
    assert torch.allclose(out, expected, atol=1e-10)


def test_relational_matmul_rejects_inapplicable_strategy_and_bad_shapes():
    edge_index, edge_type = random_relational()
    graph = relational_graph(edge_index, edge_type, 12, 4)
    x, weight = torch.randn(12, 4), torch.randn(4, 4, 2)
    with pytest.raises(ValueError, match='does not apply'):
        relational_matmul(graph, x, weight, aggr='max', strategy='transform')
    with pytest.raises(ValueError, match='strategy must be one of'):
        relational_matmul(graph, x, weight, strategy='loop')
    with pytest.raises(ValueError, match='aggr must be one of'):
        relational_matmul(graph, x, weight, aggr='median')
    with pytest.raises(ValueError, match='one matrix per relation'):
        relational_matmul(graph, x, torch.randn(3, 4, 2))
    with pytest.raises(ValueError, match='x must have shape'):
        relational_matmul(graph, torch.randn(12, 5), weight)
    with pytest.raises(ValueError, match='comp must have shape'):
        relational_matmul(graph, x, torch.randn(2, 4, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match='block-diagonal weights need float features'):
        relational_matmul(graph, None, torch.randn(4, 2, 6, 1))


def test_strategy_costs_cover_the_valid_strategies():
    edge_index, edge_type = random_relational()
    graph = relational_graph(edge_index, edge_type, 12, 4)
    assert set(strategy_costs(graph, 4, 4)) == {'pairs', 'aggregate', 'transform'}
    assert set(strategy_costs(graph, 4, 4, aggr='max')) == {'pairs', 'aggregate'}
    assert set(strategy_costs(graph, 4, 4, num_bases=2, aggr='max')) == {'pairs'}
    assert set(strategy_costs(graph, 12, 4, featureless=True)) == {'transform'}
    assert choose_strategy(graph, 4, 4) in {'pairs', 'aggregate', 'transform'}


class _LargestOutput(TorchDispatchMode):
    """Records the largest tensor any aten op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, tuple | list) else (out,):
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


@pytest.mark.parametrize(
    'strategy,aggr,featureless',
    [
        ('pairs', 'mean', False),
        ('pairs', 'max', False),
        ('aggregate', 'sum', False),
        ('transform', 'mean', False),
        ('auto', 'mean', True),
        ('auto', 'max', True),
    ],
)
def test_bases_never_form_the_relation_weight_tensor(strategy, aggr, featureless):
    # R * in * out is far larger than any activation here, so any op returning a tensor of that
    # size would have formed the [R, in, out] weights (or their gradient).
    num_relations, num_nodes, num_bases = 64, 12, 2
    in_channels = num_nodes if featureless else 16
    out_channels = 16
    edge_index, edge_type = random_relational(num_nodes, 40, num_relations)
    graph = relational_graph(edge_index, edge_type, num_nodes, num_relations)
    weight = torch.randn(num_bases, in_channels, out_channels, requires_grad=True)
    comp = torch.randn(num_relations, num_bases, requires_grad=True)
    x = None if featureless else torch.randn(num_nodes, in_channels, requires_grad=True)
    tile, chunk_tiles = pair_layout(graph, in_channels, out_channels, num_bases)
    assert chunk_tiles <= num_relations // 2
    with _LargestOutput() as meter:
        out = relational_matmul(graph, x, weight, comp, aggr=aggr, strategy=strategy)
        out.sum().backward()
    assert meter.largest < num_relations * in_channels * out_channels


class _OpCounts(TorchDispatchMode):
    """Counts each aten op, and the outputs with ``numel`` equal to ``size``."""

    def __init__(self, size):
        super().__init__()
        self.size, self.ops, self.of_size = size, {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.ops[name] = self.ops.get(name, 0) + 1
        for item in out if isinstance(out, tuple | list) else (out,):
            self.of_size += isinstance(item, torch.Tensor) and item.numel() == self.size
        return out


@pytest.mark.parametrize('featureless', [True, False])
def test_basis_sum_backward_is_linear_in_the_bases(featureless):
    # R-GCN on AM (40 bases, 1.9M featureless nodes) ran out of 24 GB: the backward of the
    # per-basis sum built the transposed pattern once per basis and every basis' gradient as a
    # full [B, in, out] tensor. Now: one transpose for the graph, one [B, in, out] gradient.
    num_nodes, num_relations, num_bases, out_channels = 30, 5, 6, 4
    in_channels = num_nodes if featureless else 3
    edge_index, edge_type = random_relational(num_nodes, 120, num_relations)
    graph = relational_graph(edge_index, edge_type, num_nodes, num_relations)
    weight = torch.randn(num_bases, in_channels, out_channels, requires_grad=True)
    comp = torch.randn(num_relations, num_bases, requires_grad=True)
    x = None if featureless else torch.randn(num_nodes, in_channels)
    for attempt in range(2):
        out = relational_matmul(graph, x, weight, comp, strategy='transform')
        with _OpCounts(weight.numel()) as counts:
            out.sum().backward()
        sorts = counts.ops.get('sort', 0) + counts.ops.get('argsort', 0)
        assert sorts <= (1 if attempt == 0 else 0), counts.ops  # built once, then cached
        assert counts.of_size <= 2, counts.of_size  # the stacked gradient (and its accumulation)
    weight.grad = comp.grad = None
    reference = dense_rgcn(
        x, edge_index, edge_type, weight, comp=comp, num_nodes=(num_nodes, num_nodes)
    )
    reference.sum().backward()
    expected = weight.grad.clone(), comp.grad.clone()
    weight.grad = comp.grad = None
    relational_matmul(graph, x, weight, comp, strategy='transform').sum().backward()
    torch.testing.assert_close((weight.grad, comp.grad), expected)


# --- static-shape paths (what a compiled layer runs) equal the eager strategies -------------------

STATIC_KINDS = {'plain': (None, None), 'bases': (3, None), 'blocks': (None, 2)}


@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max', 'min'])
@pytest.mark.parametrize('kind', list(STATIC_KINDS))
@pytest.mark.parametrize('featureless', [False, True])
@pytest.mark.parametrize('out_channels', [6, 2])
def test_static_and_dense_paths_equal_relational_matmul(kind, aggr, featureless, out_channels):
    num_bases, num_blocks = STATIC_KINDS[kind]
    if featureless and num_blocks:
        pytest.skip('blocks need features')
    num_nodes, num_relations, in_channels = 12, 4, 4
    edge_index, edge_type = random_relational(num_nodes, 50, num_relations)
    graph = relational_graph(edge_index, edge_type, num_nodes, num_relations)
    gen = torch.Generator().manual_seed(1)
    fin = num_nodes if featureless else in_channels
    x = None if featureless else torch.randn(num_nodes, fin, generator=gen, dtype=torch.float64)
    if num_blocks and out_channels % num_blocks:
        pytest.skip('blocks must divide the channels')
    if num_bases:
        weight = torch.randn(num_bases, fin, out_channels, generator=gen, dtype=torch.float64)
        comp = torch.randn(num_relations, num_bases, generator=gen, dtype=torch.float64)
    elif num_blocks:
        shape = (num_relations, num_blocks, fin // num_blocks, out_channels // num_blocks)
        weight, comp = torch.randn(*shape, generator=gen, dtype=torch.float64), None
    else:
        weight = torch.randn(num_relations, fin, out_channels, generator=gen, dtype=torch.float64)
        comp = None
    expected = relational_matmul(graph, x, weight, comp, aggr=aggr)
    plan = static_plan(graph) if featureless else static_plan(graph, fin, out_channels, num_bases)
    static = static_relational_matmul(plan, x, weight, comp, aggr=aggr)
    dense = dense_relational_matmul(
        edge_index[0], edge_index[1], edge_type, num_nodes, num_nodes, num_relations,
        x, weight, comp, aggr=aggr,
    )  # fmt: skip
    torch.testing.assert_close(static, expected)
    torch.testing.assert_close(dense, expected)


def test_static_paths_give_zero_gradients_without_edges():
    empty = torch.empty(0, dtype=torch.long)
    graph = RelationalGraph(empty, empty, empty, 5, 5, 3)
    weight = torch.randn(3, 4, 2, requires_grad=True)
    x = torch.randn(5, 4, requires_grad=True)
    for out in (
        relational_matmul(graph, x, weight),
        static_relational_matmul(static_plan(graph, 4, 2), x, weight),
        dense_relational_matmul(empty, empty, empty, 5, 5, 3, x, weight),
    ):
        assert torch.equal(out, torch.zeros(5, 2))
        weight.grad = x.grad = None
        out.sum().backward()
        assert torch.equal(weight.grad, torch.zeros_like(weight))
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_zeros_touching_links_only_what_needs_grad():
    a = torch.tensor([float('nan'), 1.0], requires_grad=True)  # NaN never leaks in
    out = zeros_touching(2, 3, a, None, torch.ones(2))
    assert torch.equal(out, torch.zeros(2, 3))
    out.sum().backward()
    assert torch.equal(a.grad, torch.zeros(2))


def test_static_plan_without_layout_refuses_features():
    edge_index, edge_type = random_relational()
    graph = relational_graph(edge_index, edge_type, 12, 4)
    with pytest.raises(ValueError, match='no tile layout'):
        static_relational_matmul(static_plan(graph), torch.randn(12, 4), torch.randn(4, 4, 2))


# --- CUDA (gpu-marked) ---


def _relational(src, dst, edge_type, x, weight, comp, num_nodes, aggr, strategy):
    graph = RelationalGraph(src, dst, edge_type, num_nodes, num_nodes, 4)
    return relational_matmul(graph, x, weight, comp, aggr=aggr, strategy=strategy, tile_size=2)


@pytest.mark.gpu
@pytest.mark.parametrize('kind,aggr,strategy', CASES)
def test_relational_matmul_device_matches_cpu(matches_cpu, kind, aggr, strategy):
    gen = torch.Generator().manual_seed(3)
    edge_index, edge_type = random_relational(num_nodes=11, num_edges=45, num_relations=4)
    weight, comp = _weights(kind, gen, 4, 4, 6)
    weight = weight.requires_grad_()
    comp = None if comp is None else comp.requires_grad_()
    x = torch.randn(11, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    src, dst = edge_index
    matches_cpu(_relational, src, dst, edge_type, x, weight, comp, 11, aggr, strategy, grad=True)
