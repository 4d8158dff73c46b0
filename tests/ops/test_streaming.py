import pytest
import torch

from graphops.ops import spmm, to_csr
from graphops.ops.streaming import RowBlockStream, row_blocks, sliced_spmm
from graphops.testing import random_features, random_graph

GRAPH = random_graph(120, 900, seed=7, weighted=True, isolated=5, dtype=torch.float32)
CSR_ = to_csr(GRAPH.edge_index, GRAPH.edge_weight, GRAPH.num_nodes)
X = random_features(120, 10, dtype=torch.float32)


@pytest.mark.parametrize('block_nnz', [1, 7, 64, 10**6])
def test_row_block_stream_equals_spmm(block_nnz):
    stream = RowBlockStream(CSR_, block_nnz)
    assert torch.equal(stream.spmm(X), spmm(CSR_, X))
    blocks = row_blocks(CSR_.rowptr, block_nnz)
    assert blocks[0][0] == 0 and blocks[-1][1] == CSR_.num_rows
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    for start, end in blocks:  # a block exceeds the bound only when it is one long row
        nnz = int(CSR_.rowptr[end] - CSR_.rowptr[start])
        assert nnz <= block_nnz or end - start == 1


@pytest.mark.parametrize('width', [1, 3, 10, 50])
def test_sliced_spmm_equals_spmm(width):
    assert torch.equal(sliced_spmm(CSR_, X, width), spmm(CSR_, X))
    stream = RowBlockStream(CSR_, 50)
    assert torch.equal(sliced_spmm(stream, X, width), spmm(CSR_, X))


def test_streaming_bad_input():
    with pytest.raises(TypeError, match='graphops CSR'):
        RowBlockStream(GRAPH.edge_index, 10)
    with pytest.raises(ValueError, match='block_nnz must be >= 1'):
        RowBlockStream(CSR_, 0)
    with pytest.raises(TypeError, match='block_nnz must be an int'):
        RowBlockStream(CSR_, 2.5)
    stream = RowBlockStream(CSR_, 10)
    with pytest.raises(ValueError, match='x has 3 entries'):
        stream.spmm(torch.randn(3, 2))
    with pytest.raises(ValueError, match='slice_width must be >= 1'):
        sliced_spmm(CSR_, X, 0)
    with pytest.raises(ValueError, match='out must be'):
        sliced_spmm(CSR_, X, 2, out=torch.empty(3, 3))
    with pytest.raises(TypeError, match='floating-point'):
        sliced_spmm(CSR_, X.long(), 2)
    assert repr(stream).startswith('RowBlockStream(shape=(120, 120)')


def test_streaming_out_must_live_where_x_does():
    # host x with products elsewhere writes into a host out; an out on another device is refused
    with pytest.raises(ValueError, match=r'on cpu \(where x is\)'):
        sliced_spmm(CSR_, X, 2, out=torch.empty(120, 10, device='meta'))
    with pytest.raises(ValueError, match='on cpu'):
        RowBlockStream(CSR_, 10).spmm(X, out=torch.empty(120, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match='contiguous'):
        RowBlockStream(CSR_, 10).spmm(X, out=torch.empty(10, 120).t())
    out = torch.empty(120, 10)
    assert RowBlockStream(CSR_, 10).spmm(X, out=out) is out
    assert torch.equal(out, spmm(CSR_, X))


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('width', [1, 3, 4, 10])
def test_streaming_device_matches_cpu(device, width):
    expected = spmm(CSR_, X)
    stream = RowBlockStream(CSR_, 64, device)
    assert stream.blocks[0][2].col.is_pinned() == (device.type == 'cuda')
    torch.testing.assert_close(stream.spmm(X.to(device)).cpu(), expected)
    out = torch.empty(120, 10, device=device)
    assert stream.spmm(X.to(device), out=out) is out
    torch.testing.assert_close(out.cpu(), expected)
    # host x and out, products on the device: the slices cycle both pinned staging pairs
    out = torch.full_like(X, float('nan'))
    assert sliced_spmm(stream, X, width, device=device, out=out) is out
    torch.testing.assert_close(out, expected)
    got = sliced_spmm(CSR_.to(device), X, width, device=device)
    assert got.device == X.device
    torch.testing.assert_close(got, expected)


@pytest.mark.gpu
def test_sliced_spmm_device_many_slices(device):
    # 97 one-column slices: a staging pair reused before its copies finished would show here
    x = random_features(120, 97, dtype=torch.float32, seed=3)
    got = sliced_spmm(CSR_.to(device), x, 1, device=device)
    torch.testing.assert_close(got, spmm(CSR_, x))
