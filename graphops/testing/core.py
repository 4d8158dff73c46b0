"""Graph makers with the awkward cases, devices, dtypes and adjacency references.

Tests and benchmarks import from here; nothing here is copied into a script. Dense references are
written straight from the equations, for small graphs only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

DTYPES = [torch.float32, torch.float64]


def devices() -> list[torch.device]:
    """CPU always, CUDA when present (CUDA tests also carry ``@pytest.mark.gpu``)."""
    out = [torch.device('cpu')]
    if torch.cuda.is_available():
        out.append(torch.device('cuda'))
    return out


def cuda_available() -> bool:
    return torch.cuda.is_available()


def tolerance(dtype: torch.dtype) -> dict:
    """``atol``/``rtol`` for allclose at a dtype."""
    if dtype == torch.float64:
        return {'atol': 1e-10, 'rtol': 1e-8}
    if dtype in (torch.float16, torch.bfloat16):
        return {'atol': 1e-2, 'rtol': 1e-2}
    return {'atol': 1e-5, 'rtol': 1e-4}


@dataclass
class Graph:
    """A small test graph: ``edge_index`` ``[2, E]`` (source, target), optional weights."""

    name: str
    edge_index: Tensor
    num_nodes: int
    edge_weight: Tensor | None = None

    def __repr__(self) -> str:
        return f'Graph({self.name}, N={self.num_nodes}, E={self.edge_index.size(1)})'


def random_graph(
    num_nodes: int,
    num_edges: int,
    *,
    seed: int = 0,
    self_loops: bool = True,
    duplicates: bool = True,
    isolated: int = 0,
    weighted: bool = False,
    dtype: torch.dtype = torch.float64,
) -> Graph:
    """A random directed multigraph. The last ``isolated`` nodes have no edges at all."""
    gen = torch.Generator().manual_seed(seed)
    active = max(num_nodes - isolated, 1)
    edge_index = torch.randint(0, active, (2, num_edges), generator=gen)
    if not self_loops:
        loop = edge_index[0] == edge_index[1]
        edge_index[1, loop] = (edge_index[1, loop] + 1) % active
        edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    if duplicates and edge_index.size(1) >= 2:
        edge_index = torch.cat([edge_index, edge_index[:, : max(1, edge_index.size(1) // 10)]], 1)
    weight = None
    if weighted:
        weight = torch.rand(edge_index.size(1), generator=gen, dtype=dtype) + 0.1
    return Graph('random', edge_index, num_nodes, weight)


def awkward_graphs(weighted: bool = False, seed: int = 0) -> Iterator[Graph]:
    """The cases every layer must survive: isolated nodes, self-loops, duplicates, one node,
    no edges, no nodes, and a plain random graph."""
    gen = torch.Generator().manual_seed(seed)

    def weights(num_edges: int) -> Tensor | None:
        if not weighted:
            return None
        return torch.rand(num_edges, generator=gen, dtype=torch.float64) + 0.1

    def make(name: str, edge_index: Tensor, num_nodes: int) -> Graph:
        return Graph(name, edge_index, num_nodes, weights(edge_index.size(1)))

    g = random_graph(12, 40, seed=seed, weighted=weighted)
    yield Graph('random', g.edge_index, g.num_nodes, g.edge_weight)
    g = random_graph(15, 30, seed=seed + 1, isolated=4, weighted=weighted)
    yield Graph('isolated_nodes', g.edge_index, g.num_nodes, g.edge_weight)
    yield make('self_loops', torch.tensor([[0, 1, 2, 2, 3], [0, 1, 2, 3, 0]]), 4)
    yield make('duplicate_edges', torch.tensor([[0, 0, 0, 1, 2], [1, 1, 1, 2, 0]]), 3)
    yield make('single_node', torch.tensor([[0], [0]]), 1)
    yield make('single_node_no_edges', torch.empty(2, 0, dtype=torch.long), 1)
    yield make('no_edges', torch.empty(2, 0, dtype=torch.long), 5)
    yield make('empty_graph', torch.empty(2, 0, dtype=torch.long), 0)


def random_features(num_nodes: int, channels: int, *, seed: int = 0, dtype=torch.float64) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_nodes, channels, generator=gen, dtype=dtype)


def random_batch_vector(sizes: list[int]) -> Tensor:
    """``batch`` vector for graphs of the given node counts, in order."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))


# --- dense references -----------------------------------------------------------------------


def dense_adjacency(
    edge_index: Tensor,
    num_nodes: int | tuple[int, int],
    edge_weight: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``A_t[i, j]`` = summed weight of edges ``j -> i`` (PyG's ``adj_t``), ``[N_dst, N_src]``."""
    num_src, num_dst = (num_nodes, num_nodes) if isinstance(num_nodes, int) else num_nodes
    out = torch.zeros(num_dst, num_src, dtype=dtype)
    weight = torch.ones(edge_index.size(1), dtype=dtype) if edge_weight is None else edge_weight
    out.index_put_((edge_index[1], edge_index[0]), weight.to(dtype), accumulate=True)
    return out


def _inv(d: Tensor, p: float) -> Tensor:
    out = torch.zeros_like(d)
    nz = d != 0
    out[nz] = d[nz].pow(p)
    return out


def dense_normalize(adj_t: Tensor, norm: str | None) -> Tensor:
    """Dense twin of :func:`graphops.ops.csr.normalize` on an ``adj_t`` matrix."""
    if norm is None:
        return adj_t
    d_in = adj_t.sum(1)
    if norm == 'sym':
        s = _inv(d_in, -0.5)
        return s[:, None] * adj_t * s[None, :]
    if norm == 'rw':
        return _inv(d_in, -1.0)[:, None] * adj_t
    if norm == 'col':
        return adj_t * _inv(adj_t.sum(0), -1.0)[None, :]
    raise ValueError(norm)
