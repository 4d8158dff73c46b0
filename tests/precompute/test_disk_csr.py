"""DiskCSR: row-block products from disk, and the in-place product that holds one buffer."""

import numpy as np
import pytest
import torch

from graphops.ops import CSR, spmm
from graphops.precompute import DiskCSR


def write(folder, dense: np.ndarray, block_rows: int) -> DiskCSR:
    """``dense`` stored as a DiskCSR with ``block_rows`` rows a block."""
    folder.mkdir()
    blocks = []
    for index, start in enumerate(range(0, dense.shape[0], block_rows)):
        part = dense[start : start + block_rows]
        rows, cols = np.nonzero(part)
        rowptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=part.shape[0]))])
        sums = DiskCSR.write_block(folder, index, rowptr, cols, part[rows, cols])
        blocks.append(
            {'rows': [start, start + part.shape[0]], 'nnz': int(rows.size), 'sha256': sums}
        )
    DiskCSR.finish(folder, dense.shape[0], dense.shape[1], blocks, {})
    return DiskCSR(folder)


@pytest.fixture
def square(tmp_path):
    rng = np.random.default_rng(0)
    dense = (rng.random((37, 37)) < 0.2) * rng.standard_normal((37, 37))
    return dense.astype(np.float32), write(tmp_path / 'm', dense.astype(np.float32), 8)


def test_spmm_gives_the_bytes_of_the_whole_matrix_product(square):
    dense, matrix = square
    x = torch.randn(37, 5)
    rows, cols = np.nonzero(dense)
    whole = CSR.from_coo(
        torch.from_numpy(rows),
        torch.from_numpy(cols),
        torch.from_numpy(dense[rows, cols]),
        37,
        37,
        is_sorted=True,
    )
    got = matrix.spmm(x)
    assert torch.equal(got, spmm(whole, x))
    torch.testing.assert_close(got, torch.from_numpy(dense) @ x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('spare', [0, 5, 16, 20, 37, 45])
def test_spmm_spill_gives_spmm_bytes_hop_after_hop(square, tmp_path, spare):
    """0 spare rows: everything staged; 16: two whole blocks held, the rest staged; 5 and 20 end
    inside a block (only whole blocks are held); 37 and more: nothing staged. Three hops in one
    buffer, the free rows changing ends, give the bytes of three spmm calls."""
    _, matrix = square
    x = torch.randn(37, 6)
    buffer = torch.full((37 + spare, 6), float('nan'))
    at = spare
    buffer[at : at + 37] = x
    scratch = tmp_path / 'scratch.f32'
    expected, ends = x, []
    for _ in range(3):
        expected = matrix.spmm(expected)
        at = matrix.spmm_spill(buffer, at, scratch)
        assert 0 <= at <= spare
        assert torch.equal(buffer[at : at + 37], expected)  # the same bytes
        assert not scratch.exists()
        ends.append(at)
    assert (matrix.bytes_spilled == 0) == (spare >= 37)  # held whole: nothing went to disk
    if 16 <= spare < 37:  # the free rows alternate between the two ends of the buffer
        assert ends[0] < spare / 2 < ends[1]


def test_a_leftover_scratch_file_is_overwritten_not_appended_to(square, tmp_path):
    _, matrix = square
    x = torch.randn(37, 3)
    scratch = tmp_path / 'scratch.f32'
    scratch.write_bytes(b'\xff' * 10_000)  # from a killed run
    buffer = torch.cat([torch.empty(8, 3), x])
    at = matrix.spmm_spill(buffer, 8, scratch)
    assert torch.equal(buffer[at : at + 37], matrix.spmm(x))


def test_spmm_spill_rejects_what_it_cannot_overwrite(square, tmp_path):
    _, matrix = square
    with pytest.raises(ValueError, match='buffer must be a contiguous'):
        matrix.spmm_spill(torch.randn(2, 37).t(), 0, tmp_path / 's')
    with pytest.raises(ValueError, match=r'buffer must hold x'):
        matrix.spmm_spill(torch.randn(36, 2), 0, tmp_path / 's')
    with pytest.raises(ValueError, match=r'buffer must hold x'):
        matrix.spmm_spill(torch.randn(40, 2), 4, tmp_path / 's')
    rect = write(tmp_path / 'r', np.ones((4, 6), dtype=np.float32), 3)
    with pytest.raises(ValueError, match='square'):
        rect.spmm_spill(torch.randn(6, 2), 0, tmp_path / 's')
