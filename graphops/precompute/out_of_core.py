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

the last term a slice of :math:`w` columns (an Adjacency hop is one product: its float32 input and
output, :math:`[N, w]` each, and the kept rows of every hop in the storage dtype of :math:`s`
bytes); the plan (a :class:`~graphops.precompute.plan.PrecomputePlan`) takes the widest slice that
fits. Nothing else grows with
:math:`N` or :math:`|\mathcal{E}|`: the features are read one column slice at a time
(:meth:`ConvertedDataset.read_columns`), every hop multiplies by the matrix one row block at a time
(:class:`~graphops.precompute.disk_csr.DiskCSR`), and each hop's kept rows go to the store. So the
peak resident memory is the budget plus the interpreter and libraries, whatever the graph size.

Row sums run in CSR order as in the in-memory engine (:func:`graphops.precompute.precompute`), so
the store's arrays are byte-identical to it for the same operators, DropEdge and rows, whatever the
budget, slice width or row-block size. A run killed at any point resumes with the same bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from graphops.ops.validate import check_index_or_mask
from graphops.precompute.converted_dataset import ConvertedDataset, check_budget, matrix_name
from graphops.precompute.disk_csr import DiskCSR
from graphops.precompute.feature_store import FeatureStore, storage_name, to_storage
from graphops.precompute.plan import PrecomputePlan
from graphops.precompute.slices import run_slice
from graphops.transforms.operator import SIGNOperator

INPUT_KEY = 'x'
READ_BUFFER_BYTES = 32 << 20  # the most a column read buffers at a time


def read_chunk_bytes(memory_budget_bytes: int) -> int:
    """Bytes one column read buffers: 32 MiB, or 1/32 of a small budget."""
    return max(1 << 16, min(READ_BUFFER_BYTES, memory_budget_bytes // 32))


def plan_budget(
    dataset: ConvertedDataset,
    matrices: list[DiskCSR],
    operators: list[SIGNOperator],
    num_rows: int,
    memory_budget_bytes: int,
    storage_dtype: torch.dtype,
) -> PrecomputePlan:
    """The column slices that fit what the budget leaves after the row-block buffers (the
    formula in the module docstring).

    Raises:
        ValueError: the budget cannot hold the row blocks and one column; names
            ``memory_budget_bytes`` and the minimum.
    """
    buffers = max(DiskCSR.buffer_bytes(m.max_block_nnz, m.max_block_rows) for m in matrices)
    reads = read_chunk_bytes(memory_budget_bytes)
    fixed = buffers + 8 * num_rows + reads
    n, storage = dataset.num_nodes, storage_dtype.itemsize
    # An Adjacency hop is one product: its input and its output are the only [N, w] arrays alive
    # (DiskCSR.spmm writes row blocks straight into the output), so two float32 buffers a column,
    # where the in-memory engine's plan also counts a step's scratch buffer.
    per_column = max(
        4 * n * 2 * op.num_streams + storage * num_rows * op.num_streams * op.hops
        for op in operators
    )
    check_budget(memory_budget_bytes, fixed + per_column)
    widest = min(dataset.num_features, (memory_budget_bytes - fixed) // per_column)
    count = -(-dataset.num_features // widest)
    width = -(-dataset.num_features // count)  # balanced: no narrow last slice
    slices = [(i * width, min((i + 1) * width, dataset.num_features)) for i in range(count)]
    return PrecomputePlan(
        n, dataset.num_features, num_rows, slices, per_column, memory_budget_bytes - fixed
    )


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
    plan = plan_budget(dataset, matrices, operators, num_rows, memory_budget_bytes, storage_dtype)

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
    if not store.complete:
        offset = 1 if include_input else 0
        if include_input:
            for s in store.pending(0):
                block = dataset.read_columns(*plan.slices[s], chunk_bytes=chunk)
                kept = block if rows is None else block[rows]
                del block
                store.write(0, s, {INPUT_KEY: to_storage(kept, storage_dtype)})
                if on_slice is not None:
                    on_slice('input', s)
        for index, (operator, matrix) in enumerate(zip(operators, matrices)):
            group = index + offset
            for s in store.pending(group):
                start, end = plan.slices[s]
                started = time.perf_counter()
                blocks = run_slice(
                    operator,
                    matrix,
                    dataset.read_columns(
                        start, end, chunk_bytes=chunk
                    ),  # unnamed: freed after hop 1
                    rows,
                    storage_dtype,
                    device,
                )
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
        store.finalize()
    if stats is not None:
        stats['bytes_read_features'] = dataset.bytes_read - read_before
        stats['bytes_read_matrices'] = sum(m.bytes_read for m in matrices)
        stats['slices'] = len(plan.slices)
        stats['slice_width'] = plan.slice_width
        stats['row_blocks'] = [len(m.blocks) for m in matrices]
        stats['nnz'] = [m.nnz for m in matrices]
    return FeatureStore(store.path, verify=False)
