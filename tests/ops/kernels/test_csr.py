import pytest
import torch

from graphops.ops import dispatch, normalize, to_csr
from graphops.ops.kernels import csr as csr_kernels
from graphops.ops.optional import has_numba
from graphops.testing import awkward_graphs, random_graph

pytestmark = pytest.mark.skipif(not has_numba(), reason='numba is not installed')

GRAPHS = list(awkward_graphs(weighted=True))


def torch_path(monkeypatch, fn):
    """``fn()`` with the numba kernels switched off: the reference order and roundings."""
    with monkeypatch.context() as patch:
        patch.setenv('GRAPHOPS_DISABLE_NUMBA', '1')
        return fn()


def same_csr(a, b):
    assert a.shape == b.shape and a.index_dtype == b.index_dtype
    assert torch.equal(a.rowptr, b.rowptr) and torch.equal(a.col, b.col)
    assert (a.value is None) == (b.value is None)
    if a.value is not None:
        assert torch.equal(a.value, b.value)  # bit for bit: same order, same roundings


@pytest.fixture
def always_numba(monkeypatch):
    monkeypatch.setattr(dispatch, 'CSR_NUMBA_MIN_ENTRIES', 0)


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('weighted', [True, False])
def test_to_csr_order_matches_torch_sort(graph, weighted, always_numba, monkeypatch):
    weight = graph.edge_weight if weighted else None
    build = lambda: to_csr(graph.edge_index, weight, graph.num_nodes)  # noqa: E731
    same_csr(build(), torch_path(monkeypatch, build))


@pytest.mark.parametrize(
    'case', ['random', 'rows_in_order', 'hub', 'bipartite', 'many_buckets', 'int32']
)
def test_sort_coo_is_stable_lexicographic(case):
    gen = torch.Generator().manual_seed(7)
    num_rows, num_cols, nnz = 5000, 300, 60000
    if case == 'bipartite':
        num_rows, num_cols = 40, 70000
    if case == 'many_buckets':  # more rows than MAX_BUCKETS: buckets of several rows
        num_rows = 50 * csr_kernels.MAX_BUCKETS + 17
    row = torch.randint(0, num_rows, (nnz,), generator=gen)
    col = torch.randint(0, num_cols, (nnz,), generator=gen)
    row[: nnz // 5] = row[nnz // 5 : 2 * (nnz // 5)]  # duplicates: the same (row, col) twice
    col[: nnz // 5] = col[nnz // 5 : 2 * (nnz // 5)]
    if case == 'rows_in_order':
        row = row.sort().values
    if case == 'hub':  # one row holds a third of the entries
        row[::3] = 11
    if case == 'int32':
        row, col = row.int(), col.int()
    key = row.long() * num_cols + col.long()
    expected_key, expected_perm = torch.sort(key, stable=True)
    for index_dtype in (torch.int32, torch.int64):
        rowptr, sorted_col, perm = csr_kernels.sort_coo(
            row, col, num_rows, num_cols, index_dtype, with_perm=True
        )
        assert rowptr.dtype == sorted_col.dtype == index_dtype
        assert torch.equal(perm, expected_perm)  # stable: duplicates keep their input order
        assert torch.equal(sorted_col.long(), expected_key % num_cols)
        counts = torch.bincount(row.long(), minlength=num_rows)
        assert torch.equal(rowptr.long(), torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
        _, unpermuted_col, none = csr_kernels.sort_coo(
            row, col, num_rows, num_cols, index_dtype, with_perm=False
        )
        assert none is None and torch.equal(unpermuted_col, sorted_col)


def test_sort_coo_empty_rows_and_no_entries():
    empty = torch.zeros(0, dtype=torch.long)
    rowptr, col, perm = csr_kernels.sort_coo(empty, empty, 5, 5, torch.int32, with_perm=True)
    assert rowptr.tolist() == [0] * 6 and col.numel() == 0 and perm.numel() == 0


@pytest.mark.parametrize('norm', ['sym', 'rw', 'col'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('weighted', [True, False])
def test_normalize_values_match_torch_bit_for_bit(norm, dtype, weighted, always_numba, monkeypatch):
    g = random_graph(400, 5000, seed=2, isolated=3, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight if weighted else None, g.num_nodes)
    run = lambda: normalize(csr, norm, add_self_loops=True, dtype=dtype)  # noqa: E731
    same_csr(run(), torch_path(monkeypatch, run))


def test_small_or_differentiable_inputs_stay_on_torch():
    applies = dispatch.numba_kernel_applies
    small = torch.zeros(10, dtype=torch.long)
    assert not applies([small], dispatch.CSR_NUMBA_MIN_ENTRIES)
    large = torch.zeros(dispatch.CSR_NUMBA_MIN_ENTRIES, dtype=torch.long)
    assert applies([large], dispatch.CSR_NUMBA_MIN_ENTRIES)
    assert not applies([large, torch.zeros(3, requires_grad=True)], dispatch.CSR_NUMBA_MIN_ENTRIES)
