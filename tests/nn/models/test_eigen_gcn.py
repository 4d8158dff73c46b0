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
@pytest.mark.parametrize('propagation', ['gcn', 'sum'])
def test_dense_form_equals_sparse_form(cfg, propagation):
    t = EigenPooling(**cfg)
    data = [t(g.clone()) for g in GRAPHS]
    model = model_for(cfg, propagation=propagation).eval()
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


def gcnconv_forward(model, x, edge_index, batch, clusters, thetas, batches, edge_weight=None):
    """EigenGCN's sparse forward as first written: every layer a GCNConv call that normalises
    the adjacency itself (or, for ``propagation='sum'``, a GCNConv with ``normalize=False``:
    the raw adjacency, no self-loops), every level through EigenPool.forward."""
    raw = model.propagation == 'sum'
    num_graphs = batches[-1].numel() if model.final_modes else None
    weight = edge_weight if edge_weight is not None else x.new_ones(edge_index.size(1))

    def stage(s, x, edge_index, weight):
        if not raw:
            loops = torch.arange(x.size(0))
            edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
            weight = torch.cat([weight, weight.new_ones(x.size(0))])
        outs, convs, norms = [], model.convs[s], model.norms[s]
        for i, conv in enumerate(convs):
            if 0 < i < len(convs) - 1:
                x = F.dropout(x, model.dropout, model.training)
            conv.normalize = not raw
            x = F.normalize(conv(x, edge_index, weight), p=2.0, dim=-1)
            conv.normalize = True
            if i < len(convs) - 1:
                x = norms[i](F.relu(x))
            outs.append(x)
        return torch.cat(outs, dim=-1)

    def readout(h, batch):
        size = num_graphs if num_graphs is not None else int(batch.max()) + 1
        out = h.new_full((size, h.size(1)), float('-inf'))
        index = batch.unsqueeze(-1).expand_as(h)
        return out.scatter_reduce(0, index, h, 'amax', include_self=True)

    readouts = []
    for s in range(model.num_pools + 1):
        h = stage(s, x, edge_index, weight)
        readouts.append(readout(h, batch))
        if s < model.num_pools:
            x, edge_index, weight = model.pools[s](
                h, edge_index, clusters[s], thetas[s], weight, num_clusters=batches[s].numel()
            )
            batch = batches[s]
    if model.final_pool is not None:
        g, _, _ = model.final_pool(
            h, edge_index, clusters[-1], thetas[-1], weight, num_clusters=num_graphs
        )
        readouts.append(g)
    return model._head(torch.cat(readouts, dim=-1))


@pytest.mark.parametrize('cfg', CONFIGS)
@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('directed_weighted', [False, True])
@pytest.mark.parametrize('propagation', ['gcn', 'sum'])
def test_matches_the_gcnconv_formulation(cfg, training, directed_weighted, propagation):
    # The stage normalises its adjacency once and propagates by SpMM; the same weights must
    # give the per-call GCNConv formulation's outputs and gradients (dropout masks alike: the
    # same random stream), in-degree normalisation on directed edges included.
    t = EigenPooling(**cfg)
    # GRAPHS with a ring added: an isolated node's layer outputs can coincide with another's
    # after normalisation, and a tied maximum in the readout splits its gradient by rounding.
    graphs = []
    for g in GRAPHS:
        ring = torch.arange(g.num_nodes)
        ring = to_undirected(torch.stack([ring, ring.roll(1)]), num_nodes=g.num_nodes)
        graphs.append(g.clone())
        graphs[-1].edge_index = torch.cat([g.edge_index, ring], dim=1)
    batch = Batch.from_data_list([t(g) for g in graphs])
    edge_index, weight = batch.edge_index, None
    if directed_weighted:  # a weight per direction: the normalised adjacency is not symmetric
        gen = torch.Generator().manual_seed(2)
        weight = torch.rand(edge_index.size(1), generator=gen, dtype=torch.float64) + 0.1
    model = model_for(cfg, dropout=0.3, propagation=propagation).train(training)
    ins = inputs(batch, t)
    results = []
    for forward in (model, lambda *a, **k: gcnconv_forward(model, *a, **k)):
        model.zero_grad()
        w = None if weight is None else weight.clone().requires_grad_()
        torch.manual_seed(1)
        out = forward(batch.x, edge_index, batch.batch, *ins, edge_weight=w)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((out.detach(), grads, None if w is None else w.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    for new, old in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(new, old)
    if directed_weighted:
        torch.testing.assert_close(results[0][2], results[1][2])


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
    model = EigenGCN(3, 8, 2, propagation='sum')
    assert repr(model).endswith("num_layers=3, propagation='sum')")
    model = EigenGCN(3, 8, 2, batch_norm=False, propagation='sum')
    assert repr(model).endswith("num_layers=3, batch_norm=False, propagation='sum')")
    with pytest.raises(ValueError, match='propagation'):
        EigenGCN(3, 8, 2, propagation='mean')


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('cfg', CONFIGS)
def test_device_matches_cpu(matches_cpu, cfg):
    t = EigenPooling(**cfg)
    batch = Batch.from_data_list([t(g.clone()) for g in GRAPHS])
    model = model_for(cfg).eval()
    x = batch.x.clone().requires_grad_()
    matches_cpu(model, x, batch.edge_index, batch.batch, *inputs(batch, t), grad=True)
