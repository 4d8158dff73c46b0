import subprocess
import sys
import textwrap

import pytest
import torch

from graphops.ops import (
    current_backend,
    set_backend,
    spgemm,
    spmm,
    to_csr,
    triangle_adjacency,
    use_backend,
)
from graphops.ops import dispatch as dispatch_module
from graphops.ops.kernels import llvm_spmm
from graphops.ops.kernels import spgemm as spgemm_kernels
from graphops.ops.kernels import triangle as triangle_kernels
from graphops.ops.relational import RelationalGraph, relational_matmul
from graphops.ops.spmm import has_numba
from graphops.testing import random_graph

needs_kernels = pytest.mark.skipif(not has_numba(), reason='numba/llvmlite not installed')


def _graph(num_nodes=40, num_edges=1000, seed=0):  # 25 entries a row: the LLVM kernel
    g = random_graph(num_nodes, num_edges, seed=seed)
    return to_csr(g.edge_index, None, num_nodes)


def _refuse(*args, **kwargs):
    raise AssertionError('a kernel ran under the torch override')


def _calls(monkeypatch, module, name) -> list:
    calls: list = []
    original = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def test_the_override_nests_and_the_global_setter_is_the_default():
    assert current_backend() == 'auto'
    set_backend('torch')
    try:
        assert current_backend() == 'torch'
        with use_backend('llvm'):
            assert current_backend() == 'llvm'
            with use_backend('auto'):
                assert current_backend() == 'auto'
            assert current_backend() == 'llvm'
        assert current_backend() == 'torch'
    finally:
        set_backend('auto')
    assert current_backend() == 'auto'
    with pytest.raises(ValueError, match='backend must be one of'):
        set_backend('mkl')
    with pytest.raises(ValueError, match='backend must be one of'), use_backend('numpy'):
        pass


@needs_kernels
def test_spmm_and_the_relational_engine_honour_the_override(monkeypatch):
    csr = _graph()
    x = torch.randn(40, 8)
    expected = spmm(csr, x, backend='torch')
    kernel = llvm_spmm.spmm_into
    calls = _calls(monkeypatch, llvm_spmm, 'spmm_into')
    torch.testing.assert_close(spmm(csr, x), expected)
    assert calls, 'auto runs the LLVM kernel on float32 CPU input'
    calls.clear()
    src, dst = random_graph(40, 1000, seed=1).edge_index
    rel = torch.randint(0, 3, (src.numel(),), generator=torch.Generator().manual_seed(0))
    graph = RelationalGraph(src, dst, rel, 40, 40, 3)
    weight = torch.randn(3, 8, 4)
    reference = relational_matmul(graph, x, weight, strategy='transform')
    assert calls, 'the relational engine multiplies through spmm'
    monkeypatch.setattr(llvm_spmm, 'spmm_into', _refuse)
    with use_backend('torch'):
        torch.testing.assert_close(spmm(csr, x), expected)
        for strategy in ('pairs', 'aggregate', 'transform'):
            out = relational_matmul(graph, x, weight, strategy=strategy)
            torch.testing.assert_close(out, reference)
    # an explicit argument wins over the override
    monkeypatch.setattr(llvm_spmm, 'spmm_into', kernel)
    with use_backend('torch'):
        torch.testing.assert_close(spmm(csr, x, backend='llvm'), expected)


@needs_kernels
def test_spgemm_and_triangles_honour_the_override(monkeypatch):
    csr = _graph()
    expected_product = spgemm(csr, csr, backend='numba').to_dense()
    expected_triangles = triangle_adjacency(csr, backend='numba').to_dense()
    monkeypatch.setattr(spgemm_kernels, 'loaded', _refuse)
    monkeypatch.setattr(triangle_kernels, 'loaded', _refuse)
    with use_backend('torch'):
        torch.testing.assert_close(spgemm(csr, csr).to_dense(), expected_product)
        torch.testing.assert_close(triangle_adjacency(csr).to_dense(), expected_triangles)
    set_backend('torch')
    try:
        torch.testing.assert_close(spgemm(csr, csr).to_dense(), expected_product)
    finally:
        set_backend('auto')
    with pytest.raises(AssertionError, match='kernel ran'):
        spgemm(csr, csr)  # no override: the numba kernel is asked for again


def test_an_override_naming_another_kernel_leaves_an_op_on_auto():
    csr = _graph()
    with use_backend('llvm'):  # spgemm has no LLVM kernel: it chooses as under 'auto'
        dense = csr.to_dense()
        torch.testing.assert_close(spgemm(csr, csr).to_dense(), dense @ dense)
    with pytest.raises(ValueError, match="no 'llvm' backend"):
        spgemm(csr, csr, backend='llvm')
    with pytest.raises(ValueError, match='needs CUDA tensors'), use_backend('cuda'):
        spmm(csr, torch.randn(40, 2))


NO_KERNELS_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules['numba'] = None  # neither can be imported: find_spec returns None
    sys.modules['llvmlite'] = None
    import torch
    from graphops.ops import spgemm, spmm, sddmm, to_csr, topk, triangle_adjacency
    from graphops.ops.dispatch import CSR_NUMBA_MIN_ENTRIES
    from graphops.ops.relational import RelationalGraph, relational_matmul

    gen = torch.Generator().manual_seed(0)
    n, e = 3000, CSR_NUMBA_MIN_ENTRIES + 10  # past every kernel's minimum size
    ei = torch.randint(0, n, (2, e), generator=gen)
    csr = to_csr(ei, None, n)
    dense = torch.zeros(n, n).index_put_((ei[1], ei[0]), torch.ones(e), accumulate=True)
    x = torch.randn(n, 4, generator=gen)
    assert torch.allclose(spmm(csr, x), dense @ x, atol=1e-4)
    small = to_csr(ei[:, :400] % 60, None, 60)
    d = small.to_dense()
    assert torch.allclose(spgemm(small, small).to_dense(), d @ d)
    tri = triangle_adjacency(small).to_dense()
    a = ((d + d.t()) > 0).float().fill_diagonal_(0)
    assert torch.allclose(tri, a * (a @ a))
    left, right = torch.randn(60, 3), torch.randn(60, 3)
    assert torch.allclose(sddmm(small, left, right), (left @ right.t())[small.row().long(), small.col.long()], atol=1e-5)
    rel = torch.randint(0, 3, (e,), generator=gen)
    graph = RelationalGraph(ei[0], ei[1], rel, n, n, 3)
    w = torch.randn(3, 4, 2, generator=gen)
    out = relational_matmul(graph, x, w, aggr='sum', strategy='pairs')
    ref = sum((torch.zeros(n, n).index_put_((ei[1][rel == r], ei[0][rel == r]), torch.ones(int((rel == r).sum())), accumulate=True) @ x) @ w[r] for r in range(3))
    assert torch.allclose(out, ref, atol=1e-4)
    score = torch.randn(CSR_NUMBA_MIN_ENTRIES, generator=gen)
    assert topk(score, 0.5).numel() == CSR_NUMBA_MIN_ENTRIES // 2
    assert sys.modules['numba'] is None and sys.modules['llvmlite'] is None
    print('ok')
    """
)


def test_everything_falls_back_to_torch_without_numba_and_llvmlite():
    done = subprocess.run(
        [sys.executable, '-W', 'ignore', '-c', NO_KERNELS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == 'ok'


def test_thresholds_live_in_dispatch():
    assert dispatch_module.threads_for(0, dispatch_module.SPMM_SERIAL_WORK) == 1
    assert dispatch_module.threads_for(dispatch_module.SPMM_SERIAL_WORK, 0) >= 1


@needs_kernels
def test_auto_spmm_runs_embedding_bag_on_short_rows(monkeypatch):
    csr = _graph(200, 300)  # 1.5 entries a row, as R-GCN's (target, relation) pairs
    x = torch.randn(200, 8, dtype=torch.float64)
    expected = spmm(csr, x, 'mean', backend='llvm')
    calls = _calls(monkeypatch, llvm_spmm, 'spmm_into')
    torch.testing.assert_close(spmm(csr, x, 'mean'), expected)
    assert not calls
