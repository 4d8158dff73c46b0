from itertools import product

import pytest
import torch

from graphops.nn.conv.gt_conv import GTConv
from graphops.testing import awkward_graphs, dense_adjacency, random_graph, tolerance
from graphops.testing.gtn import dense_edge_type_stack, dense_gt_conv


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny graphs: waking a thread pool costs more than the work (far more on a shared box).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


NUM_TYPES = 3
GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]


def typed(graph, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, NUM_TYPES, (graph.edge_index.size(1),), generator=gen)


def dense_output(edge_index, value, num_nodes):
    return torch.stack([dense_adjacency(edge_index, num_nodes, v) for v in value])


@pytest.mark.parametrize(
    'graph,identity,weighted,dtype',
    list(product(GRAPHS, [True, False], [True, False], [torch.float32, torch.float64])),
    ids=str,
)
def test_matches_dense_reference(graph, identity, weighted, dtype):
    torch.manual_seed(0)
    conv = GTConv(NUM_TYPES, 2, identity=identity).to(dtype)
    torch.nn.init.normal_(conv.weight)
    edge_type = typed(graph)
    weight = graph.edge_weight.to(dtype) if weighted else None
    edge_index, value = conv(graph.edge_index, edge_type, graph.num_nodes, weight)
    assert value.shape == (2, edge_index.size(1)) and value.dtype == dtype
    # coalesced, sorted by (target, source)
    key = edge_index[1] * graph.num_nodes + edge_index[0]
    assert bool((key[1:] > key[:-1]).all())
    stack = dense_edge_type_stack(
        graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES, weight, identity
    )
    expected = dense_gt_conv(stack, conv.weight.detach().double())
    got = dense_output(edge_index, value.detach().double(), graph.num_nodes)
    torch.testing.assert_close(got, expected, **tolerance(dtype))


@pytest.mark.parametrize('identity', [True, False])
def test_gradient_matches_dense(identity):
    graph = GRAPHS[0]
    edge_type = typed(graph, seed=3)
    conv = GTConv(NUM_TYPES, 3, identity=identity).double()
    torch.nn.init.normal_(conv.weight)
    edge_weight = graph.edge_weight.clone().requires_grad_()
    edge_index, value = conv(graph.edge_index, edge_type, graph.num_nodes, edge_weight)
    probe = torch.randn(3, graph.num_nodes, graph.num_nodes, dtype=torch.float64)
    (dense_output(edge_index, value, graph.num_nodes) * probe).sum().backward()

    weight = conv.weight.detach().clone().requires_grad_()
    edge_weight_ref = graph.edge_weight.clone().requires_grad_()
    stack = dense_edge_type_stack(
        graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES, edge_weight_ref, identity
    )
    (dense_gt_conv(stack, weight) * probe).sum().backward()
    torch.testing.assert_close(conv.weight.grad, weight.grad)
    torch.testing.assert_close(edge_weight.grad, edge_weight_ref.grad)


def test_gradcheck_weight():
    graph = GRAPHS[2]
    edge_type = typed(graph)

    conv = GTConv(NUM_TYPES, 2).double()

    def run(weight):
        args = (graph.edge_index, edge_type, graph.num_nodes)
        return torch.func.functional_call(conv, {'weight': weight}, args)[1]

    assert torch.autograd.gradcheck(
        run, (torch.randn(2, NUM_TYPES + 1, dtype=torch.float64, requires_grad=True),)
    )


def test_empty_edge_type_keeps_its_softmax_share():
    # Documented handling: type 2 has no edges; A_2 = 0, so its softmax share adds nothing.
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    edge_type = torch.tensor([0, 1, 1])
    conv = GTConv(3, 1, identity=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[0.0, 0.0, 2.0]]))
    _, value = conv(edge_index, edge_type, 3)
    share = torch.softmax(conv.weight.detach(), 1)[0]
    torch.testing.assert_close(
        value[0].sort().values, torch.stack([share[0], share[1], share[1]]).sort().values
    )
    assert float(value.sum()) < 1.0  # the empty type's share is not redistributed
    assert conv.attention().shape == (1, 3)


def test_zero_edges_gives_identity_only():
    conv = GTConv(2, 2)
    edge_index, value = conv(
        torch.empty(2, 0, dtype=torch.long), torch.empty(0, dtype=torch.long), 4
    )
    assert edge_index.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    torch.testing.assert_close(value, conv.attention()[:, -1:].expand(2, 4))


def test_attention_and_reset_parameters():
    conv = GTConv(4, 3)
    assert conv.weight.shape == (3, 5)
    torch.testing.assert_close(conv.attention().sum(1), torch.ones(3))
    assert float(conv.weight.std()) < 0.05  # N(0, 0.01^2): a nearly uniform start
    conv.reset_parameters(std=1.0)
    assert float(conv.weight.std()) > 0.2


def test_repr():
    assert repr(GTConv(8, 2)) == 'GTConv(8, 2, identity=True)'
    assert repr(GTConv(3, 1, identity=False)) == 'GTConv(3, 1, identity=False)'
    assert repr(GTConv(3, 1, cached=True)) == 'GTConv(3, 1, identity=True, cached=True)'


def test_reads_the_edge_type_stack_transform():
    from torch_geometric.data import HeteroData

    from graphops.transforms.to_edge_type_stack import to_edge_type_stack

    data = HeteroData()
    data['paper'].num_nodes = 3
    data['author'].num_nodes = 2
    data['paper', 'written_by', 'author'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 1]])
    data['author', 'writes', 'paper'].edge_index = torch.tensor([[0, 0, 1], [0, 1, 2]])
    stacked = to_edge_type_stack(data)
    conv = GTConv(stacked.num_relations, 2)
    edge_index, value = conv(stacked.edge_index, stacked.edge_type, stacked.num_nodes)
    assert value.shape == (2, 6 + 5)


# --- the cached pattern and torch.compile ------------------------------------------------------


def compile_inputs(seed=5):
    graph = random_graph(12, 50, seed=seed)
    edge_type = typed(graph, seed=seed)
    edge_weight = torch.rand(graph.edge_index.size(1), dtype=torch.float64, requires_grad=True)
    return graph.edge_index, edge_type, edge_weight


def test_cached_pattern_is_reused_and_rebuilt_for_another_graph():
    edge_index, edge_type, edge_weight = compile_inputs()
    conv = GTConv(NUM_TYPES, 2, cached=True).double()
    plain = GTConv(NUM_TYPES, 2).double()
    plain.load_state_dict(conv.state_dict())
    out = conv(edge_index, edge_type, 12, edge_weight)
    pattern = conv._cache.value[0]
    again = conv(edge_index, edge_type, 12, edge_weight.detach() * 2)
    assert conv._cache.value[0] is pattern
    expected = plain(edge_index, edge_type, 12, edge_weight.detach() * 2)
    assert torch.equal(again[0], expected[0]) and torch.allclose(again[1], expected[1])
    assert torch.equal(out[0], expected[0])
    flipped = edge_index.flip(0)
    conv(flipped, edge_type, 12)
    assert conv._cache.value[0] is not pattern
    conv.reset_cache()
    assert not conv._cache
    with pytest.raises(ValueError, match='needs cached=True'):
        plain.prepare(edge_index, edge_type, 12)


@pytest.mark.parametrize(
    'identity,inductor',
    [(True, True), (False, False), pytest.param(False, True, marks=pytest.mark.slow)],
)
def test_prepared_layer_compiles_without_a_graph_break_and_equals_eager(identity, inductor):
    edge_index, edge_type, edge_weight = compile_inputs()
    conv = GTConv(NUM_TYPES, 2, identity=identity, cached=True).double()
    conv.prepare(edge_index, edge_type, 12)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(conv)(edge_index, edge_type, 12, edge_weight)
    assert explained.graph_break_count == 0, explained.break_reasons

    def run(module):
        conv.zero_grad()
        weight = edge_weight.detach().clone().requires_grad_()
        index, value = module(edge_index, edge_type, 12, weight)
        value.pow(2).sum().backward()
        return [index, value.detach(), weight.grad, conv.weight.grad]

    expected = run(conv)
    for backend in ('aot_eager', 'inductor') if inductor else ('aot_eager',):
        torch._dynamo.reset()
        got = run(torch.compile(conv, backend=backend, fullgraph=True))
        assert torch.equal(got[0], expected[0])
        for a, b in zip(got[1:], expected[1:], strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    other = edge_type.clone()
    other[0] = (other[0] + 1) % NUM_TYPES
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match='differs from the one its pattern was built'):
        torch.compile(conv, backend='aot_eager', fullgraph=True)(edge_index, other, 12)


# --- bad input ----------------------------------------------------------------------------


@pytest.fixture
def small():
    return torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.tensor([0, 1, 1])


def test_edge_type_out_of_range_raises(small):
    edge_index, _ = small
    with pytest.raises(
        ValueError, match='edge_type contains index 3, out of range for num_edge_types'
    ):
        GTConv(3, 1)(edge_index, torch.tensor([0, 3, 1]), 3)


def test_negative_edge_type_raises(small):
    edge_index, _ = small
    with pytest.raises(ValueError, match='edge_type contains a negative index'):
        GTConv(3, 1)(edge_index, torch.tensor([0, -1, 1]), 3)


def test_edge_type_wrong_length_or_dtype_raises(small):
    edge_index, _ = small
    with pytest.raises(ValueError, match='edge_type has 2 entries'):
        GTConv(3, 1)(edge_index, torch.tensor([0, 1]), 3)
    with pytest.raises(TypeError, match='edge_type must hold integer indices'):
        GTConv(3, 1)(edge_index, torch.tensor([0.0, 1.0, 1.0]), 3)


def test_mismatched_num_nodes_raises(small):
    edge_index, edge_type = small
    with pytest.raises(
        ValueError,
        match=r'edge_index\[0\] \(sources\) contains index 2, out of range for num_nodes = 2',
    ):
        GTConv(2, 1)(edge_index, edge_type, 2)


def test_bad_edge_weight_raises(small):
    edge_index, edge_type = small
    with pytest.raises(ValueError, match='NaN or Inf'):
        GTConv(2, 1)(edge_index, edge_type, 3, torch.tensor([1.0, float('nan'), 1.0]))
    with pytest.raises(ValueError, match='edge_weight has 2 entries'):
        GTConv(2, 1)(edge_index, edge_type, 3, torch.tensor([1.0, 1.0]))


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match='num_edge_types must be >= 1'):
        GTConv(0, 1)
    with pytest.raises(TypeError, match='num_channels must be an int'):
        GTConv(2, 1.5)
    with pytest.raises(TypeError, match='identity must be a bool'):
        GTConv(2, 1, identity=1)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('identity', [True, False])
@pytest.mark.parametrize('weighted', [True, False])
def test_device_matches_cpu(matches_cpu, identity, weighted):
    graph = GRAPHS[0]
    torch.manual_seed(0)
    conv = GTConv(NUM_TYPES, 3, identity=identity).double()
    torch.nn.init.normal_(conv.weight)
    weight = graph.edge_weight.clone().requires_grad_() if weighted else None
    matches_cpu(conv, graph.edge_index, typed(graph), graph.num_nodes, weight, grad=True)
