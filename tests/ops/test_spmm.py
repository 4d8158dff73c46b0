import pytest
import torch

from graphops.ops import spmm, to_csr
from graphops.testing import DTYPES, awkward_graphs, dense_adjacency, random_features, tolerance

GRAPHS = list(awkward_graphs(weighted=True))


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('reduce', ['sum', 'mean'])
def test_spmm_matches_dense(graph, dtype, reduce):
    csr = to_csr(graph.edge_index, graph.edge_weight.to(dtype), graph.num_nodes)
    x = random_features(graph.num_nodes, 5, dtype=dtype)
    adj = dense_adjacency(graph.edge_index, graph.num_nodes, graph.edge_weight, dtype)
    expected = adj @ x
    if reduce == 'mean':
        expected = expected / csr.row_counts().clamp(min=1).to(dtype)[:, None]
    torch.testing.assert_close(spmm(csr, x, reduce), expected, **tolerance(dtype))


def test_spmm_bipartite():
    ei = torch.tensor([[0, 4, 4], [2, 1, 1]])
    csr = to_csr(ei, num_nodes=(5, 3))
    x = random_features(5, 2)
    torch.testing.assert_close(spmm(csr, x), dense_adjacency(ei, (5, 3)) @ x)


def test_spmm_bad_input():
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match='x has 3 entries'):
        spmm(csr, torch.randn(3, 2))
    with pytest.raises(TypeError, match='x must be a floating-point'):
        spmm(csr, torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='2-dimensional'):
        spmm(csr, torch.randn(2))
    with pytest.raises(ValueError, match='reduce'):
        spmm(csr, torch.randn(2, 2), 'max')
