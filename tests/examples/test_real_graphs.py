"""The layers of the three recipes against their dense references on the recipes' real graphs
(ENZYMES, CiteSeer, HGB DBLP), not only on random ones: a mismatch on real structure (isolated
nodes, self-loops, duplicate edges, degree spread) would show here. Float64, eval mode."""

import pytest
import torch
from torch_geometric.data import Batch

from graphops.datasets import load
from graphops.nn.dense.diff_pool_block import DiffPool
from graphops.nn.models.graph_unet import GraphUNet
from graphops.nn.models.gtn import GTN
from graphops.ops import to_csr
from graphops.testing import dense_adjacency, tolerance
from graphops.testing.diff_pool import dense_batch, diff_pool_layer_reference
from graphops.testing.gpool import dense_graph_unet
from graphops.testing.gtn import dblp_subgraph, dense_edge_type_stack, dense_gtn

pytestmark = pytest.mark.slow
TOL = tolerance(torch.float64)


def test_diff_pool_layer_on_enzymes_matches_reference():
    # The ENZYMES recipe's layer: 18 attributes + 3 one-hot labels, 30 wide, batch norm, 13
    # clusters (10% of the 126-node largest graph), on the first 40 graphs.
    dataset = load('ENZYMES', use_node_attr=True)
    batch = Batch.from_data_list([dataset[i] for i in range(40)])
    x = batch.x.double()
    torch.manual_seed(0)
    layer = DiffPool(x.size(1), 30, 30, 13, batch_norm=True).double()
    for stack in (layer.embed_gnn, layer.pool_gnn):
        for norm in stack.norms:  # non-trivial running statistics, so eval mode tests them
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    layer.eval()
    dense_x, adj, _, mask = dense_batch(x, batch.edge_index, batch.batch, x[:, :1])
    expected = diff_pool_layer_reference(layer, dense_x, adj, mask)
    got = layer(x, batch.edge_index, batch=batch.batch)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, **TOL)


@pytest.mark.parametrize('recipe', ['paper', 'pyg-example'])
def test_graph_unet_on_citeseer_matches_reference(recipe):
    data = load('CiteSeer')[0]
    n = data.num_nodes
    if recipe == 'paper':
        settings = {'depth': 4, 'pool_ratios': [2000, 1000, 500, 200], 'act': None}
        hidden, gate = 64, 'sigmoid'
    else:
        settings = {'depth': 3, 'pool_ratios': [2000 / n, 0.5], 'act': 'relu'}
        hidden, gate = 32, 'tanh'
    torch.manual_seed(0)
    model = GraphUNet(data.num_features, hidden, 6, **settings, nonlinearity=gate)
    model = model.double().eval()
    edge_index, _ = to_csr(data.edge_index, None, n).coalesce().to_edge_index()
    x = data.x.double()
    with torch.no_grad():
        adj = dense_adjacency(edge_index, n, None, torch.float64)
        expected = dense_graph_unet(model, x, adj)
        got = model(x, edge_index)
    torch.testing.assert_close(got, expected, **TOL)


def test_gtn_on_a_dblp_subgraph_matches_reference():
    # The DBLP recipe's model (2 layers, raw 0/1 edge types) on the typed subgraph around 25
    # authors: their papers, those papers' venues and co-authors (real structure, ~400 nodes).
    data = dblp_subgraph()
    n, k = data.num_nodes, data.num_relations
    torch.manual_seed(0)
    model = GTN(6, 8, 4, k, num_channels=2, num_layers=2).double()
    for p in model.parameters():
        torch.nn.init.normal_(p)
    rows = data.train_mask.nonzero().view(-1)
    got = model(data.x, data.edge_index, data.edge_type, node_index=rows)
    stack = dense_edge_type_stack(data.edge_index, data.edge_type, n, k, None, True)
    weights = [[conv.weight for conv in layer.convs()] for layer in model.layers]
    expected = dense_gtn(
        data.x,
        stack,
        weights,
        model.weight,
        model.bias,
        model.lin.weight,
        model.lin.bias,
        rows,
    )
    assert rows.numel() > 5
    torch.testing.assert_close(got, expected, **TOL)
