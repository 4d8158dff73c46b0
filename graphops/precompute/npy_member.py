r"""``NpyMember``: one array of an ``.npz`` (or one ``.npy`` file) read in row ranges, never whole.

ogb's ``raw/data.npz`` holds ``edge_index`` ``[2, E]`` and ``node_feat`` ``[N, F]``; on
ogbn-papers100M these are 26 GB and 57 GB, which ``np.load`` would materialise. An ``.npz`` is a
zip of ``.npy`` members: a member *stored* without compression (``np.savez``, what
:class:`~graphops.datasets.synthetic_papers.SyntheticPapers` writes) is read in place at its byte
offset; a *deflated* one (``np.savez_compressed``) is decompressed sequentially, one bounded chunk
at a time. Either way a reader holds one chunk, never the array.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

_LOCAL_HEADER = struct.Struct('<4sHHHHHIIIHH')  # a zip local file header, 30 bytes


class NpyMember:
    r"""Row ranges of the array ``name`` in the ``.npz`` at ``path`` (or of the ``.npy`` at
    ``path`` when ``name`` is ``None``).

    Args:
        path (str or PathLike): an ``.npz`` or ``.npy`` file.
        name (str, optional): the member (``'node_feat'``, without ``.npy``).

    Shapes:
        ``read(start, stop)``: rows ``[start, stop)`` of the first axis, ``(stop - start, *rest)``;
        for ``edge_index`` ``[2, E]`` use :meth:`read_columns` (the ``E`` axis).
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        self.path = Path(path)
        self.name = name
        self.bytes_read = 0
        self._stream = None
        self._stream_pos = 0
        if name is None:
            with open(self.path, 'rb') as handle:
                self._read_header(handle)
                self.offset = handle.tell()
            self.compressed = False
            return
        with zipfile.ZipFile(self.path) as archive:
            try:
                info = archive.getinfo(f'{name}.npy')
            except KeyError:
                raise ValueError(
                    f'{self.path} has no array {name!r}; it holds '
                    f'{sorted(n.removesuffix(".npy") for n in archive.namelist())}'
                ) from None
            self.info = info
            self.compressed = info.compress_type != zipfile.ZIP_STORED
            with archive.open(info) as member:
                self._read_header(member)
                header_len = member.tell() if not self.compressed else self._header_len
        if not self.compressed:
            with open(self.path, 'rb') as handle:
                handle.seek(info.header_offset)
                fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
                if fields[0] != b'PK\x03\x04':
                    raise ValueError(f'{self.path}: bad zip local header for {name}')
                name_len, extra_len = fields[9], fields[10]
            self.offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
            self.offset += header_len

    def _read_header(self, handle) -> None:
        start = handle.tell()
        version = np.lib.format.read_magic(handle)
        reader = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if reader is None:
            raise ValueError(f'{self.path}: unsupported .npy version {version}')
        shape, fortran, dtype = reader(handle)
        if fortran and len(shape) > 1:
            raise ValueError(f'{self.path} ({self.name}): Fortran-ordered arrays are not supported')
        if dtype.hasobject:
            raise ValueError(f'{self.path} ({self.name}): object arrays are not supported')
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._header_len = handle.tell() - start

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of the first axis, as a new array."""
        stop = min(stop, self.shape[0])
        return self._read_bytes(start * self.row_bytes, (stop - start) * self.row_bytes).reshape(
            (stop - start, *self.shape[1:])
        )

    def read_columns(self, start: int, stop: int) -> np.ndarray:
        """Columns ``[start, stop)`` of a 2-D ``[K, M]`` array (``edge_index``: K = 2): K
        contiguous runs, read in ascending order for every K only when stored (a deflated member is
        read with :meth:`edge_chunks` instead)."""
        rows, width = self.shape
        stop = min(stop, width)
        out = np.empty((rows, stop - start), dtype=self.dtype)
        for r in range(rows):
            offset = (r * width + start) * self.dtype.itemsize
            out[r] = self._read_bytes(offset, (stop - start) * self.dtype.itemsize)
        return out

    def _read_bytes(self, offset: int, size: int) -> np.ndarray:
        self.bytes_read += size
        if not self.compressed:
            out = np.empty(size, dtype=np.uint8)
            with open(self.path, 'rb') as handle:
                handle.seek(self.offset + offset)
                got = handle.readinto(memoryview(out))
            if got != size:
                raise ValueError(f'{self.path} ({self.name}) is truncated')
            return out.view(self.dtype)
        # deflated: a sequential stream, restarted when asked to go back
        if self._stream is None or offset < self._stream_pos:
            self.close()
            self._archive = zipfile.ZipFile(self.path)
            self._stream = self._archive.open(self.info)
            self._stream.read(self._header_len)
            self._stream_pos = 0
        while self._stream_pos < offset:
            skipped = len(self._stream.read(min(offset - self._stream_pos, 1 << 26)))
            if not skipped:
                raise ValueError(f'{self.path} ({self.name}) is truncated')
            self._stream_pos += skipped
        out = np.empty(size, dtype=np.uint8)
        view, got = memoryview(out), 0
        while got < size:
            n = self._stream.readinto(view[got:])
            if not n:
                raise ValueError(f'{self.path} ({self.name}) is truncated')
            got += n
        self._stream_pos += size
        return out.view(self.dtype)

    def edge_chunks(self, chunk: int):
        """``(start, src, dst)`` for consecutive chunks of at most ``chunk`` columns of a ``[2, E]``
        array. Stored: two reads per chunk; deflated: row 0 is streamed once to find each chunk,
        row 1 by a second stream (both sequential)."""
        rows, width = self.shape
        if rows != 2:
            raise ValueError(f'{self.name} must be [2, E], got {self.shape}')
        if not self.compressed:
            for start in range(0, width, chunk):
                pair = self.read_columns(start, start + chunk)
                yield start, pair[0], pair[1]
            return
        second = NpyMember(self.path, self.name)
        try:
            for start in range(0, width, chunk):
                size = min(chunk, width - start) * self.dtype.itemsize
                src = self._read_bytes(start * self.dtype.itemsize, size)
                dst = second._read_bytes((width + start) * self.dtype.itemsize, size)
                yield start, src, dst
            self.bytes_read += second.bytes_read
        finally:
            second.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._archive.close()
            self._stream = None

    def __repr__(self) -> str:
        kind = 'deflated' if self.compressed else 'stored'
        return f'NpyMember({str(self.path)!r}, {self.name!r}, shape={self.shape}, {self.dtype}, {kind})'
