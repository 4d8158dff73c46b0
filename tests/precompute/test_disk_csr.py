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


@pytest.mark.parametrize('held_rows', [0, 5, 16, 20, 37])
def test_spmm_spill_gives_spmm_bytes_and_shows_every_block(square, tmp_path, held_rows):
    """0 rows held: everything staged; 16: two whole blocks held, the rest staged; 5 and 20 end
    inside a block (only whole blocks are held); 37: nothing staged, the held buffer returned."""
    _, matrix = square
    x = torch.randn(37, 6)
    expected = matrix.spmm(x)
    seen = []

    def on_block(start, end, product):
        seen.append((start, end))
        assert torch.equal(product, expected[start:end])

    state, held = x.clone(), torch.empty(held_rows, 6)
    scratch = tmp_path / 'scratch.f32'
    out = matrix.spmm_spill(state, held, scratch, on_block)
    assert torch.equal(out, expected)  # the same bytes
    assert out is (held if held_rows == 37 else state)
    assert seen == [(start, end) for start, end, _ in matrix.blocks]
    assert not scratch.exists()


def test_a_leftover_scratch_file_is_overwritten_not_appended_to(square, tmp_path):
    _, matrix = square
    x = torch.randn(37, 3)
    scratch = tmp_path / 'scratch.f32'
    scratch.write_bytes(b'\xff' * 10_000)  # from a killed run
    assert torch.equal(matrix.spmm_spill(x.clone(), torch.empty(8, 3), scratch), matrix.spmm(x))


def test_spmm_spill_rejects_what_it_cannot_overwrite(square, tmp_path):
    _, matrix = square
    held = torch.empty(0, 2)
    with pytest.raises(ValueError, match='x must be a contiguous'):
        matrix.spmm_spill(torch.randn(2, 37).t(), held, tmp_path / 's')
    with pytest.raises(ValueError, match=r'x must be \[37, w\]'):
        matrix.spmm_spill(torch.randn(36, 2), held, tmp_path / 's')
    with pytest.raises(ValueError, match='held must be'):
        matrix.spmm_spill(torch.randn(37, 2), torch.empty(38, 2), tmp_path / 's')
    with pytest.raises(ValueError, match='held must be'):
        matrix.spmm_spill(
            torch.randn(37, 2), torch.empty(3, 2, dtype=torch.float64), tmp_path / 's'
        )
    rect = write(tmp_path / 'r', np.ones((4, 6), dtype=np.float32), 3)
    with pytest.raises(ValueError, match='square'):
        rect.spmm_spill(torch.randn(6, 2), held, tmp_path / 's')
