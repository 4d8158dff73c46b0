import pytest
import torch
from torch_geometric.nn import TopKPooling

from graphops.nn.dense.diff_pool import dense_diff_pool, sparse_diff_pool
from graphops.ops import has_torch_sparse
from graphops.testing import DTYPES, random_features, tolerance
from graphops.testing.diff_pool import awkward_batch, dense_batch, diff_pool_reference

NUM_CLUSTERS = 3


BATCHES = {
    'ragged': ['random', 'single_node', 'isolated_nodes', 'duplicate_edges'],
    'self_loops_no_edges': ['self_loops', 'no_edges', 'single_node_no_edges'],
    'one_graph': ['random'],
    'one_node': ['single_node'],
}
CASES = [
    (name, weighted, loss_norm)
    for name in BATCHES
    for weighted in (False, True)
    for loss_norm in ('paper', 'pyg')
]


def case_inputs(name, weighted, dtype=torch.float64, seed=0, clusters=NUM_CLUSTERS):
    edge_index, edge_weight, batch, n = awkward_batch(BATCHES[name], weighted, seed)
    x = random_features(n, 4, seed=seed + 1, dtype=dtype)
    s = 2 * random_features(n, clusters, seed=seed + 2, dtype=dtype)
    if edge_weight is not None:
        edge_weight = edge_weight.to(dtype)
    return x, edge_index, s, batch, edge_weight


def assert_outputs_close(got, expected, dtype):
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, **tolerance(dtype))


# 3 clusters: fewer than the nodes (link loss by the trace identity); 20: more (by the residual).
@pytest.mark.parametrize('clusters', [NUM_CLUSTERS, 20])
@pytest.mark.parametrize('name, weighted, loss_norm', CASES)
def test_dense_matches_reference(name, weighted, loss_norm, clusters):
    x, edge_index, s, batch, edge_weight = case_inputs(name, weighted, clusters=clusters)
    dense_x, adj, dense_s, mask = dense_batch(x, edge_index, batch, s, edge_weight)
    leaves = [t.requires_grad_() for t in (dense_x, adj, dense_s)]
    got = dense_diff_pool(dense_x, adj, dense_s, mask, loss_norm=loss_norm)
    expected = diff_pool_reference(dense_x, adj, dense_s, mask, loss_norm=loss_norm)
    assert_outputs_close(got, expected, torch.float64)
    # Gradients of every output, weighted at random, agree too.
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(e.shape, generator=gen, dtype=e.dtype) for e in expected]
    total = sum((g * w).sum() for g, w in zip(got, weights, strict=True))
    total_ref = sum((e * w).sum() for e, w in zip(expected, weights, strict=True))
    grads = torch.autograd.grad(total, leaves)
    grads_ref = torch.autograd.grad(total_ref, leaves, allow_unused=True)
    for g, r, leaf in zip(grads, grads_ref, leaves, strict=True):
        r = torch.zeros_like(leaf) if r is None else r
        # The reference never touches padded entries; ours zeroes them: both give 0 there.
        torch.testing.assert_close(g, r, **tolerance(torch.float64))


@pytest.mark.parametrize('clusters', [NUM_CLUSTERS, 20])
@pytest.mark.parametrize('name, weighted, loss_norm', CASES)
def test_sparse_matches_dense(name, weighted, loss_norm, clusters):
    x, edge_index, s, batch, edge_weight = case_inputs(name, weighted, clusters=clusters)
    x.requires_grad_()
    s.requires_grad_()
    got = sparse_diff_pool(x, edge_index, s, batch, edge_weight, loss_norm=loss_norm)
    dense_x, adj, dense_s, mask = dense_batch(x, edge_index, batch, s, edge_weight)
    expected = dense_diff_pool(dense_x, adj, dense_s, mask, loss_norm=loss_norm)
    assert_outputs_close(got, expected, torch.float64)
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(e.shape, generator=gen, dtype=e.dtype) for e in expected]
    total = sum((g * w).sum() for g, w in zip(got, weights, strict=True))
    total_ref = sum((e * w).sum() for e, w in zip(expected, weights, strict=True))
    for g, r in zip(
        torch.autograd.grad(total, (x, s)),
        torch.autograd.grad(total_ref, (x, s)),
        strict=True,
    ):
        torch.testing.assert_close(g, r, **tolerance(torch.float64))


@pytest.mark.parametrize('dtype', DTYPES)
def test_float32_sparse_matches_float64_reference(dtype):
    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True, dtype=dtype)
    got = sparse_diff_pool(x, edge_index, s, batch, edge_weight)
    args = dense_batch(x.double(), edge_index, batch, s.double(), edge_weight.double())
    expected = diff_pool_reference(*args)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), e, **tolerance(dtype))


@pytest.mark.parametrize('normalize', [True, False])
def test_defaults_match_torch_geometric(normalize):
    from torch_geometric.nn import dense_diff_pool as pyg_dense_diff_pool

    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True)
    dense_args = dense_batch(x, edge_index, batch, s, edge_weight)
    theirs = pyg_dense_diff_pool(*dense_args, normalize=normalize)
    # PyG's positional normalize and default loss, then the same spelled out.
    for ours in (
        dense_diff_pool(*dense_args, normalize),
        dense_diff_pool(*dense_args, normalize=normalize, loss_norm='pyg'),
        sparse_diff_pool(x, edge_index, s, batch, edge_weight, normalize),
    ):
        # PyG takes log(s + 1e-15): a 1e-15-level difference in the entropy.
        for o, t in zip(ours, theirs, strict=True):
            torch.testing.assert_close(o, t, atol=1e-12, rtol=1e-10)


def test_normalize_false_is_plain_norm_and_not_for_the_paper_loss():
    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True)
    dense_args = dense_batch(x, edge_index, batch, s, edge_weight)
    _, _, link, _ = dense_diff_pool(*dense_args)
    _, _, plain, _ = dense_diff_pool(*dense_args, normalize=False)
    torch.testing.assert_close(link * dense_args[1].numel(), plain)
    _, _, ref, _ = diff_pool_reference(*dense_args, normalize=False)
    torch.testing.assert_close(plain, ref)
    for fn, args in ((dense_diff_pool, dense_args), (sparse_diff_pool, (x, edge_index, s))):
        with pytest.raises(ValueError, match="normalize=False does not apply to loss_norm='paper'"):
            fn(*args, normalize=False, loss_norm='paper')
    with pytest.raises(TypeError, match='normalize must be a bool'):
        dense_diff_pool(*dense_args, 'paper')  # loss_norm is keyword-only


def test_paper_entropy_is_not_diluted_by_padding():
    x, edge_index, s, batch, _ = case_inputs('ragged', False)
    dense_args = dense_batch(x, edge_index, batch, s)
    *_, entropy = dense_diff_pool(*dense_args, loss_norm='paper')
    wider = dense_batch(x, edge_index, batch, s, max_num_nodes=40)
    *_, entropy_wider = dense_diff_pool(*wider, loss_norm='paper')
    *_, entropy_pyg = dense_diff_pool(*wider)
    torch.testing.assert_close(entropy, entropy_wider)
    assert entropy_pyg < 0.5 * entropy  # PyG's mean over padded rows shrinks it


@pytest.mark.parametrize('clusters', [NUM_CLUSTERS, 20])
def test_padding_content_and_mask_layout_are_ignored(clusters):
    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True, clusters=clusters)
    dense_x, adj, dense_s, mask = dense_batch(x, edge_index, batch, s, edge_weight)
    expected = dense_diff_pool(dense_x, adj, dense_s, mask)
    pad = ~mask
    noisy_x = dense_x.clone()
    noisy_x[pad] = 7.0
    noisy_s = dense_s.clone()
    noisy_s[pad] = 3.0
    noisy_adj = adj + (pad[:, :, None] | pad[:, None, :]).double()
    assert_outputs_close(
        dense_diff_pool(noisy_x, noisy_adj, noisy_s, mask), expected, torch.float64
    )
    # Real nodes need not come first: reverse every graph's node slots.
    flip = torch.arange(mask.size(1) - 1, -1, -1)
    flipped = dense_diff_pool(
        dense_x[:, flip], adj[:, flip][:, :, flip], dense_s[:, flip], mask[:, flip]
    )
    assert_outputs_close(flipped, expected, torch.float64)


def test_two_dimensional_input_and_no_mask():
    x, edge_index, s, batch, _ = case_inputs('one_graph', False)
    dense_x, adj, dense_s, _ = dense_batch(x, edge_index, batch, s)
    got = dense_diff_pool(dense_x[0], adj[0], dense_s[0])
    expected = diff_pool_reference(dense_x, adj, dense_s)
    assert got[0].shape == (1, NUM_CLUSTERS, 4)
    assert_outputs_close(got, expected, torch.float64)
    assert_outputs_close(sparse_diff_pool(x, edge_index, s), expected, torch.float64)


def test_sparse_adjacency_forms_agree():
    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True)
    expected = sparse_diff_pool(x, edge_index, s, batch, edge_weight)
    n = x.size(0)
    adj_t = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (n, n))
    assert_outputs_close(sparse_diff_pool(x, adj_t, s, batch), expected, torch.float64)
    assert_outputs_close(
        sparse_diff_pool(x, adj_t.coalesce().to_sparse_csr(), s, batch), expected, torch.float64
    )


@pytest.mark.skipif(not has_torch_sparse(), reason='torch_sparse not installed')
def test_sparse_tensor_input():
    from torch_sparse import SparseTensor

    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True)
    n = x.size(0)
    adj_t = SparseTensor(
        row=edge_index[1], col=edge_index[0], value=edge_weight, sparse_sizes=(n, n)
    )
    expected = sparse_diff_pool(x, edge_index, s, batch, edge_weight)
    assert_outputs_close(sparse_diff_pool(x, adj_t, s, batch), expected, torch.float64)


@pytest.mark.parametrize('loss_norm', ['pyg', 'paper'])
def test_sparse_gradcheck(loss_norm):
    """x, s and (issue 22) edge_weight are differentiated, as the dense adj is in PyG."""
    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True)
    x = x[:12].clone().requires_grad_()
    s = s[:12].clone().requires_grad_()
    keep = (edge_index < 12).all(0)
    batch = batch[:12]
    weight = edge_weight[keep].clone().requires_grad_()

    def fn(x, s, weight):
        return sparse_diff_pool(x, edge_index[:, keep], s, batch, weight, loss_norm=loss_norm)

    assert torch.autograd.gradcheck(fn, (x, s, weight))


def test_link_loss_of_a_perfect_assignment_is_small_but_finite():
    # Two disjoint 2-cliques with self-loops: A = S S^T when S is (almost) one-hot.
    edge_index = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 2, 3, 2, 3]])
    x = torch.ones(4, 1, dtype=torch.float64)
    s = torch.tensor([[30.0, 0.0], [30.0, 0.0], [0.0, 30.0], [0.0, 30.0]], dtype=torch.float64)
    s.requires_grad_()
    _, _, link, entropy = sparse_diff_pool(x, edge_index, s)
    assert link < 1e-10 and entropy < 1e-10
    link.backward()
    assert torch.isfinite(s.grad).all()


def bad_dense_inputs():
    x = torch.randn(2, 5, 3)
    adj = torch.rand(2, 5, 5)
    s = torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    nan_s = s.clone()
    nan_s[1, 2, 0] = float('nan')
    empty_mask = mask.clone()
    empty_mask[1] = False
    return [
        ('s_wrong_node_count', (x, adj, torch.randn(2, 4, 4), mask), ValueError, 'one row'),
        ('mask_shape', (x, adj, s, torch.ones(2, 4, dtype=torch.bool)), ValueError, 'mask must'),
        ('nan_in_s', (x, adj, nan_s, mask), ValueError, 's contains NaN'),
        ('mask_dtype', (x, adj, s, mask.float()), TypeError, 'torch.bool'),
        ('empty_graph', (x, adj, s, empty_mask), ValueError, 'no real node in graph 1'),
        ('adj_shape', (x, torch.rand(2, 5, 4), s, mask), ValueError, 'adj must be'),
        ('dtype_mismatch', (x, adj.double(), s, mask), TypeError, 'adj is torch.float64'),
        ('edge_index_as_adj', (x, torch.ones(2, 5, dtype=torch.long), s), TypeError, 'adj must'),
        ('x_dims', (torch.randn(5), adj, s), ValueError, 'x must be'),
    ]


@pytest.mark.parametrize(
    'args, error, match',
    [case[1:] for case in bad_dense_inputs()],
    ids=[case[0] for case in bad_dense_inputs()],
)
def test_dense_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        dense_diff_pool(*args)


def bad_sparse_inputs():
    x = torch.randn(5, 3)
    edge_index = torch.tensor([[0, 1, 3], [1, 0, 4]])
    s = torch.randn(5, 2)
    batch = torch.tensor([0, 0, 1, 1, 1])
    nan_s = s.clone()
    nan_s[3, 1] = float('nan')
    return [
        ('s_wrong_node_count', (x, edge_index, torch.randn(4, 2), batch), ValueError, 'N = 5'),
        ('nan_in_s', (x, edge_index, nan_s, batch), ValueError, 's contains NaN'),
        ('edge_across_graphs', (x, torch.tensor([[0], [3]]), s, batch), ValueError, 'different'),
        ('edge_out_of_range', (x, torch.tensor([[0], [5]]), s, batch), ValueError, 'out of range'),
        ('unsorted_batch', (x, edge_index, s, batch.flip(0)), ValueError, 'sorted'),
        ('batch_length', (x, edge_index, s, batch[:4]), ValueError, 'batch has 4'),
        ('dtype_mismatch', (x, edge_index, s.double(), batch), TypeError, 's is torch.float64'),
        ('nan_in_x', (x * float('nan'), edge_index, s, batch), ValueError, 'x contains NaN'),
    ]


@pytest.mark.parametrize(
    'args, error, match',
    [case[1:] for case in bad_sparse_inputs()],
    ids=[case[0] for case in bad_sparse_inputs()],
)
def test_sparse_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        sparse_diff_pool(*args)


def test_bad_loss_norm():
    with pytest.raises(ValueError, match='loss_norm'):
        dense_diff_pool(torch.randn(3, 2), torch.rand(3, 3), torch.randn(3, 2), loss_norm='mean')
    with pytest.raises(ValueError, match='loss_norm'):
        sparse_diff_pool(
            torch.randn(3, 2), torch.tensor([[0], [1]]), torch.randn(3, 2), loss_norm='authors'
        )


# --- torch.compile ---------------------------------------------------------------------------
def compile_inputs(seed=0, dtype=torch.float64):
    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True, dtype=dtype, seed=seed)
    return dense_batch(x, edge_index, batch, s, edge_weight)


@pytest.mark.parametrize('masked', [False, True])
@pytest.mark.parametrize('loss_norm', ['pyg', 'paper'])
def test_dense_compiles_without_a_graph_break(masked, loss_norm):
    dense_x, adj, dense_s, mask = compile_inputs()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(dense_diff_pool)(
        dense_x, adj, dense_s, mask if masked else None, loss_norm=loss_norm
    )
    assert explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.parametrize('loss_norm', ['pyg', pytest.param('paper', marks=pytest.mark.slow)])
def test_dense_compiled_forward_backward_equal_eager(loss_norm):
    dense_x, adj, dense_s, mask = compile_inputs(seed=3)
    compiled = torch.compile(dense_diff_pool, backend='inductor', fullgraph=True)
    results = []
    for fn in (dense_diff_pool, compiled):
        leaves = [t.clone().requires_grad_() for t in (dense_x, adj, dense_s)]
        out = fn(*leaves, mask, loss_norm=loss_norm)
        probe = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in out)
        results.append((*out, *torch.autograd.grad(probe, leaves)))
    torch._dynamo.reset()
    for eager, comp in zip(*results, strict=True):
        torch.testing.assert_close(comp, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('backend', ['aot_eager', pytest.param('inductor', marks=pytest.mark.slow)])
def test_sparse_first_level_compiles_and_equals_eager(backend):
    x, edge_index, s, batch, edge_weight = case_inputs('ragged', True)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(sparse_diff_pool)(x, edge_index, s, batch, edge_weight)
    # Sizes that depend on the data (graph sizes, the CSR built from edge_index) break the graph
    # inside graphops.ops; sparse_diff_pool's own checks and reductions add none.
    own = [
        r
        for r in explained.break_reasons
        if r.user_stack and r.user_stack[-1].filename.endswith('nn/dense/diff_pool.py')
    ]
    assert not own, own
    # the one data-dependent size left is the number of graphs (a bincount of batch), which
    # PyG's TopKPooling reads back too: no more breaks than it has on the same batch
    torch._dynamo.reset()
    pyg_pool = TopKPooling(x.size(1))
    pyg_breaks = torch._dynamo.explain(pyg_pool)(x, edge_index, batch=batch).graph_break_count
    assert explained.graph_break_count <= min(pyg_breaks, 3), explained.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(sparse_diff_pool, backend=backend)
    results = []
    for fn in (sparse_diff_pool, compiled):
        leaves = [t.clone().requires_grad_() for t in (x, s, edge_weight)]
        out = fn(leaves[0], edge_index, leaves[1], batch, leaves[2])
        probe = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in out)
        results.append((*out, *torch.autograd.grad(probe, leaves)))
    torch._dynamo.reset()
    for eager, comp in zip(*results, strict=True):
        torch.testing.assert_close(comp, eager, atol=1e-5, rtol=1e-5)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('name', ['ragged', 'self_loops_no_edges'])
@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('loss_norm', ['paper', 'pyg'])
def test_device_matches_cpu(matches_cpu, name, weighted, loss_norm):
    x, edge_index, s, batch, edge_weight = case_inputs(name, weighted)
    x, s = x.requires_grad_(), s.requires_grad_()
    matches_cpu(
        sparse_diff_pool, x, edge_index, s, batch, edge_weight, loss_norm=loss_norm, grad=True
    )
    x_dense, adj, s_dense, mask = dense_batch(
        x.detach(), edge_index, batch, s.detach(), edge_weight
    )
    x_dense, s_dense = x_dense.requires_grad_(), s_dense.requires_grad_()
    matches_cpu(dense_diff_pool, x_dense, adj, s_dense, mask, loss_norm=loss_norm, grad=True)
