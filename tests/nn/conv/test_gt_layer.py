from itertools import product

import pytest
import torch

from graphops.nn.conv.gt_layer import GTLayer
from graphops.ops.csr import CSR
from graphops.ops.edge_type import EdgeTypeStack
from graphops.testing import awkward_graphs, random_graph, tolerance
from graphops.testing.gtn import dense_edge_type_stack, dense_gt_layer


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


def randomized(layer, seed=0):
    torch.manual_seed(seed)
    for conv in layer.convs():
        torch.nn.init.normal_(conv.weight)
    return layer


def dense(hs, dtype=torch.float64):
    return torch.stack([h.to_dense(dtype) for h in hs])


@pytest.mark.parametrize(
    'graph,identity,topk,rows',
    list(product(GRAPHS, [True, False], [None, 2], [False, True])),
    ids=str,
)
def test_first_then_later_layer_match_dense(graph, identity, topk, rows):
    edge_type = typed(graph)
    first = randomized(GTLayer(NUM_TYPES, 2, True, identity, topk).double(), 0)
    later = randomized(GTLayer(NUM_TYPES, 2, False, identity, topk).double(), 1)
    node_index = None
    if rows:
        node_index = torch.tensor([graph.num_nodes - 1, 0, graph.num_nodes - 1])
    args = (graph.edge_index, edge_type, graph.num_nodes, graph.edge_weight)
    h1 = first(*args, node_index=node_index)
    h2 = later(*args, prev=h1)
    stack = dense_edge_type_stack(
        graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES, graph.edge_weight, identity
    )
    w_first = [c.weight.detach() for c in first.convs()]
    ref1 = dense_gt_layer(stack, w_first, None, node_index, topk)
    ref2 = dense_gt_layer(stack, [later.conv1.weight.detach()], ref1, None, topk)
    assert all(isinstance(h, CSR) for h in h1) and len(h1) == 2
    torch.testing.assert_close(dense(h1), ref1, **tolerance(torch.float64))
    torch.testing.assert_close(dense(h2), ref2, **tolerance(torch.float64))
    # D^{-1}: every non-empty row sums to one
    sums = dense(h2).sum(-1)
    torch.testing.assert_close(sums[sums != 0], torch.ones_like(sums[sums != 0]))


def dense_between(stack, first, later, rows=None):
    """HGB's products in adj_t form: H1 = Qa Qb raw, H2 = Q D^-1 (H1 - diag H1)."""
    q = [
        torch.einsum('ck,kij->cij', torch.softmax(c.weight.detach(), 1), stack)
        for c in [first.conv1, first.conv2, later.conv1]
    ]
    h1 = q[0] @ q[1]
    eye = torch.eye(h1.size(-1), dtype=h1.dtype)
    off = h1 * (1 - eye)
    deg = off.sum(-1, keepdim=True)
    h2 = q[2] @ torch.where(deg == 0, 0.0, off / torch.where(deg == 0, 1.0, deg))
    return h1, h2 if rows is None else h2[:, rows]


@pytest.mark.parametrize('graph,rows', list(product(GRAPHS, [False, True])), ids=str)
def test_between_products_match_hgb(graph, rows):
    edge_type = typed(graph)
    make = lambda first: GTLayer(NUM_TYPES, 2, first, product_norm='between').double()  # noqa: E731
    first, later = randomized(make(True), 0), randomized(make(False), 1)
    args = (graph.edge_index, edge_type, graph.num_nodes, graph.edge_weight)
    node_index = torch.tensor([graph.num_nodes - 1, 0, graph.num_nodes - 1]) if rows else None
    h1 = first(*args)
    h2 = later(*args, prev=h1, node_index=node_index)
    stack = dense_edge_type_stack(
        graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES, graph.edge_weight
    )
    ref1, ref2 = dense_between(stack, first, later, node_index)
    torch.testing.assert_close(dense(h1), ref1, **tolerance(torch.float64))
    torch.testing.assert_close(dense(h2), ref2, **tolerance(torch.float64))


def test_between_prev_rows_cover_the_neighbourhood():
    graph = random_graph(20, 60, seed=3)
    edge_type = typed(graph, seed=3)
    make = lambda first: GTLayer(NUM_TYPES, 2, first, product_norm='between').double()  # noqa: E731
    first, later = randomized(make(True), 0), randomized(make(False), 1)
    args = (graph.edge_index, edge_type, graph.num_nodes)
    full = later(*args, prev=first(*args))
    node_index = torch.tensor([4, 7])
    # the rows of prev the selection reaches: the nodes themselves and their in-neighbours
    target = graph.edge_index[1]
    reach = graph.edge_index[0][(target == 4) | (target == 7)]
    prev_rows = torch.unique(torch.cat([node_index, reach]))
    stack = EdgeTypeStack.build(graph.edge_index, edge_type, graph.num_nodes, None, NUM_TYPES, True)
    h1 = first.propagate(stack, None, prev_rows)
    h2 = later.propagate(stack, h1, node_index, prev_rows=prev_rows)
    torch.testing.assert_close(dense(h2), dense(full)[:, node_index])
    with pytest.raises(ValueError, match='a column of the selection is not a row of prev'):
        later.propagate(
            stack, first.propagate(stack, None, node_index), node_index, prev_rows=node_index
        )
    with pytest.raises(ValueError, match='prev_rows names 2 nodes but prev has'):
        later.propagate(stack, h1, node_index, prev_rows=node_index)
    with pytest.raises(ValueError, match='without prev_rows it needs one per node'):
        later.propagate(stack, h1, node_index)
    with pytest.raises(ValueError, match="prev_rows only applies with product_norm='between'"):
        GTLayer(NUM_TYPES, 2, False).double().propagate(stack, h1, None, prev_rows=prev_rows)
    with pytest.raises(ValueError, match='product_norm must be one of'):
        GTLayer(NUM_TYPES, 2, product_norm='every')
    with pytest.raises(ValueError, match="plans product_norm='each' only"):
        GTLayer(NUM_TYPES, 2, cached=True, product_norm='between').prepare(*args)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_dtype(dtype):
    graph = GRAPHS[0]
    layer = randomized(GTLayer(NUM_TYPES, 2)).to(dtype)
    hs = layer(graph.edge_index, typed(graph), graph.num_nodes, graph.edge_weight.to(dtype))
    assert all(h.value.dtype == dtype for h in hs)
    stack = dense_edge_type_stack(
        graph.edge_index, typed(graph), graph.num_nodes, NUM_TYPES, graph.edge_weight
    )
    ref = dense_gt_layer(stack, [c.weight.detach().double() for c in layer.convs()])
    torch.testing.assert_close(dense(hs), ref, **tolerance(dtype))


@pytest.mark.parametrize('topk', [None, 3])
def test_gradients_match_dense(topk):
    graph = GRAPHS[1]
    edge_type = typed(graph, seed=4)
    first = randomized(GTLayer(NUM_TYPES, 2, topk=topk).double(), 2)
    later = randomized(GTLayer(NUM_TYPES, 2, first=False, topk=topk).double(), 3)
    args = (graph.edge_index, edge_type, graph.num_nodes, graph.edge_weight)
    probe = torch.randn(2, graph.num_nodes, graph.num_nodes, dtype=torch.float64)
    (dense(later(*args, prev=first(*args))) * probe).sum().backward()

    weights = [c.weight.detach().clone().requires_grad_() for c in [*first.convs(), later.conv1]]
    stack = dense_edge_type_stack(
        graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES, graph.edge_weight
    )
    ref = dense_gt_layer(
        stack, [weights[2]], dense_gt_layer(stack, weights[:2], topk=topk), topk=topk
    )
    (ref * probe).sum().backward()
    for conv, weight in zip([*first.convs(), later.conv1], weights):
        torch.testing.assert_close(conv.weight.grad, weight.grad)


def test_gradcheck():
    graph = GRAPHS[3]  # duplicate edges
    edge_type = typed(graph)
    layer = GTLayer(NUM_TYPES, 1).double()

    def run(w1, w2):
        params = {'conv1.weight': w1, 'conv2.weight': w2}
        hs = torch.func.functional_call(
            layer, params, (graph.edge_index, edge_type, graph.num_nodes)
        )
        return hs[0].value

    w = [torch.randn(1, NUM_TYPES + 1, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(run, tuple(w))


def test_attention_and_repr():
    layer = GTLayer(4, 3, first=True)
    assert layer.attention().shape == (2, 3, 5)
    assert GTLayer(4, 3, first=False).attention().shape == (1, 3, 5)
    assert repr(layer) == 'GTLayer(4, 3, first=True, identity=True, topk=None)'
    assert (
        repr(GTLayer(2, 1, False, False, 8)) == 'GTLayer(2, 1, first=False, identity=False, topk=8)'
    )


# --- torch.compile ---------------------------------------------------------------------------


def same_csrs(got, expected, atol):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        assert torch.equal(a.rowptr.long(), b.rowptr.long())
        assert torch.equal(a.col.long(), b.col.long())
        assert torch.allclose(a.value, b.value, atol=atol)


@pytest.mark.parametrize(
    'identity,rows,inductor',
    [
        (True, [5, 0, 11, 5], True),  # one inductor case by default, the rest when slow
        (True, None, False),
        (False, [5, 0, 11, 5], False),
        (False, None, False),
        pytest.param(True, None, True, marks=pytest.mark.slow),
        pytest.param(False, [5, 0, 11, 5], True, marks=pytest.mark.slow),
        pytest.param(False, None, True, marks=pytest.mark.slow),
    ],
)
def test_prepared_layers_compile_without_a_graph_break_and_equal_eager(identity, rows, inductor):
    graph = random_graph(14, 60, seed=9)
    edge_index, edge_type = graph.edge_index, typed(graph, seed=9)
    node_index = None if rows is None else torch.tensor(rows)
    first = GTLayer(NUM_TYPES, 2, identity=identity, cached=True).double()
    later = GTLayer(NUM_TYPES, 2, first=False, identity=identity, cached=True).double()
    weight = torch.rand(edge_index.size(1), dtype=torch.float64)
    first.prepare(edge_index, edge_type, 14, node_index=node_index)
    prev = first(edge_index, edge_type, 14, weight, node_index=node_index)
    later.prepare(edge_index, edge_type, 14, prev=prev)
    calls = [
        (first, (edge_index, edge_type, 14, weight, None, node_index)),
        (later, (edge_index, edge_type, 14, weight, prev)),
    ]
    for layer, args in calls:
        torch._dynamo.reset()
        explained = torch._dynamo.explain(layer)(*args)
        assert explained.graph_break_count == 0, explained.break_reasons
        expected = layer(*args)
        for backend in ('aot_eager', 'inductor') if inductor else ('aot_eager',):
            torch._dynamo.reset()
            same_csrs(torch.compile(layer, backend=backend, fullgraph=True)(*args), expected, 1e-5)

    # gradients reach the selections and the edge weights as in eager mode
    def loss(module):
        first.zero_grad()
        w = weight.clone().requires_grad_()
        out = module(edge_index, edge_type, 14, w, None, node_index)
        sum(h.value.pow(2).sum() for h in out).backward()
        return [w.grad, first.conv1.weight.grad, first.conv2.weight.grad]

    expected = loss(first)
    torch._dynamo.reset()
    got = loss(torch.compile(first, backend='aot_eager', fullgraph=True))
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_prepare_needs_cached_and_exact_products():
    graph = random_graph(8, 20, seed=2)
    args = (graph.edge_index, typed(graph, seed=2), 8)
    for layer in (GTLayer(NUM_TYPES, 2), GTLayer(NUM_TYPES, 2, topk=3, cached=True)):
        with pytest.raises(ValueError, match='needs cached=True and topk=None'):
            layer.prepare(*args)
    assert repr(GTLayer(NUM_TYPES, 2, cached=True)).endswith('topk=None, cached=True)')


# --- bad input ----------------------------------------------------------------------------


@pytest.fixture
def graph_args():
    return torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.tensor([0, 1, 2]), 3


def test_prev_on_first_layer_raises(graph_args):
    layer = GTLayer(NUM_TYPES, 1)
    hs = layer(*graph_args)
    with pytest.raises(ValueError, match='prev must be None for the first layer'):
        layer(*graph_args, prev=hs)


def test_later_layer_needs_matching_prev(graph_args):
    first, later = GTLayer(NUM_TYPES, 2), GTLayer(NUM_TYPES, 2, first=False)
    with pytest.raises(ValueError, match='needs prev'):
        later(*graph_args)
    hs = first(*graph_args)
    with pytest.raises(ValueError, match='list of 2 CSR'):
        later(*graph_args, prev=hs[:1])
    with pytest.raises(ValueError, match='node_index only applies to the first layer'):
        later(*graph_args, prev=hs, node_index=torch.tensor([0]))


def test_prev_with_wrong_width_raises(graph_args):
    edge_index, edge_type, _ = graph_args
    hs = GTLayer(NUM_TYPES, 1)(edge_index, edge_type, 4)
    with pytest.raises(ValueError, match=r'prev\[0\] has shape \(4, 4\)'):
        GTLayer(NUM_TYPES, 1, first=False)(edge_index, edge_type, 3, prev=hs)


def test_node_index_out_of_range_raises(graph_args):
    with pytest.raises(ValueError, match='node_index contains index 3'):
        GTLayer(NUM_TYPES, 1)(*graph_args, node_index=torch.tensor([0, 3]))


def test_edge_type_out_of_range_raises(graph_args):
    edge_index, _, num_nodes = graph_args
    with pytest.raises(ValueError, match='edge_type contains index 5'):
        GTLayer(NUM_TYPES, 1)(edge_index, torch.tensor([0, 5, 1]), num_nodes)


def test_bad_constructor_arguments_raise():
    with pytest.raises(TypeError, match='first must be a bool'):
        GTLayer(2, 1, first='yes')
    with pytest.raises(ValueError, match='topk must be >= 1'):
        GTLayer(2, 1, topk=0)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('topk', [None, 2])
@pytest.mark.parametrize('rows', [False, True])
def test_device_matches_cpu(matches_cpu, device, topk, rows):
    graph = GRAPHS[1]
    edge_type = typed(graph, seed=4)
    args = (graph.edge_index, edge_type, graph.num_nodes, graph.edge_weight)
    node_index = torch.tensor([graph.num_nodes - 1, 0, 3]) if rows else None
    first = randomized(GTLayer(NUM_TYPES, 2, topk=topk).double(), 2)
    hs = matches_cpu(first, *args, node_index=node_index, grad=True)
    later = randomized(GTLayer(NUM_TYPES, 2, first=False, topk=topk).double(), 3)
    prev = [h.with_value(h.value.detach()) for h in first(*args, node_index=node_index)]
    matches_cpu(later, *args, prev=prev, grad=True)
    assert all(h.device.type == device.type for h in hs)


def test_a_product_over_the_memory_budget_fails_cleanly_before_allocating():
    from graphops.nn.models import GTN
    from graphops.ops import ProductTooLargeError, set_memory_budget

    torch.manual_seed(0)
    edge_index = torch.randint(0, 300, (2, 3000))
    edge_type = torch.randint(0, 3, (3000,))
    x = torch.randn(300, 8)
    model = GTN(8, 8, 2, 3, num_channels=2, num_layers=2)
    model(x, edge_index, edge_type)  # fits the default budget
    set_memory_budget(400_000)
    try:
        with pytest.raises(ProductTooLargeError, match='node_index'):
            model(x, edge_index, edge_type)
        # the suggested fix works under the same budget
        model(x, edge_index, edge_type, node_index=torch.arange(5))
    finally:
        set_memory_budget(None)
