import pytest
import torch

from graphops.ops import to_csr
from graphops.ops.spmm import has_numba
from graphops.ops.triangle import triangle_adjacency
from graphops.testing import awkward_graphs, dense_adjacency, random_graph
from graphops.testing.sign import dense_triangle_adjacency

GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]
BACKENDS = ['torch'] + (['numba'] if has_numba() else [])


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('backend', BACKENDS)
def test_triangle_adjacency_matches_dense(graph, backend):
    csr = to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes)
    result = triangle_adjacency(csr, backend=backend)
    expected = dense_triangle_adjacency(dense_adjacency(graph.edge_index, graph.num_nodes))
    torch.testing.assert_close(result.to_dense(torch.float64), expected)
    assert bool((result.values() > 0).all())  # edges on no triangle are dropped


@pytest.mark.parametrize('backend', BACKENDS)
def test_triangle_adjacency_dense_graph_small_blocks(backend):
    g = random_graph(60, 900, seed=2)
    csr = to_csr(g.edge_index, num_nodes=60)
    result = triangle_adjacency(csr, backend=backend, block_wedges=7, drop_zeros=False)
    expected = dense_triangle_adjacency(dense_adjacency(g.edge_index, 60))
    torch.testing.assert_close(result.to_dense(torch.float64), expected)
    # with drop_zeros=False the structure is exactly the symmetrised graph's
    assert result.nnz == int((expected != 0).sum()) + int(
        ((dense_adjacency(g.edge_index, 60) + dense_adjacency(g.edge_index, 60).t()) != 0)
        .fill_diagonal_(False)
        .sum()
        - (expected != 0).sum()
    )


def test_triangle_known_counts():
    # a 4-clique: every edge closes 2 triangles; a pendant edge closes none
    clique = [(i, j) for i in range(4) for j in range(4) if i < j]
    ei = torch.tensor(clique + [(3, 4)]).t()
    result = triangle_adjacency(to_csr(ei, num_nodes=5))
    dense = result.to_dense()
    assert dense[0, 1] == 2 and dense[1, 0] == 2 and dense[3, 4] == 0 and dense[4].sum() == 0


def test_triangle_adjacency_bad_input():
    with pytest.raises(TypeError, match='graphops CSR'):
        triangle_adjacency(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match='square'):
        triangle_adjacency(to_csr(torch.tensor([[0], [1]]), num_nodes=(1, 2)))
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match='backend must be one of'):
        triangle_adjacency(csr, backend='scipy')
    with pytest.raises(ValueError, match='block_wedges'):
        triangle_adjacency(csr, block_wedges=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_triangle_adjacency_cuda():
    g = random_graph(80, 800, seed=3)
    csr = to_csr(g.edge_index, num_nodes=80)
    result = triangle_adjacency(csr.to('cuda'))
    expected = dense_triangle_adjacency(dense_adjacency(g.edge_index, 80))
    torch.testing.assert_close(result.to_dense(torch.float64).cpu(), expected)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
def test_triangle_adjacency_device_matches_cpu(matches_cpu, graph):
    csr = to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes)
    matches_cpu(triangle_adjacency, csr)
