import copy

import pytest
import torch

from graphops.nn.dense.diff_pool_block import DiffPool
from graphops.ops import has_torch_sparse
from graphops.testing import random_features, tolerance
from graphops.testing.diff_pool import awkward_batch, dense_batch, diff_pool_layer_reference

BATCHES = {
    'ragged': ['random', 'single_node', 'isolated_nodes', 'duplicate_edges'],
    'self_loops_no_edges': ['self_loops', 'no_edges', 'single_node_no_edges'],
    'one_graph': ['random'],
    'one_node': ['single_node'],
}

IN, HIDDEN, OUT, CLUSTERS = 4, 6, 5, 3


def make_layer(seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = DiffPool(IN, HIDDEN, OUT, CLUSTERS, **kwargs).double()
    # Non-trivial batch-norm statistics and affine parameters, so eval mode tests them.
    for stack in (layer.embed_gnn, layer.pool_gnn):
        for norm in stack.norms:
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
            torch.nn.init.uniform_(norm.bias, -0.5, 0.5)
    return layer


def inputs(name, weighted, seed=0):
    edge_index, edge_weight, batch, n = awkward_batch(BATCHES[name], weighted, seed)
    x = random_features(n, IN, seed=seed + 3)
    return x, edge_index, batch, edge_weight


CONFIGS = [
    {},
    {'batch_norm': True},
    {'normalize': False, 'batch_norm': True},
    {'num_layers': 2},
    {'loss_norm': 'pyg', 'num_layers': 1},
]


@pytest.mark.parametrize('config', CONFIGS, ids=str)
@pytest.mark.parametrize('name', ['ragged', 'self_loops_no_edges', 'one_node'])
@pytest.mark.parametrize('weighted', [False, True])
def test_eval_matches_reference_sparse_and_dense(config, name, weighted):
    layer = make_layer(**config).eval()
    x, edge_index, batch, edge_weight = inputs(name, weighted)
    dense_x, adj, _, mask = dense_batch(x, edge_index, batch, x[:, :1], edge_weight)
    expected = diff_pool_layer_reference(layer, dense_x, adj, mask)
    sparse = layer(x, edge_index, batch=batch, edge_weight=edge_weight)
    dense = layer(dense_x, adj, mask=mask)
    for got in (sparse, dense):
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, **tolerance(torch.float64))


@pytest.mark.parametrize('name', ['ragged', 'self_loops_no_edges'])
def test_train_mode_sparse_equals_dense(name):
    # Batch norm statistics come from real nodes only, so padding changes nothing.
    layer = make_layer(batch_norm=True).train()
    x, edge_index, batch, edge_weight = inputs(name, True)
    dense_x, adj, _, mask = dense_batch(x, edge_index, batch, x[:, :1], edge_weight)
    sparse = layer(x, edge_index, batch=batch, edge_weight=edge_weight)
    dense = layer(dense_x, adj, mask=mask)
    for g, e in zip(sparse, dense, strict=True):
        torch.testing.assert_close(g, e, **tolerance(torch.float64))
    params = dict(layer.named_parameters())
    total = sum(out.sum() for out in sparse)
    grads = torch.autograd.grad(total, list(params.values()))
    total_dense = sum(out.sum() for out in dense)
    grads_dense = torch.autograd.grad(total_dense, list(params.values()))
    for (pname, _), g, gd in zip(params.items(), grads, grads_dense, strict=True):
        assert torch.isfinite(g).all(), pname
        torch.testing.assert_close(g, gd, **tolerance(torch.float64))


def test_sparse_adjacency_forms_agree():
    layer = make_layer().eval()
    x, edge_index, batch, edge_weight = inputs('ragged', True)
    expected = layer(x, edge_index, batch=batch, edge_weight=edge_weight)
    n = x.size(0)
    adj_t = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (n, n))
    for form in (adj_t, adj_t.coalesce().to_sparse_csr()):
        for g, e in zip(layer(x, form, batch=batch), expected, strict=True):
            torch.testing.assert_close(g, e, **tolerance(torch.float64))


@pytest.mark.skipif(not has_torch_sparse(), reason='torch_sparse not installed')
def test_sparse_tensor_input():
    from torch_sparse import SparseTensor

    layer = make_layer().eval()
    x, edge_index, batch, edge_weight = inputs('ragged', True)
    n = x.size(0)
    adj_t = SparseTensor(
        row=edge_index[1], col=edge_index[0], value=edge_weight, sparse_sizes=(n, n)
    )
    expected = layer(x, edge_index, batch=batch, edge_weight=edge_weight)
    for g, e in zip(layer(x, adj_t, batch=batch), expected, strict=True):
        torch.testing.assert_close(g, e, **tolerance(torch.float64))


def test_every_parameter_gets_a_gradient_and_shapes():
    layer = make_layer(batch_norm=True).float()
    x, edge_index, batch, _ = inputs('ragged', False)
    x = x.float()
    out, out_adj, link, entropy = layer(x, edge_index, batch=batch)
    assert out.shape == (4, CLUSTERS, OUT)
    assert out_adj.shape == (4, CLUSTERS, CLUSTERS)
    assert link.dim() == entropy.dim() == 0
    (out.sum() + out_adj.sum() + link + entropy).backward()
    for pname, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


def test_dense_gradients_stay_finite_on_graphs_without_edges():
    # A zero in-degree must not turn into a 0 * inf = NaN gradient for a learned adjacency.
    layer = make_layer()
    x, edge_index, batch, _ = inputs('self_loops_no_edges', False)
    dense_x, adj, _, mask = dense_batch(x, edge_index, batch, x[:, :1])
    adj.requires_grad_()
    out, out_adj, link, entropy = layer(dense_x, adj, mask=mask)
    (out.sum() + out_adj.sum() + link + entropy).backward()
    assert torch.isfinite(adj.grad).all()


def test_single_graph_without_batch_and_reset():
    layer = make_layer().eval()
    x, edge_index, _, _ = inputs('one_graph', False)
    first = layer(x, edge_index)[0]
    assert first.shape == (1, CLUSTERS, OUT)
    torch.manual_seed(5)
    layer.reset_parameters()
    second = layer(x, edge_index)[0]
    assert not torch.allclose(first, second)
    torch.manual_seed(5)
    layer.reset_parameters()
    torch.testing.assert_close(layer(x, edge_index)[0], second)


@pytest.mark.parametrize('loss_norm', ['paper', 'pyg'])
def test_gradcheck_x_and_edge_weight(loss_norm):
    """Issue 22: the first (sparse) level differentiates edge_weight, as the dense levels do
    their adjacency."""
    x, edge_index, batch, edge_weight = inputs('ragged', True, seed=4)
    layer = make_layer(4, loss_norm=loss_norm).eval()
    x = x.clone().requires_grad_()
    weight = edge_weight.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, w: layer(a, edge_index, batch, edge_weight=w), (x, weight), fast_mode=True
    )
    dense_x, adj, _, mask = dense_batch(x.detach(), edge_index, batch, x.detach(), edge_weight)
    # Perturb the stored edges only: a structural zero turned into an edge changes the graph
    # (an isolated node's degree jumps from 0), which no derivative describes.
    edges = adj.nonzero(as_tuple=True)

    def dense_run(a, values):
        return layer(a, torch.zeros_like(adj).index_put(edges, values), mask=mask)

    dense_x, values = dense_x.requires_grad_(), adj[edges].clone().requires_grad_()
    assert torch.autograd.gradcheck(dense_run, (dense_x, values), fast_mode=True)


def test_repr():
    assert repr(DiffPool(3, 64, 32, num_clusters=10)) == (
        'DiffPool(3, 64, 32, num_clusters=10, num_layers=3)'
    )
    assert repr(DiffPool(3, 8, 8, 4, num_layers=2)) == (
        'DiffPool(3, 8, 8, num_clusters=4, num_layers=2)'
    )


def test_bad_input():
    layer = make_layer()
    x, edge_index, batch, _ = inputs('ragged', False)
    dense_x, adj, _, mask = dense_batch(x, edge_index, batch, x[:, :1])
    with pytest.raises(ValueError, match='in_channels = 4'):
        layer(x[:, :3], edge_index, batch=batch)
    with pytest.raises(ValueError, match='mask belongs to a dense adj'):
        layer(x, edge_index, mask=mask)
    with pytest.raises(ValueError, match='batch and edge_weight belong'):
        layer(dense_x, adj, batch=batch)
    with pytest.raises(ValueError, match='mask must be'):
        layer(dense_x, adj, mask=mask[:, :-1])
    with pytest.raises(TypeError, match='torch.bool'):
        layer(dense_x, adj, mask=mask.double())
    with pytest.raises(ValueError, match='batch has'):
        layer(x, edge_index, batch=batch[:-1])
    with pytest.raises(ValueError, match='x contains NaN'):
        layer(x * float('nan'), edge_index, batch=batch)
    with pytest.raises(ValueError, match='a dense batch needs'):
        layer(dense_x, adj[:, :-1], mask=mask)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'num_clusters': 0}, 'num_clusters'),
        ({'num_layers': 0}, 'num_layers'),
        ({'loss_norm': 'bce'}, 'loss_norm'),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = {'in_channels': 3, 'hidden_channels': 4, 'out_channels': 4, 'num_clusters': 2}
    with pytest.raises(ValueError, match=match):
        DiffPool(**{**args, **kwargs})


def test_non_int_channels_are_a_type_error():
    with pytest.raises(TypeError, match='in_channels must be an int'):
        DiffPool(in_channels=2.5, hidden_channels=4, out_channels=4, num_clusters=2)


# --- torch.compile ---------------------------------------------------------------------------
@pytest.mark.parametrize('config', [{}, {'batch_norm': True, 'loss_norm': 'pyg'}], ids=str)
def test_dense_level_compiles_without_a_graph_break(config):
    x, edge_index, batch, edge_weight = inputs('ragged', True, seed=5)
    dense_x, adj, _, mask = dense_batch(x, edge_index, batch, x, edge_weight)
    layer = make_layer(5, **config).eval()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(layer)(dense_x, adj, mask=mask)
    assert explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.slow
def test_dense_level_compiled_forward_backward_equal_eager():
    x, edge_index, batch, edge_weight = inputs('ragged', True, seed=6)
    dense_x, adj, _, mask = dense_batch(x, edge_index, batch, x, edge_weight)
    layer = make_layer(6, batch_norm=True).train()  # batch statistics over the real rows
    twin = copy.deepcopy(layer)
    compiled = torch.compile(twin, backend='inductor', fullgraph=True)
    results = []
    for module, params in ((layer, layer), (compiled, twin)):
        leaves = [dense_x.clone().requires_grad_(), adj.clone().requires_grad_()]
        out = module(*leaves, mask=mask)
        probe = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in out)
        grads = torch.autograd.grad(probe, [*leaves, *params.parameters()])
        results.append((*out, *grads, *params.buffers()))  # running statistics too
    torch._dynamo.reset()
    for eager, comp in zip(*results, strict=True):
        torch.testing.assert_close(comp, eager, atol=1e-5, rtol=1e-5)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('config', CONFIGS, ids=str)
@pytest.mark.parametrize('weighted', [False, True])
def test_device_matches_cpu(matches_cpu, config, weighted):
    layer = make_layer(**config).eval()
    x, edge_index, batch, edge_weight = inputs('ragged', weighted)
    x = x.requires_grad_()
    matches_cpu(layer, x, edge_index, batch=batch, edge_weight=edge_weight, grad=True)
