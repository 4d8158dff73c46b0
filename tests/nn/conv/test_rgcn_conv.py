import pytest
import torch
from torch_geometric.nn import RGCNConv as PyGRGCNConv

import graphops
from graphops.nn.conv.rgcn_conv import RGCNConv
from graphops.testing import awkward_graphs, random_graph, tolerance
from graphops.testing.rgcn import dense_rgcn

NUM_RELATIONS = 3
KINDS = {'plain': {}, 'bases': {'num_bases': 2}, 'blocks': {'num_blocks': 2}}


def edge_types(num_edges: int, num_relations: int = NUM_RELATIONS, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_relations, (num_edges,), generator=gen)


def random_inputs(num_nodes=10, num_edges=40, channels=4, seed=0, dtype=torch.float64):
    graph = random_graph(num_nodes, num_edges, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, channels, generator=gen, dtype=dtype)
    return x, graph.edge_index, edge_types(graph.edge_index.size(1), seed=seed)


def reference(conv: RGCNConv, x, edge_index, edge_type, x_dst=None, num_nodes=None):
    return dense_rgcn(
        x,
        edge_index,
        edge_type,
        conv.weight,
        comp=conv.comp,
        num_blocks=conv.num_blocks,
        root=conv.root,
        bias=conv.bias,
        aggr=conv.aggr,
        x_dst=x_dst,
        num_nodes=num_nodes,
    )


def grads(module, output, upstream):
    params = list(module.parameters())
    got = torch.autograd.grad(output, params, upstream, allow_unused=True)
    return {n: g for (n, _), g in zip(module.named_parameters(), got)}


# --- equality with the dense reference written from the paper -------------------------------------


@pytest.mark.parametrize('kind', list(KINDS))
@pytest.mark.parametrize('aggr', ['mean', 'add', 'max'])
@pytest.mark.parametrize('strategy', ['auto', 'pairs', 'aggregate', 'transform'])
def test_equals_dense_reference_on_awkward_graphs(kind, aggr, strategy):
    if strategy == 'transform' and aggr == 'max':
        pytest.skip('transform-first is not defined for max (max is taken before the transform)')
    if strategy in ('aggregate', 'transform') and kind == 'bases' and aggr == 'max':
        pytest.skip('max with bases aggregates per pair')
    torch.manual_seed(0)
    conv = RGCNConv(4, 6, NUM_RELATIONS, aggr=aggr, strategy=strategy, **KINDS[kind]).double()
    for graph in awkward_graphs():
        n = graph.num_nodes
        x = torch.randn(n, 4, dtype=torch.float64, requires_grad=True)
        edge_type = edge_types(graph.edge_index.size(1))
        out = conv(x, graph.edge_index, edge_type)
        expected = reference(conv, x, graph.edge_index, edge_type)
        assert out.shape == (n, 6), graph
        assert torch.allclose(out, expected, **tolerance(torch.float64)), graph
        if n == 0:
            continue
        upstream = torch.randn_like(out)
        got, want = grads(conv, out, upstream), grads(conv, expected, upstream)
        for name in want:
            a = got[name] if got[name] is not None else torch.zeros_like(want[name])
            assert torch.allclose(a, want[name], **tolerance(torch.float64)), (graph, name)
        gx = torch.autograd.grad(conv(x, graph.edge_index, edge_type), x, upstream)[0]
        gx_ref = torch.autograd.grad(reference(conv, x, graph.edge_index, edge_type), x, upstream)
        assert torch.allclose(gx, gx_ref[0], **tolerance(torch.float64)), graph


def test_gradcheck_whole_layer():
    x, edge_index, edge_type = random_inputs(num_nodes=6, num_edges=14, channels=2)
    for kwargs in ({}, {'num_bases': 2}):
        conv = RGCNConv(2, 2, NUM_RELATIONS, **kwargs).double()
        params = [x.clone().requires_grad_(), *conv.parameters()]

        def fn(inp, *_, conv=conv):
            return conv(inp, edge_index, edge_type)

        assert torch.autograd.gradcheck(fn, tuple(params), fast_mode=True)


# --- a drop-in for PyG's RGCNConv --------------------------------------------------------------------


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('kind', list(KINDS))
@pytest.mark.parametrize('aggr', ['mean', 'add', 'max'])
def test_matches_pyg_after_loading_its_state_dict(dtype, kind, aggr):
    x, edge_index, edge_type = random_inputs(num_nodes=30, num_edges=150, dtype=dtype)
    torch.manual_seed(1)
    pyg = PyGRGCNConv(4, 6, NUM_RELATIONS, aggr=aggr, **KINDS[kind]).to(dtype)
    ours = RGCNConv(4, 6, NUM_RELATIONS, aggr=aggr, **KINDS[kind]).to(dtype)
    ours.load_state_dict(pyg.state_dict())
    x_a, x_b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, want = ours(x_a, edge_index, edge_type), pyg(x_b, edge_index, edge_type)
    assert torch.allclose(out, want, atol=1e-5 if dtype == torch.float32 else 1e-10)
    upstream = torch.randn_like(out)
    got, expected = grads(ours, out, upstream), grads(pyg, want, upstream)
    for name in expected:
        assert torch.allclose(
            got[name], expected[name], atol=1e-5 if dtype == torch.float32 else 1e-10
        )
    (gx_a,) = torch.autograd.grad(ours(x_a, edge_index, edge_type), x_a, upstream)
    (gx_b,) = torch.autograd.grad(pyg(x_b, edge_index, edge_type), x_b, upstream)
    assert torch.allclose(gx_a, gx_b, atol=1e-5 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize('kind', list(KINDS))
def test_state_dict_round_trip_and_same_initialisation(kind):
    torch.manual_seed(5)
    ours = RGCNConv((4, 6), 6, NUM_RELATIONS, **KINDS[kind])
    torch.manual_seed(5)
    pyg = PyGRGCNConv((4, 6), 6, NUM_RELATIONS, **KINDS[kind])
    ours_state, pyg_state = ours.state_dict(), pyg.state_dict()
    assert list(ours_state) == list(pyg_state)
    for name in pyg_state:
        assert torch.equal(ours_state[name], pyg_state[name]), name
    pyg.load_state_dict(ours_state)
    ours.load_state_dict(pyg_state)


@pytest.mark.parametrize('num_bases', [None, 3])
@pytest.mark.parametrize('aggr', ['mean', 'add', 'max'])
def test_featureless_matches_pyg_and_reference(num_bases, aggr):
    graph = random_graph(9, 40, seed=2)
    edge_type = edge_types(graph.edge_index.size(1))
    torch.manual_seed(2)
    pyg = PyGRGCNConv(9, 5, NUM_RELATIONS, num_bases=num_bases, aggr=aggr).double()
    ours = RGCNConv(9, 5, NUM_RELATIONS, num_bases=num_bases, aggr=aggr).double()
    ours.load_state_dict(pyg.state_dict())
    out = ours(None, graph.edge_index, edge_type)
    assert torch.allclose(out, pyg(None, graph.edge_index, edge_type))
    assert torch.allclose(out, reference(ours, None, graph.edge_index, edge_type))
    upstream = torch.randn_like(out)
    got = grads(ours, out, upstream)
    want = grads(pyg, pyg(None, graph.edge_index, edge_type), upstream)
    for name in want:
        assert torch.allclose(got[name], want[name]), name
    # Node ids pick weight rows: a permuted id vector is the same graph relabelled.
    ids = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        ours(ids, graph.edge_index, edge_type), pyg(ids, graph.edge_index, edge_type)
    )
    assert torch.allclose(
        ours(ids, graph.edge_index, edge_type),
        reference(ours, ids, graph.edge_index, edge_type),
    )


@pytest.mark.parametrize('featureless', [False, True])
def test_bipartite(featureless):
    gen = torch.Generator().manual_seed(3)
    num_src, num_dst = 7, 4
    edge_index = torch.stack(
        [
            torch.randint(0, num_src, (20,), generator=gen),
            torch.randint(0, num_dst, (20,), generator=gen),
        ]
    )
    edge_type = edge_types(20)
    if featureless:
        in_channels = (7, 5)
        x = (torch.arange(num_src), torch.randint(0, 5, (num_dst,), generator=gen))
    else:
        in_channels = (3, 5)
        x = (
            torch.randn(num_src, 3, generator=gen, dtype=torch.float64),
            torch.randn(num_dst, 5, generator=gen, dtype=torch.float64),
        )
    torch.manual_seed(3)
    pyg = PyGRGCNConv(in_channels, 6, NUM_RELATIONS).double()
    ours = RGCNConv(in_channels, 6, NUM_RELATIONS).double()
    ours.load_state_dict(pyg.state_dict())
    out = ours(x, edge_index, edge_type)
    assert out.shape == (num_dst, 6)
    assert torch.allclose(out, pyg(x, edge_index, edge_type))
    expected = reference(ours, x[0], edge_index, edge_type, x_dst=x[1], num_nodes=(7, 4))
    assert torch.allclose(out, expected)


@pytest.mark.skipif(not graphops.ops.has_torch_sparse(), reason='needs torch_sparse')
@pytest.mark.parametrize('num_bases', [None, 2])
def test_sparse_tensor_input_equals_edge_index(num_bases):
    from torch_sparse import SparseTensor

    x, edge_index, edge_type = random_inputs(num_nodes=12, num_edges=50)
    adj_t = SparseTensor(
        row=edge_index[1], col=edge_index[0], value=edge_type, sparse_sizes=(12, 12)
    )
    conv = RGCNConv(4, 6, NUM_RELATIONS, num_bases=num_bases).double()
    expected = conv(x, edge_index, edge_type)
    assert torch.allclose(conv(x, adj_t), expected)
    torch.manual_seed(0)
    pyg = PyGRGCNConv(4, 6, NUM_RELATIONS, num_bases=num_bases).double()
    pyg.load_state_dict(conv.state_dict())
    assert torch.allclose(pyg(x, adj_t), expected)
    with pytest.raises(ValueError, match='edge_type must be None'):
        conv(x, adj_t, edge_type)
    with pytest.raises(ValueError, match='carries no values'):
        conv(x, adj_t.set_value(None))


# --- the plan cache ------------------------------------------------------------------------------


def test_plan_is_kept_for_the_same_graph_and_rebuilt_for_another():
    x, edge_index, edge_type = random_inputs()
    conv = RGCNConv(4, 6, NUM_RELATIONS, cached=True).double()
    plain = RGCNConv(4, 6, NUM_RELATIONS).double()
    plain.load_state_dict(conv.state_dict())
    first = conv(x, edge_index, edge_type)
    graph = conv._cache.value[0]
    assert torch.allclose(first, plain(x, edge_index, edge_type))
    conv(x, edge_index, edge_type)
    assert conv._cache.value[0] is graph  # reused
    other_index, other_type = edge_index.flip(0), edge_type.clone()
    assert torch.allclose(conv(x, other_index, other_type), plain(x, other_index, other_type))
    assert conv._cache.value[0] is not graph
    graph = conv._cache.value[0]
    other_type[0] = (other_type[0] + 1) % NUM_RELATIONS  # in place: a new version
    assert torch.allclose(conv(x, other_index, other_type), plain(x, other_index, other_type))
    assert conv._cache.value[0] is not graph
    conv.reset_cache()
    assert not conv._cache


@pytest.mark.parametrize('flag', ['cached', 'is_sorted'])
def test_prepare_builds_the_plan_a_cached_layer_keeps(flag):
    x, edge_index, edge_type = random_inputs()
    conv = RGCNConv(4, 6, NUM_RELATIONS, **{flag: True}).double()
    if flag == 'is_sorted':  # PyG's flag changes nothing: no plan is kept, prepare refuses
        conv(x, edge_index, edge_type)
        assert not conv._cache
        with pytest.raises(ValueError, match='needs a cached layer'):
            conv.prepare(x, edge_index, edge_type)
        return
    graph = conv.prepare(x, edge_index, edge_type)
    assert graph.num_edges == edge_index.size(1)
    conv(x, edge_index, edge_type)
    assert conv._cache.value[0] is graph


def test_uncached_layer_keeps_no_plan():
    x, edge_index, edge_type = random_inputs()
    conv = RGCNConv(4, 6, NUM_RELATIONS)
    conv(x.float(), edge_index, edge_type)
    assert not conv._cache


# --- shapes, repr, empty inputs --------------------------------------------------------------------


def test_repr():
    # PyG's repr whatever the PyG arguments (PyG's own tests assert it), graphops' options added.
    assert repr(RGCNConv(4, 6, 3)) == 'RGCNConv(4, 6, num_relations=3)'
    assert repr(RGCNConv(4, 6, 3, num_bases=2)) == 'RGCNConv(4, 6, num_relations=3)'
    assert (
        repr(RGCNConv((4, 8), 6, 3, num_blocks=2, aggr='max', root_weight=False, bias=False))
        == 'RGCNConv((4, 8), 6, num_relations=3)'
    )
    assert (
        repr(RGCNConv(4, 6, 3, cached=True, strategy='pairs'))
        == "RGCNConv(4, 6, num_relations=3, cached=True, strategy='pairs')"
    )


def test_no_edges_gives_root_and_bias_and_no_nodes_gives_empty():
    conv = RGCNConv(4, 6, NUM_RELATIONS).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    out = conv(x, torch.empty(2, 0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    assert torch.allclose(out, x @ conv.root + conv.bias)
    empty = conv(x[:0], torch.empty(2, 0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    assert empty.shape == (0, 6)


def test_no_root_no_bias_matches_pyg():
    x, edge_index, edge_type = random_inputs()
    torch.manual_seed(0)
    pyg = PyGRGCNConv(4, 6, NUM_RELATIONS, root_weight=False, bias=False).double()
    ours = RGCNConv(4, 6, NUM_RELATIONS, root_weight=False, bias=False).double()
    ours.load_state_dict(pyg.state_dict())
    assert torch.allclose(ours(x, edge_index, edge_type), pyg(x, edge_index, edge_type))


def test_int32_edge_inputs():
    x, edge_index, edge_type = random_inputs()
    conv = RGCNConv(4, 6, NUM_RELATIONS).double()
    expected = conv(x, edge_index, edge_type)
    assert torch.allclose(conv(x, edge_index.int(), edge_type.int()), expected)


# --- bad inputs: one test each ---------------------------------------------------------------------


@pytest.fixture
def conv():
    return RGCNConv(4, 6, NUM_RELATIONS).double()


@pytest.fixture
def inputs():
    return random_inputs()


def test_edge_type_wrong_length(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(ValueError, match='edge_type has .* but edge_index.size\\(1\\)'):
        conv(x, edge_index, edge_type[:-1])


def test_edge_type_out_of_range(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(ValueError, match='num_relations = 3'):
        conv(x, edge_index, edge_type + NUM_RELATIONS)


def test_edge_type_negative(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(ValueError, match='negative'):
        conv(x, edge_index, edge_type - 1)


def test_edge_type_float(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(TypeError, match='edge_type must hold integer indices'):
        conv(x, edge_index, edge_type.float())


def test_edge_type_missing(conv, inputs):
    x, edge_index, _ = inputs
    with pytest.raises(ValueError, match='edge_type is required'):
        conv(x, edge_index)


def test_edge_index_wrong_shape(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(ValueError, match='shape \\[2, num_edges\\]'):
        conv(x, edge_index.t(), edge_type)


def test_edge_index_float(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(TypeError, match='edge_index must be torch.long'):
        conv(x, edge_index.float(), edge_type)


def test_edge_index_source_beyond_x(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(ValueError, match='edge_index\\[0\\] \\(sources\\)'):
        conv(x[:5], edge_index, edge_type)


def test_edge_index_target_beyond_x_dst(inputs):
    x, edge_index, edge_type = inputs
    conv = RGCNConv(4, 6, NUM_RELATIONS).double()
    with pytest.raises(ValueError, match='edge_index\\[1\\] \\(targets\\)'):
        conv((x, x[:3]), edge_index, edge_type)


def test_edge_index_torch_sparse_layout(conv, inputs):
    x, edge_index, edge_type = inputs
    adj = torch.sparse_coo_tensor(edge_index, torch.ones(edge_index.size(1)), (10, 10))
    with pytest.raises(TypeError, match='torch_sparse.SparseTensor'):
        conv(x, adj, edge_type)


def test_x_wrong_width(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(ValueError, match='x must have shape \\[num_nodes, 4\\]'):
        conv(x[:, :3], edge_index, edge_type)


def test_x_nan(conv, inputs):
    x, edge_index, edge_type = inputs
    x = x.clone()
    x[0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN or Inf'):
        conv(x, edge_index, edge_type)


def test_x_dtype_differs_from_weights(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(TypeError, match='layer weights are torch.float64'):
        conv(x.float(), edge_index, edge_type)


def test_node_ids_out_of_range(inputs):
    _, edge_index, edge_type = inputs
    conv = RGCNConv(10, 6, NUM_RELATIONS)
    with pytest.raises(ValueError, match='x \\(node ids\\)'):
        conv(torch.arange(10) + 1, edge_index, edge_type)


def test_bipartite_tuple_needs_x_dst(conv, inputs):
    x, edge_index, edge_type = inputs
    with pytest.raises(ValueError, match='x_dst'):
        conv((x, None), edge_index, edge_type)


def test_blocks_need_features(inputs):
    _, edge_index, edge_type = inputs
    conv = RGCNConv(10, 6, NUM_RELATIONS, num_blocks=2)
    with pytest.raises(ValueError, match='block-diagonal decomposition needs float'):
        conv(None, edge_index, edge_type)


def test_bases_and_blocks_exclusive():
    with pytest.raises(ValueError, match='exclusive'):
        RGCNConv(4, 6, 3, num_bases=2, num_blocks=2)


def test_blocks_must_divide_channels():
    with pytest.raises(ValueError, match='must divide both in_channels \\(4\\) and out_channels'):
        RGCNConv(4, 6, 3, num_blocks=4)


@pytest.mark.parametrize(
    'kwargs,match',
    [
        ({'aggr': 'median'}, 'aggr must be one of'),
        ({'strategy': 'loop'}, 'strategy must be one of'),
        ({'num_bases': 0}, 'num_bases must be >= 1'),
        ({'num_relations': 0}, 'num_relations must be >= 1'),
        ({'out_channels': -1}, 'out_channels must be >= 1'),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    arguments = {'in_channels': 4, 'out_channels': 6, 'num_relations': 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        RGCNConv(**arguments)


def test_strategy_that_does_not_apply(inputs):
    x, edge_index, edge_type = inputs
    conv = RGCNConv(4, 6, NUM_RELATIONS, aggr='max', strategy='transform').double()
    with pytest.raises(ValueError, match='does not apply'):
        conv(x, edge_index, edge_type)


# --- torch.compile ---------------------------------------------------------------------------------

COMPILE_KINDS = {
    'plain': {},
    'bases': {'num_bases': 2},
    'blocks': {'num_blocks': 2},
    'sum': {'aggr': 'sum'},
    'max': {'aggr': 'max'},
    'bases_min': {'num_bases': 2, 'aggr': 'min'},
}


def compile_inputs(kind: str, featureless: bool, out_channels: int = 6):
    x, edge_index, edge_type = random_inputs(num_nodes=12, num_edges=50)
    if featureless:
        x = None
    conv = RGCNConv(12 if featureless else 4, out_channels, NUM_RELATIONS, **COMPILE_KINDS[kind])
    return conv.double(), x, edge_index, edge_type


def prepared_inputs(kind: str, cached: bool, featureless: bool):
    """:func:`compile_inputs` with the layer's plan prepared when ``cached``."""
    conv, x, edge_index, edge_type = compile_inputs(kind, featureless)
    conv.cached = cached
    if cached:
        conv.prepare(x, edge_index, edge_type)
    return conv, x, edge_index, edge_type


def cases(featureless_too: bool = True):
    for kind in COMPILE_KINDS:
        for cached in (False, True):
            for featureless in (False, True) if featureless_too else (False,):
                if featureless and kind == 'blocks':
                    continue
                yield pytest.param(kind, cached, featureless, id=f'{kind}-{cached}-{featureless}')


@pytest.mark.parametrize('kind,cached,featureless', list(cases()))
def test_no_graph_break(kind, cached, featureless):
    conv, x, edge_index, edge_type = prepared_inputs(kind, cached, featureless)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(conv)(x, edge_index, edge_type)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def compiled_matches_eager(conv, x, edge_index, edge_type, backend, atol=1e-5):
    upstream = torch.randn(conv(x, edge_index, edge_type).shape, dtype=torch.float64)

    def run(module):
        conv.zero_grad()
        inputs = x.clone().requires_grad_() if x is not None else None
        out = module(inputs, edge_index, edge_type)
        (out * upstream).sum().backward()
        grads = [p.grad.clone() for p in conv.parameters()]
        return [out.detach(), *grads, *([inputs.grad] if inputs is not None else [])]

    expected = run(conv)
    torch._dynamo.reset()
    got = run(torch.compile(conv, backend=backend, fullgraph=True))
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=atol), (a - b).abs().max()


# aot_eager traces forward and backward as inductor does, without code generation: every case
# runs by default; inductor itself runs one small case by default and the table when slow.
@pytest.mark.parametrize('kind,cached,featureless', list(cases()))
def test_traced_forward_and_backward_equal_eager(kind, cached, featureless):
    conv, x, edge_index, edge_type = prepared_inputs(kind, cached, featureless)
    compiled_matches_eager(conv, x, edge_index, edge_type, 'aot_eager', atol=1e-10)


def test_uncached_transform_first_path_equals_eager():
    # num_src * out < num_dst * in: the uncached compiled path transforms first.
    conv, x, edge_index, edge_type = compile_inputs('plain', False, out_channels=2)
    compiled_matches_eager(conv, x, edge_index, edge_type, 'aot_eager', atol=1e-10)


def test_inductor_equals_eager_small_case():
    conv, x, edge_index, edge_type = compile_inputs('bases', False)
    conv.cached = True
    conv.prepare(x, edge_index, edge_type)
    compiled_matches_eager(conv, x, edge_index, edge_type, 'inductor')


@pytest.mark.slow
@pytest.mark.parametrize('kind,cached,featureless', list(cases()))
def test_inductor_equals_eager(kind, cached, featureless):
    conv, x, edge_index, edge_type = prepared_inputs(kind, cached, featureless)
    compiled_matches_eager(conv, x, edge_index, edge_type, 'inductor')


def test_compiled_cached_layer_checks_the_graph_against_its_plan():
    conv, x, edge_index, edge_type = compile_inputs('plain', False)
    conv.cached = True
    conv.prepare(x, edge_index, edge_type)
    torch._dynamo.reset()
    compiled = torch.compile(conv, backend='aot_eager', fullgraph=True)
    compiled(x, edge_index, edge_type)
    other = edge_type.clone()
    other[0] = (other[0] + 1) % NUM_RELATIONS  # same sizes, another graph
    with pytest.raises(RuntimeError, match='differs from the one its plan was built from'):
        compiled(x, edge_index, other)
    with graphops.debug():  # exact check, with the eager-mode exception type
        torch._dynamo.reset()
        with pytest.raises(ValueError, match='differs from the one its plan was built from'):
            torch.compile(conv, backend='aot_eager')(x, edge_index, other)
    # another size: the plan does not apply and the static dense path gives the right result
    torch._dynamo.reset()
    smaller = edge_index[:, :30], edge_type[:30]
    expected = RGCNConv(4, 6, NUM_RELATIONS).double()
    expected.load_state_dict(conv.state_dict())
    out = torch.compile(conv, backend='aot_eager', fullgraph=True)(x, *smaller)
    assert torch.allclose(out, expected(x, *smaller))


def test_compiled_layer_rejects_bad_indices_without_a_graph_break():
    conv, x, edge_index, edge_type = compile_inputs('plain', False)
    bad = edge_index.clone()
    bad[1, 3] = 12  # one past the last node
    torch._dynamo.reset()
    compiled = torch.compile(conv, backend='aot_eager', fullgraph=True)
    with pytest.raises(RuntimeError, match=r'edge_index\[1\] \(targets\) must hold indices'):
        compiled(x, bad, edge_type)
    nan = x.clone()
    nan[0, 0] = float('nan')
    with pytest.raises(RuntimeError, match='x contains NaN or Inf'):
        compiled(nan, edge_index, edge_type)


# --- the cache is not state ------------------------------------------------------------------------


def test_pickled_cached_layer_holds_no_graph_and_rebuilds_its_plan(tmp_path):
    gen = torch.Generator().manual_seed(0)
    num_nodes, num_edges = 20_000, 1_000_000
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_type = torch.randint(0, NUM_RELATIONS, (num_edges,), generator=gen)
    x = torch.randn(num_nodes, 4, generator=gen)
    conv = RGCNConv(4, 6, NUM_RELATIONS, cached=True)
    uncached = RGCNConv(4, 6, NUM_RELATIONS)
    expected = conv(x, edge_index, edge_type)
    assert conv._cache  # the plan of a 1M-edge graph is held...
    torch.save(conv, tmp_path / 'cached.pt')
    torch.save(uncached, tmp_path / 'uncached.pt')
    size = (tmp_path / 'cached.pt').stat().st_size
    assert size < (tmp_path / 'uncached.pt').stat().st_size + 4096  # ...but never saved
    assert size < 64 * 1024
    assert set(conv.state_dict()) == {'weight', 'root', 'bias'}
    loaded = torch.load(tmp_path / 'cached.pt', weights_only=False)
    assert not loaded._cache
    assert torch.allclose(loaded(x, edge_index, edge_type), expected, atol=1e-5)
    assert loaded._cache  # rebuilt on first use


# --- CUDA ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('kind', list(KINDS))
@pytest.mark.parametrize('strategy', ['pairs', 'aggregate', 'transform'])
def test_cuda_matches_cpu(kind, strategy):
    x, edge_index, edge_type = random_inputs(num_nodes=50, num_edges=300)
    conv = RGCNConv(4, 6, NUM_RELATIONS, strategy=strategy, **KINDS[kind]).double()
    expected = conv(x, edge_index, edge_type)
    gpu = conv.cuda()
    out = gpu(x.cuda(), edge_index.cuda(), edge_type.cuda())
    assert torch.allclose(out.cpu(), expected, atol=1e-10)
    out.sum().backward()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_device_mismatch_is_reported():
    x, edge_index, edge_type = random_inputs()
    conv = RGCNConv(4, 6, NUM_RELATIONS).double().cuda()
    with pytest.raises(ValueError, match='move them to one device'):
        conv(x.cuda(), edge_index, edge_type)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('kind', list(KINDS))
@pytest.mark.parametrize('strategy', ['pairs', 'aggregate', 'transform'])
@pytest.mark.parametrize('aggr', ['mean', 'add'])
def test_device_matches_cpu_with_gradients(matches_cpu, kind, strategy, aggr):
    x, edge_index, edge_type = random_inputs(num_nodes=50, num_edges=300)
    torch.manual_seed(0)
    conv = RGCNConv(4, 6, NUM_RELATIONS, aggr=aggr, strategy=strategy, **KINDS[kind]).double()
    matches_cpu(conv, x.requires_grad_(), edge_index, edge_type, grad=True)


@pytest.mark.gpu
def test_device_featureless_and_bipartite(matches_cpu):
    _, edge_index, edge_type = random_inputs(num_nodes=12, num_edges=60)
    torch.manual_seed(0)
    conv = RGCNConv(12, 5, NUM_RELATIONS, num_bases=2).double()
    matches_cpu(conv, None, edge_index, edge_type, grad=True)
    x_src = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    x_dst = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    keep = edge_index[1] < 7
    conv = RGCNConv(4, 5, NUM_RELATIONS).double()
    matches_cpu(conv, (x_src, x_dst), edge_index[:, keep], edge_type[keep], grad=True)
