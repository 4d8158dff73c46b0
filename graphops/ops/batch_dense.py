r"""Per-graph helpers for a mini-batch of graphs described by a sorted ``batch`` vector.

A PyG mini-batch stacks the nodes of ``B`` graphs into one ``[N, F]`` matrix; ``batch[i]`` is the
graph of node ``i`` and is non-decreasing. These helpers give per-graph sizes and offsets, pad
node rows into a dense ``[B, N_max, F]`` block with a mask, sum per graph, and compute the
per-graph products :math:`\mathbf{A}_g^{\top} \mathbf{B}_g` (the :math:`\mathbf{S}^{\top}
\mathbf{X}` of pooling layers) in ``O(N)`` extra memory, without padding when padding would waste
memory. Nothing here knows about ``nn`` or PyG's ``Data``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops.validate import (
    check_batch,
    check_condition,
    check_length,
    check_same_device,
    check_tensor,
)

# Ragged batches are padded when that adds at most this factor of rows; beyond it a loop over the
# graphs is faster (measured on batches of 20 PROTEINS graphs) and keeps the memory O(N).
MAX_PADDING_RATIO = 1.5
# Padded operands up to this many elements are always fine: a graph-by-graph loop of tiny
# products costs far more than a few MB of zeros (PROTEINS batches: 20 graphs of 4..620 nodes).
MAX_PADDED_ELEMENTS = 1 << 22


def graph_sizes(batch: Tensor | None, num_nodes: int, name: str = 'batch') -> Tensor:
    """Number of nodes of each graph, ``[B]`` (``int64``), from a sorted ``batch`` vector.

    Args:
        batch (Tensor or None): ``[N]`` graph id of each node, sorted (non-decreasing), with every
            id in ``0..B-1`` used at least once. ``None`` means one graph of ``num_nodes`` nodes.
        num_nodes (int): ``N``, the number of rows the batch vector describes.
        name (str): the argument name used in error messages.

    Raises:
        TypeError: ``batch`` is not an integer tensor.
        ValueError: wrong length, negative ids, unsorted ids, or an empty graph (a skipped id).
    """
    if batch is None:
        if num_nodes == 0:
            raise ValueError('the graph has no nodes; pass a graph with at least one node')
        return torch.tensor([num_nodes], dtype=torch.long)
    check_batch(batch, num_nodes, name)
    if num_nodes == 0:
        raise ValueError(f'{name} is empty: the batch has no nodes; pass at least one graph')
    if torch.compiler.is_compiling():  # the same check without reading values back
        sizes = torch.bincount(batch.long())
        check_condition((sizes > 0).all(), f'{name} must use every graph id from 0 up')
        return sizes
    sizes = torch.bincount(batch.long())
    if bool((sizes == 0).any()):
        empty = int((sizes == 0).nonzero()[0])
        raise ValueError(
            f'{name} skips graph id {empty}: that graph has no nodes; drop empty graphs from the '
            'batch or renumber the graph ids'
        )
    return sizes


def graph_ptr(sizes: Tensor) -> Tensor:
    """``[B + 1]`` offsets: the nodes of graph ``g`` are rows ``ptr[g]:ptr[g + 1]``."""
    ptr = sizes.new_zeros(sizes.numel() + 1)
    torch.cumsum(sizes, 0, out=ptr[1:])
    return ptr


def position_in_graph(batch: Tensor, sizes: Tensor) -> Tensor:
    """``[N]`` index of each node inside its own graph (0 for the first node of each graph)."""
    ptr = graph_ptr(sizes.to(batch.device))
    return torch.arange(batch.numel(), device=batch.device) - ptr[batch.long()]


def to_padded(
    x: Tensor, batch: Tensor, sizes: Tensor, max_num_nodes: int | None = None
) -> tuple[Tensor, Tensor]:
    """Scatters node rows into a zero-padded ``[B, N_max, *]`` block and its ``[B, N_max]`` mask.

    Args:
        x (Tensor): ``[N, *]`` node rows, sorted by graph.
        batch (Tensor): ``[N]`` sorted graph ids (validated by :func:`graph_sizes`).
        sizes (Tensor): ``[B]`` node count per graph, from :func:`graph_sizes`.
        max_num_nodes (int, optional): ``N_max``; the largest graph size when ``None``.
    """
    num_graphs = sizes.numel()
    largest = int(sizes.max())
    max_num_nodes = largest if max_num_nodes is None else max_num_nodes
    if max_num_nodes < largest:
        raise ValueError(
            f'max_num_nodes = {max_num_nodes} is smaller than the largest graph ({largest} '
            'nodes); raise it or leave it None'
        )
    slot = batch.long() * max_num_nodes + position_in_graph(batch, sizes)
    padded = x.new_zeros((num_graphs * max_num_nodes, *x.shape[1:]))
    padded = padded.index_copy(0, slot, x)
    mask = torch.zeros(num_graphs * max_num_nodes, dtype=torch.bool, device=x.device)
    mask[slot] = True
    shape = (num_graphs, max_num_nodes)
    return padded.view(*shape, *x.shape[1:]), mask.view(shape)


def segment_sum(values: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """``[B, *]`` per-graph sums of ``[N, *]`` rows (graph ``batch[i]`` for row ``i``)."""
    out = values.new_zeros((num_graphs, *values.shape[1:]))
    return out.index_add(0, batch.long(), values)


def per_graph_transpose_matmul(
    a: Tensor,
    b: Tensor,
    batch: Tensor,
    sizes: Tensor,
    *,
    max_padding_ratio: float = MAX_PADDING_RATIO,
    max_padded_elements: int = MAX_PADDED_ELEMENTS,
) -> Tensor:
    r"""Returns ``[B, P, Q]`` with :math:`\mathbf{A}_g^{\top} \mathbf{B}_g` for each graph ``g``.

    :math:`\mathbf{A}_g` (``[n_g, P]``) and :math:`\mathbf{B}_g` (``[n_g, Q]``) are the rows of
    ``a`` and ``b`` that belong to graph ``g``. Equal-sized graphs are a free reshape and one
    batched product; ragged batches are padded into one batched product when padding adds at most
    ``max_padding_ratio`` times the rows or the padded operands are small (at most
    ``max_padded_elements`` elements), and otherwise multiplied graph by graph, so the extra
    memory stays ``O(N (P + Q))`` whatever the size spread. Every path is differentiable and
    gives the same result.

    Args:
        a (Tensor): ``[N, P]``.
        b (Tensor): ``[N, Q]``.
        batch (Tensor): ``[N]`` sorted graph ids.
        sizes (Tensor): ``[B]`` nodes per graph (:func:`graph_sizes`).
        max_padding_ratio (float): largest ``B * max(n_g) / N`` for which padding is used.
        max_padded_elements (int): padding is used whatever the ratio when the padded operands
            hold at most this many elements.
    """
    check_tensor(a, 'a')
    check_tensor(b, 'b')
    if a.dim() != 2 or b.dim() != 2 or a.size(0) != b.size(0):
        raise ValueError(
            f'a and b must be [N, P] and [N, Q] with the same N, got {tuple(a.shape)} and '
            f'{tuple(b.shape)}'
        )
    check_same_device([('a', a), ('b', b), ('batch', batch)])
    check_length(batch, a.size(0), 'batch', 'the number of rows of a')
    num_graphs = sizes.numel()
    num_rows = a.size(0)
    if torch.compiler.is_compiling():
        # no size read back: each graph's rows selected by a [B, N] one-hot (B * N * P memory)
        one_hot = batch.long().unsqueeze(0) == torch.arange(num_graphs, device=a.device)[:, None]
        return torch.einsum('gn,np,nq->gpq', one_hot.to(a.dtype), a, b)
    largest = int(sizes.max())
    padded_rows = num_graphs * largest
    if padded_rows == num_rows:  # equal sizes: a reshape, no copy
        a3 = a.reshape(num_graphs, largest, a.size(1))
        b3 = b.reshape(num_graphs, largest, b.size(1))
        return a3.transpose(1, 2) @ b3
    padded_elements = padded_rows * (a.size(1) + b.size(1))
    if padded_rows <= max_padding_ratio * num_rows or padded_elements <= max_padded_elements:
        a3, _ = to_padded(a, batch, sizes, largest)
        b3, _ = to_padded(b, batch, sizes, largest)
        return a3.transpose(1, 2) @ b3
    counts = sizes.tolist()
    blocks = [
        ag.t() @ bg for ag, bg in zip(torch.split(a, counts), torch.split(b, counts), strict=True)
    ]
    return torch.stack(blocks)
