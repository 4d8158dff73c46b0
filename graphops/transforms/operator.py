r"""The contract every SIGN operator (:class:`Adjacency`, :class:`PPR`, :class:`Triangle`) follows.

An operator turns a graph into a fixed propagation matrix once (:meth:`SIGNOperator.matrix`), then
maps hop :math:`s-1` to hop :math:`s` (:meth:`SIGNOperator.step`) with nothing but sparse x dense
products, column by column. Because every step acts on each feature column independently, the
precompute engine (:mod:`graphops.precompute.engine`) may cut the features into column slices, run
them on any device or worker, and get the same bytes as a run over all columns at once.

An operator may carry several *streams* that share one matrix (:class:`PPR` with several
``alpha``): each stream has its own hops, and its keys carry a stream tag,
``f'{prefix}{tag}{hop}'``.

Used alone, an operator is a :class:`~torch_geometric.transforms.BaseTransform`: it writes its keys
into ``data`` and appends them to ``data.sign_keys`` (:func:`record_sign_keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch_geometric.transforms import BaseTransform

from graphops.ops import spmm as _spmm
from graphops.ops import to_csr
from graphops.ops.csr import CSR
from graphops.ops.spmm import host_empty
from graphops.ops.validate import check_float, check_length, check_nonempty_graph

# ``spmm(matrix, x, out=None)``: graphops.ops.spmm or the engine's device-aware twin
SpMM = Callable[..., Tensor]


def record_sign_keys(data, keys: list[str]):
    """Appends ``keys`` (those not there yet) to ``data.sign_keys`` and returns ``data``.

    ``data.sign_keys`` is an ordered ``dict`` ``{key: position}``, read by iterating it:
    ``[data.x] + [data[k] for k in data.sign_keys]``. A dict rather than a list because PyG
    collates a dict key by key: after :meth:`~torch_geometric.data.Batch.from_data_list` or a
    :class:`~torch_geometric.loader.DataLoader` the batch's ``sign_keys`` still iterates the same
    keys in the same order (its values become one position per graph), where a list would become
    a list of lists.
    """
    known = list(getattr(data, 'sign_keys', None) or [])
    ordered = known + [k for k in keys if k not in known]
    data.sign_keys = {key: position for position, key in enumerate(ordered)}
    return data


def check_hops(hops, name: str = 'hops') -> int:
    if isinstance(hops, bool) or not isinstance(hops, int):
        raise TypeError(f'{name} must be an int (the number of hops), got {type(hops).__name__}')
    if hops < 1:
        raise ValueError(f'{name} must be >= 1, got {hops}')
    return hops


def check_prefix(prefix) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise TypeError(f'prefix must be a non-empty str (keys are prefix + hop), got {prefix!r}')
    if not all(ch.isalnum() or ch in '_.' for ch in prefix):
        raise ValueError(
            f'prefix must hold only letters, digits, "_" and "." (it names files), got {prefix!r}'
        )
    return prefix


def check_choice(value, name: str, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')
    return value


def graph_adjacency(data) -> CSR:
    """The graph of a PyG ``Data`` as a :class:`CSR` (``adj_t`` form), via ``graphops.ops``:
    ``data.adj_t`` when present, else ``data.edge_index`` with ``data.edge_weight``."""
    num_nodes = data.num_nodes
    if num_nodes is None:
        raise ValueError('data.num_nodes is unknown; set data.num_nodes or data.x')
    check_nonempty_graph(num_nodes, 'data')
    adj_t = getattr(data, 'adj_t', None)
    if adj_t is not None:
        return to_csr(adj_t)
    if getattr(data, 'edge_index', None) is None:
        raise ValueError('data has neither edge_index nor adj_t; a SIGN operator needs a graph')
    return to_csr(data.edge_index, getattr(data, 'edge_weight', None), num_nodes)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float type accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class SIGNOperator(BaseTransform):
    r"""Base class of the SIGN operators: ``hops`` powers of a fixed linear map, keys
    ``f'{prefix}{tag}{hop}'`` for ``hop`` in ``1..hops`` and each stream ``tag``.

    Subclasses implement :meth:`matrix` and :meth:`params`, and :meth:`step` when a hop is more
    than one product.

    Args:
        hops (int): number of hops :math:`K`.
        prefix (str): key prefix.
    """

    #: dense ``[N, columns]`` buffers a step keeps alive per stream (the engine's memory plan)
    buffers_per_stream = 2
    #: sparse x dense products per hop and stream (progress bars report the bandwidth with it)
    products_per_hop = 1

    def __init__(self, hops: int, prefix: str):
        self.hops = check_hops(hops)
        self.prefix = check_prefix(prefix)

    # --- what subclasses define ---------------------------------------------------------------
    def matrix(self, adj: CSR, dtype: torch.dtype = torch.float32) -> CSR:
        """The propagation matrix built from the graph's ``adj_t`` (values in ``dtype``)."""
        raise NotImplementedError

    def params(self) -> dict:
        """JSON-serialisable constructor arguments (recorded in a FeatureStore manifest)."""
        raise NotImplementedError

    def stream_tags(self) -> list[str]:
        """One tag per stream (``['']`` for a single-stream operator)."""
        return ['']

    def step(self, matrix: CSR, xs: list[Tensor], spmm: SpMM = _spmm) -> list[Tensor]:
        """One hop for every stream: ``xs[s]`` is stream ``s`` at hop :math:`k-1`."""
        return [spmm(matrix, x) for x in xs]

    # --- derived ------------------------------------------------------------------------------
    @property
    def num_streams(self) -> int:
        return len(self.stream_tags())

    def keys(self) -> list[str]:
        """Ordered keys: stream by stream, hops 1..K."""
        return [
            f'{self.prefix}{tag}{hop}'
            for tag in self.stream_tags()
            for hop in range(1, self.hops + 1)
        ]

    def propagate(self, adj, x: Tensor, spmm: SpMM = _spmm) -> dict[str, Tensor]:
        """All hops in memory: ``{key: [N, F] tensor}`` in :meth:`keys` order.

        Args:
            adj: the graph, anything :func:`graphops.ops.to_csr` accepts (``adj_t`` form).
            x (Tensor): ``[N, F]`` node features.
        """
        adj = to_csr(adj)
        check_nonempty_graph(adj.num_rows, 'the graph')
        check_float(x, 'x')
        if x.dim() != 2:
            raise ValueError(f'x must be 2-dimensional [num_nodes, F], got {tuple(x.shape)}')
        check_length(x, adj.num_cols, 'x', 'num_nodes')
        if adj.num_rows != adj.num_cols:
            raise ValueError(f'SIGN operators need a square adjacency, got shape {adj.shape}')
        dtype = compute_dtype(x.dtype)
        matrix = self.matrix(adj.to(x.device), dtype)
        start = x.to(dtype)
        if start.device.type == 'cpu':
            # one copy into huge-page memory makes every hop's random gathers cheaper
            start = host_empty(*start.shape, dtype).copy_(start)
        states = [start] * self.num_streams
        hops: list[list[Tensor]] = [[] for _ in states]
        for _ in range(self.hops):
            states = self.step(matrix, states, spmm)
            for stream, state in enumerate(states):
                hops[stream].append(state.to(x.dtype))
        flat = [h for stream in hops for h in stream]
        return dict(zip(self.keys(), flat))

    def forward(self, data):
        if getattr(data, 'x', None) is None:
            raise ValueError('data.x is missing; SIGN operators propagate node features')
        for key, value in self.propagate(graph_adjacency(data), data.x).items():
            data[key] = value
        return record_sign_keys(data, self.keys())

    def __repr__(self) -> str:
        args = [str(self.hops)]
        args += [f'{k}={v!r}' for k, v in self.params().items() if k != 'hops']
        return f'{self.__class__.__name__}({", ".join(args)})'
