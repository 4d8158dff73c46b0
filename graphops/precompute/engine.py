r"""The SIGN precompute engine: every operator's hops for a graph, into a :class:`FeatureStore`.

Public entry point::

    from graphops.precompute.engine import precompute
    from graphops.transforms.adjacency import Adjacency
    from graphops.transforms.ppr import PPR

    store = precompute(
        data,                          # a PyG Data (edge_index [+ edge_weight] or adj_t, and x),
                                       # or any adjacency graphops.ops.to_csr accepts, or a CSR
        x=None,                        # [N, F] features (Tensor, numpy array or np.memmap);
                                       # default data.x
        operators=[Adjacency(3, direction='symmetric', prefix='sym'), PPR(2)],
        store_path='papers_sign',      # a folder; created, or resumed when it exists
        rows=labelled_idx,             # keep only these rows in the outputs (None: all nodes)
        device='cuda',                 # where the products run ('cpu' by default)
        column_budget_bytes=8 << 30,   # working memory per column slice (None: all columns)
        storage_dtype=torch.float16,   # float32 (default), float16, bfloat16 or float64
        backend='local',               # or 'ray' / a RayBackend(...) for a Ray cluster
    )
    xs = [store[key] for key in store.keys()]   # 'x' (the input rows) first, then each hop

Arguments (all keyword-only after ``store_path``):

* ``num_nodes`` / ``edge_weight``: passed to :func:`graphops.ops.to_csr` for an ``edge_index``.
* ``rows``: ``[R]`` node ids; each stored array is ``[R, F]`` in that order (the SIGN authors
  kept only the labelled nodes of ogbn-papers100M). Hops are still computed on every node.
* ``column_budget_bytes``: bounds the dense working memory (see
  :class:`~graphops.precompute.plan.PrecomputePlan` for the formula); the features are cut into
  column slices that fit, and every slice runs every hop of an operator before the next slice.
* ``storage_dtype``: products always accumulate in float32 (float64 when ``x`` is float64); the
  result is rounded to this type when stored.
* ``include_input``: also store the input rows ``x[rows]`` under key ``'x'`` (default ``True``).
* ``device``: on CUDA each operator's matrix is built on the device when the graph fits there
  (:func:`operator_matrix`), feature slices are uploaded from pinned host memory, and each hop's
  kept rows are converted to the storage dtype on the device and copied back on a side stream
  while the next hop runs.
* ``row_block_nnz``: on CUDA, stream the matrix from pinned host memory in row blocks of at most
  this many entries (:class:`graphops.ops.streaming.RowBlockStream`); ``None`` keeps the whole
  matrix on the device when it takes at most half of the free device memory, else streams.
* ``backend``: ``'local'`` (this process), ``'ray'`` (``ray.init()`` on this machine, or an
  already-connected cluster), a configured :class:`~graphops.precompute.RayBackend`, or any
  :class:`~graphops.precompute.PrecomputeBackend`
  (:func:`~graphops.precompute.backends.resolve_backend`). The engine builds each operator's
  matrix and hands the backend a :class:`~graphops.precompute.SliceJob` with its pending column
  slices.
* ``progress``: a tqdm bar per operator and hop, with columns/s and the gather bandwidth.
* ``overwrite``: replace a store at ``store_path`` made from other inputs instead of raising.
* ``on_slice``: ``callback(group_name, slice_index)`` after each slice is durably recorded.

A run killed at any point (even by SIGKILL) resumes when called again with the same arguments and
ends with byte-identical files: every product sums each row's entries in CSR order, whatever the
thread count or the worker, so recomputing a slice reproduces its bytes. The store records the
device type and the compute dtype; a run resumed on another device type (whose kernels round
differently) is refused rather than mixing slices from both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from graphops.ops import CSR, to_csr
from graphops.ops.validate import check_index_or_mask, check_nonempty_graph
from graphops.precompute.backends import resolve_backend
from graphops.precompute.feature_store import FeatureStore, storage_name, to_storage
from graphops.precompute.plan import PrecomputePlan
from graphops.precompute.slices import SliceJob, compute_dtype, matrix_bytes, read_columns
from graphops.transforms.operator import SIGNOperator, graph_adjacency

INPUT_KEY = 'x'


def precompute(
    data_or_adj,
    x=None,
    operators: list[SIGNOperator] | None = None,
    store_path=None,
    *,
    num_nodes: int | None = None,
    edge_weight: Tensor | None = None,
    rows: Tensor | None = None,
    device: str | torch.device = 'cpu',
    column_budget_bytes: int | None = None,
    storage_dtype: torch.dtype = torch.float32,
    include_input: bool = True,
    row_block_nnz: int | None = None,
    backend='local',
    progress: bool = True,
    overwrite: bool = False,
    on_slice: Callable[[str, int], None] | None = None,
) -> FeatureStore:
    """Computes every hop of every operator into a :class:`FeatureStore` (see the module
    docstring) and returns it, complete and verified."""
    adj, x = _graph_and_features(data_or_adj, x, num_nodes, edge_weight)
    operators = _check_operators(operators)
    if store_path is None:
        raise ValueError('store_path must name a folder for the FeatureStore')
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use device='cpu'")
    storage_name(storage_dtype)
    num_nodes, num_features = adj.num_rows, int(x.shape[1])
    if rows is not None:
        rows = check_index_or_mask(rows, 'rows', size=num_nodes).cpu()
    num_rows = num_nodes if rows is None else rows.numel()
    compute = compute_dtype(x)
    plan = PrecomputePlan.build(
        num_nodes,
        num_features,
        operators,
        num_rows,
        column_budget_bytes,
        compute_dtype=compute,
        storage_dtype=storage_dtype,
    )

    groups, identity = _describe(adj, x, operators, rows, include_input, storage_dtype, device)
    store = FeatureStore.create(
        store_path,
        identity=identity,
        groups=groups,
        num_rows=num_rows,
        num_features=num_features,
        storage_dtype=storage_dtype,
        slices=plan.slices,
        rows=rows,
        overwrite=overwrite,
    )
    if store.complete:
        return store
    runner = resolve_backend(backend)
    offset = 1 if include_input else 0
    if include_input:
        for slice_index in store.pending(0):
            start, end = plan.slices[slice_index]
            block = read_columns(x, start, end)
            block = block if rows is None else block[rows]
            store.write(0, slice_index, {INPUT_KEY: to_storage(block, storage_dtype)})
            if on_slice is not None:
                on_slice(groups[0]['name'], slice_index)
    for index, operator in enumerate(operators):
        group = index + offset
        pending = store.pending(group)
        if not pending:
            continue
        matrix = operator_matrix(operator, adj, compute, device)
        bars = _Progress(operator, matrix.nnz, [plan.slices[s] for s in pending], progress)
        job = SliceJob(
            operator,
            matrix,
            [(s, *plan.slices[s]) for s in pending],
            rows=rows,
            storage_dtype=storage_dtype,
            device=device,
            row_block_nnz=row_block_nnz,
        )
        results = runner.map_slices(job, x, bars.hop_done)
        for slice_index, blocks in results:
            store.write(group, slice_index, blocks)
            if on_slice is not None:
                on_slice(groups[group]['name'], slice_index)
        bars.close()
    store.finalize()
    return FeatureStore(store.path, verify=False)


# --- the operator matrices ---------------------------------------------------------------------


# Peak device bytes of building an operator's matrix, in units of the input graph's CSR bytes:
# orienting ('symmetric' concatenates A and its transpose), sorting, coalescing and normalising
# each hold a few nnz-sized arrays at once. An estimate: operator_matrix falls back to the CPU if
# the device still runs out of memory.
BUILD_FACTOR = 8


def operator_matrix(
    operator: SIGNOperator, adj: CSR, dtype: torch.dtype, device: torch.device
) -> CSR:
    """``operator``'s matrix in ``dtype``, built on ``device`` when it is CUDA and about
    :data:`BUILD_FACTOR` times the graph's CSR takes at most half of the free device memory; else
    on the CPU.

    The device build runs under ``torch.use_deterministic_algorithms``: degree sums
    (``index_add_``) and merged duplicates otherwise add in the order CUDA's atomics happen to
    run, and a resumed run would multiply by a matrix that differs in its last bits from the one
    its finished slices used. A build that needs an operation without a deterministic CUDA
    implementation, or runs out of device memory, is redone on the CPU.
    """
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        if BUILD_FACTOR * matrix_bytes(adj, dtype) <= free // 2:
            was_on = torch.are_deterministic_algorithms_enabled()
            warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
            torch.use_deterministic_algorithms(True)
            try:
                return operator.matrix(adj.to(device), dtype)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
            except RuntimeError as err:
                if 'determinis' not in str(err):
                    raise
            finally:
                torch.use_deterministic_algorithms(was_on, warn_only=warn_only)
    return operator.matrix(adj, dtype)


# --- inputs ----------------------------------------------------------------------------------------


def _graph_and_features(data_or_adj, x, num_nodes, edge_weight):
    if hasattr(data_or_adj, 'edge_index') or hasattr(data_or_adj, 'adj_t'):
        if num_nodes is not None or edge_weight is not None:
            raise ValueError('num_nodes and edge_weight are read from data; do not pass them')
        adj = graph_adjacency(data_or_adj)
        x = data_or_adj.x if x is None else x
    else:
        adj = to_csr(data_or_adj, edge_weight, num_nodes)
    check_nonempty_graph(adj.num_rows, 'the graph')
    if adj.num_rows != adj.num_cols:
        raise ValueError(f'SIGN operators need a square adjacency, got shape {adj.shape}')
    if x is None:
        raise ValueError('x is missing: pass x=[N, F] features (or a Data with data.x)')
    if isinstance(x, np.ndarray):
        if x.dtype not in (np.float16, np.float32, np.float64):
            raise TypeError(f'x must hold floats, got numpy dtype {x.dtype}; use x.astype(...)')
    elif isinstance(x, Tensor):
        if not x.is_floating_point():
            raise TypeError(f'x must be a floating-point tensor, got {x.dtype}; use x.float()')
        x = x.detach().cpu()
    else:
        raise TypeError(f'x must be a Tensor or a numpy array, got {type(x).__name__}')
    if x.ndim != 2:
        raise ValueError(f'x must be 2-dimensional [num_nodes, F], got {tuple(x.shape)}')
    if x.shape[0] != adj.num_rows:
        raise ValueError(
            f'x has {x.shape[0]} rows but the graph has {adj.num_rows} nodes; they must match'
        )
    if x.shape[1] == 0:
        raise ValueError('x has no feature columns')
    return adj.to('cpu'), x


def _check_operators(operators) -> list[SIGNOperator]:
    if operators is None:
        raise ValueError('operators must list SIGN operators, e.g. [Adjacency(3)]')
    operators = list(operators)
    if not operators:
        raise ValueError('operators must list at least one SIGN operator')
    keys: list[str] = [INPUT_KEY]
    for op in operators:
        if not isinstance(op, SIGNOperator):
            raise TypeError(f'operators must be SIGN operators, got {type(op).__name__}')
        clash = set(op.keys()) & set(keys)
        if clash:
            raise ValueError(
                f'{op!r} writes keys {sorted(clash)} that another operator (or the input, key '
                f"'x') already writes; give it another prefix=..."
            )
        keys += op.keys()
    return operators


def features_fingerprint(x) -> str:
    """SHA-256 of the features' shape, dtype and bytes, read 64 MiB at a time."""
    if isinstance(x, Tensor):
        array = (x.view(torch.int16) if x.dtype == torch.bfloat16 else x).numpy()
    else:
        array = x
    digest = hashlib.sha256(str((tuple(array.shape), str(x.dtype))).encode())
    row_bytes = max(1, array.shape[1] * array.itemsize)
    step = max(1, (1 << 26) // row_bytes)
    for start in range(0, array.shape[0], step):
        digest.update(np.ascontiguousarray(array[start : start + step]).data)
    return digest.hexdigest()


def _describe(adj, x, operators, rows, include_input, storage_dtype, device):
    groups = []
    if include_input:
        groups.append({'name': 'input', 'params': {}, 'keys': [INPUT_KEY]})
    for op in operators:
        groups.append({'name': type(op).__name__, 'params': op.params(), 'keys': op.keys()})
    rows_fingerprint = None
    if rows is not None:
        rows_fingerprint = hashlib.sha256(rows.numpy().astype(np.int64).data).hexdigest()
    identity = {
        'graph': adj.fingerprint(),
        'features': features_fingerprint(x),
        'rows': rows_fingerprint,
        'operators': [{'name': g['name'], 'params': g['params']} for g in groups],
        'storage_dtype': storage_name(storage_dtype),
        # the kernels of another device type round differently: a resumed run must not mix them
        'device': device.type,
        'compute_dtype': storage_name(compute_dtype(x)),
    }
    return groups, identity


class _Progress:
    """One tqdm bar per hop of an operator: columns done, columns/s and the gather bandwidth
    (bytes of source rows read per second)."""

    def __init__(self, operator, nnz: int, slices, enabled: bool):
        self.bars = []
        self.nnz = nnz
        self.products = operator.products_per_hop * operator.num_streams
        if not enabled:
            return
        from tqdm.auto import tqdm

        total = sum(end - start for start, end in slices)
        for hop in range(1, operator.hops + 1):
            self.bars.append(
                tqdm(
                    total=total,
                    desc=f'{operator.prefix} hop {hop}/{operator.hops}',
                    unit='col',
                    position=hop - 1,
                    leave=True,
                    dynamic_ncols=True,
                )
            )

    def hop_done(self, hop: int, columns: int, seconds: float) -> None:
        if not self.bars:
            return
        bar = self.bars[hop - 1]
        bar.update(columns)
        gathered = self.nnz * columns * 4 * self.products
        bar.set_postfix_str(f'{gathered / max(seconds, 1e-9) / 1e9:.2f} GB/s gather')

    def close(self) -> None:
        for bar in self.bars:
            bar.close()
