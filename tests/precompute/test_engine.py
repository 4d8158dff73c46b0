import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from graphops.ops import to_csr
from graphops.precompute.engine import operator_matrix, precompute
from graphops.precompute.feature_store import FeatureStoreCorruptError, FeatureStoreMismatchError
from graphops.precompute.plan import PrecomputePlan
from graphops.precompute.slices import device_matrix
from graphops.testing import random_features, random_graph
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR
from graphops.transforms.triangle import Triangle

GRAPH = random_graph(300, 2500, seed=11, weighted=True, isolated=7, dtype=torch.float32)
X = random_features(300, 12, dtype=torch.float32)
ROWS = torch.tensor([5, 0, 299, 17, 17, 120])


def operators():
    return [
        Adjacency(2),
        Adjacency(2, norm='rw', direction='transposed', remove_self_loops=True, prefix='t'),
        PPR(2, alpha=[0.2, 0.5], tol=1e-3),
        Triangle(1),
    ]


def in_memory(rows=None):
    csr = to_csr(GRAPH.edge_index, GRAPH.edge_weight, GRAPH.num_nodes)
    out = {'x': X}
    for op in operators():
        out.update(op.propagate(csr, X))
    return out if rows is None else {k: v[rows] for k, v in out.items()}


@pytest.mark.parametrize('rows', [None, ROWS])
@pytest.mark.parametrize('budget', [None, 300 * 4 * 7 * 5])
def test_engine_equals_in_memory_operators(tmp_path, rows, budget):
    store = precompute(
        GRAPH.edge_index,
        X,
        operators(),
        tmp_path / 's',
        num_nodes=300,
        edge_weight=GRAPH.edge_weight,
        rows=rows,
        column_budget_bytes=budget,
        progress=False,
    )
    expected = in_memory(rows)
    assert store.keys() == list(expected)
    assert (len(store.slices) == 1) == (budget is None)
    for key, value in expected.items():
        assert torch.equal(store[key], value), key  # same kernel, same bytes per column
    if rows is not None:
        assert torch.equal(store.rows, ROWS)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_engine_half_storage_rounds_float32_results(tmp_path, dtype):
    store = precompute(
        Data(x=X, edge_index=GRAPH.edge_index, edge_weight=GRAPH.edge_weight),
        operators=[Adjacency(2)],
        store_path=tmp_path / 's',
        storage_dtype=dtype,
        include_input=False,
        progress=False,
    )
    assert store.keys() == ['x1', 'x2']
    assert torch.equal(store['x2'], in_memory()['x2'].to(dtype))


def test_engine_memmap_features(tmp_path):
    np.save(tmp_path / 'x.npy', X.numpy())
    x = np.load(tmp_path / 'x.npy', mmap_mode='r')
    csr = to_csr(GRAPH.edge_index, GRAPH.edge_weight, 300)
    store = precompute(
        csr, x, [Adjacency(1)], tmp_path / 's', column_budget_bytes=300 * 4 * 3 * 5, progress=False
    )
    assert torch.equal(store['x1'], in_memory()['x1'])


CHILD = r"""
import sys, time, torch
from graphops.testing import random_features, random_graph
import graphops.transforms.adjacency as adjacency
from graphops.precompute.engine import precompute

original = adjacency.Adjacency.step
def slow_step(self, *args, **kwargs):  # a slow hop, so the kill lands inside one
    time.sleep(0.05)
    return original(self, *args, **kwargs)
adjacency.Adjacency.step = slow_step
graph = random_graph(300, 2500, seed=11, weighted=True, dtype=torch.float32)
x = random_features(300, 24, dtype=torch.float32)
ops = [adjacency.Adjacency(3), adjacency.Adjacency(2, direction='transposed', prefix='t')]
precompute(graph.edge_index, x, ops, sys.argv[1], num_nodes=300, edge_weight=graph.edge_weight,
           rows=torch.arange(0, 300, 2), column_budget_bytes=300 * 4 * 3 + 150 * 4 * 3,
           storage_dtype=torch.float16, progress=False)
"""


def run_args(path):
    graph = random_graph(300, 2500, seed=11, weighted=True, dtype=torch.float32)
    x = random_features(300, 24, dtype=torch.float32)
    ops = [Adjacency(3), Adjacency(2, direction='transposed', prefix='t')]
    return {
        'data_or_adj': graph.edge_index,
        'x': x,
        'operators': ops,
        'store_path': path,
        'num_nodes': 300,
        'edge_weight': graph.edge_weight,
        'rows': torch.arange(0, 300, 2),
        'column_budget_bytes': 300 * 4 * 3 + 150 * 4 * 3,
        'storage_dtype': torch.float16,
        'progress': False,
    }


def test_kill_and_resume_is_byte_identical(tmp_path):
    killed = tmp_path / 'killed'
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(killed)])
    deadline = time.monotonic() + 120
    done = 0
    try:
        while done < 5 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                done = len(json.loads((killed / 'manifest.json').read_text())['done'])
        time.sleep(0.03)  # into the next slice's hops
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    manifest = json.loads((killed / 'manifest.json').read_text())
    assert not manifest['complete'] and 5 <= len(manifest['done']) < 24 + 2 * 24
    resumed = precompute(**run_args(killed))
    clean = precompute(**run_args(tmp_path / 'clean'))
    assert resumed.keys() == clean.keys() == ['x', 'x1', 'x2', 'x3', 't1', 't2']
    for name in [f'{k}.npy' for k in resumed.keys()] + ['rows.npy']:  # noqa: SIM118
        assert (killed / name).read_bytes() == (tmp_path / 'clean' / name).read_bytes(), name
    assert resumed.manifest['checksums'] == clean.manifest['checksums']


def test_resume_detects_corruption_and_mismatch(tmp_path):
    args = run_args(tmp_path / 's')
    store = precompute(**args)
    with pytest.raises(FeatureStoreMismatchError, match='operators'):
        precompute(**{**args, 'operators': [Adjacency(3, norm='rw'), Adjacency(2, prefix='t')]})
    with pytest.raises(FeatureStoreMismatchError, match='graph'):
        precompute(**{**args, 'edge_weight': args['edge_weight'] * 2})
    with pytest.raises(FeatureStoreMismatchError, match='features'):
        precompute(**{**args, 'x': args['x'] + 1})
    raw = bytearray((tmp_path / 's' / 'x2.npy').read_bytes())
    raw[200] ^= 1
    (tmp_path / 's' / 'x2.npy').write_bytes(bytes(raw))
    with pytest.raises(FeatureStoreCorruptError, match='x2.npy'):
        precompute(**args)
    again = precompute(**{**args, 'x': args['x'] + 1, 'overwrite': True})
    assert again.complete and store.path == again.path


def test_engine_bad_input(tmp_path):
    ei, w = GRAPH.edge_index, GRAPH.edge_weight
    kw = {'num_nodes': 300, 'progress': False}
    with pytest.raises(ValueError, match='store_path'):
        precompute(ei, X, [Adjacency(1)], None, **kw)
    with pytest.raises(ValueError, match='operators must list'):
        precompute(ei, X, None, tmp_path / 'a', **kw)
    with pytest.raises(TypeError, match='SIGN operators'):
        precompute(ei, X, ['x'], tmp_path / 'a', **kw)
    with pytest.raises(ValueError, match='another prefix'):
        precompute(ei, X, [Adjacency(1), Adjacency(2)], tmp_path / 'a', **kw)
    with pytest.raises(ValueError, match='x has 299 rows'):
        precompute(ei, X[:299], [Adjacency(1)], tmp_path / 'a', **kw)
    with pytest.raises(TypeError, match='floating-point'):
        precompute(ei, X.long(), [Adjacency(1)], tmp_path / 'a', **kw)
    with pytest.raises(TypeError, match='Tensor or a numpy array'):
        precompute(ei, X.tolist(), [Adjacency(1)], tmp_path / 'a', **kw)
    bad = X.clone()
    bad[3, 4] = float('inf')
    with pytest.raises(ValueError, match='NaN or Inf'):
        precompute(ei, bad, [Adjacency(1)], tmp_path / 'a', **kw)
    with pytest.raises(ValueError, match='rows contains index 300'):
        precompute(ei, X, [Adjacency(1)], tmp_path / 'a', rows=torch.tensor([300]), **kw)
    with pytest.raises(ValueError, match='no nodes'):
        precompute(
            torch.empty(2, 0, dtype=torch.long),
            torch.empty(0, 3),
            [Adjacency(1)],
            tmp_path / 'a',
            num_nodes=0,
            progress=False,
        )
    with pytest.raises(ValueError, match='backend must be'):
        precompute(ei, X, [Adjacency(1)], tmp_path / 'b', backend='dask', **kw)
    with pytest.raises(ValueError, match='num_nodes and edge_weight are read from data'):
        precompute(
            Data(x=X, edge_index=ei),
            operators=[Adjacency(1)],
            store_path=tmp_path / 'c',
            edge_weight=w,
            progress=False,
        )
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            precompute(ei, X, [Adjacency(1)], tmp_path / 'd', device='cuda', **kw)


def test_rows_accepts_a_bool_mask(tmp_path):
    mask = torch.zeros(300, dtype=torch.bool)
    mask[ROWS] = True
    kw = {'num_nodes': 300, 'edge_weight': GRAPH.edge_weight, 'progress': False}
    store = precompute(GRAPH.edge_index, X, [Adjacency(2)], tmp_path / 'm', rows=mask, **kw)
    ids = mask.nonzero().view(-1)
    ref = precompute(GRAPH.edge_index, X, [Adjacency(2)], tmp_path / 'i', rows=ids, **kw)
    keys = ref.keys()
    assert store.keys() == keys
    for key in keys:
        assert torch.equal(store[key], ref[key]), key
    with pytest.raises(ValueError, match='one entry per node'):
        precompute(GRAPH.edge_index, X, [Adjacency(1)], tmp_path / 'b', rows=mask[:10], **kw)


def interrupted(path, **kwargs):
    """A run stopped after its first recorded slice (as a crash would leave it)."""

    def stop(group, slice_index):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        precompute(**{**run_args(path), **kwargs, 'on_slice': stop})
    assert not json.loads((path / 'manifest.json').read_text())['complete']


def test_store_records_device_and_compute_dtype_and_refuses_to_mix(tmp_path):
    path = tmp_path / 's'
    interrupted(path)
    manifest = json.loads((path / 'manifest.json').read_text())
    assert manifest['identity']['device'] == 'cpu'
    assert manifest['identity']['compute_dtype'] == 'float32'
    # the same partial store, as if it had been started on a GPU
    manifest['identity']['device'] = 'cuda'
    (path / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(FeatureStoreMismatchError, match="device: stored 'cuda', now 'cpu'"):
        precompute(**run_args(path))
    done = precompute(**run_args(path), overwrite=True)
    assert done.complete and done.identity['device'] == 'cpu'


def test_compute_dtype_follows_features_and_sizes_the_plan(tmp_path):
    # Adjacency(3), 300 nodes, 150 float16 rows: 4 * 300 * 3 + 2 * 150 * 3 bytes a float32 column
    budget = 2 * (4 * 300 * 3 + 2 * 150 * 3)
    args = {**run_args(tmp_path / 's'), 'column_budget_bytes': budget}
    wide = precompute(**{**args, 'x': args['x'].double(), 'store_path': tmp_path / 'd'})
    assert wide.identity['compute_dtype'] == 'float64'
    # float64 columns take twice the working bytes: the budget holds one column, not two
    assert len(wide.slices) == 24 and len(precompute(**args).slices) == 12
    interrupted(tmp_path / 'm', column_budget_bytes=budget)
    with pytest.raises(FeatureStoreMismatchError, match="compute_dtype: stored 'float32'"):
        precompute(**{**args, 'store_path': tmp_path / 'm', 'x': args['x'].double()})


# --- CUDA (gpu-marked) ---


def assert_store_close(store, expected, rows=None):
    assert store.keys() == list(expected)
    for key, value in expected.items():
        value = value if rows is None else value[rows]
        torch.testing.assert_close(store[key].to(value.dtype), value, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize('row_block_nnz', [None, 500])
@pytest.mark.parametrize('rows', [None, ROWS])
def test_engine_device_matches_cpu(tmp_path, device, row_block_nnz, rows):
    store = precompute(
        GRAPH.edge_index,
        X,
        operators(),
        tmp_path / 's',
        num_nodes=300,
        edge_weight=GRAPH.edge_weight,
        rows=rows,
        device=device,
        row_block_nnz=row_block_nnz,
        column_budget_bytes=300 * 4 * 7 * 5,
        progress=False,
    )
    assert len(store.slices) > 1 and store.identity['device'] == device.type
    assert_store_close(store, in_memory(), rows)


@pytest.mark.gpu
@pytest.mark.parametrize('storage', [torch.float16, torch.bfloat16, torch.float64])
def test_engine_device_storage_dtypes(tmp_path, device, storage):
    x = X.double() if storage == torch.float64 else X
    store = precompute(
        Data(x=x, edge_index=GRAPH.edge_index, edge_weight=GRAPH.edge_weight),
        operators=[Adjacency(2), PPR(1, tol=1e-3)],
        store_path=tmp_path / 's',
        device=device,
        rows=ROWS,
        storage_dtype=storage,
        column_budget_bytes=300 * 8 * 5 * 4,
        progress=False,
    )
    csr = to_csr(GRAPH.edge_index, GRAPH.edge_weight, 300)
    expected = {'x': x, **Adjacency(2).propagate(csr, x), **PPR(1, tol=1e-3).propagate(csr, x)}
    assert store.storage_dtype == storage
    tol = {'atol': 1e-2, 'rtol': 1e-2} if storage.itemsize == 2 else {}
    for key, value in expected.items():
        torch.testing.assert_close(store[key].double(), value[ROWS].to(storage).double(), **tol)


@pytest.mark.gpu
def test_engine_device_resume_is_byte_identical(tmp_path, device):
    interrupted(tmp_path / 'r', device=device)
    resumed = precompute(**run_args(tmp_path / 'r'), device=device)
    clean = precompute(**run_args(tmp_path / 'c'), device=device)
    assert resumed.identity['device'] == device.type
    assert resumed.manifest['checksums'] == clean.manifest['checksums']
    if device.type == 'cuda':  # a store started on the GPU is not finished on the CPU
        interrupted(tmp_path / 'x', device=device)
        with pytest.raises(FeatureStoreMismatchError, match="device: stored 'cuda', now 'cpu'"):
            precompute(**run_args(tmp_path / 'x'))


@pytest.mark.gpu
@pytest.mark.parametrize('op', operators(), ids=repr)
def test_operator_matrix_built_on_device(device, op):
    adj = to_csr(GRAPH.edge_index, GRAPH.edge_weight, 300)
    before = torch.are_deterministic_algorithms_enabled()
    built = operator_matrix(op, adj, torch.float32, device)
    assert torch.are_deterministic_algorithms_enabled() == before  # the setting is restored
    assert built.device.type == device.type
    # the same bits every time (weighted degrees are sums): what a resumed run relies on
    assert torch.equal(operator_matrix(op, adj, torch.float32, device).values(), built.values())
    expected = op.matrix(adj, torch.float32)
    assert torch.equal(built.rowptr.cpu(), expected.rowptr)
    assert torch.equal(built.col.cpu(), expected.col)
    torch.testing.assert_close(built.values().cpu(), expected.values())
    assert device_matrix(built, device, None) is built


@pytest.mark.gpu
@pytest.mark.parametrize(
    'op',
    [Adjacency(3), PPR(2, alpha=0.15, tol=1e-2), PPR(2, alpha=[0.1, 0.3], tol=1e-2)],
    ids=repr,
)
def test_engine_device_memory_stays_in_plan(tmp_path, device, op):
    n, features, width = 50_000, 16, 8
    graph = random_graph(n, 400_000, seed=3, weighted=True, dtype=torch.float32)
    x = random_features(n, features, dtype=torch.float32)
    per_column = PrecomputePlan.operator_bytes_per_column(n, n, op)
    outputs = 4 * n * op.num_streams * op.hops  # host memory: the slice's results
    build = op.matrix
    marks = {}

    def built_then_measured(adj, dtype=torch.float32):
        matrix = build(adj, dtype)
        if device.type == 'cuda':  # from here on: the slices, what the plan bounds
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            marks['base'] = torch.cuda.memory_allocated(device)
        return matrix

    op.matrix = built_then_measured
    store = precompute(
        graph.edge_index,
        x,
        [op],
        tmp_path / 's',
        num_nodes=n,
        edge_weight=graph.edge_weight,
        include_input=False,
        device=device,
        column_budget_bytes=width * per_column,
        progress=False,
    )
    assert len(store.slices) == features // width
    csr = to_csr(graph.edge_index, graph.edge_weight, n)
    del op.matrix
    for key, value in op.propagate(csr, x).items():
        torch.testing.assert_close(store[key], value, rtol=1e-4, atol=1e-5)
    if device.type == 'cuda':
        working = torch.cuda.max_memory_allocated(device) - marks['base']
        # the dense buffers of a slice, plus 1 MiB for cuSPARSE's workspace and small vectors
        assert working <= width * (per_column - outputs) + (1 << 20), working
