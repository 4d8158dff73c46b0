from itertools import product

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch, to_undirected

from graphops.nn import EigenPool
from graphops.testing import random_features, tolerance
from graphops.testing.eigen_pool import dense_eigen_pool, dense_theta
from graphops.transforms import EigenPooling

TOL = tolerance(torch.float64)


def graph(num_nodes, num_edges, seed, isolated=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes - isolated, (2, num_edges), generator=gen)
    edge_index = to_undirected(edge_index[:, edge_index[0] != edge_index[1]], num_nodes=num_nodes)
    weight = torch.ones(edge_index.size(1), dtype=torch.float64)
    x = random_features(num_nodes, 4, seed=seed)
    return Data(x=x, edge_index=edge_index, edge_weight=weight, num_nodes=num_nodes)


GRAPHS = [graph(30, 70, 0), graph(24, 30, 1, isolated=4), graph(3, 4, 2), graph(9, 20, 3)]
MODES = [1, 2, 3]


def batch_for(modes, pool_size=4, padding='repeat', graphs=GRAPHS):
    t = EigenPooling(pool_size, num_modes=modes, padding=padding)
    batch = Batch.from_data_list([t(g.clone()) for g in graphs])
    c, th, b = t.keys(0)
    return t, batch, batch[c], batch[th].double(), batch[b]


@pytest.mark.parametrize(('modes', 'pool_size'), list(product(MODES, [1, 4, 100])))
def test_matches_dense_reference_on_a_batch(modes, pool_size):
    t, batch, cluster, theta, cbatch = batch_for(modes, pool_size)
    pool = EigenPool(modes)
    out, edge_index, weight = pool(
        batch.x, batch.edge_index, cluster, theta, batch.edge_weight, num_clusters=cbatch.numel()
    )
    adj = to_dense_adj(
        batch.edge_index, edge_attr=batch.edge_weight, max_num_nodes=batch.num_nodes
    )[0]
    omega = torch.nn.functional.one_hot(cluster, cbatch.numel()).double()
    thetas = [omega * theta[:, h : h + 1] for h in range(modes)]  # Theta_h from the stored rows
    ref_x, ref_adj = dense_eigen_pool(batch.x, adj, cluster, thetas)
    torch.testing.assert_close(out, ref_x, **TOL)
    if pool_size == 1:  # singletons: the reference's eigenvectors are the stored ones
        for mine, ref in zip(thetas, dense_theta(adj, cluster, modes)):
            torch.testing.assert_close(mine, ref, **TOL)
    # A' counts the inter-cluster edges: the pooled edge list, duplicates summed.
    pooled = to_dense_adj(edge_index, edge_attr=weight, max_num_nodes=cbatch.numel())[0]
    torch.testing.assert_close(pooled, ref_adj, **TOL)
    counts = torch.zeros_like(pooled)
    for u, v in batch.edge_index.T.tolist():
        if cluster[u] != cluster[v]:
            counts[cluster[u], cluster[v]] += 1
    torch.testing.assert_close(pooled, counts)
    assert edge_index.shape == batch.edge_index.shape  # static shape: intra edges weigh 0


def test_pool_then_broadcast_back_is_the_projection():
    # Zero padding: sum_h Theta_h Theta_h^T is the orthogonal projection onto the modes kept.
    for modes, pool_size in [(1, 4), (2, 4), (3, 4), (3, 1)]:
        _, batch, cluster, theta, cbatch = batch_for(modes, pool_size, padding='zero')
        out, _, _ = EigenPool(modes)(
            batch.x, batch.edge_index, cluster, theta, num_clusters=cbatch.numel()
        )
        k, f = cbatch.numel(), batch.x.size(1)
        back = (theta.unsqueeze(-1) * out.view(k, modes, f)[cluster]).sum(1)  # sum_h Theta_h X'_h
        again, _, _ = EigenPool(modes)(back, batch.edge_index, cluster, theta, num_clusters=k)
        back2 = (theta.unsqueeze(-1) * again.view(k, modes, f)[cluster]).sum(1)
        torch.testing.assert_close(back2, back, **TOL)  # idempotent
        torch.testing.assert_close(
            (batch.x - back).mul(back).sum(), torch.tensor(0.0, dtype=torch.float64), **TOL
        )
        if pool_size == 1:  # H >= every subgraph size: a full basis, the identity
            torch.testing.assert_close(back, batch.x, **TOL)


def test_constant_modes_give_mean_pool():
    _, batch, cluster, _, cbatch = batch_for(1)
    k = cbatch.numel()
    sizes = torch.bincount(cluster, minlength=k).double()
    theta = (1.0 / sizes[cluster]).unsqueeze(-1)
    out, _, _ = EigenPool(1)(batch.x, batch.edge_index, cluster, theta, num_clusters=k)
    mean = torch.zeros(k, batch.x.size(1), dtype=torch.float64).index_add(0, cluster, batch.x)
    torch.testing.assert_close(out, mean / sizes.unsqueeze(-1), **TOL)


def test_singletons_pool_to_themselves():
    _, batch, cluster, theta, cbatch = batch_for(2, pool_size=1)
    assert cbatch.numel() == batch.num_nodes  # K = N
    out, edge_index, weight = EigenPool(2)(batch.x, batch.edge_index, cluster, theta)
    torch.testing.assert_close(out, torch.cat([batch.x, batch.x], 1), **TOL)
    assert torch.equal(edge_index, cluster[batch.edge_index])


def test_gradcheck():
    _, batch, cluster, theta, cbatch = batch_for(2, 3, graphs=GRAPHS[2:])
    x = batch.x.clone().requires_grad_()
    w = batch.edge_weight.clone().requires_grad_()
    pool = EigenPool(2)

    def fn(x, w):
        out, _, weight = pool(x, batch.edge_index, cluster, theta, w, num_clusters=cbatch.numel())
        return out, weight

    assert torch.autograd.gradcheck(fn, (x, w))
    adj = to_dense_adj(batch.edge_index, batch.batch, batch.edge_weight).requires_grad_()
    xd, mask = to_dense_batch(batch.x, batch.batch)
    xd = xd.requires_grad_()
    local = (
        cluster
        - torch.cat(
            [torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(cbatch), 0)[:-1]]
        )[batch.batch]
    )
    cd, _ = to_dense_batch(local, batch.batch)
    td, _ = to_dense_batch(theta, batch.batch)

    def dense(xd, adj):
        return pool(xd, adj, cd, td, num_clusters=int(local.max()) + 1, mask=mask)

    assert torch.autograd.gradcheck(dense, (xd, adj))


def test_dense_form_equals_sparse_form():
    _, batch, cluster, theta, cbatch = batch_for(2)
    pool = EigenPool(2)
    out, edge_index, weight = pool(batch.x, batch.edge_index, cluster, theta, batch.edge_weight)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(cbatch), 0)])
    local = cluster - starts[:-1][batch.batch]
    xd, mask = to_dense_batch(batch.x, batch.batch)
    adj = to_dense_adj(batch.edge_index, batch.batch, batch.edge_weight)
    cd, _ = to_dense_batch(local, batch.batch)
    td, _ = to_dense_batch(theta, batch.batch)
    k = int(local.max()) + 1
    dx, dadj = pool(xd, adj, cd, td, num_clusters=k, mask=mask)
    pooled = to_dense_adj(edge_index, cbatch, weight, max_num_nodes=k)
    x_sparse, _ = to_dense_batch(out, cbatch, max_num_nodes=k)
    torch.testing.assert_close(dx, x_sparse, **TOL)
    torch.testing.assert_close(dadj, pooled, **TOL)


def test_no_graph_break_and_compiled_equals_eager():
    _, batch, cluster, theta, cbatch = batch_for(2)
    pool = EigenPool(2)
    k = cbatch.numel()

    def fn(x, edge_index, cluster, theta, weight):
        return pool(x, edge_index, cluster, theta, weight, num_clusters=k)

    args = (batch.x, batch.edge_index, cluster, theta, batch.edge_weight)
    explanation = torch._dynamo.explain(fn)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend='eager', fullgraph=True)
    for a, b in zip(compiled(*args), fn(*args)):
        torch.testing.assert_close(a, b)


def test_bad_input_names_the_argument():
    _, batch, cluster, theta, cbatch = batch_for(2)
    pool = EigenPool(2)
    x = batch.x.clone()
    x[3, 1] = float('nan')
    with pytest.raises(ValueError, match='x'):
        pool(x, batch.edge_index, cluster, theta)
    with pytest.raises(ValueError, match='theta'):
        pool(batch.x, batch.edge_index, cluster, theta[:, :1])
    with pytest.raises(ValueError, match='cluster'):
        pool(batch.x, batch.edge_index, cluster[:-1], theta)
    with pytest.raises(ValueError, match='cluster'):
        pool(batch.x, batch.edge_index, cluster, theta, num_clusters=2)
    with pytest.raises(ValueError, match='adj'):
        pool(
            batch.x.unsqueeze(0),
            torch.zeros(1, batch.num_nodes, 3, dtype=torch.float64),
            cluster.unsqueeze(0),
            theta.unsqueeze(0),
        )
    with pytest.raises(ValueError, match='num_modes'):
        EigenPool(0)


def test_repr():
    assert repr(EigenPool(3)) == 'EigenPool(num_modes=3)'


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize(('modes', 'pool_size'), list(product(MODES, [1, 4])))
def test_device_matches_cpu(matches_cpu, modes, pool_size):
    _, batch, cluster, theta, cbatch = batch_for(modes, pool_size)
    x = batch.x.clone().requires_grad_()
    weight = batch.edge_weight.clone().requires_grad_()
    pool = EigenPool(modes)
    matches_cpu(
        pool, x, batch.edge_index, cluster, theta, weight, num_clusters=cbatch.numel(), grad=True
    )
