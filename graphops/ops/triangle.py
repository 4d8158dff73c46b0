r"""The triangle-motif adjacency :math:`\mathbf{A} \circ (\mathbf{A} \mathbf{A})`, as a masked product.

For a symmetric, binary adjacency without self-loops, :math:`(\mathbf{A}\mathbf{A})_{ij}` counts
the common neighbours of :math:`i` and :math:`j`, and masking by :math:`\mathbf{A}` keeps it only
on edges: the weight of edge :math:`(i, j)` becomes the number of triangles through it
(`Benson et al., "Higher-order organization of complex networks"
<https://arxiv.org/abs/1612.08447>`_, used by SIGN's triangle operator).

The product is *masked*: only the stored entries of :math:`\mathbf{A}` are computed, each as the
size of the intersection of two neighbour lists, so :math:`\mathbf{A}\mathbf{A}` (which can
have far more entries than :math:`\mathbf{A}`) is never formed.

Backends: ``'numba'`` (CPU, row-parallel; each row marks its neighbours in a per-thread byte
array, and each edge ``(i, j)`` counts the marked neighbours of ``j``) and ``'torch'`` (any device,
CUDA included: each wedge :math:`i - m - j` is looked up among the sorted edge keys with
``searchsorted``, in blocks of at most ``block_wedges`` wedges).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from graphops.ops.csr import CSR, check_csr, segment_arange, symmetrize
from graphops.ops.dispatch import choose_backend
from graphops.ops.kernels import triangle as triangle_kernels
from graphops.ops.optional import kernel_threads
from graphops.ops.spmm import has_numba, row_chunks
from graphops.ops.validate import check_positive_int


def triangle_adjacency(
    csr: CSR, backend: str = 'auto', block_wedges: int = 1 << 24, drop_zeros: bool = True
) -> CSR:
    r"""Returns :math:`\mathbf{A}_{tri} = \mathbf{A} \circ (\mathbf{A} \mathbf{A})` with
    :math:`\mathbf{A} = \mathbf{1}[\mathbf{M} + \mathbf{M}^\top > 0] - \mathrm{diag}` the symmetrised,
    binarised graph of ``csr`` without self-loops.

    Args:
        csr (CSR): a square adjacency (``adj_t`` form; weights and direction are ignored).
        backend (str): ``'auto'`` (default: the ``graphops.ops.dispatch`` override, else
            numba on CPU when installed, else torch), ``'numba'`` or ``'torch'``.
        block_wedges (int): wedges looked up at a time by the torch backend (memory bound).
        drop_zeros (bool): drop edges that close no triangle (default: ``True``; they would
            hold explicit zeros).

    Returns:
        CSR: symmetric, float32 triangle counts.

    Shapes:
        ``csr``: :math:`(N, N)` -> :math:`(N, N)` with at most ``nnz(A)`` entries.
    """
    check_csr(csr)._require_square('triangle_adjacency')
    check_positive_int(block_wedges, 'block_wedges')
    graph = symmetrize(csr).remove_self_loops()
    chosen = choose_backend(
        'triangle_adjacency', backend, graph.device, kernel='numba', kernel_ready=has_numba(),
        inputs=(graph.col,),
    )  # fmt: skip
    if chosen == 'numba':
        counts = _numba_counts(graph)
    else:
        counts = _torch_counts(graph, block_wedges)
    keep = counts > 0
    if not drop_zeros or bool(keep.all()):
        return graph.with_value(counts)
    return CSR.from_coo(
        graph.row()[keep], graph.col[keep], counts[keep], *graph.shape,
        is_sorted=True, trust_data=True,
    )  # fmt: skip


def _torch_counts(graph: CSR, block_wedges: int) -> Tensor:
    n = graph.num_rows
    row, col = graph.row().long(), graph.col.long()
    rowptr = graph.rowptr.long()
    keys = row * n + col  # sorted, since entries are sorted by (row, col) and have no duplicates
    counts = torch.zeros(graph.nnz, dtype=torch.float32, device=graph.device)
    if graph.nnz == 0:
        return counts
    degree = (rowptr[1:] - rowptr[:-1])[row]  # wedges i - m - j tried for edge (i, j): deg(i)
    ends = torch.cumsum(degree, 0)
    start_edge = 0
    while start_edge < graph.nnz:
        base = int(ends[start_edge - 1]) if start_edge else 0
        stop_edge = int(torch.searchsorted(ends, ends.new_tensor(base + block_wedges))) + 1
        stop_edge = min(max(stop_edge, start_edge + 1), graph.nnz)
        edges = torch.arange(start_edge, stop_edge, device=graph.device)
        per_edge = degree[edges]
        total = int(per_edge.sum())
        if total:
            neighbour, segment = segment_arange(rowptr[row[edges]], per_edge, total)
            owner = edges[segment]
            middle = col[neighbour]  # m in N(i)
            wanted = middle * n + col[owner]  # is (m, j) an edge?
            position = torch.searchsorted(keys, wanted).clamp_(max=keys.numel() - 1)
            hit = (keys[position] == wanted).to(torch.float32)
            counts.index_add_(0, owner, hit)
        start_edge = stop_edge
    return counts


def _numba_counts(graph: CSR) -> Tensor:
    (kernel,) = triangle_kernels.loaded()
    rowptr = graph.rowptr.numpy()
    counts = np.zeros(graph.nnz, dtype=np.float32)
    if graph.nnz:
        # a row's work grows with its neighbours' degrees: many small chunks even it out
        threads = kernel_threads()
        bounds = row_chunks(rowptr, 8 * threads)
        markers = np.zeros((threads, graph.num_rows), dtype=np.uint8)
        kernel(rowptr, graph.col.numpy(), bounds, markers, counts, threads=threads)
    return torch.from_numpy(counts)
