import pytest
import torch
import torch.nn.functional as F

from graphops.nn.conv.rgcn_conv import RGCNConv
from graphops.nn.models.rgcn import RGCN
from graphops.testing import random_graph


def relational_graph(num_nodes=20, num_edges=80, num_relations=3, seed=0):
    graph = random_graph(num_nodes, num_edges, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    edge_type = torch.randint(0, num_relations, (graph.edge_index.size(1),), generator=gen)
    return graph.edge_index, edge_type


def test_forward_is_two_rgcn_layers_on_featureless_input():
    edge_index, edge_type = relational_graph()
    torch.manual_seed(0)
    model = RGCN(20, 3, out_channels=4, hidden_channels=8, num_bases=2).double()
    out = model(None, edge_index, edge_type)
    assert out.shape == (20, 4)
    hidden = F.relu(model.conv1(None, edge_index, edge_type))
    assert torch.allclose(out, model.conv2(hidden, edge_index, edge_type))
    assert isinstance(model.conv1, RGCNConv) and model.conv1.in_channels == 20
    assert model.conv1.num_bases == model.conv2.num_bases == 2


def test_feature_input_and_repr():
    edge_index, edge_type = relational_graph()
    model = RGCN(20, 3, out_channels=4, in_channels=5, dropout=0.5)
    assert model(torch.randn(20, 5), edge_index, edge_type).shape == (20, 4)
    assert repr(model) == (
        'RGCN(20, num_relations=3, out_channels=4, hidden_channels=16, dropout=0.5, in_channels=5)'
    )
    assert repr(RGCN(20, 3, 4, num_bases=2)) == (
        'RGCN(20, num_relations=3, out_channels=4, hidden_channels=16, num_bases=2)'
    )


def test_l2_penalty_is_the_first_layer_squared_norm():
    model = RGCN(20, 3, out_channels=4, num_bases=2)
    expected = model.conv1.weight.pow(2).sum() + model.conv1.comp.pow(2).sum()
    assert torch.allclose(model.l2_penalty(), expected)
    plain = RGCN(20, 3, out_channels=4)
    assert torch.allclose(plain.l2_penalty(), plain.conv1.weight.pow(2).sum())


def test_training_fits_a_small_labelled_graph():
    edge_index, edge_type = relational_graph(num_nodes=30, num_edges=150)
    # Labels a node can read off its neighbourhood: the majority relation among its in-edges.
    counts = torch.zeros(30, 3).index_add_(
        0, edge_index[1], torch.nn.functional.one_hot(edge_type, 3).float()
    )
    labels = counts.argmax(1)
    torch.manual_seed(0)
    model = RGCN(30, 3, out_channels=3, hidden_channels=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(40):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(None, edge_index, edge_type), labels)
        loss = loss + 5e-4 * model.l2_penalty()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first
    accuracy = (model(None, edge_index, edge_type).argmax(1) == labels).float().mean()
    assert accuracy > 0.9


def test_reset_parameters_and_bad_dropout():
    model = RGCN(10, 2, out_channels=3)
    before = model.conv1.weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(before, model.conv1.weight)
    with pytest.raises(ValueError, match='dropout'):
        RGCN(10, 2, out_channels=3, dropout=1.0)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('kwargs', [{'num_bases': 2}, {'num_blocks': 2, 'in_channels': 4}])
def test_device_matches_cpu(matches_cpu, kwargs):
    edge_index, edge_type = relational_graph()
    torch.manual_seed(0)
    model = RGCN(20, 3, out_channels=4, hidden_channels=8, **kwargs).double().eval()
    x = None
    if 'in_channels' in kwargs:
        x = torch.randn(20, 4, dtype=torch.float64, requires_grad=True)
    matches_cpu(model, x, edge_index, edge_type, grad=True)


def test_prepared_model_compiles_without_a_graph_break_and_equals_eager():
    edge_index, edge_type = relational_graph()
    model = RGCN(20, 3, out_channels=4, num_bases=2).double().eval()
    expected = model(None, edge_index, edge_type)
    model.prepare(None, edge_index, edge_type)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(None, edge_index, edge_type)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    assert torch.allclose(compiled(None, edge_index, edge_type), expected, atol=1e-10)


@pytest.mark.parametrize(
    'make_x',
    [
        lambda: None,
        lambda: torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)),
    ],
)
@pytest.mark.parametrize('through', ['forward', 'prepare'])
def test_layers_share_one_sorted_graph_and_give_the_same_numbers(make_x, through):
    edge_index, edge_type = relational_graph()
    x = make_x()
    kwargs = {} if x is None else {'in_channels': 4}
    torch.manual_seed(0)
    model = RGCN(20, 3, out_channels=4, hidden_channels=8, num_bases=2, **kwargs).double()
    uncached = RGCN(20, 3, 4, 8, 2, cached=False, **kwargs).double()
    uncached.load_state_dict(model.state_dict())
    if through == 'prepare':
        model.prepare(x, edge_index, edge_type)
    out = model(x, edge_index, edge_type)
    hidden = F.relu(model.conv1(x, edge_index, edge_type))
    first = model.conv1.prepared_graph(x, edge_index, edge_type)
    assert first is not None
    assert model.conv2.prepared_graph(hidden, edge_index, edge_type) is first  # one copy
    expected = uncached(x, edge_index, edge_type)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    out.square().sum().backward()
    expected.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), uncached.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12, msg=name)


def test_node_id_input_keeps_separate_graphs():
    # Node ids map the first layer's sources to their rows: its sorted graph is not the second's.
    edge_index, edge_type = relational_graph()
    ids = torch.arange(20).flip(0)
    model = RGCN(20, 3, out_channels=4, hidden_channels=8).double()
    uncached = RGCN(20, 3, 4, 8, cached=False).double()
    uncached.load_state_dict(model.state_dict())
    out = model(ids, edge_index, edge_type)
    hidden = F.relu(model.conv1(ids, edge_index, edge_type))
    first = model.conv1.prepared_graph(ids, edge_index, edge_type)
    second = model.conv2.prepared_graph(hidden, edge_index, edge_type)
    assert first is not None and second is not None and first is not second
    torch.testing.assert_close(out, uncached(ids, edge_index, edge_type))


def test_prepare_with_a_graph_of_other_edges_is_refused():
    edge_index, edge_type = relational_graph()
    other_index, other_type = relational_graph(seed=1)
    x = torch.randn(20, 4, dtype=torch.float64)
    conv = RGCNConv(4, 5, 3, cached=True).double()
    other = RGCNConv(4, 5, 3, cached=True).double().prepare(x, other_index, other_type)
    with pytest.raises(ValueError, match='not built from these edges'):
        conv.prepare(x, edge_index, edge_type, graph=other)
    smaller = RGCNConv(4, 5, 3, cached=True).double().prepare(x[:10], *relational_graph(10, 30))
    with pytest.raises(ValueError, match='not built from these edges'):
        conv.prepare(x, edge_index, edge_type, graph=smaller)
    with pytest.raises(TypeError, match='RelationalGraph'):
        conv.prepare(x, edge_index, edge_type, graph=edge_index)
    same = RGCNConv(4, 5, 3, cached=True).double().prepare(x, edge_index, edge_type)
    assert conv.prepare(x, edge_index, edge_type, graph=same) is same
    assert RGCNConv(4, 5, 3).prepared_graph(x, edge_index, edge_type) is None  # not cached
