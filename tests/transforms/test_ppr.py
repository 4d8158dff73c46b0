import math

import pytest
import torch

from graphops.ops import to_csr
from graphops.testing import awkward_graphs, dense_adjacency, random_features, random_graph
from graphops.testing.sign import dense_operator_matrix, dense_ppr_matrix
from graphops.transforms.ppr import PPR

GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('norm', ['sym', 'rw', 'col'])
@pytest.mark.parametrize('alpha', [0.3, 0.6])
def test_ppr_matches_dense_inverse(graph, norm, alpha):
    tol = 1e-9
    op = PPR(2, alpha=alpha, norm=norm, tol=tol)
    x = random_features(graph.num_nodes, 3)
    out = op.propagate(to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes), x)
    adj = dense_adjacency(graph.edge_index, graph.num_nodes, graph.edge_weight)
    ppr = dense_ppr_matrix(dense_operator_matrix(adj, norm, add_self_loops=True), alpha)
    scale = float(x.abs().max())
    expected = [ppr @ x, ppr @ ppr @ x]
    for got, want in zip(out.values(), expected):
        # the series is cut at tol * ||X||; a few times that covers the norms used here
        torch.testing.assert_close(got, want, atol=50 * tol * scale, rtol=0)


def test_ppr_stated_tolerance_holds_for_rw():
    g = random_graph(40, 200, seed=3)
    x = random_features(40, 2)
    adj = dense_adjacency(g.edge_index, 40)
    for tol in (1e-2, 1e-4):
        op = PPR(1, alpha=0.2, norm='rw', tol=tol)
        got = op.propagate(to_csr(g.edge_index, num_nodes=40), x)['ppr1']
        want = dense_ppr_matrix(dense_operator_matrix(adj, 'rw', True), 0.2) @ x
        # max-row norm of A_hat is 1 for 'rw': the bound is exact
        assert float((got - want).abs().max()) <= tol * float(x.abs().max())


def test_ppr_iterations_formula():
    op = PPR(1, alpha=0.15, tol=1e-4)
    steps = op.num_iterations(0.15)
    assert 0.85 ** (steps + 1) <= 1e-4 < 0.85**steps
    assert steps == math.ceil(math.log(1e-4) / math.log(0.85)) - 1
    assert op.products_per_hop == steps


def test_ppr_several_alphas_equal_separate_runs():
    g = random_graph(50, 300, seed=4, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, 50)
    x = random_features(50, 6, dtype=torch.float32)
    both = PPR(2, alpha=[0.1, 0.3], tol=1e-3).propagate(csr, x)
    assert list(both) == ['ppr_a0.1_1', 'ppr_a0.1_2', 'ppr_a0.3_1', 'ppr_a0.3_2']
    for alpha in (0.1, 0.3):
        alone = PPR(2, alpha=alpha, tol=1e-3).propagate(csr, x)
        assert torch.equal(both[f'ppr_a{alpha:g}_2'], alone['ppr2'])


def test_ppr_repr_and_bad_input():
    assert repr(PPR(2)) == (
        "PPR(2, alpha=0.15, norm='sym', add_self_loops=True, direction='directed', tol=0.0001, "
        "prefix='ppr')"
    )
    assert 'alpha=[0.1, 0.2]' in repr(PPR(1, alpha=[0.1, 0.2]))
    with pytest.raises(ValueError, match='alpha must lie in'):
        PPR(2, alpha=1.0)
    with pytest.raises(TypeError, match='alpha must be a float'):
        PPR(2, alpha='0.1')
    with pytest.raises(ValueError, match='distinct'):
        PPR(2, alpha=[0.1, 0.1])
    with pytest.raises(ValueError, match='at least one'):
        PPR(2, alpha=[])
    with pytest.raises(ValueError, match='norm must be one of'):
        PPR(2, norm=None)
    with pytest.raises(ValueError, match='tol must be'):
        PPR(2, tol=0.0)
    with pytest.raises(ValueError, match='direction'):
        PPR(2, direction='up')


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('alpha', [0.3, [0.1, 0.5]])
@pytest.mark.parametrize('norm', ['sym', 'rw'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_ppr_device_matches_cpu(device, alpha, norm, dtype):
    g = random_graph(60, 400, seed=9, isolated=4, weighted=True, dtype=dtype)
    csr = to_csr(g.edge_index, g.edge_weight, 60)
    x = random_features(60, 4, dtype=dtype)
    op = PPR(2, alpha=alpha, norm=norm, tol=1e-4)
    expected = op.propagate(csr, x)
    got = op.propagate(csr.to(device), x.to(device))
    assert list(got) == list(expected) == op.keys()
    for key, value in expected.items():
        assert got[key].device.type == device.type and got[key].dtype == dtype
        torch.testing.assert_close(got[key].cpu(), value)
