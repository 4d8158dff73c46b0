import pytest
import torch

from graphops.ops import sddmm, to_csr, use_backend
from graphops.testing import DTYPES, awkward_graphs, random_features, random_graph, tolerance

GRAPHS = list(awkward_graphs())


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('dtype', DTYPES)
def test_sddmm_matches_dense(graph, dtype):
    csr = to_csr(graph.edge_index, None, graph.num_nodes)
    left = random_features(graph.num_nodes, 5, seed=1, dtype=dtype)
    right = random_features(graph.num_nodes, 5, seed=2, dtype=dtype)
    expected = (left @ right.t())[csr.row().long(), csr.col.long()]
    torch.testing.assert_close(sddmm(csr, left, right), expected, **tolerance(dtype))


@pytest.mark.parametrize('kernel', [True, False])
def test_kernel_and_torch_paths_agree(kernel):
    g = random_graph(30, 400, seed=3)
    csr = to_csr(g.edge_index, None, 30)
    left, right = random_features(30, 7, seed=4), random_features(30, 7, seed=5)
    expected = (left[csr.row().long()] * right[csr.col.long()]).sum(1)
    with use_backend('auto' if kernel else 'torch'):
        torch.testing.assert_close(sddmm(csr, left, right), expected)


def test_sddmm_is_differentiable_when_asked():
    g = random_graph(12, 40, seed=6)
    csr = to_csr(g.edge_index, None, 12)
    left = random_features(12, 3, seed=7).requires_grad_()
    right = random_features(12, 3, seed=8).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: sddmm(csr, a, b), (left, right))


def test_sddmm_bad_input():
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match='left has 3 entries'):
        sddmm(csr, torch.randn(3, 2), torch.randn(2, 2))
    with pytest.raises(ValueError, match='one feature width'):
        sddmm(csr, torch.randn(2, 2), torch.randn(2, 3))
    with pytest.raises(TypeError, match='share one dtype'):
        sddmm(csr, torch.randn(2, 2), torch.randn(2, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match='floating-point'):
        sddmm(csr, torch.ones(2, 2, dtype=torch.long), torch.randn(2, 2))


# --- CUDA (gpu-marked) ---


def _sddmm_parts(rowptr, col, left, right):
    from graphops.ops import CSR

    return sddmm(CSR(rowptr, col, None, left.size(0), right.size(0)), left, right)


@pytest.mark.gpu
@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
def test_sddmm_device_matches_cpu(matches_cpu, graph):
    csr = to_csr(graph.edge_index, None, graph.num_nodes)
    left = random_features(graph.num_nodes, 5, seed=1).requires_grad_()
    right = random_features(graph.num_nodes, 5, seed=2).requires_grad_()
    matches_cpu(_sddmm_parts, csr.rowptr, csr.col, left, right, grad=csr.nnz > 0)
