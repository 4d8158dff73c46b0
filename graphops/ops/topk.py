r"""Per-graph top-:math:`k` node selection over a batch of graphs, in one vectorised pass.

Graph U-Nets' gPool keeps, in each graph :math:`g` of a batch, the :math:`k_g` nodes with the
largest scores. Here every graph is handled at once: two stable sorts (score descending, then graph
ascending) rank each node inside its graph, and a node is kept when its rank is below its graph's
:math:`k_g`. Stable sorts make ties deterministic: among equal scores the lower node index wins.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from graphops.ops import dispatch
from graphops.ops.kernels import pool as pool_kernels
from graphops.ops.validate import check_batch, check_float, check_same_device


def check_ratio(ratio) -> float | int:
    """A pooling ratio: a float in ``(0, 1]`` (a fraction of each graph's nodes) or an int
    ``k >= 1`` (a node count per graph). Returns it unchanged."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise TypeError(
            f'ratio must be a float in (0, 1] or an int k >= 1, got {type(ratio).__name__}'
        )
    if isinstance(ratio, float):
        if not math.isfinite(ratio) or ratio <= 0.0 or ratio > 1.0:
            raise ValueError(
                f'ratio as a float is a fraction of nodes to keep and must lie in (0, 1], '
                f'got {ratio}; pass an int to keep a fixed number k of nodes per graph'
            )
    elif ratio < 1:
        raise ValueError(
            f'ratio as an int is the number k of nodes to keep, must be >= 1, got {ratio}'
        )
    return ratio


def keep_counts(num_nodes_per_graph: Tensor, ratio: float | int) -> Tensor:
    r"""Nodes kept per graph: :math:`k_g = \lceil \mathrm{ratio} \cdot N_g \rceil` for a float
    ratio, :math:`\min(k, N_g)` for an int. Never more than :math:`N_g`, at least 1 for a
    non-empty graph."""
    counts = num_nodes_per_graph.long()
    if isinstance(ratio, float):
        # float64 keeps e.g. ratio = 2000 / 2708 from rounding up to 2001 nodes.
        k = torch.ceil(counts.double() * ratio).long()
    else:
        k = torch.full_like(counts, ratio)
    return torch.minimum(k, counts)


def topk(
    score: Tensor,
    ratio: float | int,
    batch: Tensor | None = None,
    num_graphs: int | None = None,
) -> Tensor:
    r"""Indices of the nodes kept by per-graph top-:math:`k` selection on ``score``.

    Args:
        score (Tensor): ``[N]`` float scores (no NaN/Inf).
        ratio (float or int): fraction of each graph's nodes to keep, :math:`k_g = \lceil
            \mathrm{ratio} \cdot N_g \rceil` (a float in ``(0, 1]``), or the number :math:`k`
            itself (an int ``>= 1``; graphs with at most :math:`k` nodes keep them all).
        batch (Tensor, optional): ``[N]`` sorted graph index of each node; ``None`` means one
            graph. (default: ``None``)
        num_graphs (int, optional): number of graphs (default: ``batch.max() + 1``).

    Returns:
        ``perm`` (``torch.long``): the kept node indices in ascending order, so the nodes of each
        graph stay contiguous and in their original order. Among equal scores the lower index is
        kept.

    Shapes:
        ``score``, ``batch``: :math:`(N)` -> ``perm``: :math:`(\sum_g k_g)`.
    """
    ratio = check_ratio(ratio)
    check_float(score, 'score')
    if score.dim() != 1:
        raise ValueError(f'score must be 1-dimensional [num_nodes], got {tuple(score.shape)}')
    num_nodes = score.numel()
    device = score.device
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=device)
    else:
        check_batch(batch, num_nodes)
        check_same_device([('score', score), ('batch', batch)])
        batch = batch.long()
    if num_nodes == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    if num_graphs is None:
        num_graphs = int(batch[-1]) + 1
    counts = torch.bincount(batch, minlength=num_graphs)
    if counts.numel() > num_graphs:
        raise ValueError(
            f'batch holds graph index {counts.numel() - 1} >= num_graphs = {num_graphs}'
        )
    k = keep_counts(counts, ratio)
    # (indices out: no autograd needed)
    if dispatch.numba_kernel_applies((score.detach(),), dispatch.POOL_NUMBA_MIN_ENTRIES, 'topk'):
        perm = pool_kernels.segment_topk(score, counts, k)
        if perm is not None:
            return perm

    # Rank every node inside its graph: stable sorts keep ascending index order among ties.
    by_score = torch.sort(score.detach(), descending=True, stable=True).indices
    by_graph = torch.sort(batch[by_score], stable=True).indices
    order = by_score[by_graph]
    ptr = torch.zeros(num_graphs, dtype=torch.long, device=device)
    ptr[1:] = torch.cumsum(counts, 0)[:-1]
    graph_of = batch[order]
    rank = torch.arange(num_nodes, device=device) - ptr[graph_of]
    keep = torch.zeros(num_nodes, dtype=torch.bool, device=device)
    keep[order[rank < k[graph_of]]] = True
    return keep.nonzero().view(-1)
