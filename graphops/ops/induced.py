r"""Induced subgraphs :math:`A_{idx, idx}` and the augmented block :math:`(A^2)_{idx, idx}`.

gPool keeps a node set ``idx`` and needs the adjacency among the kept nodes, either plain
(:math:`A_{idx,idx}`) or augmented with two-hop links (:math:`(A^2)_{idx,idx}`, the paper's graph
power). The augmented block is computed as the product of a row selection and a column selection,

.. math::
    (A^2)_{idx, idx} = A_{idx, :} \, A_{:, idx},

so only the :math:`k \times k` block is ever formed, never the full :math:`N \times N` square
(:func:`augmented_subgraph` lists the ways the product runs).

Indices in the outputs are positions in ``idx``: node ``idx[t]`` becomes node ``t``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops import dispatch
from graphops.ops.csr import CSR, segment_arange, torch_csr_tensor
from graphops.ops.kernels import pool as pool_kernels
from graphops.ops.validate import check_edge_index, check_index, check_index_or_mask


def check_node_subset(index, num_nodes: int, name: str = 'index') -> Tensor:
    """Distinct node indices in ``[0, num_nodes)``, or a bool mask of length ``num_nodes``;
    returned as long ids."""
    index = check_index_or_mask(index, name, size=num_nodes)
    if index.numel() and int(torch.bincount(index, minlength=num_nodes).max()) > 1:
        raise ValueError(f'{name} repeats a node; pass each kept node once (e.g. {name}.unique())')
    return index


def relabel_map(index: Tensor, num_nodes: int) -> Tensor:
    """``[num_nodes]`` map old id -> position in ``index``, ``-1`` for dropped nodes."""
    new_id = torch.full((num_nodes,), -1, dtype=torch.long, device=index.device)
    new_id[index] = torch.arange(index.numel(), device=index.device)
    return new_id


def _is_ascending(index: Tensor) -> bool:
    return index.numel() < 2 or bool((index[1:] > index[:-1]).all())


def _select_columns(csr: CSR, new_id: Tensor, num_kept: int, is_sorted: bool = False) -> CSR:
    """``M[:, idx]`` with columns relabelled by ``new_id`` (rows untouched); ``is_sorted``: the
    relabelling is monotone, so every row's columns stay sorted and need no sort."""
    col = new_id[csr.col.long()]
    keep = col >= 0
    value = None if csr.value is None else csr.value[keep]
    return CSR.from_coo(
        csr.row()[keep], col[keep], value, csr.num_rows, num_kept,
        is_sorted=is_sorted, trust_data=True,
    )  # fmt: skip


def induced_subgraph(csr: CSR, index: Tensor) -> CSR:
    r"""The block :math:`M_{idx, idx}` of a square :class:`~graphops.ops.csr.CSR` ``M``.

    Args:
        csr (CSR): ``[N, N]`` adjacency (``adj_t`` form; weights, duplicates and self-loops kept).
        index (Tensor): ``[k]`` distinct kept nodes, any order.

    Returns:
        A ``[k, k]`` CSR whose node ``t`` is ``index[t]``. Weights are gathered, so gradients flow
        back to ``csr.value``.
    """
    csr._require_square('induced_subgraph')
    index = check_node_subset(index, csr.num_rows).to(csr.device)
    new_id = relabel_map(index, csr.num_cols)
    return _select_columns(csr.select_rows(index), new_id, index.numel(), _is_ascending(index))


METHODS = ('auto', 'dense', 'sparse', 'expand')

# Dense products run at BLAS speed, tens of times faster per multiply-add than sparse
# accumulation: 'auto' goes dense once the sparse expansion is within this factor of k * N * k.
_DENSE_ADVANTAGE = 48
_DENSE_MAX_ELEMENTS = 2**24


def _append_entries(csr: CSR, value: Tensor, at_row: Tensor, at_col: Tensor) -> CSR:
    """``csr`` (with weights ``value``) plus a unit entry at each ``(at_row[t], at_col[t])``
    (distinct rows), placed last in its row: no sort, so columns may end up unsorted within rows,
    which every product below accepts."""
    counts = csr.row_counts()
    extra = torch.zeros_like(counts).index_fill_(0, at_row, 1)
    rowptr = torch.zeros(csr.num_rows + 1, dtype=torch.long, device=counts.device)
    torch.cumsum(counts + extra, 0, out=rowptr[1:])
    row = csr.row().long()
    old_position = rowptr[row] + torch.arange(csr.nnz, device=row.device) - csr.rowptr.long()[row]
    new_position = rowptr[at_row + 1] - 1
    total = csr.nnz + at_row.numel()
    col = torch.empty(total, dtype=torch.long, device=row.device)
    col[old_position], col[new_position] = csr.col.long(), at_col
    ones = value.new_ones(at_row.numel())
    value = (
        value.new_zeros(total).index_put((old_position,), value).index_put((new_position,), ones)
    )
    return CSR(rowptr, col, value, csr.num_rows, csr.num_cols, trust_data=True)


def augmented_subgraph(
    csr: CSR,
    index: Tensor,
    dtype: torch.dtype | None = None,
    method: str = 'auto',
    self_loops: bool = False,
) -> CSR:
    r"""The block :math:`(M^2)_{idx, idx} = M_{idx, :} \, M_{:, idx}` of a square CSR ``M``,
    without forming :math:`M^2`.

    Args:
        csr (CSR): ``[N, N]`` adjacency (``adj_t`` form). Self-loops count as paths.
        index (Tensor): ``[k]`` distinct kept nodes, any order.
        dtype (torch.dtype, optional): value dtype when ``csr`` is unweighted (default: float32).
        method (str): how the product runs; every method gives the same matrix.
            ``'sparse'``: torch's sparse CSR kernel (no autograd); ``'expand'``: sort-based
            expansion (differentiable); ``'dense'``: a dense ``[k, N] @ [N, k]`` product
            (differentiable; for dense blocks, small ``k * N`` only); ``'auto'`` (default) picks
            dense for dense blocks, else expand when the weights require gradients, else sparse.
        self_loops (bool): square :math:`M + I` instead, so one-hop links survive beside the
            two-hop ones: :math:`((M + I)^2)_{idx,idx}`. The identity is added on the fly,
            without re-sorting ``M``. (default: ``False``)

    Returns:
        A coalesced ``[k, k]`` CSR holding, for each pair, the summed weight of all two-step paths
        ``idx[j] -> m -> idx[i]`` (any ``m``, kept or not). Differentiable in ``csr.value``
        (except with ``method='sparse'``). A ``'dense'`` product drops pairs whose path weights
        cancel to exactly zero; the sparse methods keep them as stored zeros.
    """
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    csr._require_square('augmented_subgraph')
    index = check_node_subset(index, csr.num_rows).to(csr.device)
    k, n = index.numel(), csr.num_rows
    rows = csr.select_rows(index)  # M[idx, :], k x N
    cols = _select_columns(csr, relabel_map(index, csr.num_cols), k)  # M[:, idx], N x k
    value_dtype = dtype or (csr.value.dtype if csr.value is not None else torch.float32)
    left_value = rows.values(value_dtype)
    right_value = cols.values(value_dtype)
    if self_loops and k > 0:
        positions = torch.arange(k, device=csr.device)
        rows = _append_entries(rows, left_value, positions, index)
        cols = _append_entries(cols, right_value, index, positions)
        left_value, right_value = rows.value, cols.value
    if k == 0 or rows.nnz == 0 or cols.nnz == 0:
        empty = torch.empty(0, dtype=torch.long, device=csr.device)
        return CSR.from_coo(
            empty, empty, left_value.new_zeros(0), k, k, is_sorted=True, trust_data=True
        )

    # Entry (i, m) of M[idx, :] meets each of the `length` entries of row m of M[:, idx].
    mid = rows.col.long()
    start = cols.rowptr.long()[mid]
    length = cols.rowptr.long()[mid + 1] - start
    needs_grad = left_value.requires_grad or right_value.requires_grad
    if method == 'auto':
        expansion = int(length.sum())
        dense_fits = k * n <= _DENSE_MAX_ELEMENTS
        if dense_fits and k * n * k <= _DENSE_ADVANTAGE * expansion:
            method = 'dense'
        else:
            method = 'expand' if needs_grad else 'sparse'
    if method == 'dense':
        return _dense_product(rows, cols, left_value, right_value, k)
    if method == 'sparse':
        if needs_grad:
            raise ValueError(
                "method='sparse' does not propagate gradients to the weights; use 'expand' "
                "or 'auto', or detach the weights"
            )
        return _torch_product(rows, cols, left_value, right_value, k)
    return _expand_product(rows, cols, left_value, right_value, start, length, k)


def _dense_product(rows: CSR, cols: CSR, left_value: Tensor, right_value: Tensor, k: int) -> CSR:
    """``rows @ cols`` as one dense matrix product, then its non-zeros (row-major = CSR order)."""
    left = rows.with_value(left_value).to_dense(left_value.dtype)
    right = cols.with_value(right_value).to_dense(right_value.dtype)
    product = left @ right
    row, col = (product != 0).nonzero(as_tuple=True)
    return CSR.from_coo(row, col, product[row, col], k, k, is_sorted=True, trust_data=True)


def _torch_product(rows: CSR, cols: CSR, left_value: Tensor, right_value: Tensor, k: int) -> CSR:
    """``rows @ cols`` with torch's sparse CSR kernel (a per-row accumulator; no autograd)."""
    # cuSPARSE SpGEMM documents sorted, duplicate-free CSR inputs; ``rows`` may hold duplicate
    # edges and appended self-loops out of order. Summing duplicates first is exact by linearity.
    left = _canonical_csr_tensor(rows, left_value)
    right = _canonical_csr_tensor(cols, right_value)
    product = left @ right
    counts = product.crow_indices().diff()
    row = torch.repeat_interleave(
        torch.arange(k, device=counts.device), counts, output_size=product.values().numel()
    )
    # The kernel leaves each row's columns unsorted (and, from duplicate input entries, may
    # repeat a pair): sort once and merge repeats to keep the CSR invariant.
    key, order = torch.sort(row * k + product.col_indices())
    value = product.values()[order]
    if key.numel() > 1 and bool((key[1:] == key[:-1]).any()):
        key, inverse = torch.unique_consecutive(key, return_inverse=True)
        value = value.new_zeros(key.numel()).index_add_(0, inverse, value)
    return CSR.from_coo(key // k, key % k, value, k, k, is_sorted=True, trust_data=True)


def _canonical_csr_tensor(csr: CSR, value: Tensor) -> Tensor:
    """``csr`` (weights ``value``) as a torch CSR tensor with sorted columns and no repeats."""
    canonical = CSR.from_coo(
        csr.row(), csr.col, value, csr.num_rows, csr.num_cols, trust_data=True
    ).coalesce()
    rowptr, col = canonical.rowptr.long(), canonical.col.long()
    return torch_csr_tensor(rowptr, col, canonical.value, canonical.shape)


def _expand_product(
    rows: CSR,
    cols: CSR,
    left_value: Tensor,
    right_value: Tensor,
    start: Tensor,
    length: Tensor,
    k: int,
) -> CSR:
    """``rows @ cols`` by sort-based expansion: differentiable in both value vectors."""
    position, source = segment_arange(start, length, int(length.sum()))
    out_row = rows.row().long()[source]
    out_col = cols.col.long()[position]
    product = left_value[source] * right_value[position]

    # Sum equal (i, j) pairs; the sorted unique keys are already in CSR order.
    key, inverse = torch.unique(out_row * k + out_col, sorted=True, return_inverse=True)
    value = product.new_zeros(key.numel()).index_add_(0, inverse, product)
    return CSR.from_coo(key // k, key % k, value, k, k, is_sorted=True, trust_data=True)


def induced_edge_index(edge_index: Tensor, index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    r"""Keeps the edges of an ``edge_index`` whose two ends are in ``index``, relabelled.

    Args:
        edge_index (Tensor): ``[2, E]`` edges (row 0 source, row 1 target).
        index (Tensor): ``[k]`` distinct kept nodes.
        num_nodes (int): number of nodes ``N``.

    Returns:
        ``(edge_index, edge_mask)``: the ``[2, E']`` kept edges in their input order with node
        ``index[t]`` renamed ``t``, and the ``[E]`` boolean mask that selects them (apply it to
        ``edge_attr`` of any shape).
    """
    check_edge_index(edge_index)
    check_index(edge_index, 'edge_index', dim=2, upper=num_nodes, upper_name='num_nodes')
    index = check_node_subset(index, num_nodes).to(edge_index.device)
    new_id = relabel_map(index, num_nodes)
    pool_numba = dispatch.POOL_NUMBA_MIN_ENTRIES
    if dispatch.numba_kernel_applies((edge_index[0],), pool_numba, 'induced_edge_index'):
        return pool_kernels.filter_edges(edge_index, new_id)
    mapped = new_id[edge_index.long()]
    edge_mask = (mapped >= 0).all(0)
    return mapped[:, edge_mask], edge_mask
