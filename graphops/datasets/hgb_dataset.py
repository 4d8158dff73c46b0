r"""The HGB heterogeneous node-classification benchmarks (ACM, DBLP, IMDB), read from their zip.

HGB (`"Are We Really Making Much Progress? Revisiting, Benchmarking, and Refining Heterogeneous
Graph Neural Networks" <https://arxiv.org/abs/2112.14936>`_, Lv et al., KDD 2021) ships each graph
as ``node.dat``, ``link.dat``, ``label.dat``, ``label.dat.test``, ``info.dat`` (and optionally
``meta.dat``) with *global* node ids. :class:`HGBDataset` reads them straight out of
``<root>/<name>.zip`` and returns a :class:`~torch_geometric.data.HeteroData` with per-type local
ids, the form PyG's heterogeneous layers and :func:`graphops.transforms.to_edge_type_stack` read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch_geometric.data import HeteroData, InMemoryDataset

from graphops.datasets.paths import cache_root

REQUIRED_FILES = ('info.dat', 'node.dat', 'link.dat', 'label.dat', 'label.dat.test')
OPTIONAL_FILES = ('meta.dat',)
# Bump when the parsed layout changes, so stale processed files are never reused.
_FORMAT_VERSION = 2  # 2: PyG's layout (relation names, no graph-level attributes)
# PyG's spelling of the HGB names (torch_geometric.datasets.HGBDataset.names).
PYG_NAMES = {'acm': 'ACM', 'dblp': 'DBLP', 'freebase': 'Freebase', 'imdb': 'IMDB'}
_LINK_DTYPE_4 = np.dtype([('h', 'i8'), ('t', 'i8'), ('r', 'i8'), ('w', 'f8')])
_LINK_DTYPE_3 = np.dtype([('h', 'i8'), ('t', 'i8'), ('r', 'i8')])


class HGBDataset(InMemoryDataset):
    r"""An HGB node-classification benchmark (`"Are We Really Making Much Progress? Revisiting,
    Benchmarking, and Refining Heterogeneous Graph Neural Networks"
    <https://arxiv.org/abs/2112.14936>`_), read straight from ``<root>/<name>.zip``.

    The zip holds ``info.dat``, ``node.dat``, ``link.dat``, ``label.dat``, ``label.dat.test`` and
    optionally ``meta.dat``, at its top level or inside one folder (``__MACOSX`` junk is
    ignored); nothing is extracted to disk. Node ids in the files are global; HGB numbers the
    nodes of each type as one contiguous block starting at offset :math:`o_t`, so a node with
    global id :math:`g` of type :math:`t` gets the local id

    .. math::
        i = g - o_t, \qquad o_t = \min\{g : \mathrm{type}(g) = t\}.

    The single graph (``dataset[0]``) is a :class:`~torch_geometric.data.HeteroData` laid out
    exactly as PyG's :class:`torch_geometric.datasets.HGBDataset` lays it out (of which this is a
    drop-in that reads the shipped zip instead of downloading):

    * one node type per entry of ``info.dat`` (e.g. ``paper``, ``author``, ``subject``, ``term``
      for ACM), in ``info.dat``'s order (HGB's type-id order, also the order of their global-id
      blocks in every HGB set, so PyG's
      ``data.node_offsets`` equals :math:`\{t: o_t\}`); ``x`` (``float32``) when ``node.dat``
      gives features for that type, else ``num_nodes`` (ACM's ``term``, DBLP's ``venue``, IMDB's
      ``keyword`` have no features, as in HGB);
    * one edge type ``(src, rel, dst)`` per link type, in ``info.dat``'s order, named as PyG
      names it: ``rel`` is the second ``-``-separated part of the link's meaning, or ``'to'``
      when that part names ``dst`` (``'paper-cite-paper'`` gives ``('paper', 'cite',
      'paper')``, ``'paper-author'`` gives ``('paper', 'to', 'author')``); ``edge_index`` in
      local ids (row 0 = source, row 1 = target, edges in file order) and ``edge_weight`` only
      when some weight in ``link.dat`` differs from 1;
    * on the labelled (target) type: ``y``, ``train_mask`` (every ``label.dat`` node) and
      ``test_mask`` (the nodes of ``label.dat.test``). ``y`` is ``long`` ``[N]`` with :obj:`-1`
      for unlabelled nodes, or, when some label line lists several comma-separated classes
      (IMDB), a multi-hot ``float`` ``[N, C]`` with all-zero rows for unlabelled nodes.

    Beyond PyG, and only when asked (keyword-only ``val_ratio``): a validation split, as HGB's
    benchmark scripts make it. The ``label.dat`` nodes are then split into ``train_mask`` and
    ``val_mask``: the validation set is the first :math:`\lfloor r \cdot n \rfloor` of them
    (``r = val_ratio``, :math:`n` = number of ``label.dat`` lines) after sorting by id and
    permuting with ``numpy.random.RandomState(seed)`` (HGB's scripts shuffle unseeded). Stacking
    the node types in order (:func:`~graphops.transforms.to_edge_type_stack`) rebuilds HGB's global
    ids exactly.

    Parsed graphs are cached (written atomically) as
    ``<processed_dir>/<name>/data_<key>.pt``, where ``key`` hashes the zip's bytes, ``val_ratio``,
    ``seed`` and ``repr(pre_transform)`` (pass ``force_reload=True`` after changing a
    pre-transform whose ``repr`` does not show its settings); the zip's folder is only read.

    Args:
        root (str): folder holding ``<name>.zip``.
        name (str): dataset name, the zip's stem (``'ACM'``, ``'DBLP'``, ``'IMDB'``); PyG's
            lower-case spelling (``'acm'``) finds the same zip.
        transform (callable, optional): applied to the graph on every access.
            (default: :obj:`None`)
        pre_transform (callable, optional): applied once before caching. (default: :obj:`None`)
        force_reload (bool, optional): re-parse the zip even when a cached copy exists.
            (default: :obj:`False`)
        processed_dir (str, optional, keyword-only): writable cache folder. (default:
            ``$GRAPHOPS_CACHE/datasets/HGB``, i.e. ``~/.cache/graphops/datasets/HGB``)
        val_ratio (float, optional, keyword-only): fraction of ``label.dat`` held out as
            ``val_mask``; ``None`` keeps PyG's layout (no ``val_mask``). HGB's scripts use
            ``0.2``. (default: :obj:`None`)
        seed (int, optional, keyword-only): seed of the train/validation split.
            (default: :obj:`0`)

    Raises:
        FileNotFoundError: ``<root>/<name>.zip`` does not exist.
        ValueError: the zip lacks a required file, or a file is malformed; the message names the
            file and line.

    Shapes:
        - **x** (per featured type :math:`t`): :math:`(N_t, F_t)`
        - **edge_index** (per edge type :math:`(s, r, d)`): :math:`(2, E_{r})`, local ids
        - **y** (target type): :math:`(N_{target})` or :math:`(N_{target}, C)` (multi-label)
        - **train_mask / val_mask / test_mask** (target type): :math:`(N_{target})`
    """

    def __init__(
        self,
        root: str,
        name: str,
        transform: Callable | None = None,
        pre_transform: Callable | None = None,
        force_reload: bool = False,
        *,
        processed_dir: str | None = None,
        val_ratio: float | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(name, str) or not name or '/' in name or '\\' in name:
            raise ValueError(f"name must be a zip file's stem such as 'ACM', got {name!r}")
        if val_ratio is not None:
            if isinstance(val_ratio, bool) or not isinstance(val_ratio, (int, float)):
                raise TypeError(f'val_ratio must be a float, got {type(val_ratio).__name__}')
            if not 0.0 <= float(val_ratio) < 1.0:
                raise ValueError(f'val_ratio must lie in [0, 1), got {val_ratio}')
            val_ratio = float(val_ratio)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f'seed must be an int, got {type(seed).__name__}')
        if not 0 <= seed < 2**32:  # numpy.random.RandomState's range
            raise ValueError(f'seed must lie in [0, 2**32), got {seed}')
        root = os.path.expanduser(os.fspath(root))
        if not os.path.isfile(os.path.join(root, f'{name}.zip')) and name.lower() in PYG_NAMES:
            name = PYG_NAMES[name.lower()]  # PyG's HGBDataset(root, 'acm') reads ACM.zip
        self.name = name
        self.val_ratio = val_ratio
        self.seed = seed
        self.zip_path = os.path.join(root, f'{name}.zip')
        if not os.path.isfile(self.zip_path):
            raise FileNotFoundError(_missing_zip_message(root, name, self.zip_path))
        if processed_dir is None:
            processed_dir = str(cache_root() / 'datasets' / 'HGB')
        self._processed_root = os.path.expanduser(os.fspath(processed_dir))
        with open(self.zip_path, 'rb') as f:
            zip_bytes = f.read()
        self._key = _cache_key(zip_bytes, self.val_ratio, seed, pre_transform)
        # Neither download() nor process() is defined, so PyG's base class touches no files.
        super().__init__(root, transform, pre_transform, log=False, force_reload=force_reload)
        self._load_or_process(zip_bytes)

    # --- PyG's dataset layout ------------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def raw_file_names(self) -> list[str]:
        return [f'{self.name}.zip']

    @property
    def processed_dir(self) -> str:
        return os.path.join(self._processed_root, self.name)

    @property
    def processed_file_names(self) -> list[str]:
        return [f'data_{self._key}.pt']

    @property
    def num_classes(self) -> int:
        """Classes of the target type's ``y`` (its width when multi-label, else max + 1)."""
        data = self._data
        stores = data.node_stores if isinstance(data, HeteroData) else [data]
        for store in stores:
            if 'y' in store:
                y = store['y']
                return int(y.size(-1)) if y.dim() > 1 else int(y.max()) + 1
        return super().num_classes

    def __repr__(self) -> str:
        return f'{self.name}()'  # PyG's repr, e.g. ACM()

    # --- loading ---------------------------------------------------------------------------------
    def _load_or_process(self, zip_bytes: bytes) -> None:
        path = self.processed_paths[0]
        if not self.force_reload and os.path.isfile(path):
            try:
                self.load(path, data_cls=HeteroData)
                return
            except Exception as err:  # a truncated or foreign file: parse again
                warnings.warn(f'ignoring unreadable cache {path} ({err}); re-parsing', stacklevel=3)
        data = _read_hgb_zip(
            io.BytesIO(zip_bytes), self.zip_path, val_ratio=self.val_ratio, seed=self.seed
        )
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        try:
            os.makedirs(self.processed_dir, exist_ok=True)
            # Write to a unique temporary name, then rename: readers never see a partial file.
            tmp = os.path.join(self.processed_dir, f'.{uuid.uuid4().hex}.tmp')
            try:
                self.save([data], tmp)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        except OSError as err:
            warnings.warn(
                f'could not cache {self.name} under {self.processed_dir} ({err}); pass a writable '
                'processed_dir to avoid re-parsing the zip each time',
                stacklevel=3,
            )
        self.data, self.slices = self.collate([data])


# --- parsing ----------------------------------------------------------------------------------


@dataclass
class _Info:
    node_types: dict[int, str]
    link_types: dict[int, tuple[int, int, str]]
    label_type: int | None
    num_classes: int | None


def _cache_key(zip_bytes: bytes, val_ratio: float, seed: int, pre_transform) -> str:
    key = hashlib.sha256()
    key.update(hashlib.sha256(zip_bytes).digest())
    key.update(repr((_FORMAT_VERSION, val_ratio, seed)).encode())
    # repr() of a transform without a custom __repr__ embeds its id(); drop the address.
    key.update(re.sub(r' at 0x[0-9a-f]+', '', repr(pre_transform)).encode())
    return key.hexdigest()[:16]


def _read_hgb_zip(
    file, zip_name: str, *, val_ratio: float | None = None, seed: int = 0
) -> HeteroData:
    """Parses an HGB zip (a path or binary file object) into a :class:`HeteroData`.

    ``zip_name`` is used in error messages only. See :class:`HGBDataset` for the layout.
    """
    files = _read_members(file, zip_name)
    info = _parse_info(_decode(files['info.dat'], 'info.dat'))
    nodes = _parse_nodes(_decode(files['node.dat'], 'node.dat'), info)
    links = _parse_links(_decode(files['link.dat'], 'link.dat'), info, nodes)
    train = _parse_labels(_decode(files['label.dat'], 'label.dat'), 'label.dat', info, nodes)
    test = _parse_labels(
        _decode(files['label.dat.test'], 'label.dat.test'), 'label.dat.test', info, nodes
    )
    if 'meta.dat' in files:
        _check_meta(_decode(files['meta.dat'], 'meta.dat'), nodes, links)
    return _assemble(info, nodes, links, train, test, val_ratio, seed)


def _missing_zip_message(root: str, name: str, path: str) -> str:
    found = sorted(p.name for p in Path(root).glob('*.zip')) if os.path.isdir(root) else []
    where = f'zips in {root}: {found}' if os.path.isdir(root) else f'{root} does not exist'
    return (
        f'HGB dataset {name!r} not found: expected the zip {path} holding '
        f'{", ".join(REQUIRED_FILES)} (and optionally meta.dat), at its top level or inside one '
        f'folder; graphops never downloads ({where})'
    )


def _error(file: str, line: int | None, message: str) -> ValueError:
    where = f'{file} line {line}' if line is not None else file
    return ValueError(f'{where}: {message}')


def _read_members(file, zip_name: str) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as err:
        raise ValueError(f'{zip_name} is not a readable zip archive ({err})') from err
    with archive:
        found: dict[str, zipfile.ZipInfo] = {}
        for member in archive.infolist():
            parts = PurePosixPath(member.filename).parts
            if member.is_dir() or not parts or parts[0] == '__MACOSX':
                continue
            base = parts[-1]
            # Only the top level or one folder down; deeper copies are somebody else's files.
            if len(parts) > 2 or base not in REQUIRED_FILES + OPTIONAL_FILES:
                continue
            if base in found:
                raise ValueError(
                    f'{zip_name} holds {base} twice ({found[base].filename} and '
                    f'{member.filename}); keep one copy'
                )
            found[base] = member
        missing = [f for f in REQUIRED_FILES if f not in found]
        if missing:
            raise ValueError(
                f'{zip_name} lacks {", ".join(missing)}; an HGB zip holds '
                f'{", ".join(REQUIRED_FILES)} (and optionally meta.dat) at its top level or inside '
                f'one folder, found {sorted(m.filename for m in found.values())}'
            )
        folders = {PurePosixPath(m.filename).parent for m in found.values()}
        if len(folders) > 1:
            raise ValueError(
                f'{zip_name} spreads its .dat files over several folders '
                f'({sorted(str(f) for f in folders)}); put them in one'
            )
        return {base: archive.read(member) for base, member in found.items()}


def _decode(raw: bytes, file: str) -> str:
    try:
        text = raw.decode('utf-8-sig')
    except UnicodeDecodeError as err:
        line = raw.count(b'\n', 0, err.start) + 1
        raise _error(file, line, f'not valid UTF-8 ({err.reason})') from err
    return text.replace('\r\n', '\n')


def _as_int(value, file: str, what: str) -> int:
    """A non-negative integer (ids index arrays, so negatives would silently wrap)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        out = int(value)
    except (TypeError, ValueError):
        raise _error(file, None, f'{what} must be an integer, got {value!r}') from None
    if out < 0:
        raise _error(file, None, f'{what} must be >= 0, got {out}')
    return out


def _parse_info(text: str) -> _Info:
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        raise _error('info.dat', err.lineno, f'not valid JSON ({err.msg})') from err
    try:
        raw_nodes = info['node.dat']['node type']
        raw_links = info['link.dat']['link type']
    except (KeyError, TypeError):
        raise _error(
            'info.dat',
            None,
            "expected JSON with 'node.dat' -> 'node type' and 'link.dat' -> 'link type' sections",
        ) from None
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise _error('info.dat', None, "'node type' must map type ids to names")
    node_types: dict[int, str] = {}
    for key, value in raw_nodes.items():
        if not isinstance(value, str) or not value:
            raise _error(
                'info.dat', None, f'node type {key} must be named by a string, got {value!r}'
            )
        node_types[_as_int(key, 'info.dat', 'a node type id')] = value
    if len(set(node_types.values())) != len(node_types):
        raise _error('info.dat', None, f'node type names repeat: {list(node_types.values())}')
    if not isinstance(raw_links, dict):
        raise _error(
            'info.dat', None, "'link type' must map link type ids to {start, end, meaning}"
        )
    link_types: dict[int, tuple[int, int, str]] = {}
    for key, value in raw_links.items():
        link = _as_int(key, 'info.dat', 'a link type id')
        if not isinstance(value, dict) or 'start' not in value or 'end' not in value:
            raise _error(
                'info.dat', None, f'link type {key} needs "start" and "end", got {value!r}'
            )
        src = _as_int(value['start'], 'info.dat', f'the start of link type {key}')
        dst = _as_int(value['end'], 'info.dat', f'the end of link type {key}')
        for end in (src, dst):
            if end not in node_types:
                raise _error('info.dat', None, f'link type {key} uses undeclared node type {end}')
        meaning = value.get('meaning')
        link_types[link] = (src, dst, str(meaning) if meaning else f'link_{link}')
    triplets = [(s, m, d) for s, d, m in link_types.values()]
    if len(set(triplets)) != len(triplets):
        raise _error('info.dat', None, 'two link types share start, end and meaning')
    label_type, num_classes = None, None
    labels = info.get('label.dat', {}).get('node type') if isinstance(info, dict) else None
    if isinstance(labels, dict) and len(labels) == 1:
        key, classes = next(iter(labels.items()))
        label_type = _as_int(key, 'info.dat', 'the labelled node type')
        if label_type not in node_types:
            raise _error('info.dat', None, f'labels are declared on unknown node type {key}')
        if isinstance(classes, dict) and classes:
            num_classes = len(classes)
    return _Info(node_types, link_types, label_type, num_classes)


@dataclass
class _Nodes:
    num_nodes: int
    node_type: np.ndarray  # [N] HGB type id of each global id
    offsets: dict[int, int]
    counts: dict[int, int]
    x: dict[int, np.ndarray | None]


def _parse_nodes(text: str, info: _Info) -> _Nodes:
    ids, types, line_nos, feats = [], [], [], []
    for line_no, line in enumerate(text.split('\n'), 1):
        if not line.strip():
            continue
        fields = line.split('\t')
        if len(fields) not in (3, 4):
            raise _error(
                'node.dat',
                line_no,
                f'expected 3 or 4 tab-separated fields (id, name, type[, features]), got '
                f'{len(fields)}',
            )
        try:
            node_id, node_type = int(fields[0]), int(fields[2])
        except ValueError:
            raise _error(
                'node.dat',
                line_no,
                f'node id and type must be integers, got {fields[0]!r} and {fields[2]!r}',
            ) from None
        if node_type not in info.node_types:
            raise _error(
                'node.dat',
                line_no,
                f'unknown node type {node_type}; info.dat declares {sorted(info.node_types)}',
            )
        ids.append(node_id)
        types.append(node_type)
        line_nos.append(line_no)
        feats.append(fields[3].strip() if len(fields) == 4 else '')
    ids_np = np.asarray(ids, dtype=np.int64)
    types_np = np.asarray(types, dtype=np.int64)
    num_nodes = ids_np.size
    bad = (ids_np < 0) | (ids_np >= num_nodes)
    if bad.any():
        i = int(bad.argmax())
        raise _error(
            'node.dat',
            line_nos[i],
            f'node id {ids_np[i]} out of range; with {num_nodes} nodes '
            f'the ids must be 0..{num_nodes - 1}, each exactly once',
        )
    seen = np.zeros(num_nodes, dtype=bool)
    seen[ids_np] = True
    if not seen.all():  # in range but not a permutation: some id repeats
        order = np.argsort(ids_np, kind='stable')
        i = int(order[1:][ids_np[order][1:] == ids_np[order][:-1]][0])
        raise _error('node.dat', line_nos[i], f'node id {ids_np[i]} appears twice')
    node_type = np.empty(num_nodes, dtype=np.int64)
    node_type[ids_np] = types_np
    line_of = np.empty(num_nodes, dtype=np.int64)
    line_of[ids_np] = line_nos

    offsets, counts, xs = {}, {}, {}
    next_offset = 0
    for t, t_name in sorted(info.node_types.items()):
        members = np.flatnonzero(types_np == t)  # positions in file order
        counts[t] = int(members.size)
        if members.size == 0:
            offsets[t], xs[t] = next_offset, None
            continue
        low, high = int(ids_np[members].min()), int(ids_np[members].max())
        if high - low + 1 != members.size:
            intruder = low + int(np.flatnonzero(node_type[low : high + 1] != t)[0])
            raise _error(
                'node.dat',
                int(line_of[intruder]),
                f'node {intruder} has type {node_type[intruder]} but lies inside the id block '
                f'{low}..{high} of type {t} ({t_name!r}); HGB numbers each node type as one '
                'contiguous block',
            )
        offsets[t], next_offset = low, high + 1
        # Rows in local-id order, whatever the file order.
        members = members[np.argsort(ids_np[members] - low, kind='stable')]
        xs[t] = _parse_type_features([feats[i] for i in members], [line_nos[i] for i in members], t)
    return _Nodes(num_nodes, node_type, offsets, counts, xs)


def _parse_type_features(strings: list[str], line_nos: list[int], t: int) -> np.ndarray | None:
    has = [bool(s) for s in strings]
    if not any(has):
        return None
    if not all(has):
        # Blame the minority: one stray line is more likely wrong than all the others.
        usual = 2 * sum(has) >= len(has)
        i, ref = has.index(not usual), has.index(usual)
        raise _error(
            'node.dat',
            line_nos[i],
            f'node type {t} mixes nodes with and without features (this line '
            f'{"has none" if usual else "has some"}, line {line_nos[ref]} '
            f'{"has some" if usual else "has none"})',
        )
    widths = np.fromiter((s.count(',') for s in strings), dtype=np.int64, count=len(strings))
    usual = int(np.bincount(widths).argmax())
    if (widths != usual).any():
        i = int(np.flatnonzero(widths != usual)[0])
        ref = int(np.flatnonzero(widths == usual)[0])
        raise _error(
            'node.dat',
            line_nos[i],
            f'{widths[i] + 1} features, but line {line_nos[ref]} and most other nodes of type {t} '
            f'have {usual + 1}',
        )
    num, width = len(strings), int(widths[0]) + 1
    joined = ','.join(strings)
    if joined.isascii():
        # Bag-of-words features are single digits ("0,1,1,..."); read the bytes directly. The
        # result is exactly what the general parser returns, only faster (ACM: 17M values).
        buf = np.frombuffer(joined.encode('ascii'), dtype=np.uint8)
        if buf.size == 2 * num * width - 1:
            digits = buf[0::2]
            if (buf[1::2] == ord(',')).all() and ((digits >= 48) & (digits <= 57)).all():
                return np.subtract(digits, 48, dtype=np.float32).reshape(num, width)
    try:
        x = np.loadtxt(strings, delimiter=',', dtype=np.float32, comments=None, ndmin=2)
    except ValueError as err:
        for s, line_no in zip(strings, line_nos):
            for value in s.split(','):
                try:
                    float(value)
                except ValueError:
                    raise _error(
                        'node.dat', line_no, f'feature {value!r} is not a number'
                    ) from None
        raise _error('node.dat', None, f'could not read the features of type {t} ({err})') from err
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise _error('node.dat', line_nos[int(finite.argmin())], 'features contain NaN or Inf')
    return x


@dataclass
class _Links:
    edges: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]  # local src, dst, weight


def _parse_links(text: str, info: _Info, nodes: _Nodes) -> _Links:
    first = text.lstrip().split('\n', 1)[0]
    if not first:
        table = np.zeros(0, dtype=_LINK_DTYPE_4)
    else:
        dtype = _LINK_DTYPE_4 if first.count('\t') >= 3 else _LINK_DTYPE_3
        try:
            table = np.loadtxt(
                io.StringIO(text), delimiter='\t', dtype=dtype, comments=None, ndmin=1
            )
        except ValueError as err:
            _diagnose_links(text, len(dtype.names))
            raise _error('link.dat', None, str(err)) from err
    line_nos = None  # computed only when a message needs one

    def fail(index: int, message: str) -> ValueError:
        nonlocal line_nos
        if line_nos is None:
            lines = text.split('\n')
            line_nos = np.flatnonzero([bool(line.strip()) for line in lines]) + 1
        return _error('link.dat', int(line_nos[index]), message)

    head, tail, rel = table['h'], table['t'], table['r']
    for ids in (head, tail):
        bad = (ids < 0) | (ids >= nodes.num_nodes)
        if bad.any():
            i = int(bad.argmax())
            raise fail(
                i, f'node id {ids[i]} does not exist (node.dat has ids 0..{nodes.num_nodes - 1})'
            )
    known = np.isin(rel, np.fromiter(info.link_types, dtype=np.int64))
    if not known.all():
        i = int(known.argmin())
        raise fail(i, f'unknown link type {rel[i]}; info.dat declares {sorted(info.link_types)}')
    starts = np.zeros(max(info.link_types) + 1, dtype=np.int64)
    ends = np.zeros_like(starts)
    for link, (src, dst, _) in info.link_types.items():
        starts[link], ends[link] = src, dst
    for ids, expected, side in ((head, starts, 'start'), (tail, ends, 'end')):
        bad = nodes.node_type[ids] != expected[rel]
        if bad.any():
            i = int(bad.argmax())
            raise fail(
                i,
                f'link type {rel[i]} must {side} at a node of type {expected[rel[i]]} '
                f'({info.node_types[int(expected[rel[i]])]!r}), but node {ids[i]} has type '
                f'{nodes.node_type[ids[i]]}',
            )
    offset_of = np.zeros(max(info.node_types) + 1, dtype=np.int64)
    for t, offset in nodes.offsets.items():
        offset_of[t] = offset
    order = np.argsort(rel, kind='stable')  # group by link type, keep file order within a type
    bounds = np.searchsorted(rel[order], np.fromiter(sorted(info.link_types), dtype=np.int64))
    bounds = np.append(bounds, order.size)
    edges = {}
    for k, link in enumerate(sorted(info.link_types)):
        part = order[bounds[k] : bounds[k + 1]]
        src, dst = head[part], tail[part]
        weight = table['w'][part] if 'w' in table.dtype.names else None
        if weight is not None and not np.isfinite(weight).all():
            raise fail(int(part[int(np.isfinite(weight).argmin())]), 'weight is NaN or Inf')
        if weight is not None and (weight == 1.0).all():
            weight = None
        edges[link] = (
            src - offset_of[nodes.node_type[src]],
            dst - offset_of[nodes.node_type[dst]],
            weight,
        )
    return _Links(edges)


def _diagnose_links(text: str, num_fields: int) -> None:
    """Raises a ValueError naming the first malformed line of ``link.dat`` (slow; errors only)."""
    for line_no, line in enumerate(text.split('\n'), 1):
        if not line.strip():
            continue
        fields = line.split('\t')
        if len(fields) != num_fields:
            raise _error(
                'link.dat',
                line_no,
                f'expected {num_fields} tab-separated fields (head, tail, type'
                f'{", weight" if num_fields == 4 else ""}) like the first line, got {len(fields)}',
            )
        for value, what in zip(fields, ('head id', 'tail id', 'link type')):
            try:
                int(value)
            except ValueError:
                raise _error('link.dat', line_no, f'{what} {value!r} is not an integer') from None
        if num_fields == 4:
            try:
                float(fields[3])
            except ValueError:
                raise _error('link.dat', line_no, f'weight {fields[3]!r} is not a number') from None


@dataclass
class _Labels:
    ids: np.ndarray  # global ids, file order
    classes: list[list[int]]
    line_nos: list[int]
    node_type: int | None
    multi_label: bool
    file: str


def _parse_labels(text: str, file: str, info: _Info, nodes: _Nodes) -> _Labels:
    ids, classes, line_nos = [], [], []
    label_type, multi = info.label_type, False
    for line_no, line in enumerate(text.split('\n'), 1):
        if not line.strip():
            continue
        fields = line.split('\t')
        if len(fields) != 4:
            raise _error(
                file,
                line_no,
                f'expected 4 tab-separated fields (id, name, type, labels), got {len(fields)}',
            )
        try:
            node_id, node_type = int(fields[0]), int(fields[2])
            labels = [int(v) for v in fields[3].split(',')] if fields[3].strip() else []
        except ValueError:
            raise _error(
                file, line_no, f'id, type and comma-separated labels must be integers, got {line!r}'
            ) from None
        if node_type not in info.node_types:
            raise _error(
                file,
                line_no,
                f'unknown node type {node_type}; info.dat declares {sorted(info.node_types)}',
            )
        if not 0 <= node_id < nodes.num_nodes:
            raise _error(file, line_no, f'node id {node_id} does not exist in node.dat')
        actual = int(nodes.node_type[node_id])
        if actual != node_type:
            raise _error(
                file,
                line_no,
                f'node {node_id} has type {actual} ({info.node_types[actual]!r}) in '
                f'node.dat, not {node_type}',
            )
        if label_type is None:
            label_type = node_type
        elif node_type != label_type:
            raise _error(
                file,
                line_no,
                f'node {node_id} is of type {node_type} '
                f'({info.node_types[node_type]!r}), but labels belong to type {label_type} '
                f'({info.node_types[label_type]!r})',
            )
        for c in labels:
            if c < 0 or (info.num_classes is not None and c >= info.num_classes):
                bound = f'[0, {info.num_classes})' if info.num_classes is not None else '>= 0'
                raise _error(file, line_no, f'class {c} out of range; info.dat classes are {bound}')
        multi = multi or len(labels) > 1
        ids.append(node_id)
        classes.append(labels)
        line_nos.append(line_no)
    ids_np = np.asarray(ids, dtype=np.int64)
    _, first, counts = np.unique(ids_np, return_index=True, return_counts=True)
    if (counts > 1).any():
        node = int(ids_np[first[int((counts > 1).argmax())]])
        repeat = [n for n, i in zip(line_nos, ids) if i == node][1]
        raise _error(file, repeat, f'node {node} is labelled twice')
    return _Labels(ids_np, classes, line_nos, label_type, multi, file)


def _check_meta(text: str, nodes: _Nodes, links: _Links) -> None:
    """Warns where ``meta.dat``'s stated counts differ (lines it does not recognise are skipped)."""
    pattern = re.compile(r'^\s*(Node|Edge)\s+(Total|Type_(\d+))\s*:?\s*Count\s*:?\s*(\d+)', re.I)
    for line_no, line in enumerate(text.split('\n'), 1):
        match = pattern.match(line)
        if match is None:
            continue
        kind, which, type_id, stated = (
            match.group(1).lower(),
            match.group(2),
            match.group(3),
            int(match.group(4)),
        )
        if kind == 'node':
            actual = nodes.num_nodes if which.lower() == 'total' else nodes.counts.get(int(type_id))
        else:
            sizes = {link: e[0].size for link, e in links.edges.items()}
            actual = sum(sizes.values()) if which.lower() == 'total' else sizes.get(int(type_id))
        if actual is not None and actual != stated:
            # meta.dat only describes the data; the .dat files win, but say so.
            warnings.warn(
                f'meta.dat line {line_no}: states {stated} for {kind} {which} but the .dat files '
                f'hold {actual}; using the .dat files',
                stacklevel=4,
            )


def _assemble(
    info: _Info, nodes: _Nodes, links: _Links, train: _Labels, test: _Labels, val_ratio, seed
) -> HeteroData:
    data = HeteroData()
    # PyG's order: node and link types as info.dat lists them (HGB's type-id order, which in
    # every HGB set is also the order of the global-id blocks).
    node_order = list(info.node_types)
    for t in node_order:
        t_name = info.node_types[t]
        if nodes.x[t] is not None:
            data[t_name].x = torch.from_numpy(nodes.x[t])
        else:  # as PyG: num_nodes only where no x tells it
            data[t_name].num_nodes = nodes.counts[t]
    seen: dict[tuple[str, str, str], int] = {}
    for link, (src_t, dst_t, meaning) in info.link_types.items():
        src, dst, weight = links.edges[link]
        dst_name = info.node_types[dst_t]
        key = (info.node_types[src_t], _pyg_relation(meaning, dst_name), dst_name)
        if key in seen:
            raise _error(
                'info.dat',
                None,
                f"link types {seen[key]} and {link} both become edge type {key} under PyG's "
                'naming; give them meanings whose second part differs',
            )
        seen[key] = link
        data[key].edge_index = torch.from_numpy(np.stack([src, dst])).long()
        if weight is not None:
            data[key].edge_weight = torch.from_numpy(weight).float()

    target = train.node_type if train.node_type is not None else test.node_type
    if target is None:
        raise _error('label.dat', None, 'no labelled node in label.dat or label.dat.test')
    if test.node_type is not None and test.node_type != target:
        raise _error(
            'label.dat.test',
            test.line_nos[0],
            f'labels type {test.node_type} but label.dat labels type {target}',
        )
    overlap = np.intersect1d(train.ids, test.ids)
    if overlap.size:
        line = test.line_nos[int(np.flatnonzero(test.ids == overlap[0])[0])]
        raise _error('label.dat.test', line, f'node {overlap[0]} is also labelled in label.dat')
    num_classes = info.num_classes
    if num_classes is None:
        num_classes = 1 + max((max(c) for c in train.classes + test.classes if c), default=-1)
    multi = train.multi_label or test.multi_label
    offset, n = nodes.offsets[target], nodes.counts[target]

    y = torch.zeros(n, num_classes) if multi else torch.full((n,), -1, dtype=torch.long)
    for labels in (train, test):
        local = labels.ids - offset
        if multi:
            rows = np.repeat(local, [len(c) for c in labels.classes])
            cols = np.fromiter((v for c in labels.classes for v in c), dtype=np.int64)
            y[torch.from_numpy(rows), torch.from_numpy(cols)] = 1.0
        else:
            for line_no, c in zip(labels.line_nos, labels.classes):
                if len(c) != 1:
                    raise _error(labels.file, line_no, f'expected exactly one class, got {c}')
            y[torch.from_numpy(local)] = torch.tensor(
                [c[0] for c in labels.classes], dtype=torch.long
            )

    labelled = np.sort(train.ids - offset)
    if val_ratio is None:  # PyG's layout: every label.dat node trains
        split = [('train_mask', labelled)]
    else:  # HGB's split: sort label.dat ids, shuffle, the first floor(val_ratio * n) validate
        perm = np.random.RandomState(seed).permutation(labelled.size)
        num_val = int(labelled.size * val_ratio)
        split = [('train_mask', labelled[perm[num_val:]]), ('val_mask', labelled[perm[:num_val]])]
    masks = {}
    for key, index in (*split, ('test_mask', test.ids - offset)):
        masks[key] = torch.zeros(n, dtype=torch.bool)
        masks[key][torch.from_numpy(index)] = True
    t_name = info.node_types[target]
    data[t_name].y = y
    for key, mask in masks.items():
        data[t_name][key] = mask

    return data


def _pyg_relation(meaning: str, dst: str) -> str:
    """PyG's relation name for an HGB link meaning: its second ``-``-separated part, or ``'to'``
    when that part names the target type (``'paper-author'`` -> ``'to'``)."""
    parts = meaning.split('-')
    rel = parts[1] if len(parts) > 1 else meaning
    return rel if rel != dst and rel[1:] != dst else 'to'
