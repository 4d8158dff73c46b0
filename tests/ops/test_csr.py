from itertools import product

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphops.ops import CSR, has_torch_sparse, in_degree, normalize, orient, out_degree, to_csr
from graphops.ops.csr import index_dtype_for, symmetrize
from graphops.testing import awkward_graphs, dense_adjacency, dense_normalize, tolerance

GRAPHS = list(awkward_graphs(weighted=True))
IDS = [g.name for g in GRAPHS]


def dense(csr: CSR) -> torch.Tensor:
    return csr.to_dense(torch.float64)


@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
def test_edge_index_matches_dense(graph):
    for weight in (None, graph.edge_weight):
        csr = to_csr(graph.edge_index, weight, graph.num_nodes)
        expected = dense_adjacency(graph.edge_index, graph.num_nodes, weight)
        assert csr.shape == (graph.num_nodes, graph.num_nodes)
        assert csr.nnz == graph.edge_index.size(1)  # duplicates kept
        torch.testing.assert_close(dense(csr), expected)
        assert csr.rowptr.dtype == csr.col.dtype == torch.int32


@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
def test_all_input_forms_agree(graph):
    n, ei, w = graph.num_nodes, graph.edge_index, graph.edge_weight
    reference = dense(to_csr(ei, w, n))
    coo = torch.sparse_coo_tensor(torch.stack([ei[1], ei[0]]), w, (n, n))
    forms = [coo, coo.coalesce().to_sparse_csr(), coo.coalesce().to_sparse_csc()]
    mat = sp.coo_matrix((w.numpy(), (ei[1].numpy(), ei[0].numpy())), shape=(n, n))
    forms.append(mat.tocsr())
    for form in forms:
        torch.testing.assert_close(dense(to_csr(form)), reference)
    csr = to_csr(ei, w, n)
    assert to_csr(csr) is csr
    torch.testing.assert_close(dense(to_csr(csr.to_torch_csr(torch.float64))), reference)
    torch.testing.assert_close(dense(to_csr(csr.to_scipy())), reference)
    back_ei, back_w = csr.to_edge_index()
    torch.testing.assert_close(dense_adjacency(back_ei, n, back_w), reference)


@pytest.mark.skipif(not has_torch_sparse(), reason='torch_sparse not installed')
@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
def test_sparse_tensor_agrees(graph):
    from torch_sparse import SparseTensor

    n, ei, w = graph.num_nodes, graph.edge_index, graph.edge_weight
    adj_t = SparseTensor(row=ei[1], col=ei[0], value=w, sparse_sizes=(n, n))
    reference = dense(to_csr(ei, w, n))
    torch.testing.assert_close(dense(to_csr(adj_t)), reference)
    # SparseTensor.to_dense() does not sum duplicates, so compare through our own CSR.
    round_trip = to_csr(ei, w, n).to_sparse_tensor()
    assert round_trip.sparse_sizes() == (n, n) and round_trip.nnz() == ei.size(1)
    torch.testing.assert_close(dense(to_csr(round_trip)), reference)
    with pytest.raises(TypeError, match='edge types'):
        to_csr(adj_t.set_value(torch.zeros(ei.size(1), dtype=torch.long), layout='coo'))


def test_bipartite_shape_and_dense():
    ei = torch.tensor([[0, 1, 4, 4], [2, 0, 1, 1]])
    csr = to_csr(ei, num_nodes=(5, 3))
    assert csr.shape == (3, 5)
    torch.testing.assert_close(dense(csr), dense_adjacency(ei, (5, 3)))
    with pytest.raises(ValueError, match='square'):
        normalize(csr, 'sym')


@pytest.mark.parametrize(
    'graph,norm,loops', list(product(GRAPHS, ['sym', 'rw', 'col', None], [False, True]))
)
def test_normalize_matches_dense(graph, norm, loops):
    csr = to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes)
    out = normalize(csr, norm, add_self_loops=loops, dtype=torch.float64)
    ref = dense_adjacency(graph.edge_index, graph.num_nodes, graph.edge_weight)
    if loops:
        ref = ref + torch.eye(graph.num_nodes, dtype=torch.float64)
    expected = dense_normalize(ref, norm)
    got = dense(out)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, **tolerance(torch.float64))


@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
def test_degrees_orientation_and_structure(graph):
    csr = to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes)
    ref = dense_adjacency(graph.edge_index, graph.num_nodes, graph.edge_weight)
    torch.testing.assert_close(in_degree(csr, torch.float64), ref.sum(1))
    torch.testing.assert_close(out_degree(csr, torch.float64), ref.sum(0))
    torch.testing.assert_close(dense(orient(csr, 'transposed')), ref.t())
    assert orient(csr, 'directed') is csr
    binary = ((ref + ref.t()) != 0).to(torch.float64)
    torch.testing.assert_close(dense(orient(csr, 'symmetric')), binary)
    torch.testing.assert_close(dense(symmetrize(csr, binarize=False)), ref + ref.t())
    torch.testing.assert_close(dense(csr.coalesce()), ref)
    assert csr.coalesce().nnz == int((ref != 0).sum()) or graph.edge_weight is None
    no_loops = csr.remove_self_loops()
    torch.testing.assert_close(dense(no_loops), ref - torch.diag(torch.diag(ref)))
    if graph.num_nodes:
        rows = torch.tensor([graph.num_nodes - 1, 0])
        torch.testing.assert_close(dense(csr.select_rows(rows)), ref[rows])


def test_coalesce_max_and_binarize():
    ei = torch.tensor([[0, 0, 1], [1, 1, 0]])
    csr = to_csr(ei, torch.tensor([2.0, 5.0, 1.0]), 2)
    assert csr.coalesce('max').values().tolist() == [1.0, 5.0]
    assert csr.coalesce('sum').values().tolist() == [1.0, 7.0]
    assert csr.binarize().nnz == 2 and csr.binarize().value is None


def test_fingerprint_is_structural():
    g = GRAPHS[0]
    a = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    perm = torch.randperm(g.edge_index.size(1), generator=torch.Generator().manual_seed(3))
    b = to_csr(g.edge_index[:, perm], g.edge_weight[perm], g.num_nodes)
    assert a.fingerprint() == b.fingerprint()
    c = to_csr(g.edge_index, g.edge_weight * 2, g.num_nodes)
    assert a.fingerprint() != c.fingerprint()


def test_index_dtype_choice():
    assert index_dtype_for(10, 10, 10) == torch.int32
    assert index_dtype_for(2**31, 10, 10) == torch.int64
    assert index_dtype_for(10, 10, 2**31) == torch.int64
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    wide = csr.to(index_dtype=torch.int64)
    assert wide.rowptr.dtype == wide.col.dtype == torch.int64
    torch.testing.assert_close(dense(wide), dense(csr))


def test_inferred_num_nodes_and_int32_input():
    ei = torch.tensor([[0, 3], [1, 2]], dtype=torch.int32)
    csr = to_csr(ei)
    assert csr.shape == (4, 4)
    assert to_csr(torch.empty(2, 0, dtype=torch.long)).shape == (0, 0)


# --- bad input: one test each ------------------------------------------------------------------


def test_rejects_out_of_range_index():
    with pytest.raises(ValueError, match=r'edge_index\[1\].*out of range'):
        to_csr(torch.tensor([[0, 1], [1, 5]]), num_nodes=3)
    with pytest.raises(ValueError, match=r'edge_index\[0\].*num_src_nodes'):
        to_csr(torch.tensor([[7], [0]]), num_nodes=(3, 3))


def test_rejects_negative_index():
    with pytest.raises(ValueError, match='negative'):
        to_csr(torch.tensor([[0, -1], [1, 0]]), num_nodes=3)


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r'\[2, num_edges\]'):
        to_csr(torch.tensor([[0, 1], [1, 0], [2, 2]]), num_nodes=3)
    with pytest.raises(ValueError, match=r'\[2, num_edges\]'):
        to_csr(torch.tensor([0, 1, 2]), num_nodes=3)


def test_rejects_mismatched_weight_length():
    with pytest.raises(ValueError, match='edge_weight has 3 entries'):
        to_csr(torch.tensor([[0, 1], [1, 0]]), torch.ones(3), 2)


def test_rejects_nan_and_inf_weights():
    ei = torch.tensor([[0, 1], [1, 0]])
    for bad in (float('nan'), float('inf')):
        with pytest.raises(ValueError, match='edge_weight contains NaN or Inf'):
            to_csr(ei, torch.tensor([1.0, bad]), 2)
    coo = torch.sparse_coo_tensor(ei, torch.tensor([1.0, float('nan')]), (2, 2))
    with pytest.raises(ValueError, match='NaN or Inf'):
        to_csr(coo)


def test_rejects_wrong_dtypes():
    with pytest.raises(TypeError, match='edge_index must be torch.long'):
        to_csr(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(TypeError, match='edge_weight must be a floating-point'):
        to_csr(torch.tensor([[0, 1], [1, 0]]), torch.tensor([1, 2]), 2)
    with pytest.raises(TypeError, match='adj must be'):
        to_csr([[0, 1], [1, 0]])
    with pytest.raises(TypeError, match='num_nodes must be an int'):
        to_csr(torch.tensor([[0], [1]]), num_nodes=2.5)


def test_rejects_wrong_device():
    if not torch.cuda.is_available():
        meta_weight = torch.ones(2, device='meta')
        with pytest.raises(ValueError, match='edge_weight is on meta'):
            to_csr(torch.tensor([[0, 1], [1, 0]]), meta_weight, 2)
    else:  # pragma: no cover - GPU runners
        with pytest.raises(ValueError, match='edge_weight is on cuda'):
            to_csr(torch.tensor([[0, 1], [1, 0]]), torch.ones(2, device='cuda'), 2)


def test_rejects_bad_norm_and_direction():
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match='norm must be one of'):
        normalize(csr, 'left')
    with pytest.raises(ValueError, match='direction must be one of'):
        orient(csr, 'undirected-ish')


def test_rejects_edge_weight_with_sparse_input():
    coo = torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.ones(1), (2, 2))
    with pytest.raises(ValueError, match='edge_weight must be None'):
        to_csr(coo, torch.ones(1))


def test_scipy_values_are_checked():
    mat = sp.csr_matrix(np.array([[0, np.nan], [1, 0]]))
    with pytest.raises(ValueError, match='NaN or Inf'):
        to_csr(mat)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
@pytest.mark.parametrize('norm', ['sym', 'rw', 'col', None])
@pytest.mark.parametrize('direction', ['directed', 'transposed', 'symmetric'])
def test_csr_device_matches_cpu(matches_cpu, graph, norm, direction):
    def build(edge_index, edge_weight):
        csr = to_csr(edge_index, edge_weight, graph.num_nodes)
        oriented = orient(csr, direction)
        return (
            csr,
            oriented,
            normalize(oriented, norm, add_self_loops=True),
            symmetrize(csr),
            in_degree(csr),
            out_degree(csr),
        )

    matches_cpu(build, graph.edge_index, graph.edge_weight)


def test_from_coo_sorts_checks_and_trusts_on_request():
    from graphops.ops import CSR

    row, col = torch.tensor([2, 0, 2, 1]), torch.tensor([1, 2, 0, 2])
    value = torch.tensor([1.0, 2.0, 3.0, 4.0])
    csr = CSR.from_coo(row, col, value, 3, 3)
    dense = torch.zeros(3, 3).index_put_((row, col), value, accumulate=True)
    torch.testing.assert_close(csr.to_dense(), dense)
    assert csr.rowptr.tolist() == [0, 1, 2, 4] and csr.col.tolist() == [2, 2, 0, 1]
    with pytest.raises(ValueError, match='col contains index 3'):
        CSR.from_coo(row, torch.tensor([1, 2, 3, 2]), None, 3, 3)
    with pytest.raises(ValueError, match='differ in length'):
        CSR.from_coo(row, col[:3], None, 3, 3)
    with pytest.raises(ValueError, match='edge_weight'):
        CSR.from_coo(row, col, value[:2], 3, 3)
    presorted = CSR.from_coo(
        torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2]), None, 2, 3, is_sorted=True
    )
    assert presorted.rowptr.tolist() == [0, 1, 3]


@pytest.mark.parametrize(
    'rowptr,col,error,match',
    [
        ([0, 1, 5], [0, 1], ValueError, 'end at nnz'),
        ([0, 2, 1], [0, 1], ValueError, 'never decrease'),
        ([1, 1, 2], [0, 1], ValueError, 'start at 0'),
        ([0, 1, 2], [0, 7], ValueError, 'col contains index 7'),
        ([0, 1, 2], [0, -1], ValueError, 'negative'),
        ([0, 1], [0], ValueError, 'num_rows \\+ 1'),
    ],
)
def test_constructor_refuses_invalid_arrays(rowptr, col, error, match):
    from graphops.ops import CSR

    with pytest.raises(error, match=match):
        CSR(torch.tensor(rowptr), torch.tensor(col), None, 2, 2)


def test_constructor_refuses_wrong_types():
    from graphops.ops import CSR

    with pytest.raises(TypeError, match='int32/int64'):
        CSR(torch.tensor([0.0, 1.0]), torch.tensor([0]), None, 1, 1)
    with pytest.raises(TypeError, match='share one index dtype'):
        CSR(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), None, 1, 1)
    with pytest.raises(TypeError, match='float tensor'):
        CSR(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1]), 1, 1)
    with pytest.raises(ValueError, match='one weight per entry'):
        CSR(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1.0, 2.0]), 1, 1)
    with pytest.raises(ValueError, match='non-negative int'):
        CSR(torch.tensor([0]), torch.tensor([], dtype=torch.long), None, 0, -1)


def test_entry_groups_number_the_distinct_entries_as_coalesce_merges_them():
    edge_index = torch.tensor([[1, 1, 0, 2, 1], [0, 0, 0, 2, 2]])
    csr = to_csr(edge_index, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 3)
    groups = csr.entry_groups()
    merged = torch.zeros(csr.nnz).index_add(0, groups, csr.value)
    coalesced = csr.coalesce()
    assert groups.tolist() == [0, 1, 1, 2, 3]
    assert torch.equal(merged[: coalesced.nnz], coalesced.value)
    assert torch.equal(merged[coalesced.nnz :], torch.zeros(csr.nnz - coalesced.nnz))
