from itertools import product

import pytest
import torch

from graphops.nn.models.graph_unet import GraphUNet, _GCNOperator, is_symmetric
from graphops.nn.models.graph_unet_classifier import GraphUNetClassifier, graph_readout
from graphops.ops import to_csr
from graphops.ops.csr import symmetrize
from graphops.testing import awkward_graphs, dense_adjacency, random_graph, tolerance
from graphops.testing.gpool import dense_gcn, dense_graph_unet, make_batch

TOL = tolerance(torch.float64)
GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]


def batched(weighted: bool, channels: int = 5, seed: int = 0):
    edge_index, edge_weight, batch, num_nodes = make_batch(GRAPHS, weighted=weighted)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, channels, generator=gen, dtype=torch.float64)
    return x, edge_index, edge_weight, batch, num_nodes


VARIANTS = [(0.5, 'relu', False), ([3, 1], None, True), ([0.7, 2], 'elu', True)]
CASES = [(s, a, *v) for s, a, v in product([True, False], [True, False], VARIANTS)]


@pytest.mark.parametrize(('sum_res', 'augment', 'ratios', 'act', 'weighted'), CASES)
def test_graph_unet_matches_dense_reference(sum_res, augment, ratios, act, weighted):
    x, edge_index, edge_weight, batch, num_nodes = batched(weighted)
    torch.manual_seed(0)
    model = GraphUNet(5, 6, 3, depth=2, pool_ratios=ratios, sum_res=sum_res, act=act)
    model = model.double().eval()
    model.pools[0].augment = model.pools[1].augment = augment
    out = model(x, edge_index, batch, edge_weight)
    adj = dense_adjacency(edge_index, num_nodes, edge_weight)
    torch.testing.assert_close(out, dense_graph_unet(model, x, adj, batch), **TOL)


def copy_from_pyg(ours, theirs):
    with torch.no_grad():
        for mine, ref in zip(
            [*ours.down_convs, *ours.up_convs], [*theirs.down_convs, *theirs.up_convs]
        ):
            mine.weight.copy_(ref.lin.weight)
            mine.bias.copy_(ref.bias)
        for mine, ref in zip(ours.pools, theirs.pools):
            mine.weight.copy_(ref.select.weight)


@pytest.mark.parametrize('symmetric', [True, False])
def test_graph_unet_equals_pyg_graph_unet_with_its_tanh_gate(symmetric):
    from torch_geometric.nn import GraphUNet as PyGGraphUNet

    graph = random_graph(40, 120, seed=1, self_loops=False, duplicates=False)
    csr = to_csr(graph.edge_index, None, 40)
    edge_index = (symmetrize(csr) if symmetric else csr.coalesce()).to_edge_index()[0]
    batch = torch.tensor([0] * 15 + [1] * 25)
    x = torch.randn(40, 8, dtype=torch.float64)
    torch.manual_seed(0)
    theirs = PyGGraphUNet(8, 6, 4, depth=3, pool_ratios=[0.7, 0.5]).double()
    ours = GraphUNet(8, 6, 4, depth=3, pool_ratios=[0.7, 0.5], nonlinearity='tanh').double()
    copy_from_pyg(ours, theirs)
    assert is_symmetric(to_csr(edge_index, None, 40)) == symmetric

    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = ours(x_ours, edge_index, batch), theirs(x_theirs, edge_index, batch)
    torch.testing.assert_close(out, ref, **TOL)
    probe = torch.randn_like(out)
    (out * probe).sum().backward()
    (ref * probe).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, **TOL)
    for mine, ref_conv in zip(ours.down_convs, theirs.down_convs):
        torch.testing.assert_close(mine.weight.grad, ref_conv.lin.weight.grad, **TOL)


@pytest.mark.parametrize('symmetric', [True, False])
def test_gcn_propagation_gradcheck_and_reference(symmetric):
    gen = torch.Generator().manual_seed(2)
    dense = torch.rand(8, 8, generator=gen, dtype=torch.float64) * (
        torch.rand(8, 8, generator=gen) < 0.3
    )
    if symmetric:
        dense = dense + dense.t()
    csr = to_csr(dense.to_sparse())
    assert is_symmetric(csr) == symmetric
    op = _GCNOperator(csr, torch.float64, symmetric)
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(op, (x,), fast_mode=True)
    identity = torch.eye(3, dtype=torch.float64)
    expected = dense_gcn(csr.to_dense(torch.float64), x, identity, torch.zeros(3))
    torch.testing.assert_close(op(x), expected, **TOL)


def split(edge_index, batch, num_nodes):
    """Each graph of a batch on its own: (node slice, edge_index)."""
    for graph_id in range(int(batch.max()) + 1):
        nodes = (batch == graph_id).nonzero().view(-1)
        lo, hi = int(nodes[0]), int(nodes[-1]) + 1
        mask = (edge_index[0] >= lo) & (edge_index[0] < hi)
        yield slice(lo, hi), edge_index[:, mask] - lo


def test_graph_unet_batched_equals_graph_by_graph():
    x, edge_index, _, batch, num_nodes = batched(False)
    torch.manual_seed(1)
    model = GraphUNet(5, 6, 3, depth=2, pool_ratios=0.6).double().eval()
    out = model(x, edge_index, batch)
    for nodes, ei in split(edge_index, batch, num_nodes):
        torch.testing.assert_close(out[nodes], model(x[nodes], ei), **TOL)


def test_classifier_batched_equals_graph_by_graph():
    x, edge_index, _, batch, num_nodes = batched(False, seed=2)
    torch.manual_seed(2)
    model = GraphUNetClassifier(5, 6, 3, depth=2, pool_ratios=[0.8, 0.5], mlp_channels=7)
    model = model.double().eval()
    logits = model(x, edge_index, batch)
    assert logits.shape == (len(GRAPHS), 3)
    for graph_id, (nodes, ei) in enumerate(split(edge_index, batch, num_nodes)):
        torch.testing.assert_close(logits[graph_id : graph_id + 1], model(x[nodes], ei), **TOL)


def test_classifier_trains_and_has_gradients_everywhere():
    x, edge_index, _, batch, _ = batched(False, seed=3)
    torch.manual_seed(3)
    model = GraphUNetClassifier(5, 8, 2, depth=3).double().train()
    y = torch.arange(len(GRAPHS)) % 2
    loss = torch.nn.functional.cross_entropy(model(x, edge_index, batch), y)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and bool(torch.isfinite(param.grad).all()), name


def test_graph_readout_matches_loops():
    x = torch.randn(7, 3, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3])  # graph 1 has no nodes
    out = graph_readout(x, batch, 4)
    for graph_id in range(4):
        rows = x[batch == graph_id]
        if rows.numel() == 0:
            expected = torch.zeros(9, dtype=torch.float64)
        else:
            expected = torch.cat([rows.max(0).values, rows.sum(0), rows.mean(0)])
        torch.testing.assert_close(out[graph_id], expected, **TOL)


def test_repr():
    model = GraphUNet(16, 32, 7, depth=3, pool_ratios=[2000, 0.5])
    assert repr(model) == (
        'GraphUNet(16, 32, 7, depth=3, pool_ratios=[2000, 0.5, 0.5], sum_res=True, '
        "act='relu', augment=True, nonlinearity='sigmoid', dropout=0.0)"
    )
    model = GraphUNetClassifier(3, 64, 2)
    assert repr(model) == (
        'GraphUNetClassifier(3, 64, 2, depth=3, pool_ratios=[0.9, 0.8, 0.7], mlp_channels=512, '
        "dropout=0.3, classifier_dropout=0.3, act='elu', augment=True, nonlinearity='sigmoid')"
    )


MODELS = [
    lambda **kw: GraphUNet(5, 6, 3, **{'depth': 2, **kw}),
    lambda **kw: GraphUNetClassifier(5, 6, 3, **{'depth': 2, 'pool_ratios': 0.5, **kw}),
]
BAD_RATIOS = [
    (0.0, ValueError, r'\(0, 1\]'),
    (1.5, ValueError, r'\(0, 1\]'),
    (0, ValueError, 'k'),
    ([0.5, 0.5, 0.5], ValueError, 'depth'),
]


@pytest.mark.parametrize('make', MODELS)
@pytest.mark.parametrize(('ratios', 'error', 'match'), BAD_RATIOS)
def test_bad_pool_ratios(make, ratios, error, match):
    with pytest.raises(error, match=match):
        make(pool_ratios=ratios)


@pytest.mark.parametrize('make', MODELS)
def test_bad_forward_inputs(make):
    model = make().double()
    x, edge_index, _, batch, _ = batched(False)
    unsorted = batch.flip(0)
    with pytest.raises(ValueError, match='sorted'):
        model(x, edge_index, unsorted)
    with pytest.raises(ValueError, match='batch has 2 entries'):
        model(x, edge_index, batch[:2])
    with pytest.raises(ValueError, match='in_channels'):
        model(x[:, :4], edge_index, batch)
    with pytest.raises(ValueError, match='no nodes'):
        model(x[:0], edge_index[:, :0])
    with pytest.raises(ValueError, match='out of range'):
        model(x, edge_index + x.size(0), batch)


@pytest.mark.parametrize('make', MODELS)
def test_bad_constructor_arguments(make):
    with pytest.raises(ValueError, match='dropout'):
        make(dropout=1.0)
    with pytest.raises(ValueError, match='depth'):
        make(depth=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('make', MODELS)
def test_cuda_matches_cpu(make):
    x, edge_index, _, batch, _ = batched(False, seed=4)
    torch.manual_seed(4)
    model = make().double().eval()
    expected = model(x, edge_index, batch)
    cuda = torch.device('cuda')
    got = model.to(cuda)(x.to(cuda), edge_index.to(cuda), batch.to(cuda))
    torch.testing.assert_close(got.cpu(), expected, **TOL)
    got.sum().backward()  # the backward runs on the device too


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('make', MODELS)
@pytest.mark.parametrize('augment', [False, True])
def test_device_matches_cpu_with_gradients(matches_cpu, make, augment):
    x, edge_index, _, batch, _ = batched(False, seed=4)
    torch.manual_seed(4)
    model = make(augment=augment).double().eval()
    matches_cpu(model, x.requires_grad_(), edge_index, batch, grad=True)
