import pytest
import torch
import torch.nn.functional as F

from graphops.nn.models.diff_pool_net import DiffPoolNet
from graphops.testing import random_features
from graphops.testing.diff_pool import awkward_batch

GRAPHS = ['random', 'single_node', 'isolated_nodes', 'self_loops', 'no_edges']


def batch_inputs(dtype=torch.float64):
    edge_index, _, batch, n = awkward_batch(GRAPHS)
    return random_features(n, 3, dtype=dtype), edge_index, batch


@pytest.mark.parametrize(
    'kwargs, clusters',
    [
        ({}, [155, 39]),
        ({'num_pools': 1}, [62]),
        ({'num_pools': 3, 'pool_ratio': 0.5}, [310, 155, 78]),
        ({'pool_ratio': 0.001}, [1, 1]),
    ],
)
def test_cluster_counts_follow_the_paper(kwargs, clusters):
    model = DiffPoolNet(3, 8, 2, 620, **kwargs)
    assert model.num_clusters == clusters
    assert [pool.num_clusters for pool in model.pools] == clusters


def test_repr():
    model = DiffPoolNet(3, 64, 2, max_num_nodes=100)
    assert repr(model) == 'DiffPoolNet(3, 64, 2, max_num_nodes=100, num_clusters=[25, 7])'


@pytest.mark.parametrize('readout', ['mean', 'max', 'sum'])
def test_forward_keeps_graphs_larger_than_max_num_nodes(readout):
    torch.manual_seed(0)
    x, edge_index, batch = batch_inputs()
    # max_num_nodes is smaller than the 15-node graph: it only sets the cluster counts.
    model = DiffPoolNet(3, 8, 4, max_num_nodes=6, readout=readout).double().eval()
    logits, aux_loss = model(x, edge_index, batch)
    assert logits.shape == (len(GRAPHS), 4)
    assert aux_loss.dim() == 0 and torch.isfinite(aux_loss)
    # Graphs are pooled independently: each one alone gives its own row.
    for g in (0, 2):
        nodes = (batch == g).nonzero().flatten()
        keep = (batch[edge_index[0]] == g).nonzero().flatten()
        alone, _ = model(x[nodes], edge_index[:, keep] - nodes[0])
        torch.testing.assert_close(alone[0], logits[g])


def test_aux_loss_is_the_weighted_sum_of_the_pooling_losses():
    torch.manual_seed(1)
    x, edge_index, batch = batch_inputs()
    model = DiffPoolNet(
        3, 8, 2, 20, link_loss_weight=0.5, entropy_loss_weight=2.0, loss_norm='paper'
    )
    model = model.double().eval()
    _, aux_loss = model(x, edge_index, batch)
    h, adj, link, entropy = model.pools[0](x, edge_index, batch=batch)
    _, _, link2, entropy2 = model.pools[1](h, adj)
    torch.testing.assert_close(aux_loss, 0.5 * (link + link2) + 2.0 * (entropy + entropy2))
    model.link_loss_weight = model.entropy_loss_weight = 0.0
    assert model(x, edge_index, batch)[1] == 0


def ring_and_clique_batch(num_graphs, seed):
    """Label 0: rings, label 1: cliques, 4-8 nodes; the feature is the degree / 8 (a mean
    aggregator cannot count neighbours of constant features, as in the example's datasets)."""
    gen = torch.Generator().manual_seed(seed)
    edges, batch, labels, offset = [], [], [], 0
    for g in range(num_graphs):
        n = int(torch.randint(4, 9, (1,), generator=gen))
        label = g % 2
        if label == 0:
            src = torch.arange(n)
            pairs = torch.stack([src, (src + 1) % n])
        else:
            pairs = torch.combinations(torch.arange(n)).t()
        edges.append(torch.cat([pairs, pairs.flip(0)], 1) + offset)
        batch.append(torch.full((n,), g))
        labels.append(label)
        offset += n
    edge_index = torch.cat(edges, 1)
    x = torch.bincount(edge_index[1], minlength=offset).float().unsqueeze(-1) / 8
    return x, edge_index, torch.cat(batch), torch.tensor(labels)


def test_learns_to_tell_rings_from_cliques():
    torch.manual_seed(0)
    x, edge_index, batch, y = ring_and_clique_batch(16, seed=0)
    model = DiffPoolNet(1, 16, 2, max_num_nodes=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        logits, aux_loss = model(x, edge_index, batch)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        (loss + aux_loss).backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    x, edge_index, batch, y = ring_and_clique_batch(16, seed=1)
    accuracy = (model(x, edge_index, batch)[0].argmax(-1) == y).float().mean()
    assert accuracy >= 0.9


def test_every_parameter_trains():
    torch.manual_seed(2)
    x, edge_index, batch = batch_inputs(torch.float32)
    model = DiffPoolNet(3, 8, 2, 16, batch_norm=True)
    logits, aux_loss = model(x, edge_index, batch)
    (logits.sum() + aux_loss).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'num_pools': 0}, 'num_pools'),
        ({'pool_ratio': 1.5}, 'pool_ratio'),
        ({'readout': 'attention'}, 'readout'),
        ({'dropout': 1.0}, 'dropout'),
        ({'loss_norm': 'bce'}, 'loss_norm'),
        ({'max_num_nodes': 0}, 'max_num_nodes'),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {'in_channels': 3, 'hidden_channels': 8, 'out_channels': 2, 'max_num_nodes': 10}
    with pytest.raises(ValueError, match=match):
        DiffPoolNet(**{**args, **kwargs})


def test_bad_input_is_reported_by_the_first_level():
    x, edge_index, batch = batch_inputs(torch.float32)
    model = DiffPoolNet(3, 8, 2, 16)
    with pytest.raises(ValueError, match='in_channels = 3'):
        model(x[:, :2], edge_index, batch)
    with pytest.raises(ValueError, match='sorted'):
        model(x, edge_index, batch.flip(0))


# --- torch.compile ---------------------------------------------------------------------------
def test_dense_levels_compile_without_a_graph_break():
    x, edge_index, batch = batch_inputs()[:3]
    torch.manual_seed(0)
    model = DiffPoolNet(3, 8, 2, max_num_nodes=40, num_pools=3, pool_ratio=0.5).double().eval()
    # The first level pools the sparse batch; every later level is dense.
    h, adj, _, _ = model.pools[0](x, edge_index, batch=batch)
    for level in model.pools[1:]:
        torch._dynamo.reset()
        explained = torch._dynamo.explain(level)(h, adj)
        assert explained.graph_break_count == 0, explained.break_reasons
        h, adj, _, _ = level(h, adj)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('kwargs', [{}, {'num_pools': 1}, {'num_pools': 3, 'pool_ratio': 0.5}])
def test_device_matches_cpu(matches_cpu, kwargs):
    x, edge_index, batch = batch_inputs()
    torch.manual_seed(0)
    model = DiffPoolNet(3, 8, 2, max_num_nodes=20, **kwargs).double().eval()
    matches_cpu(model, x.requires_grad_(), edge_index, batch, grad=True)
