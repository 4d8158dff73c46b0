import pytest
import torch

from graphops.ops import dispatch, to_csr
from graphops.ops.induced import (
    METHODS,
    augmented_subgraph,
    induced_edge_index,
    induced_subgraph,
)
from graphops.ops.optional import has_numba
from graphops.testing import awkward_graphs, dense_adjacency, random_graph, tolerance

numba_only = pytest.mark.skipif(not has_numba(), reason='numba is not installed')

GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]
GRAPHS.append(random_graph(40, 400, seed=3, weighted=True))  # dense enough for the dense path
IDS = [g.name for g in GRAPHS]
TOL = tolerance(torch.float64)


def subsets(num_nodes: int, seed: int = 0):
    """Ascending, shuffled, single-node and all-node subsets."""
    gen = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(num_nodes, generator=gen)[: max(1, num_nodes // 2)]
    return [
        shuffled.sort().values,
        shuffled,
        torch.tensor([num_nodes - 1]),
        torch.arange(num_nodes),
    ]


@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
@pytest.mark.parametrize('weighted', [False, True])
def test_induced_subgraph_matches_dense(graph, weighted):
    weight = graph.edge_weight if weighted else None
    csr = to_csr(graph.edge_index, weight, graph.num_nodes)
    dense = dense_adjacency(graph.edge_index, graph.num_nodes, weight)
    for index in subsets(graph.num_nodes):
        out = induced_subgraph(csr, index)
        assert out.shape == (index.numel(), index.numel())
        assert (out.value is None) == (weight is None)
        torch.testing.assert_close(out.to_dense(torch.float64), dense[index][:, index], **TOL)
        assert out.coalesce().fingerprint() == out.coalesce().fingerprint()
        key = out.row().long() * max(out.num_cols, 1) + out.col.long()
        assert bool((key[1:] >= key[:-1]).all())  # CSR order kept


@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('self_loops', [False, True])
def test_augmented_subgraph_is_the_kept_block_of_a_squared(graph, method, self_loops):
    csr = to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes)
    dense = dense_adjacency(graph.edge_index, graph.num_nodes, graph.edge_weight)
    if self_loops:
        dense = dense + torch.eye(graph.num_nodes, dtype=dense.dtype)
    for index in subsets(graph.num_nodes, seed=1):
        out = augmented_subgraph(csr, index, method=method, self_loops=self_loops)
        expected = (dense @ dense)[index][:, index]
        torch.testing.assert_close(out.to_dense(torch.float64), expected, **TOL)
        key = out.row().long() * max(out.num_cols, 1) + out.col.long()
        assert bool((key[1:] > key[:-1]).all())  # coalesced and sorted


def test_augmented_subgraph_unweighted_counts_paths():
    graph = random_graph(15, 50, seed=2)
    csr = to_csr(graph.edge_index, None, 15).add_self_loops()
    dense = dense_adjacency(graph.edge_index, 15) + torch.eye(15, dtype=torch.float64)
    index = torch.tensor([0, 3, 4, 9, 14])
    for method in METHODS:
        out = augmented_subgraph(csr, index, dtype=torch.float64, method=method)
        torch.testing.assert_close(out.to_dense(torch.float64), (dense @ dense)[index][:, index])


@pytest.mark.parametrize('method', ['expand', 'dense', 'auto'])
@pytest.mark.parametrize('self_loops', [False, True])
def test_augmented_subgraph_gradients(method, self_loops):
    graph = random_graph(7, 12, seed=4, weighted=True)
    index = torch.tensor([1, 2, 5, 6])
    weight = graph.edge_weight.clone().requires_grad_()

    def block(w):
        csr = to_csr(graph.edge_index, w, 7)
        out = augmented_subgraph(csr, index, method=method, self_loops=self_loops)
        return out.to_dense(torch.float64)

    def reference(w):
        dense = dense_adjacency(graph.edge_index, 7, w) + self_loops * torch.eye(7)
        return (dense @ dense)[index][:, index]

    torch.autograd.gradcheck(block, (weight,), fast_mode=True)
    grad = torch.autograd.grad(block(weight).square().sum(), weight)[0]
    expected = torch.autograd.grad(reference(weight).square().sum(), weight)[0]
    torch.testing.assert_close(grad, expected, **TOL)


def test_sparse_method_refuses_gradients():
    graph = random_graph(5, 8, weighted=True)
    csr = to_csr(graph.edge_index, graph.edge_weight.requires_grad_(), 5)
    with pytest.raises(ValueError, match='gradients'):
        augmented_subgraph(csr, torch.tensor([0, 1]), method='sparse')


def test_empty_subsets_and_edgeless_graphs():
    csr = to_csr(torch.empty(2, 0, dtype=torch.long), None, 4)
    for fn in (induced_subgraph, augmented_subgraph):
        assert fn(csr, torch.tensor([1, 2])).nnz == 0
        assert fn(csr, torch.empty(0, dtype=torch.long)).shape == (0, 0)


@pytest.mark.parametrize('graph', GRAPHS, ids=IDS)
@pytest.mark.parametrize('path', ['torch', pytest.param('numba', marks=numba_only)])
def test_induced_edge_index_keeps_order_and_mask(graph, path, monkeypatch):
    if path == 'torch':
        monkeypatch.setenv('GRAPHOPS_DISABLE_NUMBA', '1')
    else:
        monkeypatch.setattr(dispatch, 'POOL_NUMBA_MIN_ENTRIES', 0)
    dense = dense_adjacency(graph.edge_index, graph.num_nodes, graph.edge_weight)
    for index in subsets(graph.num_nodes, seed=2):
        edge_index, mask = induced_edge_index(graph.edge_index, index, graph.num_nodes)
        assert mask.shape == (graph.edge_index.size(1),)
        kept = dense_adjacency(edge_index, index.numel(), graph.edge_weight[mask])
        torch.testing.assert_close(kept, dense[index][:, index], **TOL)
        positions = {int(n): t for t, n in enumerate(index)}
        original = graph.edge_index[:, mask]
        renamed = torch.tensor([[positions[int(n)] for n in row] for row in original.tolist()])
        assert torch.equal(edge_index, renamed.view(2, -1))  # input order, relabelled


BAD_INDEX = [
    (torch.tensor([0, 0]), ValueError, 'repeats'),
    (torch.tensor([5]), ValueError, 'out of range'),
    (torch.tensor([-1]), ValueError, 'negative'),
    (torch.tensor([0.0]), TypeError, 'integer'),
    (torch.tensor([[0]]), ValueError, '1-dimensional'),
]


@pytest.mark.parametrize(('index', 'error', 'match'), BAD_INDEX)
@pytest.mark.parametrize('fn', [induced_subgraph, augmented_subgraph])
def test_bad_index(fn, index, error, match):
    csr = to_csr(torch.tensor([[0, 1], [1, 2]]), None, 3)
    with pytest.raises(error, match=match):
        fn(csr, index)


def test_bad_index_in_edge_index_path():
    with pytest.raises(ValueError, match='repeats'):
        induced_edge_index(torch.tensor([[0, 1], [1, 2]]), torch.tensor([1, 1]), 3)
    with pytest.raises(ValueError, match='out of range'):
        induced_edge_index(torch.tensor([[0, 5], [1, 2]]), torch.tensor([1]), 3)


def test_non_square_and_bad_method():
    rect = to_csr(torch.tensor([[0], [1]]), None, (2, 3))
    for fn in (induced_subgraph, augmented_subgraph):
        with pytest.raises(ValueError, match='square'):
            fn(rect, torch.tensor([0]))
    with pytest.raises(ValueError, match='method'):
        augmented_subgraph(to_csr(torch.tensor([[0], [1]]), None, 2), torch.tensor([0]), method='x')


def _assert_canonical(tensor):
    """Sorted columns within every row, no repeated (row, column) pair."""
    crow, col = tensor.crow_indices(), tensor.col_indices()
    for r in range(crow.numel() - 1):
        cols = col[crow[r] : crow[r + 1]]
        assert bool((cols[1:] > cols[:-1]).all()), f'row {r}: {cols.tolist()}'


@pytest.mark.parametrize('self_loops', [False, True])
def test_sparse_product_gets_sorted_duplicate_free_csr(monkeypatch, self_loops):
    # duplicates (random_graph repeats a tenth of its edges) and appended self-loops both reach
    # the product; cuSPARSE SpGEMM needs them merged and sorted
    import graphops.ops.induced as induced

    graph = random_graph(30, 200, seed=5, weighted=True)
    csr = to_csr(graph.edge_index, graph.edge_weight, 30)
    handed = []
    real_matmul = torch.Tensor.__matmul__

    def recording_matmul(left, right):
        if left.layout == torch.sparse_csr:
            handed.extend([left, right])
        return real_matmul(left, right)

    monkeypatch.setattr(torch.Tensor, '__matmul__', recording_matmul)
    index = torch.randperm(30, generator=torch.Generator().manual_seed(0))[:20]
    out = induced.augmented_subgraph(csr, index, method='sparse', self_loops=self_loops)
    assert len(handed) == 2
    for tensor in handed:
        _assert_canonical(tensor)
    dense = dense_adjacency(graph.edge_index, 30, graph.edge_weight)
    if self_loops:
        dense = dense + torch.eye(30, dtype=dense.dtype)
    torch.testing.assert_close(out.to_dense(torch.float64), (dense @ dense)[index][:, index], **TOL)


@pytest.mark.gpu
@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('self_loops', [False, True])
def test_augmented_subgraph_device_matches_cpu(device, method, self_loops):
    graph = random_graph(60, 600, seed=6, weighted=True)
    csr = to_csr(graph.edge_index, graph.edge_weight, 60)
    index = torch.randperm(60, generator=torch.Generator().manual_seed(1))[:35]
    expected = augmented_subgraph(csr, index, method=method, self_loops=self_loops)
    got = augmented_subgraph(csr.to(device), index.to(device), method=method, self_loops=self_loops)
    assert torch.equal(got.rowptr.cpu(), expected.rowptr)
    assert torch.equal(got.col.cpu(), expected.col)
    torch.testing.assert_close(got.value.cpu(), expected.value, **TOL)


@pytest.mark.gpu
def test_induced_subgraph_and_edge_index_device_match_cpu(device):
    graph = random_graph(50, 400, seed=7, weighted=True)
    csr = to_csr(graph.edge_index, graph.edge_weight, 50)
    index = torch.randperm(50, generator=torch.Generator().manual_seed(2))[:30]
    expected = induced_subgraph(csr, index)
    got = induced_subgraph(csr.to(device), index.to(device))
    assert torch.equal(got.col.cpu(), expected.col)
    torch.testing.assert_close(got.value.cpu(), expected.value, **TOL)
    edges, mask = induced_edge_index(graph.edge_index, index, 50)
    got_edges, got_mask = induced_edge_index(graph.edge_index.to(device), index.to(device), 50)
    assert torch.equal(got_edges.cpu(), edges) and torch.equal(got_mask.cpu(), mask)
