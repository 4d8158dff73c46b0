r"""Slice jobs: one operator's column slices, and how any backend runs them.

Every SIGN operator acts on each feature column on its own, so the engine
(:mod:`graphops.precompute.engine`) hands a backend (:mod:`graphops.precompute.backends`) one
:class:`SliceJob` per operator: its matrix and the pending column slices of the features. A
backend only decides *where* each slice runs; *how* one runs is defined here, once, for all of
them (:meth:`SliceJob.run`): the columns are read (:func:`read_columns`), the matrix made ready on
the device (:func:`device_matrix`) and every hop computed (:func:`run_slice`).

This module is the leaf of the package: it imports :mod:`graphops.ops`, the operators of
:mod:`graphops.transforms` and the storage conversion of
:mod:`graphops.precompute.feature_store`, never a backend or the engine.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from graphops.ops import CSR, RowBlockStream, host_empty, spmm
from graphops.ops.validate import check_finite
from graphops.precompute.feature_store import to_storage
from graphops.transforms.operator import SIGNOperator

_TORCH_OF_NUMPY = {
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
}

#: ``on_hop(hop, columns, seconds)``: hop ``hop`` (from 1) of a slice of ``columns`` columns took
#: ``seconds``.
HopCallback = Callable[[int, int, float], None]


def compute_dtype(x) -> torch.dtype:
    """float64 features are propagated in float64; every other type accumulates in float32."""
    return torch.float64 if x.dtype in (torch.float64, np.float64) else torch.float32


def read_columns(x, start: int, end: int, pin_memory: bool = False) -> Tensor:
    """``x[:, start:end]`` as a contiguous float tensor (``x``: a Tensor or a numpy array /
    memmap), checked for NaN/Inf. ``pin_memory``: in page-locked memory, so that its upload to a
    CUDA device is one asynchronous DMA instead of a staged copy."""
    dtype = x.dtype if isinstance(x, Tensor) else _TORCH_OF_NUMPY[np.dtype(x.dtype)]
    if pin_memory:
        block = torch.empty(x.shape[0], end - start, dtype=dtype, pin_memory=True)
    else:
        block = host_empty(x.shape[0], end - start, dtype)
    if isinstance(x, Tensor):
        block.copy_(x[:, start:end])
    else:  # a numpy array or a read-only memmap: copied by numpy, never written
        block.numpy()[...] = x[:, start:end]
    # one reduction, not an [N, w] bool tensor: the check stays inside the column budget
    return check_finite(block, f'x (columns {start}..{end})')


# Peak device bytes of building an operator's matrix, in units of the input graph's CSR bytes:
# orienting ('symmetric' concatenates A and its transpose), sorting, coalescing and normalising
# each hold a few nnz-sized arrays at once. An estimate: operator_matrix falls back to the CPU if
# the device still runs out of memory.


def entry_bytes(matrix: CSR, dtype: torch.dtype) -> int:
    """Bytes per stored entry of ``matrix`` in a product on ``dtype`` features: its index and
    its value, which the product reads in ``dtype`` (an unweighted matrix gets ones of that
    dtype)."""
    return matrix.col.element_size() + dtype.itemsize


def matrix_bytes(matrix: CSR, dtype: torch.dtype) -> int:
    """Device bytes of ``matrix`` ready for products on ``dtype`` features."""
    return matrix.rowptr.numel() * matrix.rowptr.element_size() + matrix.nnz * entry_bytes(
        matrix, dtype
    )


def device_matrix(
    matrix: CSR,
    device: torch.device,
    row_block_nnz: int | None,
    dtype: torch.dtype = torch.float32,
):
    """``matrix`` ready for products on ``dtype`` features on ``device``: the CSR itself on CPU,
    on the device when it fits (already there when the engine built it there:
    :func:`graphops.precompute.engine.operator_matrix`), else a :class:`RowBlockStream` from
    pinned host memory."""
    if device.type != 'cuda':
        return matrix
    if row_block_nnz is None:
        if matrix.device.type == 'cuda':
            return matrix
        free, _ = torch.cuda.mem_get_info(device)
        if matrix_bytes(matrix, dtype) <= free // 2:
            return matrix.to(device)
        row_block_nnz = max(1, (free // 4) // entry_bytes(matrix, dtype))
    return RowBlockStream(matrix.to('cpu'), row_block_nnz, device)


def _device_spmm(matrix, x: Tensor, out: Tensor | None = None) -> Tensor:
    # a matrix streamed by row blocks (RowBlockStream, or a DiskCSR read from disk) multiplies
    # itself; a CSR goes through graphops.ops.spmm
    if isinstance(matrix, RowBlockStream) or hasattr(matrix, 'spmm'):
        return matrix.spmm(x, out=out)
    return spmm(matrix, x, out=out)


def run_slice(
    operator: SIGNOperator,
    matrix,
    x_block: Tensor,
    rows: Tensor | None,
    storage_dtype: torch.dtype,
    device: torch.device,
    on_hop: Callable[[int, float], None] | None = None,
) -> dict[str, np.ndarray]:
    """All hops of ``operator`` for one column block ``x_block`` ``[N, w]``: ``{key: [R, w]
    array in the storage dtype}``. ``matrix`` comes from :func:`device_matrix`."""
    compute = compute_dtype(x_block)
    if device.type == 'cuda':
        return _run_slice_cuda(operator, matrix, x_block, rows, storage_dtype, device, on_hop)
    states = [x_block.to(device=device, dtype=compute)] * operator.num_streams
    # Callers pass the block without keeping a name for it: once ``states`` moves on after the
    # first hop the input block is freed, so a hop holds the budgeted buffers (old and new state)
    # and not a third [N, w] copy.
    del x_block
    device_rows = None if rows is None else rows.to(device)
    out: dict[str, np.ndarray] = {}
    tags = operator.stream_tags()
    with torch.inference_mode():
        for hop in range(1, operator.hops + 1):
            started = time.perf_counter()
            states = operator.step(matrix, states, _device_spmm)
            for tag, state in zip(tags, states):
                kept = state if device_rows is None else state[device_rows]
                out[f'{operator.prefix}{tag}{hop}'] = to_storage(kept, storage_dtype)
            if on_hop is not None:
                on_hop(hop, time.perf_counter() - started)
    return out


def _run_slice_cuda(operator, matrix, x_block, rows, storage_dtype, device, on_hop):
    """:func:`run_slice` on CUDA. The block is uploaded without blocking (from pinned memory when
    :func:`read_columns` pinned it); each hop's kept rows are converted to the storage dtype on the
    device (not on the host after a float32 copy) and copied into pinned host memory on a side
    stream, which overlaps the next hop's products. A state being copied cannot give its memory
    back until the copy ran (``record_stream``), so before hop :math:`k` the host waits for the
    copy of hop :math:`k-2`, whose state hop :math:`k` would reuse: the GPU stays busy with hop
    :math:`k-1` meanwhile, and the device holds no buffer beyond the plan. Hop times come from
    CUDA events."""
    compute = compute_dtype(x_block)
    main = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    states = [x_block.to(device=device, dtype=compute, non_blocking=True)] * operator.num_streams
    del x_block  # as in run_slice: the upload's source is freed (pinned blocks are recycled safely)
    device_rows = None if rows is None else rows.to(device, non_blocking=True)
    host: dict[str, Tensor] = {}
    timers, copied = [], []
    tags = operator.stream_tags()
    with torch.inference_mode():
        for hop in range(1, operator.hops + 1):
            if hop >= 3:
                copied[hop - 3].synchronize()
            started = torch.cuda.Event(enable_timing=True)
            started.record(main)
            states = operator.step(matrix, states, _device_spmm)
            finished = torch.cuda.Event(enable_timing=True)
            finished.record(main)
            timers.append((started, finished))
            for tag, state in zip(tags, states):
                kept = state if device_rows is None else state[device_rows]
                kept = kept.to(storage_dtype)
                target = torch.empty(kept.shape, dtype=storage_dtype, pin_memory=True)
                side.wait_stream(main)
                with torch.cuda.stream(side):
                    target.copy_(kept, non_blocking=True)
                # the allocator must not hand kept's memory to the next hop before the copy ran
                kept.record_stream(side)
                host[f'{operator.prefix}{tag}{hop}'] = target
            copied.append(torch.cuda.Event())
            copied[-1].record(side)
    copied[-1].synchronize()
    if on_hop is not None:
        for hop, (started, finished) in enumerate(timers, start=1):
            on_hop(hop, started.elapsed_time(finished) / 1000.0)
    return {key: to_storage(value, storage_dtype) for key, value in host.items()}


@dataclass(frozen=True, eq=False)  # compared by identity: its fields hold tensors
class SliceJob:
    r"""One operator's pending column slices: what the precompute engine gives a backend.

    A backend runs the slices wherever it likes, through :meth:`run`, and returns each slice's
    outputs; the engine writes them into the :class:`~graphops.precompute.FeatureStore`. Each
    slice computes every hop of the operator on its columns,

    .. math::
        \mathbf{X}^{(k)}_{:, a:b} = \mathrm{step}\big(\mathbf{M},
        \mathbf{X}^{(k-1)}_{:, a:b}\big), \qquad \mathbf{X}^{(0)}_{:, a:b} = \mathbf{X}_{:, a:b},

    and keeps the rows ``rows`` of each hop in ``storage_dtype``; the products sum each row's
    entries in CSR order, so a slice has the same bytes wherever it runs.

    A job pickles its matrix and rows as numpy arrays: Ray's object store then shares them
    between the workers of a node without a copy (:class:`~graphops.precompute.RayBackend`).

    Args:
        operator (SIGNOperator): the operator whose hops are computed.
        matrix (CSR): its matrix (``operator.matrix(adj, dtype)``), on the CPU or already on
            ``device``.
        slices (list of (int, int, int)): ``(slice_index, start, end)`` of each pending column
            slice ``[start, end)``.
        rows (Tensor, optional): ``[R]`` node ids kept in the outputs; ``None`` keeps every node.
            (default: ``None``)
        storage_dtype (torch.dtype): dtype of the returned arrays. (default: ``torch.float32``)
        device (torch.device or str): where the products run. (default: ``'cpu'``)
        row_block_nnz (int, optional): on CUDA, stream the matrix from pinned host memory in row
            blocks of at most this many entries; ``None`` keeps it on the device when it fits
            (:func:`device_matrix`). (default: ``None``)

    Shapes:
        - **matrix:** :math:`[N, N]` with :math:`|\mathcal{E}|` entries.
        - **features** (given to :meth:`run`): :math:`[N, F]`.
        - **output:** one ``{key: [R, b - a]}`` dict of numpy arrays per slice, a key per
          (stream, hop) of the operator (``operator.keys()``).
    """

    operator: SIGNOperator
    matrix: CSR
    slices: tuple[tuple[int, int, int], ...]
    rows: Tensor | None = None
    storage_dtype: torch.dtype = torch.float32
    device: torch.device = torch.device('cpu')
    row_block_nnz: int | None = None

    def __post_init__(self):
        if not isinstance(self.operator, SIGNOperator):
            raise TypeError(f'operator must be a SIGN operator, got {type(self.operator).__name__}')
        if not isinstance(self.matrix, CSR):
            raise TypeError(
                f'matrix must be a graphops.ops.CSR, got {type(self.matrix).__name__}; build it '
                'with operator.matrix(graphops.ops.to_csr(...))'
            )
        if self.rows is not None and not isinstance(self.rows, Tensor):
            raise TypeError(f'rows must be a Tensor of node ids or None, got {type(self.rows)}')
        slices = tuple(tuple(s) for s in self.slices)
        for item in slices:
            ok = len(item) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in item
            )
            if not ok or not 0 <= item[1] < item[2]:
                raise ValueError(
                    f'slices must hold (slice_index, start, end) int triples with '
                    f'0 <= start < end, got {item!r}'
                )
        object.__setattr__(self, 'slices', slices)
        object.__setattr__(self, 'device', torch.device(self.device))

    def run(
        self,
        x: Tensor | np.ndarray,
        slices: Iterable[tuple[int, int, int]] | None = None,
        on_hop: HopCallback | None = None,
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Computes ``slices`` (default: all of the job's) of the features ``x`` one after the
        other in this process, yielding ``(slice_index, {key: [R, w] array})`` as each is done.

        ``x`` is ``[N, F]`` on the host (a Tensor, a numpy array or an ``np.memmap``: only the
        columns of one slice are read at a time). The matrix is made ready on the device once
        for all the slices (:func:`device_matrix`). ``on_hop(hop, columns, seconds)`` is called
        after each hop of each slice."""
        if len(x.shape) != 2 or x.shape[0] != self.matrix.num_cols:
            raise ValueError(
                f"x must be [N, F] with N = {self.matrix.num_cols} (the matrix's columns), got "
                f'{tuple(x.shape)}'
            )
        pin = self.device.type == 'cuda'
        handle = device_matrix(self.matrix, self.device, self.row_block_nnz, compute_dtype(x))
        rows = self.rows
        if rows is not None and pin:
            rows = rows.to(self.device)  # once, not per slice
        for slice_index, start, end in self.slices if slices is None else slices:
            if end > x.shape[1]:
                raise ValueError(f'slice {slice_index} ends at column {end}, x has {x.shape[1]}')

            def hop_done(hop: int, seconds: float, width: int = end - start) -> None:
                if on_hop is not None:
                    on_hop(hop, width, seconds)

            blocks = run_slice(
                self.operator,
                handle,
                # unnamed: run_slice frees the input block after the first hop
                read_columns(x, start, end, pin_memory=pin),
                rows,
                self.storage_dtype,
                self.device,
                hop_done,
            )
            yield slice_index, blocks
            del blocks  # not held while the next slice runs

    def __getstate__(self) -> dict:
        host = self.matrix.to('cpu')
        value = None if host.value is None else host.value.numpy()
        return {
            'operator': self.operator,
            'matrix': (host.rowptr.numpy(), host.col.numpy(), value, *host.shape),
            'slices': self.slices,
            'rows': None if self.rows is None else self.rows.cpu().numpy(),
            'storage_dtype': self.storage_dtype,
            'device': self.device,
            'row_block_nnz': self.row_block_nnz,
        }

    def __setstate__(self, state: dict) -> None:
        rowptr, col, value, num_rows, num_cols = state['matrix']
        rows = state['rows']
        with warnings.catch_warnings():
            # arrays from an object store are read-only; nothing here writes to them
            warnings.simplefilter('ignore', UserWarning)
            # checked again (CSR's O(nnz) checks): the arrays crossed a process boundary
            matrix = CSR(
                torch.from_numpy(rowptr),
                torch.from_numpy(col),
                None if value is None else torch.from_numpy(value),
                num_rows,
                num_cols,
            )
            rows = None if rows is None else torch.from_numpy(rows)
        for name, item in {**state, 'matrix': matrix, 'rows': rows}.items():
            object.__setattr__(self, name, item)

    def __repr__(self) -> str:
        rows = None if self.rows is None else f'<{self.rows.numel()} rows>'
        return (
            f'SliceJob(operator={self.operator!r}, '
            f'matrix=<{self.matrix.num_rows}x{self.matrix.num_cols}, nnz={self.matrix.nnz}>, '
            f'slices={list(self.slices)}, rows={rows}, storage_dtype={self.storage_dtype}, '
            f"device='{self.device}', row_block_nnz={self.row_block_nnz})"
        )
