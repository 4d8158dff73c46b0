import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import to_dense_adj, to_dense_batch, to_undirected

from graphops.nn.models import EigenGCN
from graphops.testing import random_features
from graphops.transforms import EigenPooling


def graph(num_nodes, num_edges, seed, label):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = to_undirected(edge_index[:, edge_index[0] != edge_index[1]], num_nodes=num_nodes)
    x = random_features(num_nodes, 3, seed=seed)
    return Data(x=x, edge_index=edge_index, y=torch.tensor([label]), num_nodes=num_nodes)


GRAPHS = [graph(n, 2 * n, seed, seed % 2) for seed, n in enumerate([20, 35, 7, 12, 26, 9])]
CONFIGS = [
    {'pool_sizes': [5], 'num_modes': 1, 'final_modes': 0},
    {'pool_sizes': [4], 'num_modes': 2, 'final_modes': 1},
    {'pool_sizes': [3, 2], 'num_modes': 3, 'final_modes': 2},
]


def inputs(batch, t):
    levels = range(t.num_levels)
    return (
        [batch[t.keys(level)[0]] for level in levels],
        [batch[t.keys(level)[1]] for level in levels],
        [batch[t.keys(level)[2]] for level in levels],
    )


def model_for(cfg, **kwargs):
    torch.manual_seed(0)
    return EigenGCN(
        3,
        8,
        2,
        num_pools=len(cfg['pool_sizes']),
        num_modes=cfg['num_modes'],
        final_modes=cfg['final_modes'],
        **kwargs,
    ).double()


@pytest.mark.parametrize('cfg', CONFIGS)
def test_batched_equals_one_graph_at_a_time(cfg):
    t = EigenPooling(**cfg)
    data = [t(g.clone()) for g in GRAPHS]
    model = model_for(cfg, batch_norm=False).eval()
    batch = Batch.from_data_list(data)
    out = model(batch.x, batch.edge_index, batch.batch, *inputs(batch, t))
    assert out.shape == (len(GRAPHS), 2)
    for i, d in enumerate(data):
        one = Batch.from_data_list([d])
        ref = model(one.x, one.edge_index, one.batch, *inputs(one, t))
        torch.testing.assert_close(out[i : i + 1], ref)


@pytest.mark.parametrize('cfg', CONFIGS)
def test_dense_form_equals_sparse_form(cfg):
    t = EigenPooling(**cfg)
    data = [t(g.clone()) for g in GRAPHS]
    model = model_for(cfg).eval()
    batch = Batch.from_data_list(data)
    clusters, thetas, batches = inputs(batch, t)
    sparse = model(batch.x, batch.edge_index, batch.batch, clusters, thetas, batches)
    xd, mask = to_dense_batch(batch.x, batch.batch)
    adj = to_dense_adj(batch.edge_index, batch.batch)
    node_batch, dense_clusters, dense_thetas = batch.batch, [], []
    for cluster, theta, cbatch in zip(clusters, thetas, batches):
        starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(cbatch).cumsum(0)])
        local = cluster - starts[:-1][node_batch]
        dense_clusters.append(to_dense_batch(local, node_batch)[0])
        dense_thetas.append(to_dense_batch(theta, node_batch)[0])
        node_batch = cbatch
    dense = model(xd, adj, None, dense_clusters, dense_thetas, mask=mask)
    torch.testing.assert_close(dense, sparse)


def test_trains_on_a_collated_loader():
    cfg = CONFIGS[1]
    t = EigenPooling(**cfg)
    loader = DataLoader([t(g.clone()) for g in GRAPHS], batch_size=3, shuffle=True)
    model = model_for(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        total = 0.0
        for batch in loader:
            opt.zero_grad()
            out = model(batch.x, batch.edge_index, batch.batch, *inputs(batch, t))
            loss = F.cross_entropy(out, batch.y)
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total)
    assert losses[-1] < 0.5 * losses[0]


def test_bad_input_names_the_argument():
    t = EigenPooling(**CONFIGS[1])
    batch = Batch.from_data_list([t(g.clone()) for g in GRAPHS])
    model = model_for(CONFIGS[1])
    clusters, thetas, batches = inputs(batch, t)
    with pytest.raises(ValueError, match='clusters'):
        model(batch.x, batch.edge_index, batch.batch, clusters[:1], thetas[:1], batches[:1])
    x = batch.x.clone()
    x[0, 0] = float('nan')
    with pytest.raises(ValueError, match='x'):
        model(x, batch.edge_index, batch.batch, clusters, thetas, batches)
    with pytest.raises(ValueError, match='num_layers'):
        EigenGCN(3, 8, 2, num_layers=1)
    with pytest.raises(ValueError, match='hidden_channels'):
        EigenGCN(3, 0, 2)


def test_repr():
    model = EigenGCN(3, 8, 2, num_pools=1, num_modes=2, final_modes=1)
    assert repr(model) == (
        'EigenGCN(3, 8, 2, num_pools=1, num_modes=2, final_modes=1, num_layers=3)'
    )


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('cfg', CONFIGS)
def test_device_matches_cpu(matches_cpu, cfg):
    t = EigenPooling(**cfg)
    batch = Batch.from_data_list([t(g.clone()) for g in GRAPHS])
    model = model_for(cfg).eval()
    x = batch.x.clone().requires_grad_()
    matches_cpu(model, x, batch.edge_index, batch.batch, *inputs(batch, t), grad=True)
