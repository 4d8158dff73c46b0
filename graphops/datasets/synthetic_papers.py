r"""A deterministic graph generator shaped like ogbn-papers100M, written in ogb's own on-disk layout."""

from __future__ import annotations

import functools
import gzip
import math
import os
import shutil
import statistics
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphops.ops.validate import check_num_nodes

# Independent random streams: one per stage, and one per fixed-size block inside a stage, so the
# output never depends on how many threads ran or in which order blocks finished.
_STREAM_STRUCTURE, _STREAM_EDGES, _STREAM_FEATURES, _STREAM_REPAIR = range(4)

# Publication time. Node i gets the continuous time tau_i = F^{-1}((i + 1/2) / N) of an output
# growing like exp(_GROWTH * year) (science doubles about every 14 years), so years increase with i.
_FIRST_YEAR = 1900.0
_END_YEAR = 2020.45  # the last year is partial, as in the real crawl
_GROWTH = 0.05
# Labelled papers are the arXiv ones: none before 1991, and arXiv's share of all papers grows too.
# With these rates the time split lands near papers100M's 78 / 8 / 14 % train / valid / test.
_ARXIV_START = 1991.0
_ARXIV_GROWTH = 0.05

# Citations. A paper cites an older paper of its own class with probability `homophily`, else an
# older paper of any class; then, with probability _REDIRECT, it cites instead one of the papers
# *that* paper cites (the copying model of Kleinberg et al. / Krapivsky & Redner). Copying makes
# in-degrees heavy-tailed: P(in-degree = k) ~ k^-(1 + 1/_REDIRECT) = k^-3, the exponent measured on
# real citation graphs.
_REDIRECT = 0.5
# Reference counts are negative-binomial with this shape (coefficient of variation ~0.75).
_OUT_DEGREE_SHAPE = 2.0
_CLASS_SKEW = 0.9  # class prior pi_c ~ (c + 1)^-0.9: a few large fields, a long tail of small ones
_MIN_CHUNK = 256
_MAX_CHUNK = 1 << 18  # nodes per edge chunk (about 3.8M edges): bounds the temporaries
_CHUNK_GROWTH = 16  # a chunk is at most 1/16 of the nodes before it (see _edge_chunks)
_REPAIR_ROUNDS = 8
_FEATURE_BLOCK = 1 << 14  # rows per feature block (one random stream each): small temporaries

_INT32_MAX = 2**31 - 1


class SyntheticPapers:
    r"""A synthetic citation graph with the shape of `ogbn-papers100M
    <https://ogb.stanford.edu/docs/nodeprop/#ogbn-papers100M>`_, generated in memory from a seed and
    writable in the exact on-disk layout :class:`ogb.nodeproppred.NodePropPredDataset` reads.

    Node :math:`i` is a paper published at time :math:`\tau_i`, increasing with :math:`i`
    (``node_year`` is :math:`\lfloor\tau_i\rfloor`). Each node has a latent class
    :math:`c_i \sim \pi`, :math:`\pi_c \propto (c + 1)^{-0.9}`, and cites
    :math:`d_i \sim \mathrm{NegBin}` older papers (mean ``avg_out_degree``, at most :math:`i`, no
    duplicates). Each citation of :math:`i` picks a uniformly random older paper :math:`k` of class
    :math:`c_i` with probability ``homophily`` (of any class otherwise), then, with probability
    :math:`1/2`, cites one of the papers :math:`k` cites instead of :math:`k` itself. That copying
    step gives the heavy-tailed in-degree of real citation graphs,

    .. math::
        P(\deg^{in} = k) \propto k^{-3},

    with old, popular papers collecting thousands of citations. Features carry the class only
    weakly per node and strongly through the graph:

    .. math::
        \mathbf{x}_i = s\,\boldsymbol{\mu}_{c_i} + \boldsymbol{\varepsilon}_i, \qquad
        \boldsymbol{\mu}_c \sim \mathcal{N}(0, I / F), \quad
        \boldsymbol{\varepsilon}_i \sim \mathcal{N}(0, I),

    with :math:`s` = ``feature_signal``. One node's noise blurs its class centroid (even knowing
    every centroid, about 69% of nodes are classified right at :math:`s = 3`), but averaging over
    its (mostly same-class) citations cancels the noise, so graph diffusion (SGC, SIGN) beats an
    MLP on :math:`\mathbf{x}` by a wide margin, as on the real data.

    About ``label_fraction`` of the nodes are labelled: the "arXiv papers", drawn from 1991 on with
    a weight growing over time. A label is the latent class :math:`c_i`, except for a
    ``label_noise`` share redrawn from :math:`\pi` (ambiguous, cross-listed categories): no model
    exceeds about :math:`1 - ` ``label_noise``, so with the defaults an MLP on :math:`\mathbf{x}`
    is capped near 49% and diffusion near 70%, close to papers100M's 47% (MLP) and 65% (SIGN).
    The split is OGB's time split: ``train`` = labelled papers published
    up to 2017, ``valid`` = those of 2018 (:attr:`VALID_YEAR`), ``test`` = those of 2019 and later
    (about 78 / 8 / 14 %, as papers100M's 1,207,179 / 125,265 / 214,338).

    Edges point back in time, as in ogbn-papers100M: ``edge_index[0]`` is the citing (newer) paper
    and ``edge_index[1]`` the cited (older) one, so ``node_year[edge_index[0]] >=
    node_year[edge_index[1]]`` and ``edge_index[0] > edge_index[1]``. Edges are sorted by
    ``(source, target)``. Like ogb's loaders this class does not add reverse edges: symmetrise
    before diffusion (e.g. :func:`graphops.ops.orient` with ``'symmetric'``).

    Everything is a function of the arguments: the same arguments give byte-identical arrays,
    whatever the number of threads. Generation is vectorised numpy in chunks: 10M nodes (145M
    edges) take about 35 s of CPU time and peak under 8 GB of memory, of which the outputs
    themselves (``x`` and ``edge_index``) are 7.4 GB and the imports of torch and PyG 0.5 GB.

    Args:
        num_nodes (int): number of papers, at least 2.
        num_features (int, optional): feature dimension :math:`F`. (default: :obj:`128`)
        num_classes (int, optional): number of classes, at least 2. (default: :obj:`172`)
        avg_out_degree (float, optional): mean number of references per paper, > 0; papers100M
            has 1.6B edges on 111M nodes. (default: :obj:`14.5`)
        label_fraction (float, optional): fraction of labelled nodes, in :math:`(0, 1]`; at least
            one node is labelled. (default: :obj:`0.014`)
        homophily (float, optional): probability, in :math:`[0, 1]`, that a citation is drawn
            inside the citing paper's class before the copying step. (default: :obj:`0.85`)
        feature_signal (float, optional): norm :math:`s \ge 0` of the class centroids against
            unit per-dimension noise. (default: :obj:`3.0`)
        label_noise (float, optional): share of labels, in :math:`[0, 1]`, redrawn from the class
            prior instead of the latent class. (default: :obj:`0.3`)
        seed (int, optional): non-negative seed. (default: :obj:`0`)
        num_threads (int, optional): threads for feature generation; the result does not depend
            on it. (default: :obj:`None`, up to 2)

    Shapes:
        - **x**: :math:`(N, F)`, ``float32``
        - **edge_index**: :math:`(2, E)`, ``int64``, :math:`E \approx N \cdot` ``avg_out_degree``
        - **y**: :math:`(N,)`, ``int64``, the label of labelled nodes and :obj:`-1` elsewhere
          (ogb's own loaders give ``float`` :math:`(N, 1)` with ``NaN`` instead)
        - **community**: :math:`(N,)`, ``int64``, the latent class of every node
        - **node_year**: :math:`(N, 1)`, ``int64``
        - **get_idx_split()**: ``{'train', 'valid', 'test'}`` of ``int64`` node indices
    """

    OGB_NAME = 'ogbn-papers100M'
    OGB_DIR = 'ogbn_papers100M'
    OGB_VERSION = 1  # ogb's master.csv version: ogb re-downloads unless RELEASE_v1.txt exists
    VALID_YEAR = 2018

    def __init__(
        self,
        num_nodes: int,
        num_features: int = 128,
        num_classes: int = 172,
        avg_out_degree: float = 14.5,
        label_fraction: float = 0.014,
        homophily: float = 0.85,
        feature_signal: float = 3.0,
        label_noise: float = 0.3,
        seed: int = 0,
        num_threads: int | None = None,
    ):
        self.num_nodes = _check_int(num_nodes, 'num_nodes', 2)
        self.num_features = _check_int(num_features, 'num_features', 1)
        self.num_classes = _check_int(num_classes, 'num_classes', 2)
        self.avg_out_degree = _check_real(avg_out_degree, 'avg_out_degree', 0.0, math.inf, '> 0')
        self.label_fraction = _check_real(label_fraction, 'label_fraction', 0.0, 1.0, 'in (0, 1]')
        self.homophily = _check_real(homophily, 'homophily', 0.0, 1.0, 'in [0, 1]', closed=True)
        self.feature_signal = _check_real(
            feature_signal, 'feature_signal', 0.0, math.inf, '>= 0', closed=True
        )
        self.label_noise = _check_real(
            label_noise, 'label_noise', 0.0, 1.0, 'in [0, 1]', closed=True
        )
        self.seed = _check_int(seed, 'seed', 0)
        if num_threads is not None:
            _check_int(num_threads, 'num_threads', 1)
        self.num_threads = num_threads or min(2, os.cpu_count() or 1)
        if self.num_nodes > _INT32_MAX:
            raise ValueError(f'num_nodes must be at most {_INT32_MAX}, got {self.num_nodes}')

        self._generate()

    # --- public API ---------------------------------------------------------------------------
    @property
    def num_edges(self) -> int:
        return int(self._edge_index.shape[1])

    @property
    def x(self) -> Tensor:
        """``[N, F]`` float32 node features (shares memory with the generator)."""
        if self._x is None:  # generated on first use: write_ogb streams it instead
            self._x = self._generate_features()
        return torch.from_numpy(self._x)

    @property
    def edge_index(self) -> Tensor:
        """``[2, E]`` int64 citations, row 0 = citing (newer), row 1 = cited (older)."""
        return torch.from_numpy(self._edge_index)

    @property
    def node_year(self) -> Tensor:
        """``[N, 1]`` int64 publication year, non-decreasing in the node index."""
        return torch.from_numpy(self._year.astype(np.int64)[:, None])

    @property
    def y(self) -> Tensor:
        """``[N]`` int64 label of each labelled node, :obj:`-1` for unlabelled nodes."""
        y = np.full(self.num_nodes, -1, dtype=np.int64)
        y[self._labelled] = self._label
        return torch.from_numpy(y)

    @property
    def community(self) -> Tensor:
        """``[N]`` int64 latent class of every node: it drives citations and features, and ``y``
        shows it on labelled nodes, ``label_noise`` of them redrawn."""
        return torch.from_numpy(self._community.astype(np.int64))

    def get_idx_split(self) -> dict[str, Tensor]:
        """OGB's time split: ``{'train', 'valid', 'test'}``, sorted ``int64`` node indices."""
        return {name: torch.from_numpy(idx.copy()) for name, idx in self._split().items()}

    def to_data(self):
        """A :class:`torch_geometric.data.Data` with ``x``, ``edge_index``, ``y``, ``node_year``;
        ``x`` and ``edge_index`` share memory with the generator."""
        from torch_geometric.data import Data

        return Data(
            x=self.x,
            edge_index=self.edge_index,
            y=self.y,
            node_year=self.node_year,
            num_nodes=self.num_nodes,
        )

    def write_ogb(self, root: str | os.PathLike, compress: bool = False) -> Path:
        """Writes ``<root>/ogbn_papers100M/`` in the layout of ogb's papers100M download, so that
        ``NodePropPredDataset(name='ogbn-papers100M', root=root)`` (and its PyG variant) load it
        without downloading:

        * ``RELEASE_v1.txt``: the version marker ogb checks before trusting the folder;
        * ``raw/data.npz``: ``edge_index`` int64 ``[2, E]``, ``num_nodes_list`` int64 ``[1]``,
          ``num_edges_list`` int64 ``[1]``, ``node_feat`` float32 ``[N, F]``, ``node_year`` int64
          ``[N, 1]`` (the dtypes ogb's ``DatasetSaver`` writes);
        * ``raw/node-label.npz``: ``node_label`` float32 ``[N, 1]``, ``NaN`` when unlabelled;
        * ``split/time/{train,valid,test}.csv.gz``: one node index per line, no header;
        * ``processed/``: empty; ogb caches its parsed copy there.

        The folder is built beside the target and renamed into place, replacing any previous one
        (and with it ogb's stale ``processed/`` caches): a crash never leaves a partial dataset
        where ogb would read it. ogb's PyG loader prefers ``<root>/ogbn_papers100M_pyg`` when that
        exists; this method leaves such a folder alone.

        Args:
            root (str or PathLike): the ``root`` later given to ogb.
            compress (bool, optional): deflate the ``.npz`` files as ogb's release does (about
                10x slower to write and read; loaders read both alike). (default: :obj:`False`)

        Returns:
            Path: the dataset folder ``<root>/ogbn_papers100M``.
        """
        split = self._split()
        for name, idx in split.items():
            if idx.size == 0:
                raise ValueError(
                    f"the {name!r} split is empty, which ogb's CSV reader rejects; increase "
                    'num_nodes or label_fraction'
                )
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        final = root / self.OGB_DIR
        # mkdir, not mkdtemp: the dataset keeps the umask's permissions, not mkdtemp's 0700.
        tmp = root / f'.{self.OGB_DIR}.tmp-{uuid.uuid4().hex}'
        tmp.mkdir()
        try:
            self._write_layout(tmp, split, compress)
            _replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.num_nodes}, num_features={self.num_features}, '
            f'num_classes={self.num_classes}, avg_out_degree={self.avg_out_degree}, '
            f'label_fraction={self.label_fraction}, homophily={self.homophily}, '
            f'feature_signal={self.feature_signal}, label_noise={self.label_noise}, '
            f'seed={self.seed})'
        )

    # --- generation ---------------------------------------------------------------------------
    def _rng(self, stream: int, block: int = 0) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(stream, block)))

    def _generate(self) -> None:
        n = self.num_nodes
        rng = self._rng(_STREAM_STRUCTURE)
        tau = _publication_time(n)
        self._year = np.floor(tau).astype(np.int16)

        prior = (np.arange(self.num_classes) + 1.0) ** -_CLASS_SKEW
        cdf = np.cumsum(prior / prior.sum())
        community = np.searchsorted(cdf, rng.random(n) * cdf[-1], side='right')
        self._community = np.minimum(community, self.num_classes - 1).astype(
            _smallest_uint(self.num_classes)
        )
        del community

        self._labelled = self._pick_labelled(tau, rng)
        del tau
        # The observed label is the latent class, except for a `label_noise` share redrawn from
        # the prior: this caps every model near 1 - label_noise, as ambiguous categories (and
        # cross-listing) cap models on the real data near 70%.
        label = self._community[self._labelled].astype(np.int64)
        redraw = np.flatnonzero(rng.random(label.size) < self.label_noise)
        label[redraw] = np.searchsorted(cdf, rng.random(redraw.size) * cdf[-1], side='right')
        self._label = np.minimum(label, self.num_classes - 1)

        shape = _OUT_DEGREE_SHAPE
        out_degree = rng.negative_binomial(shape, shape / (shape + self.avg_out_degree), size=n)
        # Node i has only i older papers to cite, and cites each at most once.
        np.minimum(out_degree, np.arange(n), out=out_degree)
        self._edge_index = self._generate_edges(out_degree.astype(np.int64, copy=False))
        del out_degree

        # Features are generated on first access of ``x``; write_ogb streams them block by block
        # without ever holding [N, F] (16 GB at 32M nodes).
        self._x = None

    def _pick_labelled(self, tau: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sorted indices of the labelled nodes: an exact-size weighted sample without replacement
        (exponential keys over weights, the smallest ``k`` win), weight 0 before arXiv existed."""
        n = tau.size
        count = min(n, max(1, round(self.label_fraction * n)))
        weight = np.where(tau >= _ARXIV_START, np.exp(_ARXIV_GROWTH * (tau - _ARXIV_START)), 0.0)
        key = np.full(n, np.inf)
        np.divide(rng.standard_exponential(n), weight, out=key, where=weight > 0)
        if count < n:
            chosen = np.argpartition(key, count - 1)[:count]
        else:
            chosen = np.arange(n)
        return np.sort(chosen).astype(np.int64)

    def _generate_edges(self, out_degree: np.ndarray) -> np.ndarray:
        n = self.num_nodes
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(out_degree, out=offsets[1:])
        num_edges = int(offsets[-1])
        edge_index = np.empty((2, num_edges), dtype=np.int64)

        # Class-sorted order: the older members of node i's class are order[start_c : rank_i].
        community = self._community
        order = np.argsort(community, kind='stable')
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        class_start = np.zeros(self.num_classes + 1, dtype=np.int64)
        np.cumsum(np.bincount(community, minlength=self.num_classes), out=class_start[1:])

        graph = _CitationState(
            community=community,
            order=order,
            rank=rank,
            class_start=class_start,
            out_degree=out_degree,
            offsets=offsets,
            targets=edge_index[1],
            homophily=self.homophily,
        )
        for chunk, (start, stop) in enumerate(_edge_chunks(n)):
            lo, hi = int(offsets[start]), int(offsets[stop])
            if lo == hi:
                continue
            degree = out_degree[start:stop]
            nodes = np.arange(start, stop, dtype=np.int64)
            src = np.repeat(nodes, degree)
            edge_index[0, lo:hi] = src
            # Per-node lookups, repeated per edge: cheaper than gathering once per edge.
            class_begin, older = graph.place(nodes)
            rng = self._rng(_STREAM_EDGES, chunk)
            dst = graph.pick(
                src, np.repeat(class_begin, degree), np.repeat(older, degree), start, rng
            )
            edge_index[1, lo:hi] = self._deduplicate(graph, src, dst, start, lo, rng, chunk)
        return edge_index

    def _deduplicate(self, graph, src, dst, start, lo, rng, chunk) -> np.ndarray:
        """Sorts each source's targets and redraws repeated ones until none are left."""
        n = self.num_nodes
        key = src * n + dst
        key.sort()  # src is non-decreasing, so sorting keys keeps every edge under its source
        dst = key - src * n
        del key
        for _ in range(_REPAIR_ROUNDS):
            repeat = np.flatnonzero(dst[1:] == dst[:-1]) + 1
            repeat = repeat[src[repeat] == src[repeat - 1]]
            if repeat.size == 0:
                return dst
            again = src[repeat]
            dst[repeat] = graph.pick(again, *graph.place(again), start, rng)
            # Re-sort only the edges of the sources that had a repeat.
            edges = _edge_positions(np.unique(src[repeat]), graph, lo)
            sub = src[edges] * n + dst[edges]
            sub.sort()
            dst[edges] = sub - src[edges] * n
        # Left after the rounds: sources with few older papers to choose from (tiny i). Draw
        # their whole reference list without replacement.
        repeat = np.flatnonzero(dst[1:] == dst[:-1]) + 1
        repeat = repeat[src[repeat] == src[repeat - 1]]
        repair = self._rng(_STREAM_REPAIR, chunk)
        for node in np.unique(src[repeat]).tolist():
            a, b = int(graph.offsets[node]) - lo, int(graph.offsets[node + 1]) - lo
            dst[a:b] = np.sort(repair.choice(node, size=b - a, replace=False))
        return dst

    def _feature_tables(self) -> tuple[np.ndarray, np.ndarray]:
        f = self.num_features
        centroids = self._rng(_STREAM_FEATURES, 0).standard_normal((self.num_classes, f))
        centroids = (centroids * (self.feature_signal / math.sqrt(f))).astype(np.float32)
        return centroids, _normal_quantiles()

    def _fill_feature_block(self, block: int, out: np.ndarray, tables) -> None:
        """Rows ``[block * _FEATURE_BLOCK, ...)`` of ``x`` into ``out``."""
        centroids, quantiles = tables
        a = block * _FEATURE_BLOCK
        b = min(self.num_nodes, a + _FEATURE_BLOCK)
        # Block streams start at 1: block 0 of this stream drew the centroids.
        rng = self._rng(_STREAM_FEATURES, block + 1)
        draw = rng.integers(0, len(quantiles), size=(b - a, self.num_features), dtype=np.uint16)
        np.take(quantiles, draw, out=out, mode='clip')  # 'raise' would buffer a copy
        out += centroids[self._community[a:b]]

    def _generate_features(self) -> np.ndarray:
        n, f = self.num_nodes, self.num_features
        tables = self._feature_tables()
        x = np.empty((n, f), dtype=np.float32)

        def fill(block: int) -> None:
            a = block * _FEATURE_BLOCK
            self._fill_feature_block(block, x[a : min(n, a + _FEATURE_BLOCK)], tables)

        num_blocks = -(-n // _FEATURE_BLOCK)
        if self.num_threads > 1 and num_blocks > 1:
            # numpy's generators and ufuncs release the GIL: threads share the work, and each
            # block's own stream keeps the output independent of the schedule.
            with ThreadPoolExecutor(self.num_threads) as pool:
                list(pool.map(fill, range(num_blocks)))
        else:
            for block in range(num_blocks):
                fill(block)
        return x

    def _feature_blocks(self):
        """The rows of ``x`` in order, one ``_FEATURE_BLOCK`` at a time (the same bytes as
        :attr:`x`), generated by ``num_threads`` threads a window of blocks at a time."""
        n = self.num_nodes
        tables = self._feature_tables()
        num_blocks = -(-n // _FEATURE_BLOCK)

        def make(block: int) -> np.ndarray:
            a = block * _FEATURE_BLOCK
            out = np.empty((min(n, a + _FEATURE_BLOCK) - a, self.num_features), np.float32)
            self._fill_feature_block(block, out, tables)
            return out

        window = 4 * self.num_threads
        with ThreadPoolExecutor(self.num_threads) as pool:
            for first in range(0, num_blocks, window):
                yield from pool.map(make, range(first, min(num_blocks, first + window)))

    def _split(self) -> dict[str, np.ndarray]:
        year = self._year[self._labelled]
        return {
            'train': self._labelled[year < self.VALID_YEAR],
            'valid': self._labelled[year == self.VALID_YEAR],
            'test': self._labelled[year > self.VALID_YEAR],
        }

    # --- ogb layout ---------------------------------------------------------------------------
    def _write_layout(self, folder: Path, split: dict[str, np.ndarray], compress: bool) -> None:
        n = self.num_nodes
        save = np.savez_compressed if compress else np.savez
        raw = folder / 'raw'
        split_dir = folder / 'split' / 'time'
        for path in (raw, split_dir, folder / 'processed'):
            path.mkdir(parents=True, exist_ok=True)

        def write_data(handle) -> None:
            arrays = {
                'edge_index': self._edge_index,
                'num_nodes_list': np.array([n], dtype=np.int64),
                'num_edges_list': np.array([self.num_edges], dtype=np.int64),
            }
            # np.savez's layout (a zip of .npy members), with node_feat streamed block by block
            kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            with zipfile.ZipFile(handle, mode='w', compression=kind, allowZip64=True) as archive:
                for name, array in arrays.items():
                    with archive.open(f'{name}.npy', 'w', force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
                with archive.open('node_feat.npy', 'w', force_zip64=True) as member:
                    header = {
                        'descr': np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                        'fortran_order': False,
                        'shape': (n, self.num_features),
                    }
                    np.lib.format.write_array_header_1_0(member, header)
                    if self._x is not None:
                        member.write(self._x.data)
                    else:
                        for block in self._feature_blocks():
                            member.write(block.data)
                with archive.open('node_year.npy', 'w', force_zip64=True) as member:
                    year = self._year.astype(np.int64)[:, None]
                    np.lib.format.write_array(member, year, allow_pickle=False)

        _atomic_write(raw / 'data.npz', write_data)

        label = np.full((n, 1), np.nan, dtype=np.float32)
        label[self._labelled, 0] = self._label
        _atomic_write(raw / 'node-label.npz', lambda handle: save(handle, node_label=label))

        for name, idx in split.items():
            text = ('\n'.join(map(str, idx.tolist())) + '\n').encode()
            _atomic_write(split_dir / f'{name}.csv.gz', lambda handle, t=text: _gzip(handle, t))

        note = (
            f'# Release note for {self.OGB_NAME}\n\n### v{self.OGB_VERSION}: synthetic, '
            f'written by graphops.datasets.SyntheticPapers: {self!r}\n'
        )
        _atomic_write(
            folder / f'RELEASE_v{self.OGB_VERSION}.txt', lambda handle: handle.write(note.encode())
        )


class _CitationState:
    """What choosing a citation target needs: the class-sorted order and the edges so far."""

    def __init__(
        self, community, order, rank, class_start, out_degree, offsets, targets, homophily
    ):
        self.community = community
        self.order = order
        self.rank = rank
        self.class_start = class_start
        self.out_degree = out_degree
        self.offsets = offsets
        self.targets = targets
        self.homophily = homophily

    def place(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each citing node: where its class starts in ``order``, and how many older papers
        of its class precede it there."""
        start = self.class_start[self.community[src]]
        return start, self.rank[src] - start

    def pick(self, src, start, older, written: int, rng: np.random.Generator) -> np.ndarray:
        """One cited node per entry of ``src`` (always older than it); ``start, older`` come from
        :meth:`place`. Nodes below ``written`` have their final references in ``targets``, so
        the copying step may read them."""
        u = rng.random((3, src.size))
        in_class = (u[0] < self.homophily) & (older > 0)
        step = np.minimum((older * u[1]).astype(np.int64), np.maximum(older - 1, 0))
        cited = np.minimum((src * u[1]).astype(np.int64), src - 1)
        cited[in_class] = self.order[(start + step)[in_class]]
        # Copying step: cite one of the cited paper's own references instead.
        copy = np.flatnonzero((u[2] < _REDIRECT) & (cited < written))
        via = cited[copy]
        degree = self.out_degree[via]
        keep = degree > 0
        copy, via, degree = copy[keep], via[keep], degree[keep]
        which = np.minimum((u[2, copy] * (degree / _REDIRECT)).astype(np.int64), degree - 1)
        cited[copy] = self.targets[self.offsets[via] + which]
        return cited


# --- helpers ----------------------------------------------------------------------------------


@functools.cache
def _normal_quantiles() -> np.ndarray:
    """The 65,536 equiprobable quantiles of N(0, 1) as float32 (std 0.99999, range +-4.3).

    Noise is drawn by indexing this table with uniform 16-bit integers: twice as fast as numpy's
    ziggurat sampler (the generator's bottleneck at 1.3G draws for 10M nodes), and a Gaussian for
    every purpose here.
    """
    dist = statistics.NormalDist()
    levels = 1 << 16
    return np.array([dist.inv_cdf((k + 0.5) / levels) for k in range(levels)], dtype=np.float32)


def _publication_time(n: int) -> np.ndarray:
    """Continuous publication times, increasing: quantiles of an exponentially growing output."""
    span = _END_YEAR - _FIRST_YEAR
    quantile = (np.arange(n, dtype=np.float64) + 0.5) / n
    return _FIRST_YEAR + np.log1p(quantile * math.expm1(_GROWTH * span)) / _GROWTH


def _edge_chunks(n: int):
    """Node ranges ``[start, stop)`` processed in order. A chunk spans at most 1/16 of the nodes
    before it, so the copying step (which reads only finished chunks) is available to most
    citations at every size, including the small graphs of tests."""
    start = 0
    while start < n:
        stop = min(n, start + max(_MIN_CHUNK, min(start // _CHUNK_GROWTH, _MAX_CHUNK)))
        yield start, stop
        start = stop


def _edge_positions(nodes: np.ndarray, graph: _CitationState, lo: int) -> np.ndarray:
    """Positions (relative to ``lo``) of every edge of ``nodes``, ascending."""
    counts = graph.out_degree[nodes]
    begin = graph.offsets[nodes] - lo
    shift = np.repeat(begin - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(int(counts.sum()), dtype=np.int64)


def _smallest_uint(num_values: int):
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_values - 1 <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def _gzip(handle, payload: bytes) -> None:
    # mtime=0: the same split gives the same bytes.
    with gzip.GzipFile(filename='', mode='wb', fileobj=handle, mtime=0) as stream:
        stream.write(payload)


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Writes through ``write(handle)`` to a temporary name, then renames it to ``path``."""
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'wb') as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _replace_dir(new: Path, final: Path) -> None:
    """Renames the finished folder ``new`` to ``final``, moving an existing one out of the way
    first (a directory rename cannot overwrite a non-empty directory)."""
    if final.exists() or final.is_symlink():
        old = final.with_name(f'.{final.name}.old-{uuid.uuid4().hex}')
        os.replace(final, old)
        os.replace(new, final)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.replace(new, final)


def _check_int(value, name: str, low: int) -> int:
    value = check_num_nodes(value, name)
    if value < low:
        raise ValueError(f'{name} must be >= {low}, got {value}')
    return value


def _check_real(
    value, name: str, low: float, high: float, expected: str, closed: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f'{name} must be a number, got {type(value).__name__}')
    value = float(value)
    above = value >= low if closed else value > low
    if not (above and value <= high and math.isfinite(value)):
        raise ValueError(f'{name} must be {expected}, got {value}')
    return value
