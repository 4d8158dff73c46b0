from itertools import product

import pytest
import torch
from torch.func import functional_call

from graphops.nn.pool.gpool import GPool
from graphops.ops import CSR, has_torch_sparse, to_csr
from graphops.testing import awkward_graphs, dense_adjacency, random_graph, tolerance
from graphops.testing.gpool import dense_gpool, make_batch

TOL = tolerance(torch.float64)
# Every awkward graph with nodes, glued into one batch: isolated nodes, self-loops, duplicate
# edges, a one-node graph, edgeless graphs.
GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]
RATIOS = [0.5, 1.0, 0.2, 1, 3, 50]  # fractions; k = 1; small k; k >= every graph size
CASES = list(product(RATIOS, ['sigmoid', 'tanh'], [False, True], [False, True]))


def batched_input(weighted: bool, seed: int = 0, ties: bool = False):
    edge_index, edge_weight, batch, num_nodes = make_batch(GRAPHS, weighted=weighted)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 4, generator=gen, dtype=torch.float64)
    if ties:
        x[1::2] = x[0::2][: x[1::2].size(0)]  # pairs of identical rows: equal scores
    return x, edge_index, edge_weight, batch, num_nodes


def make_pool(ratio, gate, augment, seed=0):
    torch.manual_seed(seed)
    return GPool(4, ratio, nonlinearity=gate, augment=augment).double()


@pytest.mark.parametrize(('ratio', 'gate', 'augment', 'weighted'), CASES)
def test_matches_dense_reference(ratio, gate, augment, weighted):
    x, edge_index, edge_weight, batch, num_nodes = batched_input(weighted, ties=ratio == 0.5)
    pool = make_pool(ratio, gate, augment)
    out_x, out_ei, out_w, out_batch, perm, score = pool(x, edge_index, edge_weight, batch)
    adj = dense_adjacency(edge_index, num_nodes, edge_weight)
    gate_fn = torch.sigmoid if gate == 'sigmoid' else torch.tanh
    ref = dense_gpool(x, adj, pool.weight, ratio, batch, gate_fn, augment)
    torch.testing.assert_close(out_x, ref[0], **TOL)
    pooled = dense_adjacency(out_ei, perm.numel(), out_w)
    torch.testing.assert_close(pooled, ref[1], **TOL)
    assert torch.equal(out_batch, ref[2])
    assert torch.equal(perm, ref[3])
    torch.testing.assert_close(score, ref[4], **TOL)
    if not augment and not weighted:
        assert out_w is None


@pytest.mark.parametrize(('gate', 'augment'), list(product(['sigmoid', 'tanh'], [False, True])))
def test_gradients_match_dense_reference(gate, augment):
    x, edge_index, edge_weight, batch, num_nodes = batched_input(weighted=True, seed=1)
    pool = make_pool(0.6, gate, augment, seed=1)
    x = x.requires_grad_()
    probe = torch.randn(x.size(0), 4, dtype=torch.float64)

    out_x, _, _, _, perm, score = pool(x, edge_index, edge_weight, batch)
    loss = (out_x * probe[: out_x.size(0)]).sum() + score.square().sum()
    grads = torch.autograd.grad(loss, (x, pool.weight))

    adj = dense_adjacency(edge_index, num_nodes, edge_weight)
    gate_fn = torch.sigmoid if gate == 'sigmoid' else torch.tanh
    ref = dense_gpool(x, adj, pool.weight, 0.6, batch, gate_fn, augment)
    ref_loss = (ref[0] * probe[: ref[0].size(0)]).sum() + ref[4].square().sum()
    ref_grads = torch.autograd.grad(ref_loss, (x, pool.weight))
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad, **TOL)


def test_gradcheck_of_features_and_projection():
    x, edge_index, _, batch, _ = batched_input(weighted=False, seed=2)
    pool = make_pool(0.5, 'sigmoid', False, seed=2)

    def run(features, weight):
        return functional_call(
            pool, {'select.weight': weight}, (features, edge_index, None, batch)
        )[0]

    weight = pool.weight.detach().clone().requires_grad_()
    torch.autograd.gradcheck(run, (x.requires_grad_(), weight), fast_mode=True)


@pytest.mark.parametrize('augment', [False, True])
def test_adjacency_forms_agree(augment):
    x, edge_index, edge_weight, batch, num_nodes = batched_input(weighted=True, seed=3)
    pool = make_pool(0.5, 'sigmoid', augment, seed=3)
    out_x, ei, w, _, perm, _ = pool(x, edge_index, edge_weight, batch)
    expected = dense_adjacency(ei, perm.numel(), w)
    csr = to_csr(edge_index, edge_weight, num_nodes)
    forms = [csr, csr.to_torch_csr(torch.float64), csr.to_torch_csr(torch.float64).to_sparse_coo()]
    for form in forms:
        got_x, adj, got_w, _, got_perm, _ = pool(x, form, None, batch)
        assert got_w is None
        assert type(adj) is type(form)
        if isinstance(form, torch.Tensor):
            assert adj.layout == form.layout
        torch.testing.assert_close(got_x, out_x, **TOL)
        assert torch.equal(got_perm, perm)
        dense = adj.to_dense(torch.float64) if isinstance(adj, CSR) else adj.to_dense()
        torch.testing.assert_close(dense, expected, **TOL)


@pytest.mark.skipif(not has_torch_sparse(), reason='torch_sparse not installed')
@pytest.mark.parametrize('augment', [False, True])
def test_sparse_tensor_input(augment):
    from torch_sparse import SparseTensor

    x, edge_index, edge_weight, batch, num_nodes = batched_input(weighted=True, seed=4)
    pool = make_pool(0.5, 'sigmoid', augment, seed=4)
    _, ei, w, _, perm, _ = pool(x, edge_index, edge_weight, batch)
    adj_t = SparseTensor(
        row=edge_index[1], col=edge_index[0], value=edge_weight, sparse_sizes=(num_nodes,) * 2
    )
    _, pooled, none, _, got_perm, _ = pool(x, adj_t, None, batch)
    assert isinstance(pooled, SparseTensor) and none is None
    assert torch.equal(got_perm, perm)
    # SparseTensor.to_dense() keeps one of duplicate entries; read it back through to_csr instead.
    got = to_csr(pooled).to_dense(torch.float64)
    torch.testing.assert_close(got, dense_adjacency(ei, perm.numel(), w), **TOL)


def test_multi_dimensional_edge_attr_is_filtered_in_order():
    x, edge_index, _, batch, _ = batched_input(weighted=False, seed=5)
    edge_attr = torch.arange(edge_index.size(1) * 3, dtype=torch.float64).view(-1, 3)
    pool = make_pool(0.5, 'sigmoid', False, seed=5)
    _, ei, attr, _, perm, _ = pool(x, edge_index, edge_attr, batch)
    kept = torch.isin(edge_index, perm).all(0)
    assert torch.equal(attr, edge_attr[kept])
    assert torch.equal(perm[ei], edge_index[:, kept])


def test_same_selection_as_pyg_topk_pooling_with_tanh():
    from torch_geometric.nn import TopKPooling

    graph = random_graph(30, 90, seed=6, self_loops=False)
    x = torch.randn(30, 4, dtype=torch.float64)
    batch = torch.tensor([0] * 12 + [1] * 18)
    ours = make_pool(0.5, 'tanh', False, seed=6)
    theirs = TopKPooling(4, ratio=0.5).double()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # one state_dict layout
    out_x, ei, _, out_batch, perm, score = ours(x, graph.edge_index, None, batch)
    ref_x, ref_ei, _, ref_batch, ref_perm, ref_score = theirs(x, graph.edge_index, None, batch)
    order = torch.argsort(ref_perm)  # PyG orders kept nodes by score; we keep index order
    assert torch.equal(perm, ref_perm[order])
    torch.testing.assert_close(out_x, ref_x[order], **TOL)
    torch.testing.assert_close(score, ref_score[order], **TOL)
    assert torch.equal(out_batch, ref_batch[order])
    rename = torch.empty_like(order)
    rename[order] = torch.arange(order.numel())
    expected = dense_adjacency(rename[ref_ei], perm.numel())
    torch.testing.assert_close(dense_adjacency(ei, perm.numel()), expected)


def test_isolated_nodes_and_one_node_graph_survive():
    x = torch.randn(3, 4, dtype=torch.float64)
    edge_index = torch.empty(2, 0, dtype=torch.long)
    for augment in (False, True):
        pool = make_pool(0.5, 'sigmoid', augment)
        out_x, ei, _, out_batch, perm, _ = pool(x, edge_index, None, torch.tensor([0, 1, 1]))
        assert perm.tolist()[0] == 0 and perm.numel() == 2  # one node per graph
        assert ei.size(1) == 0 and out_x.shape == (2, 4)
        assert out_batch.tolist() == [0, 1]


def test_attn_scores_select_nodes():
    x = torch.randn(6, 4, dtype=torch.float64)
    attn = torch.zeros(6, 4, dtype=torch.float64)
    attn[[1, 4]] = 1.0
    pool = make_pool(2, 'sigmoid', False)
    pool.weight.data.fill_(1.0)
    _, _, _, _, perm, score = pool(x, torch.empty(2, 0, dtype=torch.long), attn=attn)
    assert perm.tolist() == [1, 4]
    torch.testing.assert_close(score, torch.sigmoid(torch.full((2,), 2.0, dtype=torch.float64)))


def test_repr():
    assert repr(GPool(16)) == "GPool(16, ratio=0.5, nonlinearity='sigmoid', augment=False)"
    pool = GPool(8, ratio=200, nonlinearity='tanh', augment=True)
    assert repr(pool) == "GPool(8, ratio=200, nonlinearity='tanh', augment=True)"


BAD_CONSTRUCTORS = [
    ({'ratio': 0.0}, ValueError, r'\(0, 1\]'),
    ({'ratio': -0.1}, ValueError, r'\(0, 1\]'),
    ({'ratio': 1.5}, ValueError, r'\(0, 1\]'),
    ({'ratio': 0}, ValueError, 'k'),
    ({'ratio': -2}, ValueError, 'k'),
    ({'ratio': '0.5'}, TypeError, 'ratio'),
    ({'nonlinearity': 'relu'}, ValueError, 'nonlinearity'),
    ({'in_channels': 0}, ValueError, 'in_channels'),
]


@pytest.mark.parametrize(('kwargs', 'error', 'match'), BAD_CONSTRUCTORS)
def test_bad_constructor_arguments(kwargs, error, match):
    args = {'in_channels': 4, **kwargs}
    with pytest.raises(error, match=match):
        GPool(**args)


def bad_call(**overrides):
    x, edge_index, _, batch, _ = batched_input(weighted=False)
    call = {'x': x, 'edge_index': edge_index, 'edge_attr': None, 'batch': batch, **overrides}
    return make_pool(0.5, 'sigmoid', False)(**call)


def test_unsorted_batch():
    x = batched_input(False)[0]
    batch = torch.zeros(x.size(0), dtype=torch.long)
    batch[0] = 1
    with pytest.raises(ValueError, match='sorted'):
        bad_call(batch=batch)


def test_batch_of_wrong_length():
    with pytest.raises(ValueError, match='batch has 3 entries'):
        bad_call(batch=torch.tensor([0, 0, 1]))


def test_features_with_nan():
    x = batched_input(False)[0].clone()
    x[0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        bad_call(x=x)


def test_features_of_wrong_width():
    x = batched_input(False)[0]
    with pytest.raises(ValueError, match='in_channels'):
        bad_call(x=x[:, :3])


def test_edge_index_out_of_range():
    x = batched_input(False)[0]
    with pytest.raises(ValueError, match='out of range'):
        bad_call(edge_index=torch.tensor([[0], [x.size(0)]]))


def test_edge_attr_of_wrong_length():
    with pytest.raises(ValueError, match='edge_attr'):
        bad_call(edge_attr=torch.ones(2, dtype=torch.float64))


def test_empty_graph():
    with pytest.raises(ValueError, match='no nodes'):
        make_pool(0.5, 'sigmoid', False)(
            torch.empty(0, 4, dtype=torch.float64), torch.empty(2, 0, dtype=torch.long)
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('augment', [False, True])
def test_cuda_matches_cpu(augment):
    x, edge_index, edge_weight, batch, _ = batched_input(weighted=True, seed=7)
    pool = make_pool(0.5, 'sigmoid', augment, seed=7)
    expected = pool(x, edge_index, edge_weight, batch)
    cuda = torch.device('cuda')
    got = pool.to(cuda)(x.to(cuda), edge_index.to(cuda), edge_weight.to(cuda), batch.to(cuda))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.cpu(), b, **TOL)


def test_edge_attr_with_a_sparse_matrix():
    x, edge_index, _, batch, num_nodes = batched_input(weighted=False)
    csr = to_csr(edge_index, None, num_nodes)
    with pytest.raises(ValueError, match='edge_attr must be None'):
        make_pool(0.5, 'sigmoid', False)(x, csr, torch.ones(csr.nnz, dtype=torch.float64), batch)


def test_edge_weight_of_wrong_length_when_augmenting():
    x, edge_index, _, batch, _ = batched_input(weighted=False)
    with pytest.raises(ValueError, match='edge_attr has 2 entries'):
        make_pool(0.5, 'sigmoid', True)(x, edge_index, torch.ones(2, dtype=torch.float64), batch)


# --- torch.compile ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ('augment', 'backend'),
    [
        (False, 'aot_eager'),
        (True, 'aot_eager'),
        pytest.param(False, 'inductor', marks=pytest.mark.slow),
    ],
)
def test_compiles_with_no_more_graph_breaks_than_topk_pooling_and_equals_eager(augment, backend):
    """top-k has data-dependent output sizes, so graph breaks are expected: no more than PyG's
    TopKPooling takes on the same batch, measured here. (The graph power has no PyG layer to
    measure against: PyG's GraphUNet.augment_adj does not trace under torch._dynamo.explain.)"""
    from torch_geometric.nn import TopKPooling

    x, edge_index, edge_weight, batch, _ = batched_input(weighted=True, seed=7)
    pool = make_pool(0.5, 'tanh', augment, seed=7)
    theirs = TopKPooling(4, 0.5).double()
    if not augment:
        torch._dynamo.reset()
        ours = torch._dynamo.explain(pool)(x, edge_index, edge_weight, batch).graph_break_count
        torch._dynamo.reset()
        pyg = torch._dynamo.explain(theirs)(x, edge_index, edge_weight, batch).graph_break_count
        assert ours <= pyg

    torch._dynamo.reset()
    compiled = torch.compile(pool, backend=backend)
    results = []
    for module in (pool, compiled):
        x_in, w_in = x.clone().requires_grad_(), edge_weight.clone().requires_grad_()
        out, _, weight, _, perm, score = module(x_in, edge_index, w_in, batch)
        probe = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
        probe = probe + weight.sum() + score.sum()
        results.append((out, weight, perm, score, *torch.autograd.grad(probe, (x_in, w_in))))
    torch._dynamo.reset()
    for eager, comp in zip(*results, strict=True):
        torch.testing.assert_close(comp, eager, atol=1e-5, rtol=1e-5)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('augment', [False, True])
@pytest.mark.parametrize('ratio', [0.5, 3])
@pytest.mark.parametrize('weighted', [False, True])
def test_device_matches_cpu_with_gradients(matches_cpu, augment, ratio, weighted):
    x, edge_index, edge_weight, batch, _ = batched_input(weighted=weighted, seed=7)
    pool = make_pool(ratio, 'sigmoid', augment, seed=7)
    matches_cpu(pool, x.requires_grad_(), edge_index, edge_weight, batch, grad=True)
