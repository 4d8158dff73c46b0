"""The edges of a relational graph, grouped once into (target, relation) pairs, and the sparse
matrices each strategy of :func:`~graphops.ops.relational.relational_matmul` multiplies by."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from graphops.ops.csr import CSR, sort_coo

EDGE_MATRICES = ('target', 'target_relation', 'relation_source')


class RelationalGraph:
    r"""Edges ``src -> dst`` of type ``rel`` and every structure the strategies derive from them:
    the grouping into (target, relation) pairs with the per-pair counts :math:`|\mathcal{N}_r(i)|`
    and the sparse matrices of each strategy, built on first use and kept. Keep one instance per
    static graph to pay the sorting once.

    Args:
        src (Tensor): ``[E]`` source of each edge, in ``[0, num_src)``.
        dst (Tensor): ``[E]`` target of each edge, in ``[0, num_dst)``.
        rel (Tensor): ``[E]`` relation of each edge, in ``[0, num_relations)``.
        num_src, num_dst, num_relations (int): sizes.

    The caller validates ranges (the layer does, through :mod:`graphops.ops.validate`).
    """

    def __init__(
        self,
        src: Tensor,
        dst: Tensor,
        rel: Tensor,
        num_src: int,
        num_dst: int,
        num_relations: int,
    ):
        if not (src.numel() == dst.numel() == rel.numel()):
            raise ValueError(
                f'src, dst and rel must have one entry per edge, got {src.numel()}, '
                f'{dst.numel()} and {rel.numel()}'
            )
        self.src, self.dst, self.rel = src.long(), dst.long(), rel.long()
        self.num_src, self.num_dst, self.num_relations = num_src, num_dst, num_relations
        self._cache: dict = {}
        self._group()

    @property
    def num_edges(self) -> int:
        return self.src.numel()

    def same_edges(self, src: Tensor, dst: Tensor, rel: Tensor) -> Tensor:
        """A 0-dim bool tensor: these edges, in this order, are the graph's (no value is read
        back, so it serves inside ``torch.compile`` too). Sizes must match ``num_edges``."""
        same = (self.src == src.long()).all() & (self.dst == dst.long()).all()
        return same & (self.rel == rel.long()).all()

    @property
    def device(self) -> torch.device:
        return self.src.device

    def __repr__(self) -> str:
        return (
            f'RelationalGraph(num_src={self.num_src}, num_dst={self.num_dst}, '
            f'num_relations={self.num_relations}, num_edges={self.num_edges}, '
            f'num_pairs={self.num_pairs})'
        )

    def _group(self) -> None:
        """Sorts edges by (relation, target, source) once: pairs, counts and mean norms follow."""
        pair_key = self.rel * self.num_dst + self.dst
        if self.num_edges == 0:
            order = pair_key
        elif self.num_relations * self.num_dst * max(self.num_src, 1) < 2**62:
            order = torch.sort(pair_key * max(self.num_src, 1) + self.src).indices
        else:  # the combined key would overflow: two stable passes give the same order
            order = torch.sort(self.src, stable=True).indices
            order = order[torch.sort(pair_key[order], stable=True).indices]
        sorted_key = pair_key[order]
        new_pair = torch.ones_like(sorted_key, dtype=torch.bool)
        new_pair[1:] = sorted_key[1:] != sorted_key[:-1]
        pair_of_sorted = torch.cumsum(new_pair.long(), 0) - 1
        keys = sorted_key[new_pair]
        self.order = order  # edges in (relation, target, source) order
        self.sorted_src, self.sorted_dst = self.src[order], self.dst[order]
        self.sorted_rel = self.rel[order]
        self.pair_of_sorted = pair_of_sorted  # pair id of each sorted edge
        self.pair_rel = keys // max(self.num_dst, 1)
        self.pair_dst = keys % max(self.num_dst, 1)
        self.num_pairs = keys.numel()
        self.pair_count = torch.bincount(pair_of_sorted, minlength=self.num_pairs)
        self.pairs_per_relation = torch.bincount(self.pair_rel, minlength=self.num_relations)
        # 1 / |N_r(i)| of each sorted edge: the paper's per-relation normalisation.
        self.mean_scale = 1.0 / self.pair_count[pair_of_sorted].double()

    def cached(self, key, build: Callable[[], Any]):
        """``build()``, computed on the first call with ``key`` and kept on this graph."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def edge_scale(self, aggr: str, dtype: torch.dtype) -> Tensor:
        """``c_{i,r}`` of each sorted edge: ``1 / |N_r(i)|`` for ``'mean'``, else 1."""

        def build():
            if aggr == 'mean':
                return self.mean_scale.to(dtype)
            return torch.ones(self.num_edges, dtype=dtype, device=self.device)

        return self.cached(('scale', aggr, dtype), build)

    def edge_matrix(self, kind: str) -> tuple[CSR, Tensor]:
        """``(pattern, edge)``: an unweighted :class:`~graphops.ops.csr.CSR` with one entry per
        edge (duplicates kept), entry ``k`` holding sorted edge ``edge[k]``. Kinds:

        * ``'target'``: ``[num_dst, num_src]`` (basis mixing per edge);
        * ``'target_relation'``: ``[num_dst * R, num_src]``, row ``i * R + r``;
        * ``'relation_source'``: ``[num_dst, R * num_src]``, column ``r * num_src + j``.
        """
        if kind not in EDGE_MATRICES:
            raise ValueError(f'kind must be one of {EDGE_MATRICES}, got {kind!r}')

        def build():
            src, dst, rel = self.sorted_src, self.sorted_dst, self.sorted_rel
            R = self.num_relations
            if kind == 'target':
                row, col, shape = dst, src, (self.num_dst, self.num_src)
            elif kind == 'target_relation':
                row, col, shape = dst * R + rel, src, (self.num_dst * R, self.num_src)
            else:
                row, col, shape = dst, rel * self.num_src + src, (self.num_dst, R * self.num_src)
            pattern, edge = sort_coo(row, col, *shape, with_perm=True)
            if edge is None:  # already in this matrix's order
                edge = torch.arange(self.num_edges, device=self.device)
            return pattern, edge

        return self.cached(('edge', kind), build)

    def edge_values(self, kind: str, aggr: str, dtype: torch.dtype) -> CSR:
        """:meth:`edge_matrix` ``kind`` weighted by each edge's ``c_{i,r}``."""

        def build():
            pattern, edge = self.edge_matrix(kind)
            return pattern.with_value(self.edge_scale(aggr, dtype)[edge])

        return self.cached(('edge_values', kind, aggr, dtype), build)

    def mixed_values(self, kind: str, aggr: str, coefficient: Tensor) -> CSR:
        """:meth:`edge_matrix` ``kind`` with edge ``e`` of relation ``r`` weighing
        ``c_{i,r} * coefficient[r]`` (differentiable in ``coefficient``)."""
        pattern, edge = self.edge_matrix(kind)
        scale = self.edge_values(kind, aggr, coefficient.dtype).value
        rel = self.cached(('entry_rel', kind), lambda: self.sorted_rel.index_select(0, edge))
        # One [E] gather and one product a basis (the product saves the gather for backward).
        return pattern.with_value(scale * coefficient.index_select(0, rel))
