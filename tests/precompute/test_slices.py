import pickle
from itertools import product

import numpy as np
import pytest
import torch

from graphops.ops import to_csr
from graphops.precompute.slices import (
    SliceJob,
    compute_dtype,
    device_matrix,
    matrix_bytes,
    read_columns,
)
from graphops.testing import random_features, random_graph
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR
from graphops.transforms.triangle import Triangle

GRAPH = random_graph(200, 1500, seed=5, weighted=True, isolated=4, dtype=torch.float32)
ADJ = to_csr(GRAPH.edge_index, GRAPH.edge_weight, 200)
X = random_features(200, 7, dtype=torch.float32)
ROWS = torch.tensor([3, 0, 199, 42, 42])
# uneven widths, listed out of order: each slice stands alone
SLICES = [(2, 5, 7), (0, 0, 2), (1, 2, 5)]
OPERATORS = [
    Adjacency(2),
    Adjacency(2, norm='rw', direction='transposed', remove_self_loops=True, prefix='t'),
    PPR(2, alpha=[0.2, 0.5], tol=1e-3),
    Triangle(1),
]


def job(operator, x=X, **kwargs):
    return SliceJob(operator, operator.matrix(ADJ, compute_dtype(x)), SLICES, **kwargs)


def joined(results, width):
    """Each key's column slices put back side by side: ``{key: [R, F]}``."""
    results = dict(results)
    keys = next(iter(results.values())).keys()
    out = {}
    for key in keys:
        parts = [torch.from_numpy(results[s][key]) for s, _, _ in sorted(SLICES)]
        out[key] = torch.cat(parts, dim=1)
        assert out[key].shape[1] == width
    return out


@pytest.mark.parametrize(
    'operator, rows, x',
    list(product(OPERATORS, [None, ROWS], [X, X.double()])),
    ids=lambda v: repr(v) if not isinstance(v, torch.Tensor) else str(tuple(v.shape) + (v.dtype,)),
)
def test_run_equals_the_in_memory_operator(operator, rows, x):
    out = joined(job(operator, x, rows=rows).run(x), 7)
    expected = operator.propagate(ADJ, x)
    assert sorted(out) == sorted(expected) == sorted(operator.keys())
    for key, value in expected.items():
        value = value if rows is None else value[rows]
        assert out[key].dtype == torch.float32
        # the same kernel on every column: a column's bytes do not depend on its slice
        assert torch.equal(out[key], value.float()), key


@pytest.mark.parametrize('storage', [torch.float16, torch.bfloat16, torch.float64])
def test_run_stores_in_the_storage_dtype(storage):
    op = Adjacency(2)
    results = list(job(op, storage_dtype=storage).run(X))
    expected = op.propagate(ADJ, X)
    # numpy has no bfloat16: those blocks hold the raw 16-bit patterns
    numpy_dtype = {torch.float16: np.float16, torch.bfloat16: np.uint16, torch.float64: np.float64}
    for _, blocks in results:
        assert all(block.dtype == numpy_dtype[storage] for block in blocks.values())
    for key, value in joined(results, 7).items():
        got = value.view(torch.bfloat16) if storage == torch.bfloat16 else value
        assert torch.equal(got, expected[key].to(storage)), key


def test_run_memmap_features_a_few_slices_and_hop_callback(tmp_path):
    np.save(tmp_path / 'x.npy', X.numpy())
    x = np.load(tmp_path / 'x.npy', mmap_mode='r')
    op = PPR(2, alpha=[0.2, 0.5], tol=1e-3)
    hops = []
    results = list(job(op).run(x, [(0, 0, 2), (2, 5, 7)], lambda *a: hops.append(a[:2])))
    assert [s for s, _ in results] == [0, 2]
    assert hops == [(1, 2), (2, 2), (1, 2), (2, 2)]
    expected = op.propagate(ADJ, X)
    for key, value in results[1][1].items():
        assert torch.equal(torch.from_numpy(value), expected[key][:, 5:7]), key


def test_a_pickled_job_shares_its_arrays_and_gives_the_same_bytes():
    original = job(PPR(1, tol=1e-3), rows=ROWS, storage_dtype=torch.float16)
    buffers = []
    payload = pickle.dumps(original, protocol=5, buffer_callback=buffers.append)
    # rowptr, col, value and rows leave the pickle as buffers (Ray's object store shares them)
    assert len(buffers) == 4 and len(payload) < 2000
    copy = pickle.loads(payload, buffers=buffers)
    raws = [np.frombuffer(b.raw(), dtype=np.uint8) for b in buffers]
    for tensor in (copy.matrix.rowptr, copy.matrix.col, copy.matrix.value, copy.rows):
        assert any(np.shares_memory(tensor.numpy(), raw) for raw in raws)
    assert repr(copy) == repr(original)
    for (i, a), (j, b) in zip(original.run(X), copy.run(X)):
        assert i == j and a.keys() == b.keys()
        assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_an_unpickled_job_checks_its_matrix_again():
    original = job(Adjacency(1))
    buffers = []
    payload = pickle.dumps(original, protocol=5, buffer_callback=buffers.append)
    col = np.frombuffer(buffers[1].raw(), dtype=original.matrix.col.numpy().dtype).copy()
    col[3] = 10_000  # out of range: the kernels would read outside x
    buffers[1] = pickle.PickleBuffer(col)
    with pytest.raises(ValueError, match='CSR col'):
        pickle.loads(payload, buffers=buffers)


def test_slice_job_bad_input():
    matrix = Adjacency(1).matrix(ADJ)
    with pytest.raises(TypeError, match='SIGN operator'):
        SliceJob('adj', matrix, SLICES)
    with pytest.raises(TypeError, match='graphops.ops.CSR'):
        SliceJob(Adjacency(1), GRAPH.edge_index, SLICES)
    with pytest.raises(TypeError, match='rows must be a Tensor'):
        SliceJob(Adjacency(1), matrix, SLICES, rows=[1, 2])
    for bad in [(0, 2, 2), (0, -1, 3), (0, 1), (0, 1.0, 2), (True, 0, 1)]:
        with pytest.raises(ValueError, match='slice_index, start, end'):
            SliceJob(Adjacency(1), matrix, [bad])
    made = SliceJob(Adjacency(1), matrix, SLICES)
    with pytest.raises(ValueError, match=r'x must be \[N, F\] with N = 200'):
        next(made.run(X[:199]))
    with pytest.raises(ValueError, match='slice 2 ends at column 7, x has 6'):
        list(made.run(X[:, :6]))


def test_slice_job_repr_and_defaults():
    made = SliceJob(Adjacency(1), Adjacency(1).matrix(ADJ), [[0, 0, 7]], device='cpu')
    assert made.slices == ((0, 0, 7),) and made.device == torch.device('cpu')
    assert repr(made) == (
        f'SliceJob(operator={Adjacency(1)!r}, matrix=<200x200, nnz={made.matrix.nnz}>, '
        "slices=[(0, 0, 7)], rows=None, storage_dtype=torch.float32, device='cpu', "
        'row_block_nnz=None)'
    )
    with pytest.raises(AttributeError):
        made.rows = ROWS  # frozen


def test_read_columns():
    block = read_columns(X, 2, 5)
    assert block.is_contiguous() and torch.equal(block, X[:, 2:5])
    half = X.numpy().astype(np.float16)
    assert torch.equal(read_columns(half, 0, 3), torch.from_numpy(half[:, :3]))
    bad = X.clone()
    bad[7, 4] = float('nan')
    with pytest.raises(ValueError, match=r'x \(columns 3..5\).*NaN'):
        read_columns(bad, 3, 5)
    assert torch.equal(read_columns(bad, 0, 3), X[:, :3])  # only the slice's columns are read


def test_compute_dtype():
    assert compute_dtype(X) == compute_dtype(X.half()) == compute_dtype(X.numpy()) == torch.float32
    assert compute_dtype(X.double()) == compute_dtype(X.double().numpy()) == torch.float64


def test_matrix_bytes_count_values_in_the_compute_dtype():
    csr = to_csr(GRAPH.edge_index, None, 200)  # unweighted: the product reads ones of its dtype
    index = csr.col.element_size()
    rowptr = csr.rowptr.numel() * csr.rowptr.element_size()
    assert matrix_bytes(csr, torch.float32) == rowptr + csr.nnz * (index + 4)
    assert matrix_bytes(csr, torch.float64) == rowptr + csr.nnz * (index + 8)
    assert device_matrix(csr, torch.device('cpu'), None, torch.float64) is csr


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('row_block_nnz', [None, 300])
def test_run_on_device_matches_cpu(device, row_block_nnz):
    op = PPR(2, alpha=[0.2, 0.5], tol=1e-3)
    on_device = job(op, rows=ROWS, device=device, row_block_nnz=row_block_nnz)
    got = joined(on_device.run(X), 7)
    want = joined(job(op, rows=ROWS).run(X), 7)
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, atol=1e-5, rtol=1e-4)
