r"""The SIGN precompute from a :class:`~graphops.precompute.converted_dataset.ConvertedDataset`,
under one memory budget.

::

    from graphops.precompute.out_of_core import precompute_out_of_core

    store = precompute_out_of_core(
        ConvertedDataset('papers_converted'),
        [Adjacency(3, direction='symmetric', norm='sym', add_self_loops=True, prefix='sym')],
        'papers_sign',                     # the FeatureStore folder
        memory_budget_bytes=4 << 30,       # everything: column slices + row blocks + buffers
        dropedge=0.4, seed=0,              # the matrices' DropEdge (as converted)
        rows=labelled_idx,
    )

The budget :math:`M` is split as

.. math::
    M = \underbrace{2 \cdot (8 \cdot \text{nnz}_{blk} + 4 \cdot \text{rows}_{blk})}_{\text{row-block
    buffers}} + \underbrace{8 R + \min(32\,\text{MiB}, M / 32)}_{\text{rows, read buffer}} +
    \underbrace{w \cdot (8 N + s R K)}_{\text{column slice}},

the last term a slice of :math:`w` columns: an Adjacency hop is one product, its float32 input
and output are :math:`[N, w]` each, and the kept rows of every hop are held in the storage dtype
of :math:`s` bytes. When that allows fewer than 16 columns a slice (narrower than a 64-byte cache
line, where the gathers cost more a column), a CPU hop keeps one :math:`[N, w]` state instead,
:math:`w (4 N + 4\,\text{rows}_{blk} + s R K)`: what the slice leaves of the budget holds the first
rows of each hop's product, the rest go to a scratch file in the store folder
(:meth:`~graphops.precompute.disk_csr.DiskCSR.spmm_spill`) and are read back over the state when
the hop ends (:func:`plan_columns`). The plan (a
:class:`~graphops.precompute.plan.PrecomputePlan`) takes the widest slice that
fits. Nothing else grows with
:math:`N` or :math:`|\mathcal{E}|`: the features are read one column slice at a time
(:meth:`ConvertedDataset.read_columns`; slices are the outer loop, so the operators after the
first read a slice back from the page cache rather than the disk), every hop multiplies by the
matrix one row block at a time (:class:`~graphops.precompute.disk_csr.DiskCSR`), and each hop's kept rows go to the store. So the
peak resident memory is the budget plus the interpreter and libraries, whatever the graph size.

Row sums run in CSR order as in the in-memory engine (:func:`graphops.precompute.precompute`), so
the store's arrays are byte-identical to it for the same operators, DropEdge and rows, whatever the
budget, slice width or row-block size. A run killed at any point resumes with the same bytes.

``stats`` receives where the time went (``stats['seconds']``: reading features, waiting for
matrix blocks, the products, staging rows on disk and reading them back, writing the store), so
a slow rung can be told apart from a slow disk.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from graphops.ops import host_empty
from graphops.ops.validate import check_index_or_mask
from graphops.precompute.converted_dataset import ConvertedDataset, check_budget, matrix_name
from graphops.precompute.disk_csr import DiskCSR
from graphops.precompute.feature_store import FeatureStore, storage_name, to_storage
from graphops.precompute.plan import PrecomputePlan
from graphops.precompute.slices import run_slice
from graphops.transforms.operator import SIGNOperator

INPUT_KEY = 'x'
READ_BUFFER_BYTES = 32 << 20  # the most a column read buffers at a time
LINE_COLUMNS = 16  # float32 values in a 64-byte cache line
SCRATCH_PREFIX = '.hop-scratch-'  # a hop's product on its way back (left by a killed run)


def read_chunk_bytes(memory_budget_bytes: int) -> int:
    """Bytes one column read buffers: 32 MiB, or 1/32 of a small budget."""
    return max(1 << 16, min(READ_BUFFER_BYTES, memory_budget_bytes // 32))


def runs_in_place(operator: SIGNOperator) -> bool:
    """Whether a hop of ``operator`` is one plain product (:meth:`SIGNOperator.step` unchanged),
    which :meth:`DiskCSR.spmm_inplace` runs holding one ``[N, w]`` buffer."""
    return type(operator).step is SIGNOperator.step and operator.num_streams == 1


def bytes_per_column(
    operator: SIGNOperator, n: int, block_rows: int, num_rows: int, storage: int, in_place: bool
) -> int:
    """One column's bytes: the float32 state (one ``[N, w]`` buffer and a row block's product
    when the hop runs in place; input and output otherwise) and every hop's kept rows."""
    streams = operator.num_streams
    kept = storage * num_rows * streams * operator.hops
    if in_place and runs_in_place(operator):
        return 4 * (n + block_rows) + kept
    return 4 * n * 2 * streams + kept


def column_slices(widest: int, features: int) -> list[tuple[int, int]]:
    """``[start, end)`` slices of at most ``widest`` columns covering ``0..features``: as few as
    fit, balanced, and whole 64-byte lines wide (multiples of 16 columns) from 16 columns on. A
    gathered row of 15 float32 straddles two cache lines in 15 of 16 rows: at 32M nodes a column
    costs 1.5x more than at 16 (``benchmarks/gather_width.py``, benchmarks/papers100m/README.md)."""
    count = -(-features // widest)
    width = -(-features // count)
    if width >= LINE_COLUMNS and width % LINE_COLUMNS:
        wider = width + LINE_COLUMNS - width % LINE_COLUMNS
        width = wider if wider <= widest else width - width % LINE_COLUMNS
    return [(start, min(start + width, features)) for start in range(0, features, width)]


def plan_columns(
    operators: list[SIGNOperator],
    num_nodes: int,
    num_features: int,
    block_rows: int,
    num_rows: int,
    storage: int,
    room: int,
    device: str | torch.device = 'cpu',
) -> tuple[list[tuple[int, int]], int, bool]:
    """``(slices, bytes a column, spill)`` for ``room`` bytes of column slices: two ``[N, w]``
    buffers when they allow 16 columns (or all of them) a slice; otherwise, on the CPU, one buffer
    with product rows staged on disk (``spill``, :meth:`DiskCSR.spmm_spill`) where that is wider.
    Staging costs a write and a read of the spilled rows every hop, so it only buys what a slice
    narrower than a cache line would lose. When not one column fits, the slices are empty and the
    bytes are the smallest a column needs."""

    def widest(in_place: bool) -> tuple[int, int]:
        per = max(
            bytes_per_column(op, num_nodes, block_rows, num_rows, storage, in_place)
            for op in operators
        )
        return per, min(num_features, room // per)

    per_column, width = widest(False)
    spill = False
    if width < min(LINE_COLUMNS, num_features) and torch.device(device).type == 'cpu':
        spill_column, spill_width = widest(True)
        if spill_width > width or not width:  # not one column fits: report the smaller need
            per_column, width, spill = spill_column, spill_width, True
    return (column_slices(width, num_features) if width else []), per_column, spill


def plan_budget(
    dataset: ConvertedDataset,
    matrices: list[DiskCSR],
    operators: list[SIGNOperator],
    num_rows: int,
    memory_budget_bytes: int,
    storage_dtype: torch.dtype,
    device: str | torch.device = 'cpu',
) -> tuple[PrecomputePlan, bool]:
    """The column slices that fit what the budget leaves after the row-block buffers (the
    formula in the module docstring), and whether hops stage product rows on disk.

    Raises:
        ValueError: the budget cannot hold the row blocks and one column; names
            ``memory_budget_bytes`` and the minimum.
    """
    buffers = max(DiskCSR.buffer_bytes(m.max_block_nnz, m.max_block_rows) for m in matrices)
    fixed = buffers + 8 * num_rows + read_chunk_bytes(memory_budget_bytes)
    n = dataset.num_nodes
    block_rows = max(m.max_block_rows for m in matrices)
    slices, per_column, spill = plan_columns(
        operators,
        n,
        dataset.num_features,
        block_rows,
        num_rows,
        storage_dtype.itemsize,
        max(0, memory_budget_bytes - fixed),
        device,
    )
    check_budget(memory_budget_bytes, fixed + per_column)
    plan = PrecomputePlan(
        n, dataset.num_features, num_rows, slices, per_column, memory_budget_bytes - fixed
    )
    return plan, spill


def run_slice_in_place(
    operator: SIGNOperator,
    matrix: DiskCSR,
    buffer: Tensor,
    at: int,
    rows: Tensor | None,
    storage_dtype: torch.dtype,
    scratch: Path,
) -> dict[str, np.ndarray]:
    """All hops of a one-product ``operator`` for the float32 column slice ``buffer[at:at + N]``
    inside one ``[N + H, w]`` buffer (:meth:`DiskCSR.spmm_spill`: the rows the ``H`` spare ones
    cannot take are staged on disk; the slice is overwritten), each hop's kept rows gathered from
    its product. ``{key: [R, w] array in the storage dtype}``."""
    n = matrix.num_rows
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for hop in range(1, operator.hops + 1):
            at = matrix.spmm_spill(buffer, at, scratch)
            product = buffer[at : at + n]
            kept = product.clone() if rows is None else product[rows]
            out[f'{operator.prefix}{hop}'] = to_storage(kept, storage_dtype)
            del kept
    return out


@contextmanager
def _timed(seconds: dict[str, float], key: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] += time.perf_counter() - started


def _buffer(reused: dict[tuple[int, int], Tensor], num_rows: int, width: int) -> Tensor:
    """The ``[num_rows, width]`` float32 host buffer kept in ``reused``; a buffer of another shape
    is dropped before the new one is allocated, so one is held at a time."""
    if (num_rows, width) not in reused:
        reused.clear()
        reused[num_rows, width] = host_empty(num_rows, width)
    return reused[num_rows, width]


def _read_timed(
    timer, dataset: ConvertedDataset, start: int, end: int, chunk: int, out: Tensor | None = None
) -> Tensor:
    with timer('read_features'):
        return dataset.read_columns(start, end, out=out, chunk_bytes=chunk)


def precompute_out_of_core(
    dataset: ConvertedDataset,
    operators: list[SIGNOperator],
    store_path,
    *,
    memory_budget_bytes: int,
    dropedge: float = 0.0,
    seed: int = 0,
    rows: Tensor | None = None,
    storage_dtype: torch.dtype = torch.float32,
    include_input: bool = True,
    device: str | torch.device = 'cpu',
    overwrite: bool = False,
    progress: bool = False,
    on_slice: Callable[[str, int], None] | None = None,
    stats: dict | None = None,
) -> FeatureStore:
    """Every hop of every operator, read from ``dataset``, into a FeatureStore at
    ``store_path`` (see the module docstring); ``stats`` (a dict) receives the bytes read, the
    slices and the row blocks.

    Shapes:
        - **dataset:** features :math:`(N, F)`, each operator's matrix :math:`(N, N)`.
        - **rows:** :math:`(R,)` node ids (``None``: all :math:`N`).
        - **output:** a store with :math:`(R, F)` per key (``'x'``, then every operator's hops).
    """
    if not isinstance(dataset, ConvertedDataset):
        raise TypeError(f'dataset must be a ConvertedDataset, got {type(dataset).__name__}')
    check_budget(memory_budget_bytes)
    operators = list(operators or [])
    if not operators or not all(isinstance(op, SIGNOperator) for op in operators):
        raise ValueError('operators must list SIGN operators, e.g. [Adjacency(3)]')
    for op in operators:
        if op.products_per_hop != 1:
            raise ValueError(
                f'{op!r} runs {op.products_per_hop} products a hop; the out-of-core precompute '
                'runs one-product operators (Adjacency); use graphops.precompute.precompute'
            )
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use device='cpu'")
    storage_name(storage_dtype)
    n = dataset.num_nodes
    if rows is not None:
        rows = check_index_or_mask(rows, 'rows', size=n).cpu()
    num_rows = n if rows is None else rows.numel()
    names = [matrix_name(op, float(dropedge), seed) for op in operators]
    matrices = [dataset.matrix(name, device) for name in names]
    plan, spill = plan_budget(
        dataset, matrices, operators, num_rows, memory_budget_bytes, storage_dtype, device
    )

    groups = [{'name': 'input', 'params': {}, 'keys': [INPUT_KEY]}] if include_input else []
    groups += [
        {'name': type(op).__name__, 'params': op.params(), 'keys': op.keys()} for op in operators
    ]
    identity = {
        'converted': dataset.fingerprint(),
        'matrices': names,
        'rows': None
        if rows is None
        else hashlib.sha256(rows.numpy().astype(np.int64).data).hexdigest(),
        'operators': [{'name': g['name'], 'params': g['params']} for g in groups],
        'storage_dtype': storage_name(storage_dtype),
        'device': device.type,
        'compute_dtype': 'float32',
    }
    store = FeatureStore.create(
        store_path,
        identity=identity,
        groups=groups,
        num_rows=num_rows,
        num_features=dataset.num_features,
        storage_dtype=storage_dtype,
        slices=plan.slices,
        rows=rows,
        overwrite=overwrite,
    )
    read_before = dataset.bytes_read
    chunk = read_chunk_bytes(memory_budget_bytes)
    # Features larger than the budget would not stay cached anyway; each slice's columns are
    # dropped from the page cache once its operators are done, so they do not evict the CSR
    # blocks every hop of every slice reads again.
    out_of_cache = dataset.features_bytes > memory_budget_bytes
    seconds = dict.fromkeys(('read_features', 'store_write'), 0.0)
    timer = partial(_timed, seconds)
    started_all = time.perf_counter()
    if not store.complete:
        offset = 1 if include_input else 0
        pending = [set(store.pending(g)) for g in range(len(groups))]
        # a staged hop's [N + H, w] buffer, allocated once and reused slice after slice: its huge
        # pages are faulted in once, not once a slice while the page cache fills the memory
        reused: dict[tuple[int, int], Tensor] = {}
        # slices outer, operators inner: the operators after the first read the slice's columns
        # back from the page cache, where operators outer read all the features from disk again
        for s, (start, end) in enumerate(plan.slices):
            width = end - start
            columns = partial(_read_timed, timer, dataset, start, end, chunk)
            # what the slice leaves of the budget holds product rows instead of the disk
            spare = plan.column_budget_bytes - width * plan.bytes_per_column
            held = min(n, max(0, spare // (4 * width)))
            loaded = False  # whether the buffer holds this slice's features at row `held`
            if include_input and s in pending[0]:
                into = _buffer(reused, n + held, width)[held : held + n] if spill else None
                block = columns(into)
                loaded = spill
                kept = block if rows is None else block[rows]
                del block
                with timer('store_write'):
                    store.write(0, s, {INPUT_KEY: to_storage(kept, storage_dtype)})
                del kept
                if on_slice is not None:
                    on_slice('input', s)
            for index, (operator, matrix) in enumerate(zip(operators, matrices)):
                group = index + offset
                if s not in pending[group]:
                    continue
                started = time.perf_counter()
                if spill and runs_in_place(operator):
                    buffer = _buffer(reused, n + held, width)
                    if not loaded:
                        columns(buffer[held : held + n])
                    loaded = False  # the hops overwrite it
                    scratch = store.path / f'{SCRATCH_PREFIX}{group}-{s}.f32'
                    blocks = run_slice_in_place(
                        operator, matrix, buffer, held, rows, storage_dtype, scratch
                    )
                    del buffer
                else:  # columns() unnamed: run_slice frees the input after hop 1
                    reused.clear()  # its two [N, w] buffers take the budget
                    loaded = False
                    blocks = run_slice(operator, matrix, columns(), rows, storage_dtype, device)
                with timer('store_write'):
                    store.write(group, s, blocks)
                del blocks
                if progress:
                    print(
                        f'{operator.prefix}: columns {start}..{end} of {dataset.num_features}, '
                        f'{operator.hops} hops in {time.perf_counter() - started:.1f}s',
                        flush=True,
                    )
                if on_slice is not None:
                    on_slice(groups[group]['name'], s)
            if out_of_cache:  # read for the last time: let the matrices have the page cache
                dataset.drop_cached_columns(start, end)
        reused.clear()
        store.finalize()
        for leftover in Path(store.path).glob(f'{SCRATCH_PREFIX}*'):
            leftover.unlink()
    if stats is not None:
        stats['bytes_read_features'] = dataset.bytes_read - read_before
        stats['bytes_read_matrices'] = sum(m.bytes_read for m in matrices)
        stats['bytes_spilled'] = sum(m.bytes_spilled for m in matrices)
        stats['slices'] = len(plan.slices)
        stats['slice_width'] = plan.slice_width
        stats['row_blocks'] = [len(m.blocks) for m in matrices]
        stats['nnz'] = [m.nnz for m in matrices]
        for m in matrices:
            for key, value in m.seconds.items():
                seconds[key] = seconds.get(key, 0.0) + value
        seconds['total'] = time.perf_counter() - started_all
        stats['seconds'] = seconds
    return FeatureStore(store.path, verify=False)
