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
def test_llvm_backend_matches_dense_float64(graph, weighted, reduce):
    weight = graph.edge_weight if weighted else None
    csr = to_csr(graph.edge_index, weight, graph.num_nodes)
    x = random_features(graph.num_nodes, 7)
    adj = dense_adjacency(graph.edge_index, graph.num_nodes, weight)
    expected = adj @ x
    if reduce == 'mean':
        expected = expected / csr.row_counts().clamp(min=1).double()[:, None]
    out = spmm(csr, x, reduce, backend='llvm')
    torch.testing.assert_close(out, expected, **tolerance(torch.float64))
    torch.testing.assert_close(out, spmm(csr, x, reduce, backend='torch'), **tolerance(x.dtype))


@needs_numba
@pytest.mark.parametrize('index_dtype', [torch.int32, torch.int64])
def test_llvm_backend_index_dtypes_and_out(index_dtype):
    g = random_graph(300, 3000, seed=3, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes).to(index_dtype=index_dtype)
    x = random_features(300, 33, dtype=torch.float32)
    out = torch.full((300, 33), float('nan'))
    result = spmm(csr, x, out=out, backend='llvm')
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, spmm(csr, x, backend='torch'), **tolerance(torch.float32))


AUTOGRAD_BACKENDS = ['torch', 'llvm'] if has_numba() else ['torch']


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('backend', AUTOGRAD_BACKENDS)
@pytest.mark.parametrize('reduce', ['sum', 'mean'])
def test_gradcheck_in_x_and_values(graph, backend, reduce):
    # duplicate edges each get their own value gradient (torch.sparse's backward failed there)
    value = graph.edge_weight.clone().requires_grad_()
    x = random_features(graph.num_nodes, 3).requires_grad_()

    def product(v, f):
        return spmm(to_csr(graph.edge_index, v, graph.num_nodes), f, reduce, backend=backend)

    torch.autograd.gradcheck(product, (value, x))


@pytest.mark.parametrize('backend', AUTOGRAD_BACKENDS)
def test_gradients_equal_the_gather_scatter_reference(backend):
    g = random_graph(300, 4000, seed=4, weighted=True)
    ei = torch.cat([g.edge_index, g.edge_index[:, :500]], 1)  # 500 duplicate edges
    w = torch.cat([g.edge_weight, g.edge_weight[:500] * 2]).requires_grad_()
    x = random_features(300, 9).requires_grad_()
    y = spmm(to_csr(ei, w, 300), x, backend=backend)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (w, x), grad)
    ref_w, ref_x = w.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    ref = torch.zeros(300, 9, dtype=x.dtype).index_add(0, ei[1], ref_x[ei[0]] * ref_w[:, None])
    expected = torch.autograd.grad(ref, (ref_w, ref_x), grad)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_unweighted_and_x_only_gradients():
    g = random_graph(20, 80, seed=5)
    csr = to_csr(g.edge_index, None, g.num_nodes)
    x = random_features(20, 3).requires_grad_()
    torch.autograd.gradcheck(lambda f: spmm(csr, f), (x,))
    with torch.no_grad():  # no gradient wanted: the plain kernel, same values
        torch.testing.assert_close(spmm(csr, x), spmm(csr, x.detach(), backend='torch'))


def test_transposed_pattern_is_cached_and_not_pickled():
    import pickle

    g = random_graph(50, 400, seed=7, weighted=True)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    pattern, perm = csr.transposed_pattern()
    assert csr.transposed_pattern()[0] is pattern  # built once
    assert csr.with_value(None).transposed_pattern()[0] is pattern  # shared by with_value
    # ... also when the copy is made first and the transpose built later, on either side.
    fresh = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    copies = [fresh.with_value(fresh.value * k) for k in range(3)]
    built = copies[1].transposed_pattern()[0]
    assert all(c.transposed_pattern()[0] is built for c in (fresh, *copies))
    torch.testing.assert_close(pattern.with_value(csr.value[perm]).to_dense(), csr.t().to_dense())
    torch.testing.assert_close(csr.t().to_dense(), csr.to_dense().t())
    restored = pickle.loads(pickle.dumps(csr))
    assert '_structure' not in restored.__dict__
    torch.testing.assert_close(restored.to_dense(), csr.to_dense())


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_types_on_cpu(dtype):
    g = random_graph(40, 200, seed=8, weighted=True)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(40, 6)
    expected = spmm(csr, x).to(dtype)
    torch.testing.assert_close(spmm(csr, x.to(dtype)), expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize('reduce', ['sum', 'mean'])
def test_torch_backend_writes_into_out(reduce):
    g = random_graph(60, 500, seed=9, weighted=True)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(60, 5)
    out = torch.full((60, 5), float('nan'), dtype=x.dtype)
    result = spmm(csr, x, reduce, out=out, backend='torch')
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, spmm(csr, x, reduce))


@pytest.mark.parametrize('reduce', ['sum', 'mean'])
def test_compiles_without_graph_breaks(reduce):
    g = random_graph(50, 300, seed=1, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(50, 4, dtype=torch.float32)

    def product(f):
        return spmm(csr, f, reduce)

    explanation = torch._dynamo.explain(product)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_spmm_bad_backend_and_out():
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match='backend must be one of'):
        spmm(csr, x, backend='mkl')
    with pytest.raises(ValueError, match="backend='numba' is now backend='llvm'"):
        spmm(csr, x, backend='numba')
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
            spmm(csr, x.half(), backend='llvm')


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_spmm_cuda_matches_cpu():
    g = random_graph(400, 5000, seed=6, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(400, 16, dtype=torch.float32)
    expected = spmm(csr, x)
    out = spmm(csr.to('cuda'), x.cuda())
    torch.testing.assert_close(out.cpu(), expected, **tolerance(torch.float32))


# --- CUDA (gpu-marked) ---


def _spmm_parts(rowptr, col, value, x, reduce='sum'):
    from graphops.ops import CSR

    return spmm(CSR(rowptr, col, value, rowptr.numel() - 1, x.size(0)), x, reduce)


@pytest.mark.gpu
@pytest.mark.parametrize('reduce', ['sum', 'mean'])
@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_spmm_device_matches_cpu_with_autograd(matches_cpu, reduce, weighted, dtype):
    # duplicate entries and isolated nodes included; gradients reach x and each stored value
    g = random_graph(80, 700, seed=5, isolated=6, weighted=True, dtype=dtype)
    csr = to_csr(g.edge_index, g.edge_weight if weighted else None, 80)
    value = None if csr.value is None else csr.value.detach().clone().requires_grad_()
    x = random_features(80, 6, dtype=dtype).requires_grad_()
    matches_cpu(_spmm_parts, csr.rowptr, csr.col, value, x, reduce, grad=True)


@pytest.mark.gpu
@pytest.mark.parametrize('reduce', ['sum', 'mean'])
def test_spmm_device_out(device, reduce):
    g = random_graph(80, 700, seed=6, isolated=3, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, 80)
    x = random_features(80, 9, dtype=torch.float32)
    expected = spmm(csr, x, reduce)
    out = torch.full((80, 9), float('nan'), device=device)
    got = spmm(csr.to(device), x.to(device), reduce, out=out)
    assert got is out
    torch.testing.assert_close(out.cpu(), expected)
    with pytest.raises(ValueError, match='out must be'):
        spmm(csr.to(device), x.to(device), out=torch.empty(80, 9, device=device).t())
