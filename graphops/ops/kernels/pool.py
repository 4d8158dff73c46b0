r"""Numba kernels for gPool on CPU: per-graph top-:math:`k` and the induced edge list.

The torch paths in :mod:`graphops.ops.topk` and :mod:`graphops.ops.induced` rank every node of a
batch with two global sorts, and filter edges with a gather, a boolean mask and a masked copy.
On a batch of many small graphs (PROTEINS: 1113 graphs, 43k nodes, 162k edges) those take about
9 and 5 ms, most of a gPool forward pass. Here each graph is ranked on its own (a stable sort of
its few scores) and the edges are filtered in one pass. Both kernels give exactly what the torch
paths give: the same kept nodes (ties keep the lower index) and the same edges in input order.
Small inputs stay on the torch paths, which need no compilation; ``dispatch.POOL_NUMBA_MIN_ENTRIES`` is the
cut-over.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from graphops.ops import optional

_SCORE_DTYPES = (torch.float32, torch.float64)
_numba = None  # bound by _loaded before the kernels compile


# Kernels: compiled by ``_loaded`` (:class:`~graphops.ops.optional.NumbaKernels`) on first use.
def _segment_topk(score, ptr, k, keep):
    """Marks in ``keep`` the ``k[g]`` best nodes of each graph ``g`` (nodes ``ptr[g]:ptr[g+1]``).

    A stable sort of the negated scores ranks equal scores by ascending index, as the torch
    path's stable descending sort does. (Ranking is what costs: a selection of the k-th score
    instead of a sort measured no faster on PROTEINS-sized graphs.)"""
    for g in _numba.prange(ptr.shape[0] - 1):
        start, end, count = ptr[g], ptr[g + 1], k[g]
        if count >= end - start:
            for node in range(start, end):
                keep[node] = True
        elif count > 0:
            ranked = np.argsort(-score[start:end], kind='mergesort')
            for j in range(count):
                keep[start + ranked[j]] = True


def _filter_edges(source, target, new_id, out, mask):
    """Copies each edge whose two ends survive, relabelled, to ``out[:, :count]`` in input order;
    returns ``count``."""
    count = 0
    for e in range(source.shape[0]):
        a = new_id[source[e]]
        b = new_id[target[e]]
        if a >= 0 and b >= 0:
            out[0, count] = a
            out[1, count] = b
            mask[e] = True
            count += 1
    return count


_loaded = optional.NumbaKernels(globals(), (_segment_topk, True), (_filter_edges, False))


def segment_topk(score: Tensor, counts: Tensor, k: Tensor) -> Tensor | None:
    """Kept node indices (ascending) of per-graph top-``k`` over graphs of ``counts`` consecutive
    nodes each, or ``None`` when the score dtype has no kernel (the caller takes the torch path).
    Inputs are already checked: finite 1-D ``score``, sorted batch, ``k <= counts``."""
    if score.dtype not in _SCORE_DTYPES:
        return None
    kernel, _ = _loaded()
    ptr = torch.zeros(counts.numel() + 1, dtype=torch.long)
    torch.cumsum(counts.long(), 0, out=ptr[1:])
    keep = np.zeros(score.numel(), dtype=np.bool_)
    kernel(score.detach().contiguous().numpy(), ptr.numpy(), k.long().numpy(), keep)
    return torch.from_numpy(keep).nonzero().view(-1)


def filter_edges(edge_index: Tensor, new_id: Tensor) -> tuple[Tensor, Tensor]:
    """``(edge_index, mask)`` of the edges whose two ends have ``new_id >= 0``, relabelled, in
    input order. Inputs are already checked (indices in range of ``new_id``)."""
    _, kernel = _loaded()
    edges = edge_index.contiguous().numpy()
    out = np.empty((2, edges.shape[1]), dtype=np.int64)
    mask = np.zeros(edges.shape[1], dtype=np.bool_)
    count = kernel(edges[0], edges[1], new_id.long().contiguous().numpy(), out, mask)
    return torch.from_numpy(out[:, :count].copy()), torch.from_numpy(mask)
