import pytest
import torch

from graphops.ops import dispatch, to_csr
from graphops.ops.kernels import llvm_spmm
from graphops.ops.spmm import HUGE_PAGE, host_empty, row_chunks, spmm
from graphops.testing import (
    awkward_graphs,
    random_features,
    random_graph,
    tolerance,
)

pytestmark = pytest.mark.skipif(not llvm_spmm.available(), reason='numba/llvmlite not installed')

GRAPHS = list(awkward_graphs(weighted=True))
# one vector, a tail shorter than a vector, a full pass, a pass and a tail, rows longer than the
# whole-row prefetch (per-pass prefetch)
WIDTHS = [1, 3, 8, 9, 64, 65, 128, 300]


def reference(csr, x, mean):
    expected = csr.to_dense(x.dtype) @ x
    if mean:
        expected = expected / csr.row_counts().clamp(min=1).to(x.dtype)[:, None]
    return expected


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('weighted', [True, False])
@pytest.mark.parametrize('mean', [False, True])
def test_kernel_matches_dense_float64(graph, weighted, mean):
    csr = to_csr(graph.edge_index, graph.edge_weight if weighted else None, graph.num_nodes)
    x = random_features(graph.num_nodes, 6)
    out = torch.full((csr.num_rows, 6), float('nan'), dtype=torch.float64)
    value = None if csr.value is None else csr.value.double()
    llvm_spmm.spmm_into(csr.rowptr, csr.col, value, x, out, mean)
    torch.testing.assert_close(out, reference(csr, x, mean), **tolerance(torch.float64))


@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('index_dtype', [torch.int32, torch.int64])
def test_kernel_widths_dtypes_and_index_dtypes(width, dtype, index_dtype):
    g = random_graph(60, 700, seed=width, isolated=5, weighted=True, dtype=dtype)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes).to(index_dtype=index_dtype)
    x = random_features(60, width, seed=1, dtype=dtype)
    for mean in (False, True):
        out = torch.full((60, width), float('nan'), dtype=dtype)
        llvm_spmm.spmm_into(csr.rowptr, csr.col, csr.value, x, out, mean)
        torch.testing.assert_close(out, reference(csr, x, mean), **tolerance(dtype))


@pytest.mark.parametrize('vector_bytes', [64, 32, 16, 0])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_every_simd_width_this_cpu_supports(vector_bytes, dtype):
    if vector_bytes not in llvm_spmm.supported_vector_bytes():
        pytest.skip(f'this CPU has no {vector_bytes}-byte vectors')
    g = random_graph(80, 900, seed=2, isolated=3, weighted=True, dtype=dtype)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    for width in (1, 5, 40, 130):
        x = random_features(80, width, seed=3, dtype=dtype)
        for mean in (False, True):
            out = torch.full((80, width), float('nan'), dtype=dtype)
            llvm_spmm.spmm_into(csr.rowptr, csr.col, csr.value, x, out, mean, vector_bytes=0)
            forced = torch.full_like(out, float('nan'))
            llvm_spmm.spmm_into(
                csr.rowptr, csr.col, csr.value, x, forced, mean, vector_bytes=vector_bytes
            )
            torch.testing.assert_close(forced, reference(csr, x, mean), **tolerance(dtype))
            # one fused multiply-add per entry in CSR order at every width: the same bytes
            assert torch.equal(forced, out)


def test_supported_widths_and_a_width_the_cpu_lacks():
    widths = llvm_spmm.supported_vector_bytes()
    assert widths[-1] == 0 and list(widths) == sorted(widths, reverse=True)
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    x, out = torch.randn(2, 4), torch.empty(2, 4)
    with pytest.raises(ValueError, match='vector_bytes must be one of'):
        llvm_spmm.spmm_into(csr.rowptr, csr.col, None, x, out, False, vector_bytes=48)


def test_bytes_independent_of_threads_chunks_and_column_slices(monkeypatch):
    monkeypatch.setattr(dispatch, 'SPMM_SERIAL_WORK', 0)  # the thread pool even on a small graph
    g = random_graph(3000, 40000, seed=4, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(3000, 40, dtype=torch.float32)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(spmm(csr, x, backend='llvm'))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])
    sliced = torch.cat([spmm(csr, x[:, a : a + 7], backend='llvm') for a in range(0, 40, 7)], 1)
    assert torch.equal(results[0], sliced)  # the engine's column slices give the same bytes


def test_generated_ir_names_its_constants():
    ir = llvm_spmm.kernel_ir(130, torch.float32, torch.int32, True, False)
    assert 'define void @spmm_rows' in ir
    assert 'mul i64 %i, 520' in ir  # the row stride is a constant: 130 float32
    assert '<2 x float>' in ir  # the tail of 130 = 16 x 8 + 2
    assert 'llvm.prefetch' in ir


@pytest.mark.parametrize('width, ahead', [(8, 64), (16, 64), (32, 32), (64, 16), (512, 16)])
def test_prefetch_keeps_a_fixed_number_of_lines_in_flight(width, ahead):
    # narrow rows are prefetched more rows ahead: one line a row needs 64 rows to keep 64 lines
    assert llvm_spmm.prefetch_distance(width * 4) == ahead
    ir = llvm_spmm.kernel_ir(width, torch.float32, torch.int32, True, False, 32)
    assert f'%p0_ahead = add i64 %p0_k, {ahead}' in ir


def test_row_chunks_cover_rows_with_even_work():
    rowptr = torch.tensor([0, 100, 100, 100, 101, 102, 300]).numpy()
    bounds = row_chunks(rowptr, 3)
    assert bounds[0] == 0 and bounds[-1] == 6
    assert (bounds[1:] >= bounds[:-1]).all()
    assert row_chunks(rowptr[:1], 4).tolist() == [0, 0]  # no rows: one empty chunk


def test_host_empty_aligns_large_buffers():
    large = host_empty(HUGE_PAGE // 256 + 3, 64)  # just over 2 MiB of float32
    assert large.data_ptr() % HUGE_PAGE == 0 and large.is_contiguous()
    assert large.shape == (HUGE_PAGE // 256 + 3, 64) and large.dtype == torch.float32
    small = host_empty(10, 3, torch.float64)
    assert small.data_ptr() % 64 == 0 and small.dtype == torch.float64
    assert host_empty(4, 4, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.skipif(not hasattr(__import__('os'), 'fork'), reason='needs fork')
def test_forked_child_gets_its_own_thread_pool(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(dispatch, 'SPMM_SERIAL_WORK', 0)
    g = random_graph(500, 5000, seed=8, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    x = random_features(500, 16, dtype=torch.float32)
    expected = spmm(csr, x, backend='llvm')  # the parent's pool exists now
    context = multiprocessing.get_context('fork')
    with context.Pool(1) as pool:
        result = pool.apply_async(_product_in_child, (csr, x)).get(timeout=60)
    assert torch.equal(result, expected)


def _product_in_child(csr, x):
    torch.set_num_threads(2)
    return spmm(csr, x, backend='llvm')


def test_layout_is_checked_before_raw_memory_is_read():
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    x, out = torch.randn(2, 3), torch.empty(2, 3)
    with pytest.raises(ValueError, match='contiguous CPU'):
        llvm_spmm.spmm_into(csr.rowptr, csr.col, None, x.t().contiguous().t(), out, False)
    with pytest.raises(TypeError, match='float32/float64'):
        llvm_spmm.spmm_into(csr.rowptr, csr.col, None, x, out.double(), False)
    with pytest.raises(ValueError, match='shaped like col'):
        llvm_spmm.spmm_into(csr.rowptr, csr.col, torch.ones(5), x, out, False)
    with pytest.raises(TypeError, match='int32/int64'):
        llvm_spmm.spmm_into(csr.rowptr.long(), csr.col.int(), None, x, out, False)
    with pytest.raises(ValueError, match='offsets'):
        llvm_spmm.spmm_into(csr.rowptr, csr.col, None, x, torch.empty(3, 3), False)
    with pytest.raises(ValueError, match='alike'):
        llvm_spmm.spmm_into(csr.rowptr, csr.col, None, x, torch.empty(2, 4), False)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
def test_kernel_refuses_device_tensors(device):
    # the kernel reads raw host memory: a device pointer must never reach it
    g = random_graph(20, 80, seed=2, weighted=True, dtype=torch.float32)
    csr = to_csr(g.edge_index, g.edge_weight, 20)
    x = random_features(20, 4, dtype=torch.float32)
    out = torch.empty(20, 4)
    args = [csr.rowptr, csr.col, csr.value, x, out]
    if device.type == 'cpu':
        llvm_spmm.spmm_into(*args, False)
        torch.testing.assert_close(out, reference(csr, x, False).float())
        return
    for index, name in enumerate(['rowptr', 'col', 'value', 'x', 'out']):
        moved = [t.to(device) if i == index else t for i, t in enumerate(args)]
        with pytest.raises(ValueError, match=f'{name} must be a contiguous CPU tensor'):
            llvm_spmm.spmm_into(*moved, False)
