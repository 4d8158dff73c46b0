import math
from itertools import product

import pytest
import torch

from graphops.nn.models.graph_unet import GraphUNet
from graphops.nn.models.graph_unet_classifier import GraphUNetClassifier, graph_readout
from graphops.ops import to_csr
from graphops.testing import awkward_graphs, dense_adjacency, random_graph, tolerance
from graphops.testing.gpool import dense_graph_unet, make_batch

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
    # A dense matrix sums repeated self-loops where GCNConv keeps one: merge repeats first (the
    # PyG comparison below covers them).
    edge_index, merged = to_csr(edge_index, edge_weight, num_nodes).coalesce().to_edge_index()
    edge_weight = merged if weighted else None
    torch.manual_seed(0)
    model = GraphUNet(5, 6, 3, depth=2, pool_ratios=ratios, sum_res=sum_res, act=act)
    model = model.double().eval()
    model.pools[0].augment = model.pools[1].augment = augment
    out = model(x, edge_index, batch, edge_weight)
    adj = dense_adjacency(edge_index, num_nodes, edge_weight)
    torch.testing.assert_close(out, dense_graph_unet(model, x, adj, batch), **TOL)


@pytest.mark.parametrize(('symmetric', 'weighted'), product([True, False], [True, False]))
def test_graph_unet_equals_pyg_graph_unet_with_gradients(symmetric, weighted):
    from torch_geometric.nn import GraphUNet as PyGGraphUNet

    graph = random_graph(40, 120, seed=1, weighted=True)
    edge_index, edge_weight = graph.edge_index, graph.edge_weight.double()
    if symmetric:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        edge_weight = torch.cat([edge_weight, edge_weight])
    edge_weight = edge_weight if weighted else None
    batch = torch.tensor([0] * 15 + [1] * 25)
    x = torch.randn(40, 8, dtype=torch.float64)
    torch.manual_seed(0)
    theirs = PyGGraphUNet(8, 16, 4, depth=3, pool_ratios=[0.7, 0.5]).double()
    ours = GraphUNet(8, 16, 4, depth=3, pool_ratios=[0.7, 0.5]).double()
    ours.load_state_dict(theirs.state_dict(), strict=True)

    runs = []
    for model in (ours, theirs):
        x_in = x.clone().requires_grad_()
        w_in = None if edge_weight is None else edge_weight.clone().requires_grad_()
        out = model(x_in, edge_index, batch, w_in)
        probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        (out * probe).sum().backward()
        runs.append((out, x_in.grad, None if w_in is None else w_in.grad))
    for mine, ref in zip(*runs):
        torch.testing.assert_close(mine, ref, **TOL)
    reference = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, reference[name].grad, **TOL)


@pytest.mark.parametrize('make', ['unet', 'classifier'])
def test_gradcheck_x_and_edge_weight(make):
    """Issue 22: edge_weight is differentiated (through the normalisation, the products and
    the graph power), not detached."""
    graph = random_graph(12, 40, seed=5, weighted=True)
    batch = torch.tensor([0] * 5 + [1] * 7)
    torch.manual_seed(5)
    if make == 'unet':
        model = GraphUNet(4, 16, 3, depth=2, pool_ratios=0.6)
    else:
        model = GraphUNetClassifier(4, 16, 3, depth=2, pool_ratios=0.6, mlp_channels=8)
    model = model.double().eval()
    x = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    weight = graph.edge_weight.double().requires_grad_()
    torch.autograd.gradcheck(lambda a, w: model(a, graph.edge_index, batch, w), (x, weight))


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


@pytest.mark.parametrize('classifier_act', ['relu', 'elu', None, 'same'])
def test_classifier_act_is_the_mlps_alone(classifier_act):
    # The MLP's hidden layer sees only classifier_act: with lin1 giving -1 everywhere, ReLU
    # leaves lin2's bias, ELU lin2 of exp(-1) - 1, identity lin2 of -1; 'same' follows act.
    x, edge_index, _, batch, _ = batched(False, seed=4)
    torch.manual_seed(4)
    kwargs = {} if classifier_act == 'same' else {'classifier_act': classifier_act}
    model = GraphUNetClassifier(5, 6, 3, depth=2, pool_ratios=0.8, act='relu', **kwargs)
    reference = GraphUNetClassifier(5, 6, 3, depth=2, pool_ratios=0.8, act='relu')
    model, reference = model.double().eval(), reference.double().eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for m in (model, reference):
            m.lin1.weight.zero_()
            m.lin1.bias.fill_(-1.0)
    seen = []
    for m in (model, reference):  # what reaches the MLP: the GCNs keep act
        m.lin1.register_forward_hook(lambda _, args, __: seen.append(args[0]))
    out = model(x, edge_index, batch)
    reference(x, edge_index, batch)
    torch.testing.assert_close(seen[0], seen[1], rtol=0, atol=0)
    hidden = {'relu': 0.0, 'same': 0.0, 'elu': math.expm1(-1.0), None: -1.0}
    expected = model.lin2(
        torch.full((1, model.mlp_channels), hidden[classifier_act], dtype=torch.float64)
    )
    torch.testing.assert_close(out, expected.expand_as(out), **TOL)


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
    assert repr(model) == 'GraphUNet(16, 32, 7, depth=3, pool_ratios=[2000, 0.5, 0.5])'
    model = GraphUNet(16, 32, 7, 2, 0.5, False, 'elu', nonlinearity='sigmoid', dropout=0.5)
    assert repr(model) == (
        'GraphUNet(16, 32, 7, depth=2, pool_ratios=[0.5, 0.5], sum_res=False, '
        "act='elu', nonlinearity='sigmoid', dropout=0.5)"
    )
    model = GraphUNetClassifier(3, 64, 2)
    assert repr(model) == (
        'GraphUNetClassifier(3, 64, 2, depth=3, pool_ratios=[0.9, 0.8, 0.7], mlp_channels=512, '
        "dropout=0.3, classifier_dropout=0.3, act='elu', augment=True, nonlinearity='sigmoid')"
    )
    # 'same' adds no module: a PReLU's weight is saved once, as before classifier_act existed
    assert list(GraphUNetClassifier(3, 8, 2, act='prelu').state_dict()).count('act.weight') == 1
    model = GraphUNetClassifier(3, 64, 2, act='leaky_relu', classifier_act='elu')
    assert repr(model).endswith(
        "act='leaky_relu', augment=True, nonlinearity='sigmoid', " + "classifier_act='elu')"
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
