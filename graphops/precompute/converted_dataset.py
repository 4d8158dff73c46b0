r"""``ConvertedDataset``: a one-time, streaming conversion of ogb's papers100M files into arrays the
precompute reads by column slice and row block, within one memory budget.

ogb's loader materialises every array of ``raw/data.npz`` (57 GB of features and 26 GB of edges on
ogbn-papers100M). :meth:`ConvertedDataset.convert` reads them itself
(:class:`~graphops.precompute.npy_member.NpyMember`), one bounded chunk at a time, and writes:

* ``features.npy``: ``[N, F]`` in **Fortran (column-major) order**, float32 or float16, a plain
  ``.npy`` that ``np.load(..., mmap_mode='r')`` opens as an ``[N, F]`` array, in which a column
  slice ``[:, a:b]`` is one sequential region of the file;
* ``matrices/<name>/``: each SIGN operator's matrix (``Adjacency``: its orientation, i.e. the
  symmetric union, the graph or its transpose, after DropEdge, self-loop removal or addition and
  normalisation) as a :class:`~graphops.precompute.disk_csr.DiskCSR` in row blocks of at most
  ``block_nnz`` entries;
* ``manifest.json``: shapes, the source, each step's checksums (the features per column).

Each matrix is built from the edge list in three streaming passes: count each row's entries,
append every entry to the temporary bucket of its row block, then sort and deduplicate one bucket
at a time and write its block; a last pass per block writes the normalised values once every
degree is known. DropEdge is keyed by the edge (:mod:`graphops.precompute.dropedge`), so the
matrix does not depend on chunk or block sizes. Entries, degrees and values are those
:meth:`Adjacency.matrix <graphops.transforms.adjacency.Adjacency.matrix>` computes in memory:
products from these files are byte-identical.

Every file is written under a temporary name and renamed; the manifest records a step only once
its files are whole, so a conversion killed at any point resumes after its last finished step and
ends with the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from graphops.ops import host_empty
from graphops.ops.validate import check_finite
from graphops.precompute.disk_csr import DiskCSR, DiskCSRCorruptError
from graphops.precompute.dropedge import keep_mask
from graphops.precompute.feature_store import (
    atomic_write_bytes,
    npy_data_offset,
    save_npy_atomic,
)
from graphops.precompute.npy_member import NpyMember
from graphops.transforms.adjacency import Adjacency

MANIFEST = 'manifest.json'
FEATURES = 'features.npy'
FORMAT = 'graphops.ConvertedDataset'
VERSION = 1
_FEATURE_DTYPES = {'float32': np.float32, 'float16': np.float16}
# Bytes per entry of a bucket being sorted (int64 key, its sorted copy, rows and columns).
_SORT_BYTES_PER_ENTRY = 40
# Share of the budget the precompute gives the matrix's two row-block buffers (16 bytes an entry).
BLOCK_BUFFER_SHARE = 32
MIN_BUDGET = 1 << 20


def block_nnz_for(memory_budget_bytes: int) -> int:
    """Entries per row block for a budget: the precompute's two block buffers (16 bytes an entry)
    take 1/:data:`BLOCK_BUFFER_SHARE` of it."""
    return max(1 << 12, memory_budget_bytes // (BLOCK_BUFFER_SHARE * 16))


def check_budget(memory_budget_bytes, minimum: int = MIN_BUDGET) -> int:
    if isinstance(memory_budget_bytes, bool) or not isinstance(memory_budget_bytes, int):
        raise TypeError(
            f'memory_budget_bytes must be an int (bytes), got {type(memory_budget_bytes).__name__}'
        )
    if memory_budget_bytes < minimum:
        raise ValueError(
            f'memory_budget_bytes={memory_budget_bytes} is below the minimum of {minimum} bytes '
            f'({minimum / 2**20:.1f} MiB) for this graph; raise memory_budget_bytes'
        )
    return memory_budget_bytes


def matrix_name(operator, dropedge: float, seed: int) -> str:
    """The folder of ``operator``'s matrix on a graph DropEdge-subsampled at ``dropedge``."""
    params = {k: v for k, v in operator.params().items() if k not in ('hops', 'prefix')}
    key = json.dumps(
        {'op': type(operator).__name__, **params, 'dropedge': dropedge, 'seed': seed},
        sort_keys=True,
    )
    return f'{params.get("direction", "m")}-{hashlib.sha256(key.encode()).hexdigest()[:12]}'


def _check_adjacency(operator) -> dict:
    if not isinstance(operator, Adjacency):
        raise ValueError(
            f'the out-of-core precompute builds Adjacency operators only, got {operator!r}; run '
            'other operators with the in-memory engine (graphops.precompute.precompute)'
        )
    return operator.params()


class ConvertedDataset:
    r"""A converted papers100M-layout dataset (open one with ``ConvertedDataset(path)``, make one
    with :meth:`convert`).

    Args:
        path (str or PathLike): the folder :meth:`convert` wrote.

    Shapes:
        - ``read_columns(a, b)``: :math:`(N, b - a)` float32 (float64 never: the file is float32
          or float16).
        - ``matrix(name)``: a :math:`(N, N)` :class:`~graphops.precompute.disk_csr.DiskCSR`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f'no converted dataset at {self.path} ({err})') from err
        if self.manifest.get('format') != FORMAT or 'features' not in self.manifest['steps']:
            raise DiskCSRCorruptError(f'{self.path} holds no finished conversion')
        self.num_nodes = int(self.manifest['num_nodes'])
        self.num_features = int(self.manifest['num_features'])
        self.dtype = np.dtype(self.manifest['feature_dtype'])
        self.bytes_read = 0
        self._verified: set[int] = set()
        with open(self.path / FEATURES, 'rb') as handle:
            shape, dtype = npy_data_offset(handle)
            self._offset = handle.tell()
        if shape != (self.num_nodes, self.num_features) or dtype != self.dtype:
            raise DiskCSRCorruptError(f'{self.path / FEATURES} has shape {shape} {dtype}')
        size = self._offset + self.features_bytes
        if (self.path / FEATURES).stat().st_size != size:
            raise DiskCSRCorruptError(f'{self.path / FEATURES} is truncated')

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_nodes, self.num_features

    def fingerprint(self) -> str:
        """SHA-256 of the manifest's checksums: the identity of these arrays."""
        return hashlib.sha256(
            json.dumps(self.manifest['steps'], sort_keys=True).encode()
        ).hexdigest()

    def matrix(self, name: str, device: torch.device | str = 'cpu') -> DiskCSR:
        if name not in self.manifest['steps'].get('matrices', {}):
            raise KeyError(f'{self.path} has no matrix {name!r}; convert with its operator')
        return DiskCSR(self.path / 'matrices' / name, device)

    @property
    def features_bytes(self) -> int:
        """Bytes of the feature array on disk (header excluded)."""
        return self.num_nodes * self.num_features * self.dtype.itemsize

    def drop_cached_columns(self, start: int, end: int) -> None:
        """Advises the kernel to drop columns ``[start, end)`` from the page cache (they are
        contiguous: the file is column-major); a no-op where ``posix_fadvise`` is missing."""
        if not hasattr(os, 'posix_fadvise'):
            return
        column = self.num_nodes * self.dtype.itemsize
        with open(self.path / FEATURES, 'rb') as handle:
            offset = self._offset + start * column
            os.posix_fadvise(
                handle.fileno(), offset, (end - start) * column, os.POSIX_FADV_DONTNEED
            )

    def read_columns(
        self, start: int, end: int, out: Tensor | None = None, chunk_bytes: int = 32 << 20
    ) -> Tensor:
        """``X[:, start:end]`` as a contiguous float32 ``[N, w]`` tensor (huge-page host memory),
        read as ``w`` sequential runs of ``chunk_bytes`` at a time; a column's checksum is checked
        the first time it is read, and NaN/Inf is refused."""
        n, width = self.num_nodes, end - start
        if not 0 <= start < end <= self.num_features:
            raise ValueError(f'columns [{start}, {end}) outside 0..{self.num_features}')
        if out is None:
            out = host_empty(n, width, torch.float32)
        item = self.dtype.itemsize
        rows = max(1, chunk_bytes // (width * item))
        buffer = np.empty((width, min(rows, n)), dtype=self.dtype)
        check = [c for c in range(start, end) if c not in self._verified]
        hashers = {c: hashlib.sha256() for c in check}
        with open(self.path / FEATURES, 'rb') as handle:
            fd = handle.fileno()
            for r0 in range(0, n, rows):
                r1 = min(n, r0 + rows)
                for j in range(width):
                    view = memoryview(buffer[j, : r1 - r0]).cast('B')
                    offset = self._offset + ((start + j) * n + r0) * item
                    if os.preadv(fd, [view], offset) != view.nbytes:
                        raise DiskCSRCorruptError(f'{self.path / FEATURES} is truncated')
                    if start + j in hashers:
                        hashers[start + j].update(view)
                block = torch.from_numpy(buffer[:, : r1 - r0])
                out[r0:r1].copy_(block.t())
        self.bytes_read += n * width * item
        recorded = self.manifest['steps']['features']['columns']
        for c, hasher in hashers.items():
            if hasher.hexdigest() != recorded[c]:
                raise DiskCSRCorruptError(
                    f'column {c} of {self.path / FEATURES} does not match its checksum; delete '
                    f'{self.path} and convert again'
                )
            self._verified.add(c)
        # one reduction, not an [N, w] bool tensor: the check stays inside the budget
        return check_finite(out, f'x (columns {start}..{end})')

    # --- the conversion --------------------------------------------------------------------------
    @classmethod
    def convert(
        cls,
        ogb_dir: str | os.PathLike,
        path: str | os.PathLike,
        operators: list[tuple[object, float]],
        memory_budget_bytes: int,
        *,
        seed: int = 0,
        feature_dtype: str = 'float32',
        log=print,
    ) -> ConvertedDataset:
        """Converts ``<ogb_dir>/raw/data.npz`` (ogb's papers100M layout) into ``path``, building the
        matrix of every ``(Adjacency operator, dropedge rate)``; resumes a killed conversion and
        reuses finished steps. The working memory stays within ``memory_budget_bytes`` plus the
        per-node counts (8 bytes a node for each matrix built, and 16 more).

        Raises:
            ValueError: the budget cannot hold one row block or feature chunk (the message names
                ``memory_budget_bytes`` and the minimum), a non-Adjacency operator, NaN/Inf
                features, out-of-range edges.
        """
        check_budget(memory_budget_bytes)
        if feature_dtype not in _FEATURE_DTYPES:
            raise ValueError(
                f'feature_dtype must be one of {sorted(_FEATURE_DTYPES)}, got {feature_dtype!r}'
            )
        raw = Path(ogb_dir) / 'raw' / 'data.npz'
        if not raw.is_file():
            raise FileNotFoundError(f'no {raw}: expected ogb papers100M layout under {ogb_dir}')
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        features = NpyMember(raw, 'node_feat')
        edges = NpyMember(raw, 'edge_index')
        num_nodes, num_features = features.shape
        if edges.shape[0] != 2:
            raise ValueError(f'{raw}: edge_index must be [2, E], got {edges.shape}')
        if edges.dtype.kind not in 'iu':
            raise TypeError(f'{raw}: edge_index must hold integers, got {edges.dtype}')
        source = {
            'raw': str(raw.resolve()),
            'size': raw.stat().st_size,
            'mtime_ns': raw.stat().st_mtime_ns,
            'num_nodes': num_nodes,
            'num_edges': edges.shape[1],
        }
        manifest_path = path / MANIFEST
        manifest = None
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            if manifest.get('source') != source or manifest.get('feature_dtype') != feature_dtype:
                log(f'convert: {path} was converted from other inputs; converting again')
                manifest = None
        if manifest is None:
            for item in path.iterdir():
                shutil.rmtree(item) if item.is_dir() else item.unlink()
            manifest = {
                'format': FORMAT,
                'version': VERSION,
                'source': source,
                'num_nodes': num_nodes,
                'num_features': num_features,
                'feature_dtype': feature_dtype,
                'steps': {'matrices': {}},
                'timings_s': {},
                'bytes_read': 0,
                'bytes_written': 0,
            }

        def save() -> None:
            atomic_write_bytes(manifest_path, (json.dumps(manifest, indent=1) + '\n').encode())

        if 'features' not in manifest['steps']:
            started = time.perf_counter()
            columns, written = _convert_features(
                features,
                path / FEATURES,
                np.dtype(_FEATURE_DTYPES[feature_dtype]),
                memory_budget_bytes,
            )
            manifest['steps']['features'] = {'columns': columns}
            manifest['timings_s']['features'] = time.perf_counter() - started
            manifest['bytes_read'] += features.bytes_read
            manifest['bytes_written'] += written
            save()
            log(
                f'convert: features {num_nodes:,} x {num_features} '
                f'in {manifest["timings_s"]["features"]:.1f}s'
            )
        wanted = {}
        for operator, rate in operators:
            wanted[matrix_name(operator, rate, seed)] = (_check_adjacency(operator), float(rate))
        todo = {k: v for k, v in wanted.items() if k not in manifest['steps']['matrices']}
        if todo:
            started = time.perf_counter()
            block_nnz = block_nnz_for(memory_budget_bytes)
            chunk = int(min(1 << 23, max(1 << 12, memory_budget_bytes // 256)))
            # bincount temporaries per chunk and the degree arrays (int64 counts per matrix)
            fixed = 8 * num_nodes * (len(todo) + 2)
            minimum = fixed + _SORT_BYTES_PER_ENTRY * 1 + 160 * chunk
            if memory_budget_bytes < minimum:
                check_budget(memory_budget_bytes, minimum)
            read_before = edges.bytes_read
            counts = _count_rows(edges, todo, num_nodes, chunk, seed)
            for name, (params, rate) in todo.items():
                written = _build_matrix(
                    edges,
                    path / 'matrices' / name,
                    params,
                    rate,
                    seed,
                    num_nodes,
                    counts.pop(name),
                    block_nnz,
                    chunk,
                )
                manifest['steps']['matrices'][name] = {
                    'params': params,
                    'dropedge': rate,
                    'seed': seed,
                    'meta_sha256': hashlib.sha256(
                        (path / 'matrices' / name / 'meta.json').read_bytes()
                    ).hexdigest(),
                }
                manifest['bytes_written'] += written
                manifest['bytes_read'] += edges.bytes_read - read_before
                read_before = edges.bytes_read
                save()
            manifest['timings_s']['matrices'] = manifest['timings_s'].get('matrices', 0.0) + (
                time.perf_counter() - started
            )
            save()
            log(f'convert: {len(todo)} matrices in {time.perf_counter() - started:.1f}s')
        manifest['complete'] = True
        save()
        return cls(path)


# --- features ---------------------------------------------------------------------------------------


def _convert_features(
    member: NpyMember, target: Path, dtype: np.dtype, budget: int
) -> tuple[list[str], int]:
    """Row-major ``node_feat`` into a Fortran-ordered ``.npy``, one row chunk at a time (each chunk
    is written as ``F`` column runs); returns each column's SHA-256 and the bytes written."""
    if member.dtype.kind != 'f':
        raise TypeError(f'node_feat must hold floats, got {member.dtype}')
    n, f = member.shape
    tmp = target.with_name(f'.{target.name}.tmp{os.getpid()}')
    item = dtype.itemsize
    # the chunk as read, its float copy and its transpose: a quarter of the budget
    rows = max(1, min(n, budget // (4 * f * (member.dtype.itemsize + 4 + item))))
    with open(tmp, 'wb') as handle:
        np.lib.format.write_array_header_1_0(
            handle,
            {'descr': np.lib.format.dtype_to_descr(dtype), 'fortran_order': True, 'shape': (n, f)},
        )
        offset = handle.tell()
        handle.truncate(offset + n * f * item)
        fd = handle.fileno()
        for r0 in range(0, n, rows):
            chunk = member.read(r0, r0 + rows)
            if not np.isfinite(chunk).all():
                raise ValueError(
                    f'node_feat rows {r0}..{r0 + len(chunk)} hold NaN or Inf; clean the features'
                )
            columns = np.ascontiguousarray(chunk.T, dtype=dtype)
            del chunk
            for c in range(f):
                os.pwrite(fd, columns[c].data, offset + (c * n + r0) * item)
            del columns
        handle.flush()
        os.fsync(fd)
        # each column's checksum, read back in column order (one sequential pass)
        digests = []
        handle_r = open(tmp, 'rb')  # noqa: SIM115 - closed below
        try:
            step = max(1, (32 << 20) // item)
            for c in range(f):
                hasher = hashlib.sha256()
                for r0 in range(0, n, step):
                    size = (min(n, r0 + step) - r0) * item
                    hasher.update(os.pread(handle_r.fileno(), size, offset + (c * n + r0) * item))
                digests.append(hasher.hexdigest())
        finally:
            handle_r.close()
    os.replace(tmp, target)
    return digests, offset + n * f * item


# --- matrices ---------------------------------------------------------------------------------------


def _entries(src: np.ndarray, dst: np.ndarray, params: dict, rate: float, seed: int):
    """The ``(row, col)`` entries of one edge chunk in the operator's matrix (``adj_t`` form: an
    edge ``s -> t`` is entry ``(t, s)``), after DropEdge and self-loop removal."""
    keep = keep_mask(src, dst, rate, seed)
    if keep is not None:
        src, dst = src[keep], dst[keep]
    if params['remove_self_loops']:
        loop = src == dst
        if loop.any():
            src, dst = src[~loop], dst[~loop]
    direction = params['direction']
    if direction == 'directed':
        return dst, src
    if direction == 'transposed':
        return src, dst
    return np.concatenate([dst, src]), np.concatenate([src, dst])


def _count_rows(edges: NpyMember, todo: dict, n: int, chunk: int, seed: int) -> dict:
    """Entries per row of every matrix before deduplication (one pass over the edges): they bound
    each row block's bucket."""
    counts = {name: np.zeros(n, dtype=np.int64) for name in todo}
    for _, src, dst in edges.edge_chunks(chunk):
        if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
            raise ValueError(f'edge_index holds node ids outside [0, {n}); the raw file is corrupt')
        for name, (params, rate) in todo.items():
            rows, _ = _entries(src, dst, params, rate, seed)
            counts[name] += np.bincount(rows, minlength=n)
    return counts


def _row_ranges(counts: np.ndarray, block_nnz: int) -> list[tuple[int, int]]:
    """Row ranges whose entries fit ``block_nnz`` (a row with more is a block of its own)."""
    ends = np.cumsum(counts)
    ranges, start, n = [], 0, counts.size
    base = 0
    while start < n:
        end = int(np.searchsorted(ends, base + block_nnz, side='right'))
        end = min(max(end, start + 1), n)
        ranges.append((start, end))
        base = int(ends[end - 1])
        start = end
    return ranges


def _build_matrix(
    edges: NpyMember,
    folder: Path,
    params: dict,
    rate: float,
    seed: int,
    n: int,
    counts: np.ndarray,
    block_nnz: int,
    chunk: int,
) -> int:
    """Buckets, sorts and writes one operator's matrix; returns the bytes written."""
    if folder.exists():
        shutil.rmtree(folder)  # a half-built matrix is rebuilt from scratch
    folder.mkdir(parents=True)
    loops = params['add_self_loops']
    ranges = _row_ranges(counts + (1 if loops else 0), block_nnz)
    starts = np.array([a for a, _ in ranges], dtype=np.int64)
    buckets = [folder / f'.bucket{b:05d}' for b in range(len(ranges))]
    handles = [open(p, 'wb') for p in buckets]  # noqa: SIM115 - closed below
    written = 0
    try:
        for _, src, dst in edges.edge_chunks(chunk):
            rows, cols = _entries(src, dst, params, rate, seed)
            keys = rows.astype(np.int64) * n + cols
            which = np.searchsorted(starts, rows, side='right') - 1
            order = np.argsort(which, kind='stable')
            keys, which = keys[order], which[order]
            bounds = np.searchsorted(which, np.arange(len(ranges) + 1))
            for b in range(len(ranges)):
                if bounds[b + 1] > bounds[b]:
                    handles[b].write(keys[bounds[b] : bounds[b + 1]].data)
    finally:
        for handle in handles:
            handle.close()
    degree = np.zeros(n, dtype=np.int64)
    col_degree = np.zeros(n, dtype=np.int64) if params['norm'] == 'col' else None
    for b, (a, e) in enumerate(ranges):
        keys = np.fromfile(buckets[b], dtype=np.int64)
        buckets[b].unlink()
        keys.sort()
        if params['direction'] == 'symmetric' and keys.size:  # the binarised union
            first = np.empty(keys.size, dtype=bool)
            first[0] = True
            np.not_equal(keys[1:], keys[:-1], out=first[1:])
            keys = keys[first]  # sorted: a duplicate follows its twin
            del first
        if loops:
            keys = np.sort(np.concatenate([keys, np.arange(a, e, dtype=np.int64) * (n + 1)]))
        rows = keys // n
        cols = (keys - rows * n).astype(np.int32)
        del keys
        per_row = np.bincount(rows - a, minlength=e - a)
        degree[a:e] = per_row
        if col_degree is not None:
            col_degree += np.bincount(cols, minlength=n)
        rowptr = np.zeros(e - a + 1, dtype=np.int64)
        np.cumsum(per_row, out=rowptr[1:])
        files = DiskCSR.block_files(folder, b)
        save_npy_atomic(files['rowptr'], rowptr.astype(np.int32))
        save_npy_atomic(files['col'], cols)
        written += 4 * (rowptr.size + cols.size)
    left, right = _scales(params['norm'], degree, col_degree)
    blocks = []
    for b, (a, e) in enumerate(ranges):
        files = DiskCSR.block_files(folder, b)
        rowptr = np.load(files['rowptr'])
        cols = np.load(files['col'])
        value = _values(rowptr, cols, a, left, right)
        digests = {
            'rowptr': hashlib.sha256(rowptr.data).hexdigest(),
            'col': hashlib.sha256(cols.data).hexdigest(),
            'value': save_npy_atomic(files['value'], value),
        }
        written += 4 * value.size
        blocks.append({'rows': [a, e], 'nnz': int(cols.size), 'sha256': digests})
    DiskCSR.finish(folder, n, n, blocks, {'params': params, 'dropedge': rate, 'seed': seed})
    return written


def _scales(norm, degree: np.ndarray, col_degree):
    """``left``/``right`` float32 scales as :func:`graphops.ops.normalize` computes them from the
    (unweighted) degrees."""

    def inverse_power(d: np.ndarray, power: float) -> np.ndarray:
        t = torch.from_numpy(d.astype(np.float32))
        out = t.pow(power)
        return out.masked_fill_(t == 0, 0.0).numpy()

    if norm is None:
        return None, None
    if norm == 'sym':
        scale = inverse_power(degree, -0.5)
        return scale, scale
    if norm == 'rw':
        return inverse_power(degree, -1.0), None
    return None, inverse_power(col_degree, -1.0)


def _values(rowptr, cols, a, left, right) -> np.ndarray:
    """``left[row] * right[col]`` per entry in float32 (ones where a side is absent)."""
    value = np.ones(cols.size, dtype=np.float32)
    if left is not None:
        rows = np.repeat(np.arange(a, a + rowptr.size - 1), np.diff(rowptr))
        value = left[rows]
    if right is not None:
        value = value * right[cols]
    return value
