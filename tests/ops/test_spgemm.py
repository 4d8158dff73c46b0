from itertools import product

import pytest
import torch

from graphops.ops import has_torch_sparse, to_csr
from graphops.ops.spgemm import (
    planned_spgemm,
    product_plan,
    spgemm,
    spspmm,
)
from graphops.ops.spmm import has_numba
from graphops.testing import awkward_graphs, random_graph, tolerance
from graphops.testing.gtn import dense_top_k_rows


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny graphs: waking a thread pool costs more than the work (far more on a shared box).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


BACKENDS = ['torch', *(['numba'] if has_numba() else [])]
TOPK = [None, 1, 3]


def weighted_csr(edge_index, num_nodes, *, seed=0, dtype=torch.float64, grad=False):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.rand(edge_index.size(1), generator=gen, dtype=dtype) + 0.1
    csr = to_csr(edge_index, weight, num_nodes)
    return csr.with_value(csr.value.detach().requires_grad_(grad))


def rectangular(num_rows, num_cols, nnz, seed):
    gen = torch.Generator().manual_seed(seed)
    if nnz == 0:
        return weighted_csr(torch.empty(2, 0, dtype=torch.long), (num_cols, num_rows), seed=seed)
    edge_index = torch.stack(
        [
            torch.randint(0, num_cols, (nnz,), generator=gen),
            torch.randint(0, num_rows, (nnz,), generator=gen),
        ]
    )
    return weighted_csr(edge_index, (num_cols, num_rows), seed=seed)


def square_pairs():
    for g in awkward_graphs():
        if g.num_nodes == 0:
            continue
        other = random_graph(g.num_nodes, 3 * g.num_nodes, seed=7)
        yield (
            g.name,
            weighted_csr(g.edge_index, g.num_nodes, seed=1),
            weighted_csr(other.edge_index, g.num_nodes, seed=2),
        )
    yield 'rectangular', rectangular(5, 8, 20, 3), rectangular(8, 6, 25, 4)
    yield 'empty_rows', rectangular(0, 4, 0, 5), rectangular(4, 3, 6, 6)
    yield 'empty_cols', rectangular(3, 4, 6, 7), rectangular(4, 0, 0, 8)


PAIRS = list(square_pairs())


def assert_coalesced(csr):
    rows, cols = csr.row().long(), csr.col.long()
    key = rows * max(csr.num_cols, 1) + cols
    assert bool((key[1:] > key[:-1]).all()), 'entries must be sorted and unique'
    assert csr.rowptr.dtype == csr.col.dtype


@pytest.mark.parametrize(
    'case,backend,topk,dtype', list(product(PAIRS, BACKENDS, TOPK, [torch.float32, torch.float64]))
)
def test_spgemm_matches_dense(case, backend, topk, dtype):
    _, a, b = case
    a, b = a.with_value(a.value.to(dtype)), b.with_value(b.value.to(dtype))
    c = spgemm(a, b, topk=topk, backend=backend, chunk_size=7)
    expected = dense_top_k_rows(a.to_dense(torch.float64) @ b.to_dense(torch.float64), topk)
    assert c.shape == (a.num_rows, b.num_cols)
    assert c.value.dtype == dtype
    assert_coalesced(c)
    torch.testing.assert_close(c.to_dense(torch.float64), expected, **tolerance(dtype))
    if topk is not None and c.num_rows:
        assert int(c.row_counts().max()) <= topk


@pytest.mark.parametrize('case', PAIRS, ids=[name for name, _, _ in PAIRS])
def test_backends_agree_exactly(case):
    _, a, b = case
    outs = [spgemm(a, b, backend=backend, topk=2) for backend in BACKENDS]
    for out in outs[1:]:
        assert torch.equal(out.rowptr, outs[0].rowptr) and torch.equal(out.col, outs[0].col)
        torch.testing.assert_close(out.value, outs[0].value, atol=1e-12, rtol=0)


@pytest.mark.parametrize('backend,topk', list(product(BACKENDS, [None, 2])))
def test_gradcheck(backend, topk):
    a = weighted_csr(random_graph(5, 8, seed=3).edge_index, 5, seed=3)
    b = weighted_csr(random_graph(5, 8, seed=4).edge_index, 5, seed=4)

    def product_values(value_a, value_b):
        return spgemm(
            a.with_value(value_a), b.with_value(value_b), topk=topk, backend=backend, chunk_size=5
        ).value

    inputs = (a.value.clone().requires_grad_(), b.value.clone().requires_grad_())
    assert torch.autograd.gradcheck(product_values, inputs)


@pytest.mark.parametrize('backend', BACKENDS)
def test_gradient_matches_dense_autograd(backend):
    a = weighted_csr(random_graph(9, 30, seed=5).edge_index, 9, seed=5, grad=True)
    b = weighted_csr(random_graph(9, 25, seed=6).edge_index, 9, seed=6, grad=True)
    probe = torch.randn(9, 9, dtype=torch.float64)
    c = spgemm(a, b, backend=backend)
    (c.to_dense(torch.float64) * probe).sum().backward()

    value_a = a.value.detach().clone().requires_grad_()
    value_b = b.value.detach().clone().requires_grad_()
    dense = a.with_value(value_a).to_dense(torch.float64) @ b.with_value(value_b).to_dense(
        torch.float64
    )
    (dense * probe).sum().backward()
    torch.testing.assert_close(a.value.grad, value_a.grad)
    torch.testing.assert_close(b.value.grad, value_b.grad)


def test_one_side_needs_grad():
    a = weighted_csr(random_graph(7, 20, seed=1).edge_index, 7, seed=1, grad=True)
    b = weighted_csr(random_graph(7, 20, seed=2).edge_index, 7, seed=2)
    spgemm(a, b).value.sum().backward()
    assert a.value.grad is not None and b.value.grad is None


def test_unweighted_inputs_count_paths():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 2, 2, 0]])
    a = to_csr(edge_index, num_nodes=3)
    c = spgemm(a, a)
    assert c.value.dtype == torch.float32 and not c.value.requires_grad
    torch.testing.assert_close(c.to_dense(), a.to_dense() @ a.to_dense())


def test_structural_zeros_are_kept():
    edge_index = torch.tensor([[0, 1], [1, 2]])
    a = to_csr(edge_index, torch.tensor([1.0, 0.0]), 3)
    c = spgemm(a, a)
    assert c.nnz == 1 and float(c.value[0]) == 0.0


def test_topk_keeps_largest_and_breaks_ties_by_column():
    # Row 0 of A reaches columns 0..3 of B with weights 3, 1, 3, 2.
    a = to_csr(torch.tensor([[0], [0]]), torch.tensor([1.0]), 1)
    b = to_csr(
        torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]]), torch.tensor([3.0, 1.0, 3.0, 2.0]), (4, 1)
    )
    for backend in BACKENDS:
        c = spgemm(a, b, topk=2, backend=backend)
        assert c.col.tolist() == [0, 2] and c.value.tolist() == [3.0, 3.0]


def test_spspmm_uses_matrix_coordinates():
    index_a = torch.tensor([[0, 0, 1], [1, 2, 2]])  # (row, col) of a 2 x 3 matrix
    value_a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    index_b = torch.tensor([[1, 2, 2], [0, 0, 3]])  # 3 x 4
    value_b = torch.tensor([4.0, 5.0, 6.0])
    index, value = spspmm(index_a, value_a, index_b, value_b, 2, 3, 4)
    dense_a = torch.sparse_coo_tensor(index_a, value_a.detach(), (2, 3)).to_dense()
    dense_b = torch.sparse_coo_tensor(index_b, value_b, (3, 4)).to_dense()
    got = torch.sparse_coo_tensor(index, value.detach(), (2, 4)).to_dense()
    torch.testing.assert_close(got, dense_a @ dense_b)
    value.sum().backward()
    assert value_a.grad is not None


def test_torch_sparse_input_accepted():
    dense = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    c = spgemm(dense.to_sparse(), dense.to_sparse_csr())
    torch.testing.assert_close(c.to_dense(), dense @ dense)


@pytest.mark.skipif(not has_torch_sparse(), reason='torch_sparse is not installed')
def test_sparse_tensor_input_accepted():
    from torch_sparse import SparseTensor

    dense = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    c = spgemm(SparseTensor.from_dense(dense), SparseTensor.from_dense(dense))
    torch.testing.assert_close(c.to_dense(), dense @ dense)


# --- products on a fixed structure ---------------------------------------------------------------


@pytest.mark.parametrize('case,a,b', PAIRS, ids=[p[0] for p in PAIRS])
def test_planned_product_equals_spgemm(case, a, b):
    expected = spgemm(a, b)
    plan = product_plan(a, b)
    assert plan.csr().shape == expected.shape
    assert torch.equal(plan.rowptr, expected.rowptr.long())
    assert torch.equal(plan.col, expected.col.long())
    assert torch.equal(plan.row, expected.row().long())
    value = planned_spgemm(plan, a.value, b.value)
    torch.testing.assert_close(value, expected.value)
    # leading (channel) dimensions broadcast: two channels at once
    stacked = planned_spgemm(plan, torch.stack([a.value, 2 * a.value]), b.value)
    torch.testing.assert_close(stacked[1], 2 * expected.value)


def test_planned_product_gradcheck():
    _, a, b = PAIRS[-3]  # rectangular
    plan = product_plan(a, b)
    a_value = a.value.detach().requires_grad_()
    b_value = b.value.detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda u, v: planned_spgemm(plan, u, v), (a_value, b_value))


def test_product_plan_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match='cannot multiply'):
        product_plan(rectangular(5, 8, 20, 3), rectangular(5, 8, 20, 3))


# --- bad input ----------------------------------------------------------------------------


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match='columns but b has'):
        spgemm(rectangular(3, 4, 5, 0), rectangular(5, 2, 5, 1))


@pytest.mark.parametrize(
    'topk,error', [(0, ValueError), (-2, ValueError), (True, TypeError), (1.5, TypeError)]
)
def test_bad_topk_raises(topk, error):
    a = rectangular(3, 3, 4, 0)
    with pytest.raises(error, match='topk'):
        spgemm(a, a, topk=topk)


def test_bad_backend_and_chunk_size_raise():
    a = rectangular(3, 3, 4, 0)
    with pytest.raises(ValueError, match='backend'):
        spgemm(a, a, backend='mkl')
    with pytest.raises(ValueError, match='chunk_size'):
        spgemm(a, a, chunk_size=0)


def test_spspmm_bad_index_raises():
    with pytest.raises(ValueError, match=r'\[2, nnz\]'):
        spspmm(
            torch.zeros(3, 2, dtype=torch.long),
            None,
            torch.zeros(2, 1, dtype=torch.long),
            None,
            2,
            2,
            2,
        )
    with pytest.raises(ValueError, match='out of range'):
        spspmm(torch.tensor([[0], [5]]), None, torch.tensor([[0], [0]]), None, 2, 2, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    a = weighted_csr(random_graph(30, 120, seed=1).edge_index, 30, seed=1, grad=True)
    b = weighted_csr(random_graph(30, 100, seed=2).edge_index, 30, seed=2, grad=True)
    cpu = spgemm(a, b, topk=4)
    cpu.value.sum().backward()
    a_cuda, b_cuda = a.to('cuda'), b.to('cuda')
    a_cuda = a_cuda.with_value(a.value.detach().cuda().requires_grad_())
    b_cuda = b_cuda.with_value(b.value.detach().cuda().requires_grad_())
    gpu = spgemm(a_cuda, b_cuda, topk=4)
    gpu.value.sum().backward()
    assert torch.equal(gpu.col.cpu(), cpu.col)
    torch.testing.assert_close(gpu.value.detach().cpu(), cpu.value.detach())
    torch.testing.assert_close(a_cuda.value.grad.cpu(), a.value.grad)
    torch.testing.assert_close(b_cuda.value.grad.cpu(), b.value.grad)


# --- CUDA (gpu-marked) ---


def _spgemm_parts(a_rowptr, a_col, a_value, b_rowptr, b_col, b_value, shape, topk):
    from graphops.ops import CSR

    a = CSR(a_rowptr, a_col, a_value, shape[0], shape[1])
    b = CSR(b_rowptr, b_col, b_value, shape[1], shape[2])
    return spgemm(a, b, topk=topk)


@pytest.mark.gpu
@pytest.mark.parametrize(
    'name,a,b', PAIRS[:3] + PAIRS[-3:], ids=[p[0] for p in PAIRS[:3] + PAIRS[-3:]]
)
@pytest.mark.parametrize('topk', [None, 3])
def test_spgemm_device_matches_cpu_with_autograd(matches_cpu, name, a, b, topk):
    a_value = a.value.detach().clone().requires_grad_()
    b_value = b.value.detach().clone().requires_grad_()
    shape = (a.num_rows, a.num_cols, b.num_cols)
    args = (a.rowptr, a.col, a_value, b.rowptr, b.col, b_value, shape, topk)
    got = matches_cpu(_spgemm_parts, *args, grad=a.nnz > 0 and b.nnz > 0)
    assert_coalesced(got)
