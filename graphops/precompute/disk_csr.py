r"""``DiskCSR``: a sparse matrix kept on disk in row blocks and multiplied one block at a time.

.. math::
    \mathbf{Y}_{[a_b, e_b)} = \mathbf{M}_{[a_b, e_b), :}\,\mathbf{X} \quad \text{for each row block } b

A folder holds ``meta.json`` (shape, the blocks' row ranges and entry counts, the SHA-256 of every
file) and, per block ``b``, ``b{b:05d}.rowptr.npy`` (int32, block-local offsets),
``b{b:05d}.col.npy`` (int32 global columns) and ``b{b:05d}.value.npy`` (float32). Every file is
written to a temporary name and renamed into place, so a block is whole or absent; a build killed
half-way resumes after its last whole block.

:meth:`DiskCSR.spmm` streams the blocks: on the CPU each block is mapped read-only and multiplied
in place from the page cache (no copy), a thread faulting block :math:`b+1` in while block
:math:`b` is multiplied, and at most two blocks are mapped at a time (mapped pages count as
resident memory: two blocks is what the budget reserves). On CUDA a thread reads each block
(``readinto``) into one of two pinned buffers and a side stream copies it to the device, overlapped
with the product of the previous one. Every row sums its entries in CSR order, so the result is
byte-identical to :func:`graphops.ops.spmm` on the whole matrix. Each block's checksum is verified
the first time it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from graphops.ops import CSR, host_empty, spmm
from graphops.precompute.feature_store import atomic_write_bytes, npy_data_offset, save_npy_atomic

META = 'meta.json'
FORMAT = 'graphops.DiskCSR'
_PARTS = (('rowptr', np.int32), ('col', np.int32), ('value', np.float32))


class DiskCSRCorruptError(ValueError):
    """A block's bytes do not match the checksum recorded when it was written."""


def read_npy_into(path: Path, out: np.ndarray) -> np.ndarray:
    """The 1-D ``.npy`` at ``path`` read into the front of ``out`` (a reusable buffer of its dtype,
    at least as long); returns that view."""
    with open(path, 'rb') as handle:
        shape, dtype = npy_data_offset(handle)
        if dtype != out.dtype or len(shape) != 1 or shape[0] > out.size:
            raise DiskCSRCorruptError(f'{path}: {shape} {dtype} does not fit a {out.dtype} buffer')
        view = out[: shape[0]]
        if handle.readinto(memoryview(view).cast('B')) != view.nbytes:
            raise DiskCSRCorruptError(f'{path} is truncated')
    return view


class DiskCSR:
    r"""A ``[num_rows, num_cols]`` matrix (``adj_t`` form) stored in row blocks under ``path``.

    Build one with :meth:`write_block` for each block in order and then :meth:`finish`; open it
    with ``DiskCSR(path)``.

    Args:
        path (str or PathLike): the folder.
        device (torch.device or str): where :meth:`spmm` multiplies. (default: ``'cpu'``)

    Shapes:
        ``spmm(x)``: ``x`` :math:`(N_{cols}, w)` on ``device`` -> :math:`(N_{rows}, w)`.
    """

    def __init__(self, path: str | os.PathLike, device: torch.device | str = 'cpu'):
        self.path = Path(path)
        try:
            meta = json.loads((self.path / META).read_text())
        except (OSError, ValueError) as err:
            raise DiskCSRCorruptError(f'{self.path} holds no finished DiskCSR ({err})') from err
        if meta.get('format') != FORMAT or not meta.get('complete'):
            raise DiskCSRCorruptError(f'{self.path} holds no finished DiskCSR')
        self.meta = meta
        self.num_rows, self.num_cols = int(meta['num_rows']), int(meta['num_cols'])
        self.nnz = int(meta['nnz'])
        self.blocks = [tuple(b['rows']) + (int(b['nnz']),) for b in meta['blocks']]
        self.device = torch.device(device)
        self.bytes_read = 0
        self.bytes_spilled = 0  # written to and read back from spmm_spill's scratch files
        # where the time goes, in seconds of the calling thread: waiting for a block's pages,
        # the products, staging rows to disk and reading them back
        self.seconds = dict.fromkeys(('wait', 'product', 'stage_write', 'stage_read'), 0.0)
        self._verified: set[int] = set()
        self._buffers = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_rows, self.num_cols

    @property
    def max_block_nnz(self) -> int:
        return max((nnz for *_, nnz in self.blocks), default=0)

    @property
    def max_block_rows(self) -> int:
        return max((end - start for start, end, _ in self.blocks), default=0)

    @staticmethod
    def buffer_bytes(block_nnz: int, block_rows: int) -> int:
        """Host bytes of the two block buffers :meth:`spmm` keeps."""
        return 2 * (8 * block_nnz + 4 * (block_rows + 1))

    # --- writing -------------------------------------------------------------------------------
    @staticmethod
    def block_files(path: Path, index: int) -> dict[str, Path]:
        return {part: Path(path) / f'b{index:05d}.{part}.npy' for part, _ in _PARTS}

    @staticmethod
    def write_block(
        path: Path, index: int, rowptr: np.ndarray, col: np.ndarray, value: np.ndarray
    ) -> dict[str, str]:
        """Writes block ``index`` (each file atomically); returns its checksums."""
        arrays = {'rowptr': rowptr, 'col': col, 'value': value}
        files = DiskCSR.block_files(path, index)
        return {
            part: save_npy_atomic(files[part], arrays[part].astype(dtype, copy=False))
            for part, dtype in _PARTS
        }

    @staticmethod
    def finish(path: Path, num_rows: int, num_cols: int, blocks: list[dict], extra: dict) -> None:
        """Writes ``meta.json`` (last: it marks the matrix whole). ``blocks``: ``{'rows': [a, e],
        'nnz': k, 'sha256': {part: hex}}`` in row order, covering ``0..num_rows``."""
        meta = {
            'format': FORMAT,
            'complete': True,
            'num_rows': num_rows,
            'num_cols': num_cols,
            'nnz': sum(int(b['nnz']) for b in blocks),
            'blocks': blocks,
            **extra,
        }
        atomic_write_bytes(Path(path) / META, (json.dumps(meta, indent=1) + '\n').encode())

    # --- reading -------------------------------------------------------------------------------
    def _allocate(self) -> list[dict[str, Tensor]]:
        """Two sets of block buffers, page-locked when the products run on CUDA (so that each
        upload is one asynchronous DMA)."""
        pin = self.device.type == 'cuda'
        sizes = {'rowptr': self.max_block_rows + 1, 'col': self.max_block_nnz}
        sizes['value'] = self.max_block_nnz
        buffers = []
        for _ in range(2):
            pair = {}
            for part, dtype in _PARTS:
                pair[part] = torch.empty(
                    max(1, sizes[part]),
                    dtype=torch.from_numpy(np.empty(0, dtype)).dtype,
                    pin_memory=pin,
                )
            buffers.append(pair)
        return buffers

    def _load(self, index: int, buffers: dict[str, Tensor]) -> dict[str, np.ndarray]:
        """Block ``index`` read into ``buffers`` (numpy views of their fronts are returned); the
        first read of a block checks its SHA-256."""
        files = self.block_files(self.path, index)
        views = {part: read_npy_into(files[part], buffers[part].numpy()) for part, _ in _PARTS}
        self.bytes_read += sum(view.nbytes for view in views.values())
        if index not in self._verified:
            self._check(index, views)
        return views

    def spmm(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """``M @ x``, block by block, reading block :math:`b+1` while :math:`b` is multiplied."""
        if x.dim() != 2 or x.size(0) != self.num_cols:
            raise ValueError(f'x must be [{self.num_cols}, w], got {tuple(x.shape)}')
        if out is None:
            if x.device.type == 'cpu':
                out = host_empty(self.num_rows, x.size(1), x.dtype)
            else:
                out = x.new_empty(self.num_rows, x.size(1))
        if not self.blocks:
            return out.zero_()
        if x.device.type == 'cuda':
            if self._buffers is None:
                self._buffers = self._allocate()
            return self._spmm_cuda(x, out)
        for _ in self._block_products(x, lambda start, end: out[start:end]):
            pass  # each product lands in its rows of out
        return out

    def spmm_spill(self, buffer: Tensor, at: int, scratch: str | os.PathLike) -> int:
        r"""``M @ x`` on the CPU for a square matrix, inside one buffer of :math:`N + H` rows that
        holds ``x = buffer[at:at + N]``; returns ``p``, the product being ``buffer[p:p + N]``.

        The :math:`H` rows around ``x`` (``buffer[:at]`` and ``buffer[at + N:]``) take the
        product's first rows (when more of them lie below ``x``) or its last rows, whole row
        blocks, each at the place it keeps in the result. Every other block's product goes
        through one ``[rows_blk, w]`` buffer to the file ``scratch`` (plain writes: the page
        cache, not this process's resident memory) and is read back over ``x`` once every block
        has read it. So a hop holds one ``[N + H, w]`` buffer, no row is copied twice, the free
        rows change ends from one hop to the next, and when :math:`H \ge N` nothing is staged.
        The bytes are those of :meth:`spmm`: the same block products.

        Shapes:
            ``buffer`` :math:`(N + H, w)` with :math:`0 \le` ``at`` :math:`\le H`.
        """
        if self.num_rows != self.num_cols:
            raise ValueError(f'spmm_spill needs a square matrix, this one is {self.shape}')
        if buffer.device.type != 'cpu' or not buffer.is_contiguous() or buffer.dim() != 2:
            raise ValueError('buffer must be a contiguous 2-D CPU tensor for spmm_spill')
        n, spare = self.num_rows, buffer.size(0) - self.num_rows
        if spare < 0 or not 0 <= at <= spare:
            raise ValueError(
                f'buffer must hold x = buffer[at:at + {n}] with 0 <= at <= rows - {n}, got '
                f'{buffer.size(0)} rows and at={at}'
            )
        x = buffer[at : at + n]
        first = at >= spare - at  # more free rows below x than above it
        if first:  # hold rows [0, split): whole blocks that fit below x
            split = max((e for _, e, _ in self.blocks if e <= at), default=0)
            held, staged, placed = (0, split), (split, n), at - split
        else:  # hold rows [split, n): whole blocks that fit above x
            split = min((s for s, _, _ in self.blocks if n - s <= spare - at), default=n)
            held, staged, placed = (split, n), (0, split), at + n - split
        stage = buffer.new_empty(self.max_block_rows if staged[1] > staged[0] else 0, x.size(1))
        scratch = Path(scratch)

        def is_held(start: int, end: int) -> bool:
            return held[0] <= start and end <= held[1]

        def target(start: int, end: int) -> Tensor:
            return (
                buffer[placed + start : placed + end]
                if is_held(start, end)
                else stage[: end - start]
            )

        with open(scratch, 'wb') if stage.numel() else nullcontext() as handle:
            for start, end, product in self._block_products(x, target):
                if not is_held(start, end):
                    started = time.perf_counter()
                    handle.write(memoryview(product.numpy()).cast('B'))
                    self.seconds['stage_write'] += time.perf_counter() - started
        if not stage.numel():
            return placed
        started = time.perf_counter()
        rows = buffer[placed + staged[0] : placed + staged[1]]
        expected = rows.numel() * rows.element_size()
        self.bytes_spilled += expected
        with open(scratch, 'rb') as handle:
            read = handle.readinto(memoryview(rows.numpy()).cast('B'))
        scratch.unlink()
        self.seconds['stage_read'] += time.perf_counter() - started
        if read != expected:
            raise OSError(f'{scratch}: read back {read} of {expected} bytes (disk full?)')
        return placed

    def _block_products(
        self, x: Tensor, target: Callable[[int, int], Tensor]
    ) -> Iterator[tuple[int, int, Tensor]]:
        """``(start, end, M[start:end] @ x)`` for every row block in order, each product written
        into ``target(start, end)``; a thread maps block :math:`b+1` while :math:`b` is multiplied."""
        with ThreadPoolExecutor(1) as reader:
            pending = reader.submit(self._map, 0)
            for index, (start, end, _) in enumerate(self.blocks):
                started = time.perf_counter()
                views = pending.result()
                self.seconds['wait'] += time.perf_counter() - started
                if index + 1 < len(self.blocks):
                    pending = reader.submit(self._map, index + 1)
                with warnings.catch_warnings():
                    # read-only maps: the product only reads them
                    warnings.simplefilter('ignore', UserWarning)
                    block = CSR(
                        torch.from_numpy(views['rowptr']),
                        torch.from_numpy(views['col']),
                        torch.from_numpy(views['value']).to(x.dtype),
                        end - start,
                        self.num_cols,
                        trust_data=True,
                    )
                out = target(start, end)
                started = time.perf_counter()
                spmm(block, x, out=out)
                self.seconds['product'] += time.perf_counter() - started
                del block, views  # unmapped: at most two blocks are mapped at a time
                yield start, end, out

    def _map(self, index: int) -> dict[str, np.ndarray]:
        """Block ``index`` mapped read-only, every page touched (so a thread faults it in, from
        disk when it is not cached, while the previous block is multiplied); the first map of a
        block checks its SHA-256. On the CPU the product reads the page cache in place: no copy,
        and the process maps at most two blocks (what :meth:`buffer_bytes` budgets)."""
        files = self.block_files(self.path, index)
        views = {}
        for part, dtype in _PARTS:
            view = np.load(files[part], mmap_mode='r')
            if view.dtype != dtype or view.ndim != 1:
                raise DiskCSRCorruptError(f'{files[part]} holds {view.dtype} {view.shape}')
            if view.size:
                np.add.reduce(view.view(np.uint8)[:: 1 << 12])  # one read a page
            views[part] = view
        self.bytes_read += sum(view.nbytes for view in views.values())
        if index not in self._verified:
            self._check(index, views)
        return views

    def _check(self, index: int, views: dict[str, np.ndarray]) -> None:
        recorded = self.meta['blocks'][index]['sha256']
        files = self.block_files(self.path, index)
        for part, view in views.items():
            if hashlib.sha256(view.data).hexdigest() != recorded[part]:
                raise DiskCSRCorruptError(
                    f'{files[part]} does not match its checksum: the matrix is corrupt; '
                    'delete the converted folder and convert again'
                )
        self._verified.add(index)

    def _spmm_cuda(self, x: Tensor, out: Tensor) -> Tensor:
        """Pinned double buffering: a thread reads block :math:`b+1` from disk into the pinned
        buffer block :math:`b-1` used (after that buffer's upload finished), a side stream copies
        it to the device, and the compute stream multiplies block :math:`b` meanwhile."""
        compute = torch.cuda.current_stream(x.device)
        copy = torch.cuda.Stream(x.device)
        uploaded = [None, None]  # per host buffer: the event after its last upload

        def read(index: int):
            slot = index % 2
            if uploaded[slot] is not None:
                uploaded[slot].synchronize()  # the DMA from this pinned buffer is done
            return self._load(index, self._buffers[slot])

        def upload(index: int, views):
            pinned = self._buffers[index % 2]
            with torch.cuda.stream(copy):
                moved = {  # from the pinned tensors themselves: asynchronous copies
                    part: pinned[part][: view.size].to(x.device, non_blocking=True)
                    for part, view in views.items()
                }
                event = torch.cuda.Event()
                event.record(copy)
            uploaded[index % 2] = event
            return moved, event

        with ThreadPoolExecutor(1) as reader:
            pending = reader.submit(read, 0)
            for index, (start, end, _) in enumerate(self.blocks):
                moved, ready = upload(index, pending.result())
                if index + 1 < len(self.blocks):
                    pending = reader.submit(read, index + 1)
                compute.wait_event(ready)
                for tensor in moved.values():
                    tensor.record_stream(compute)
                block = CSR(
                    moved['rowptr'],
                    moved['col'],
                    moved['value'].to(x.dtype),
                    end - start,
                    self.num_cols,
                    trust_data=True,
                )
                spmm(block, x, out=out[start:end])
        return out

    def verify(self) -> None:
        """Reads every block and checks its checksum."""
        buffers = self._allocate() if self._buffers is None else self._buffers
        self._verified.clear()
        for index in range(len(self.blocks)):
            self._load(index, buffers[0])

    def __repr__(self) -> str:
        return (
            f'DiskCSR({str(self.path)!r}, shape={self.shape}, nnz={self.nnz}, '
            f'blocks={len(self.blocks)}, device={self.device})'
        )
