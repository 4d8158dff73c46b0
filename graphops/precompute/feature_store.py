r"""``FeatureStore``: precomputed SIGN features on disk, one memory-mapped array per key.

Layout of a store folder::

    manifest.json     what the store holds and how far the run got (rewritten atomically)
    rows.npy          the kept node ids, when only some rows were kept
    x.npy, x1.npy...  one ``[num_rows, F]`` .npy array per (operator, stream, hop) key

The manifest records, for every array, its shape, dtype and file; the *identity* of the run
(graph fingerprint from :meth:`graphops.ops.CSR.fingerprint`, a SHA-256 of the features and of the
kept rows, the operators' parameters, storage dtype, column slices, and the device type and
compute dtype the products ran on); which
``(group, column slice)`` units are done, each with the SHA-256 of the bytes it wrote into each
array; and, once every unit is done, the SHA-256 of every array file.

Until the store is complete, each unit's columns of each key sit in their own file
(``.<key>.s<slice>.npy``, ``[num_rows, w]``, contiguous); :meth:`FeatureStore.finalize` copies
them into the row-major arrays a block of rows at a time and deletes them. So every byte is
written twice, whatever the number of slices: writing a column slice straight into a row-major
array dirtied every page of it, and each of the ``S`` slices wrote the whole file again.

Crash safety: every file is written through a temporary file, ``fsync`` and ``os.replace``, so a
unit's slice files are on disk *before* the manifest records it as done; a run killed at any point
resumes by redoing only the units the manifest does not list (a killed ``finalize`` copies again
from the slice files), and (the computation being deterministic) ends with byte-identical
files.

Opening a store checks every recorded checksum (a flipped byte raises
:class:`FeatureStoreCorruptError`); a writer that finds a store made from another graph, other
features or other parameters, or on another device type or compute dtype, raises
:class:`FeatureStoreMismatchError` naming what differs (the last bits of a product depend on the
device's kernels, so slices from two devices are never mixed in one store).

Reading::

    store = FeatureStore('papers_sign')        # verifies checksums
    store.keys()                               # ['x', 'x1', 'x2', 'x3', 'ppr1', ...]
    xs = [store[key] for key in store.keys()]  # torch tensors backed by the files (no copy)
    store.rows                                 # node ids of the rows, or None for all nodes
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

FORMAT = 'graphops.FeatureStore'
VERSION = 1
MANIFEST = 'manifest.json'
ROWS_FILE = 'rows.npy'
_HASH_BLOCK = 1 << 26  # bytes read at a time when hashing a file

# numpy has no bfloat16: those arrays hold the raw 16-bit patterns and are viewed back by torch.
_STORAGE = {
    torch.float64: ('float64', np.float64),
    torch.float32: ('float32', np.float32),
    torch.float16: ('float16', np.float16),
    torch.bfloat16: ('bfloat16', np.uint16),
}
_TORCH_DTYPE = {name: dtype for dtype, (name, _) in _STORAGE.items()}


# what to do when an identity field that is a property of the run, not of its inputs, differs
_RESUME_HINTS = {
    'device': (
        ' (a store is finished on the device type it was started on: their kernels round '
        'differently, so mixing slices would break the byte-identical resume; pass that device)'
    ),
    'compute_dtype': (
        ' (float64 features are propagated in float64, every other type in float32; resume with '
        'features of the same kind)'
    ),
}


class FeatureStoreError(ValueError):
    """A store that cannot be used as asked."""


class FeatureStoreCorruptError(FeatureStoreError):
    """A store whose bytes no longer match its recorded checksums (or whose files are missing)."""


class FeatureStoreMismatchError(FeatureStoreError):
    """A store made from another graph, other features or other parameters."""


def storage_name(dtype: torch.dtype) -> str:
    if dtype not in _STORAGE:
        raise TypeError(
            f'storage_dtype must be one of {[str(d) for d in _STORAGE]}, got {dtype}; '
            'float16/bfloat16 halve the disk size, float32 is exact'
        )
    return _STORAGE[dtype][0]


def to_storage(block: Tensor, dtype: torch.dtype) -> np.ndarray:
    """A float tensor as the numpy array stored for ``dtype`` (bfloat16: raw uint16 bits)."""
    converted = block.detach().to('cpu', dtype)
    if dtype == torch.bfloat16:
        return converted.view(torch.int16).numpy().view(np.uint16)
    return converted.numpy()


def sha256_bytes(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while chunk := handle.read(_HASH_BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def npy_data_offset(handle) -> tuple[tuple[int, ...], np.dtype]:
    """Reads an ``.npy`` header from ``handle`` (left at the first data byte): ``(shape, dtype)``."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(shape), np.dtype(dtype)


def save_npy_atomic(path: Path, array: np.ndarray) -> str:
    """``np.save`` to a temporary name, fsync, rename; returns the SHA-256 of the data bytes."""
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    with open(tmp, 'wb') as handle:
        np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a reader sees the old file or the new, never half."""
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    with open(tmp, 'wb') as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _unit(group: int, slice_index: int) -> str:
    return f'{group}/{slice_index}'


class FeatureStore:
    r"""Opens a precomputed feature store (see the module docstring for the layout).

    Args:
        path (str or PathLike): the store folder.
        verify (bool): check every recorded checksum on open. (default: ``True``)

    Raises:
        FeatureStoreError: no store at ``path``.
        FeatureStoreCorruptError: a file is missing or its bytes do not match the manifest.

    Shapes:
        ``store[key]``: :math:`(R, F)` with :math:`R` the kept rows (``len(store.rows)``, or all
        nodes when ``store.rows`` is ``None``).
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise FeatureStoreError(
                f'no FeatureStore at {self.path} (no {MANIFEST}); create one with '
                'graphops.precompute.precompute(...)'
            )
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise FeatureStoreCorruptError(f'{manifest_path} is not valid JSON: {err}') from err
        if self.manifest.get('format') != FORMAT:
            raise FeatureStoreError(f'{manifest_path} is not a {FORMAT} manifest')
        if self.manifest.get('version') != VERSION:
            raise FeatureStoreError(
                f'{manifest_path} has format version {self.manifest.get("version")}, this '
                f'graphops reads version {VERSION}; recompute the store'
            )
        if verify:
            self.verify()

    # --- creation (the engine's side) -----------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        identity: dict,
        groups: list[dict],
        num_rows: int,
        num_features: int,
        storage_dtype: torch.dtype,
        slices: list[tuple[int, int]],
        rows: Tensor | None = None,
        overwrite: bool = False,
    ) -> FeatureStore:
        """Creates a store, or reopens one with the same ``identity`` to resume it.

        Args:
            identity (dict): JSON-serialisable facts that must match to resume (fingerprints,
                parameters...).
            groups (list of dict): ``{'name', 'params', 'keys'}`` per group (an operator, or the
                input features); a group's keys are written together, one column slice at a time.
            num_rows (int): rows of every array.
            num_features (int): columns of every array.
            storage_dtype (torch.dtype): float64, float32, float16 or bfloat16.
            slices (list of (int, int)): the column slices ``[start, end)``.
            rows (Tensor, optional): the kept node ids, saved as ``rows.npy``.
            overwrite (bool): replace a mismatched store instead of raising.
        """
        path = Path(path)
        manifest = {
            'format': FORMAT,
            'version': VERSION,
            'identity': identity,
            'storage_dtype': storage_name(storage_dtype),
            'num_rows': int(num_rows),
            'num_features': int(num_features),
            'slices': [[int(a), int(b)] for a, b in slices],
            'groups': groups,
            'keys': [key for group in groups for key in group['keys']],
            'arrays': {},
            'done': {},
            'checksums': {},
            'complete': False,
        }
        if len(set(manifest['keys'])) != len(manifest['keys']):
            raise ValueError(f'keys must be unique across groups, got {manifest["keys"]}')
        for index, group in enumerate(groups):
            for key in group['keys']:
                manifest['arrays'][key] = {'file': f'{key}.npy', 'group': index}
        if (path / MANIFEST).is_file():
            existing = cls(path, verify=False)
            differences = existing._differences(manifest)
            if not differences:
                existing.verify()
                existing._create_missing_arrays()
                return existing
            if not overwrite:
                raise FeatureStoreMismatchError(
                    f'the FeatureStore at {path} was made with other inputs ('
                    + '; '.join(differences)
                    + '); pass overwrite=True to replace it, or another store_path'
                )
            shutil.rmtree(path)
        elif path.exists() and any(path.iterdir()) and not overwrite:
            raise FeatureStoreError(
                f'{path} exists, is not empty and holds no FeatureStore; pick an empty or new '
                'folder, or pass overwrite=True to replace it'
            )
        elif path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        if rows is not None:
            rows_np = rows.detach().cpu().numpy().astype(np.int64)
            tmp = path / f'.{ROWS_FILE}.tmp{os.getpid()}'
            with open(tmp, 'wb') as handle:
                np.save(handle, rows_np)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path / ROWS_FILE)
            manifest['rows_sha256'] = sha256_file(path / ROWS_FILE)
        atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1).encode())
        store = cls(path, verify=False)
        store._create_missing_arrays()
        return store

    def _differences(self, wanted: dict) -> list[str]:
        out = []
        for field in ('identity', 'storage_dtype', 'num_rows', 'num_features', 'slices', 'keys'):
            if field == 'identity':
                mine, theirs = self.manifest.get('identity', {}), wanted['identity']
                for name in sorted(set(mine) | set(theirs)):
                    if mine.get(name) != theirs.get(name):
                        out.append(
                            f'{name}: stored {mine.get(name)!r}, now {theirs.get(name)!r}'
                            + _RESUME_HINTS.get(name, '')
                        )
            elif self.manifest.get(field) != wanted[field]:
                out.append(f'{field}: stored {self.manifest.get(field)!r}, now {wanted[field]!r}')
        return out

    def _create_missing_arrays(self) -> None:
        shape = (self.num_rows, self.manifest['num_features'])
        numpy_dtype = _STORAGE[self.storage_dtype][1]
        for key in self.keys():
            target = self.path / self.manifest['arrays'][key]['file']
            if target.exists():  # (filled by finalize: the done units live in slice files)
                continue
            tmp = target.with_name(f'.{target.name}.tmp{os.getpid()}')
            array = np.lib.format.open_memmap(tmp, mode='w+', dtype=numpy_dtype, shape=shape)
            array.flush()
            del array
            os.replace(tmp, target)
        _fsync_dir(self.path)

    # --- the engine's write path ----------------------------------------------------------------
    def pending(self, group: int) -> list[int]:
        """Column slices of ``group`` not recorded as done."""
        done = self.manifest['done']
        return [s for s in range(len(self.slices)) if _unit(group, s) not in done]

    def write(self, group: int, slice_index: int, blocks: dict[str, np.ndarray]) -> None:
        """Writes one column slice of every key of ``group`` (each to its slice file, with
        ``fsync``), then records it done.

        Args:
            blocks: ``{key: [num_rows, end - start] array in the storage dtype}``.
        """
        start, end = self.slices[slice_index]
        keys = self.manifest['groups'][group]['keys']
        if set(blocks) != set(keys):
            raise ValueError(f'group {group} writes keys {keys}, got {sorted(blocks)}')
        dtype = np.dtype(_STORAGE[self.storage_dtype][1])
        digests = {}
        for key in keys:
            block = blocks[key]
            if block.shape != (self.num_rows, end - start) or block.dtype != dtype:
                raise ValueError(
                    f'block for {key!r} must be [{self.num_rows}, {end - start}] {dtype}, '
                    f'got {list(block.shape)} {block.dtype}'
                )
            digests[key] = save_npy_atomic(self._slice_file(key, slice_index), block)
        _fsync_dir(self.path)
        self.manifest['done'][_unit(group, slice_index)] = digests
        self._save_manifest()

    def finalize(self) -> None:
        """Once every unit is done: copies the slice files into each key's row-major array a
        block of rows at a time (each page written once), records the SHA-256 of every array
        file, and deletes the slice files."""
        missing = [(g, s) for g in range(len(self.manifest['groups'])) for s in self.pending(g)]
        if missing:
            raise FeatureStoreError(f'cannot finalize: {len(missing)} column slices not done')
        itemsize = np.dtype(_STORAGE[self.storage_dtype][1]).itemsize
        rows = max(1, _HASH_BLOCK // max(1, self.num_features * itemsize))
        for key in self.keys():
            parts = [self._slice(key, s) for s in range(len(self.slices))]
            # plain writes after the header, not a writable map: its pages would count as this
            # process's resident memory (the out-of-core path's budget)
            with open(self.path / self.manifest['arrays'][key]['file'], 'r+b') as handle:
                npy_data_offset(handle)
                for r0 in range(0, self.num_rows, rows):
                    r1 = min(self.num_rows, r0 + rows)
                    handle.write(np.concatenate([part[r0:r1] for part in parts], axis=1).data)
                handle.flush()
                os.fsync(handle.fileno())
            del parts
        self.manifest['checksums'] = {
            key: sha256_file(self.path / self.manifest['arrays'][key]['file'])
            for key in self.keys()
        }
        self.manifest['complete'] = True
        self._save_manifest()
        for key in self.keys():
            for s in range(len(self.slices)):
                self._slice_file(key, s).unlink(missing_ok=True)

    def _slice_file(self, key: str, slice_index: int) -> Path:
        return self.path / f'.{key}.s{slice_index}.npy'

    def _slice(self, key: str, slice_index: int) -> np.ndarray:
        file = self._slice_file(key, slice_index)
        if not file.is_file():
            raise FeatureStoreCorruptError(
                f'{file} is missing but the manifest lists it done; recompute with overwrite=True'
            )
        return np.load(file, mmap_mode='r')

    def _save_manifest(self) -> None:
        atomic_write_bytes(self.path / MANIFEST, json.dumps(self.manifest, indent=1).encode())

    # --- reading --------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """The stored keys in order (input features first when stored, then operator by
        operator, stream by stream, hop by hop)."""
        return list(self.manifest['keys'])

    @property
    def complete(self) -> bool:
        return bool(self.manifest['complete'])

    @property
    def num_rows(self) -> int:
        return int(self.manifest['num_rows'])

    @property
    def num_features(self) -> int:
        return int(self.manifest['num_features'])

    @property
    def storage_dtype(self) -> torch.dtype:
        return _TORCH_DTYPE[self.manifest['storage_dtype']]

    @property
    def slices(self) -> list[tuple[int, int]]:
        return [tuple(s) for s in self.manifest['slices']]

    @property
    def identity(self) -> dict:
        return dict(self.manifest['identity'])

    @property
    def groups(self) -> list[dict]:
        """``{'name', 'params', 'keys'}`` of every group (the operators and the input)."""
        return [dict(g) for g in self.manifest['groups']]

    @property
    def rows(self) -> Tensor | None:
        """The node id of every stored row, or ``None`` when all nodes are stored in order."""
        file = self.path / ROWS_FILE
        if 'rows_sha256' not in self.manifest:
            return None
        return torch.from_numpy(np.load(file))

    def array(self, key: str) -> np.ndarray:
        """The raw read-only memory map of ``key`` (bfloat16 arrays hold uint16 bit patterns)."""
        if key not in self.manifest['arrays']:
            raise KeyError(f'{key!r} is not in this store; keys: {self.keys()}')
        file = self.path / self.manifest['arrays'][key]['file']
        return np.load(file, mmap_mode='r')

    def __getitem__(self, key: str) -> Tensor:
        """``key`` as a ``[R, F]`` tensor backed by the file (copy-on-write, nothing is read
        until used)."""
        if not self.complete:
            raise FeatureStoreError(
                f'the store at {self.path} is incomplete; finish it with precompute(...) first'
            )
        if key not in self.manifest['arrays']:
            raise KeyError(f'{key!r} is not in this store; keys: {self.keys()}')
        file = self.path / self.manifest['arrays'][key]['file']
        tensor = torch.from_numpy(np.load(file, mmap_mode='c'))
        if self.storage_dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16).view(torch.bfloat16)
        return tensor

    def __contains__(self, key: str) -> bool:
        return key in self.manifest['arrays']

    def __len__(self) -> int:
        return len(self.manifest['keys'])

    def load(self, keys: list[str] | None = None) -> dict[str, Tensor]:
        """``{key: tensor}`` for ``keys`` (default: all), in order."""
        return {key: self[key] for key in (keys or self.keys())}

    # --- checks ---------------------------------------------------------------------------------
    def verify(self) -> None:
        """Checks every recorded checksum: whole files once the store is complete, else the
        slice file of every done unit.

        Raises:
            FeatureStoreCorruptError: naming the first file or slice whose bytes differ.
        """
        if 'rows_sha256' in self.manifest:
            self._check_file(self.path / ROWS_FILE, self.manifest['rows_sha256'])
        if self.manifest['complete']:
            for key in self.keys():
                file = self.path / self.manifest['arrays'][key]['file']
                self._check_file(file, self.manifest['checksums'][key])
            return
        for unit, digests in self.manifest['done'].items():
            slice_index = int(unit.split('/')[1])
            start, end = self.slices[slice_index]
            for key, expected in digests.items():
                if sha256_bytes(self._slice(key, slice_index)) != expected:
                    raise FeatureStoreCorruptError(
                        f'{self._slice_file(key, slice_index)}: columns [{start}, {end}) of '
                        f'{key!r} do not match their recorded SHA-256; the file was modified or '
                        'damaged. Recompute with overwrite=True'
                    )

    @staticmethod
    def _check_file(file: Path, expected: str) -> None:
        if not file.is_file():
            raise FeatureStoreCorruptError(f'{file} is missing')
        if sha256_file(file) != expected:
            raise FeatureStoreCorruptError(
                f'{file} does not match its recorded SHA-256; the file was modified or damaged. '
                'Recompute the store (precompute(..., overwrite=True))'
            )

    def __repr__(self) -> str:
        state = 'complete' if self.complete else 'incomplete'
        return (
            f"FeatureStore('{self.path}', keys={self.keys()}, rows={self.num_rows}, "
            f'features={self.num_features}, dtype={self.manifest["storage_dtype"]}, {state})'
        )
