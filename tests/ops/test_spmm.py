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


# --- backends -------------------------------------------------------------------------------------

from graphops.ops.spmm import has_numba  # noqa: E402
from graphops.testing import random_graph  # noqa: E402

needs_numba = pytest.mark.skipif(not has_numba(), reason='numba is not installed')


@needs_numba
@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('weighted', [True, False])
@pytest.mark.parametrize('reduce', ['sum', 'mean'])
def test_numba_backend_matches_dense_float64(graph, weighted, reduce):
    weight = graph.edge_weight if weighted else None
    csr = to_csr(graph.edge_index, weight, graph.num_nodes)
    x = random_features(graph.num_nodes, 7)
    adj = dense_adjacency(graph.edge_index, graph.num_nodes, weight)
    expected = adj @ x
    if reduce == 'mean':
        expected = expected / csr.row_counts().clamp(min=1).double()[:, None]
    out = spmm(csr, x, reduce, backend='numba')
    torch.testing.assert_close(out, expected, **tolerance(torch.float64))
    torch.testing.assert_close(out, spmm(csr, x, reduce, backend='torch'), **tolerance(x.dtype))


@needs_numba
@pytest.mark.parametrize('index_dtype', [torch.int32, torch.int64])
def test_numba_backend_index_dtypes_and_out(index_dtype):
    g = random_graph(300, 3000, seed=3, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes).to(index_dtype=index_dtype)
    x = random_features(300, 33, dtype=torch.float32)
    out = torch.full((300, 33), float('nan'))
    result = spmm(csr, x, out=out, backend='numba')
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, spmm(csr, x, backend='torch'), **tolerance(torch.float32))


def test_autograd_goes_through_torch():
    g = random_graph(20, 80, seed=5, weighted=True)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(20, 3).requires_grad_()
    torch.autograd.gradcheck(lambda f: spmm(csr, f), (x,))
    with torch.no_grad():  # no gradient wanted: the fast kernel, same values
        torch.testing.assert_close(spmm(csr, x), spmm(csr, x.detach(), backend='torch'))


def test_spmm_bad_backend_and_out():
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match='backend must be one of'):
        spmm(csr, x, backend='mkl')
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA tensors"):
        spmm(csr, x, backend='cuda')
    with pytest.raises(ValueError, match='out must be a'):
        spmm(csr, x, out=torch.empty(2, 4))
    with pytest.raises(ValueError, match='out must be a'):
        spmm(csr, x, out=torch.empty(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match='contiguous'):
        spmm(csr, x, out=torch.empty(3, 2).t())
    with pytest.raises(TypeError, match='out must be a torch.Tensor'):
        spmm(csr, x, out=[[0.0] * 3] * 2)
    if has_numba():
        with pytest.raises(ValueError, match='float32/float64'):
            spmm(csr, x.half(), backend='numba')


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_spmm_cuda_matches_cpu():
    g = random_graph(400, 5000, seed=6, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(400, 16, dtype=torch.float32)
    expected = spmm(csr, x)
    out = spmm(csr.to('cuda'), x.cuda())
    torch.testing.assert_close(out.cpu(), expected, **tolerance(torch.float32))
