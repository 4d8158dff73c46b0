r"""Sparse x sparse products :math:`C = A B` of weighted adjacencies, differentiable in the weights.

:func:`spgemm` multiplies two :class:`~graphops.ops.csr.CSR` matrices (``adj_t`` form or any
other: it is plain matrix algebra) and returns a coalesced CSR whose values carry autograd to the
values of *both* inputs; :func:`spspmm` is the same product on COO ``(index, value)`` pairs with
``torch_sparse.spspmm``'s signature. The structure (which entries exist) is never differentiated:
an entry of ``C`` exists when some path ``i -> m -> k`` exists, even if its weight sums to zero.

Why a hand-written :class:`torch.autograd.Function` and not composed torch ops: a product of
meta-path adjacencies expands to far more intermediate terms than it has outputs (ACM's
paper-term-paper block: 187M terms for 10M outputs). Composed ops (gather, multiply,
``index_add``) make autograd keep every intermediate index tensor alive until backward, tens of
bytes per term; ``torch.sparse.mm`` on two sparse tensors forms an unmasked gradient product. The
Function here saves only the two inputs and the output's structure, and recomputes the
expansion block by block in backward, so memory stays at the size of inputs + output. Its
gradients are checked with :func:`torch.autograd.gradcheck` in float64 in the tests.

The gradient is the product's adjoint restricted to the input patterns (a masked product):

.. math::
    \frac{\partial L}{\partial A_{im}} = \sum_k \frac{\partial L}{\partial C_{ik}} B_{mk},
    \qquad
    \frac{\partial L}{\partial B_{mk}} = \sum_i A_{im} \frac{\partial L}{\partial C_{ik}},

summed over the same ``(i, m, k)`` terms the forward pass visits, so it costs what the forward
costs and never forms :math:`\partial L / \partial C \cdot B^\top`.

**Top-k pruning** (``topk=k``, off by default) keeps, in each output row, the ``k`` entries of
largest magnitude (ties: smaller column first) and drops the rest *before* the result is stored.
It is an approximation: the dropped weights are lost (a following row normalisation rescales the
kept ones to sum to one) and receive no gradient; the choice of kept entries is treated as a
constant by autograd. It bounds the output at ``k`` entries per row, which is what makes long
meta-path products on hub-heavy graphs fit in memory.

Backends (``backend='auto'`` follows ``graphops.ops.dispatch``'s override, else picks the
first that applies):

* ``'numba'``: CPU only, needs the optional ``numba`` package. Gustavson's row-by-row algorithm
  with a dense accumulator per thread, rows split into chunks of equal work; a symbolic pass
  sizes the output exactly, a numeric pass fills it.
* ``'torch'``: any device (the CUDA path). Expand-sort-compress in blocks of at most
  ``chunk_size`` terms: each block's ``(row, col)`` keys are made unique with ``torch.unique`` and
  their products summed with ``index_add_``.

Both give the same structure and, on CPU, the same values (terms are summed in the same order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from graphops.ops.csr import CSR, index_dtype_for, to_csr
from graphops.ops.dispatch import SPGEMM_SERIAL_WORK, choose_backend, current_backend, threads_for
from graphops.ops.kernels import spgemm as spgemm_kernels
from graphops.ops.memory import check_fits, memory_budget
from graphops.ops.optional import warn_torch_fallback
from graphops.ops.spmm import has_numba, row_chunks
from graphops.ops.validate import (
    check_num_nodes,
    check_same_device,
)

DEFAULT_CHUNK_SIZE = 1 << 21
# Per-thread partial gradient buffers above this size are merged into fewer threads.
_PARTIAL_BUDGET_BYTES = 256 << 20


# --- public API ---------------------------------------------------------------------------------


def spgemm(
    a,
    b,
    *,
    topk: int | None = None,
    backend: str = 'auto',
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    entry_bytes: int = 0,
) -> CSR:
    r"""Returns :math:`C = A B` as a coalesced :class:`~graphops.ops.csr.CSR`.

    Gradients flow to ``a.value`` and ``b.value`` when they require them (``None`` values mean
    unit weights, which get no gradient).

    Args:
        a (CSR): ``[n, m]`` left matrix, or anything :func:`~graphops.ops.csr.to_csr` accepts
            (``torch.sparse`` tensor, ``torch_sparse.SparseTensor``, scipy matrix). For an
            ``edge_index`` with weights, build it with ``to_csr(edge_index, edge_weight,
            num_nodes)`` first.
        b (CSR): ``[m, p]`` right matrix, same forms.
        topk (int, optional): keep only the ``topk`` largest-magnitude entries of each output
            row (an approximation, see the module docstring). (default: :obj:`None`, exact)
        backend (str): ``'auto'`` (default), ``'numba'`` (CPU) or ``'torch'``.
        chunk_size (int): most intermediate terms the ``'torch'`` backend expands at once; bounds
            its working memory (about 80 bytes per term). (default: ``2**21``)
        entry_bytes (int): bytes the caller will spend per output entry after the product (its
            own buffers over ``C``), counted with the product's own against the memory budget of
            :mod:`graphops.ops.memory`. (default: ``0``)

    Raises:
        ProductTooLargeError: the output (an upper bound from row degrees, then the exact count)
            would exceed the memory budget; raised before anything large is allocated.

    Returns:
        CSR: ``[n, p]``, entries sorted by ``(row, col)``, no duplicates; values in the promoted
        dtype of the inputs (``float32`` when both are unweighted).

    Shapes:
        ``a``: :math:`(n, m)`, ``b``: :math:`(m, p)` -> :math:`(n, p)`.
    """
    a = to_csr(a)
    b = to_csr(b)
    if a.num_cols != b.num_rows:
        raise ValueError(
            f'cannot multiply a of shape {a.shape} by b of shape {b.shape}: a has {a.num_cols} '
            f'columns but b has {b.num_rows} rows; they must match'
        )
    check_same_device([('a', a.col), ('b', b.col)])
    topk = check_topk(topk)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f'chunk_size must be a positive int, got {chunk_size!r}')
    if isinstance(entry_bytes, bool) or not isinstance(entry_bytes, int) or entry_bytes < 0:
        raise ValueError(f'entry_bytes must be a non-negative int, got {entry_bytes!r}')
    dtype = _result_dtype(a, b)
    chosen = choose_backend('spgemm', backend, a.device, kernel='numba', kernel_ready=has_numba())
    if chosen == 'torch' and backend == 'auto' and current_backend() == 'auto':
        warn_torch_fallback('spgemm', (a.col, b.col))
    _check_product_fits(a, b, topk, dtype, entry_bytes)
    a_value = a.values(dtype)
    b_value = b.values(dtype)
    rowptr, col, value = _SpGEMM.apply(
        a_value,
        b_value,
        (a.rowptr, a.col, b.rowptr, b.col, a.num_rows, b.num_cols),
        topk or 0,
        chosen,
        chunk_size,
    )
    index_dtype = index_dtype_for(a.num_rows, b.num_cols, col.numel())
    return CSR(
        rowptr.to(index_dtype), col.to(index_dtype), value, a.num_rows, b.num_cols, trust_data=True
    )


def spspmm(
    index_a: Tensor,
    value_a: Tensor | None,
    index_b: Tensor,
    value_b: Tensor | None,
    m: int,
    k: int,
    n: int,
    *,
    topk: int | None = None,
    backend: str = 'auto',
) -> tuple[Tensor, Tensor]:
    r"""``torch_sparse.spspmm``'s signature on :func:`spgemm`: :math:`C = A B` for COO inputs.

    Unlike an ``edge_index``, ``index`` here holds *matrix* coordinates: row 0 the row, row 1 the
    column (what ``torch_sparse`` and the GTN authors' code pass).

    Args:
        index_a (LongTensor): ``[2, nnz_a]`` coordinates of ``A`` (``m x k``).
        value_a (Tensor, optional): ``[nnz_a]`` values of ``A`` (``None``: ones).
        index_b (LongTensor): ``[2, nnz_b]`` coordinates of ``B`` (``k x n``).
        value_b (Tensor, optional): ``[nnz_b]`` values of ``B``.
        m, k, n (int): the matrix sizes.
        topk (int, optional): per-row pruning, see :func:`spgemm`. (default: :obj:`None`)
        backend (str): see :func:`spgemm`. (default: ``'auto'``)

    Returns:
        (LongTensor, Tensor): ``[2, nnz_c]`` coordinates (sorted, coalesced) and ``[nnz_c]``
        values of ``C`` (``m x n``), differentiable in ``value_a`` and ``value_b``.
    """
    m, k, n = (check_num_nodes(v, name) for v, name in ((m, 'm'), (k, 'k'), (n, 'n')))
    # to_csr reads [2, E] as (source, target) = (column, row) of adj_t: flip the coordinates.
    a = to_csr(_coo_index(index_a, 'index_a').flip(0), value_a, (k, m))
    b = to_csr(_coo_index(index_b, 'index_b').flip(0), value_b, (n, k))
    c = spgemm(a, b, topk=topk, backend=backend)
    index = torch.stack([c.row().long(), c.col.long()], dim=0)
    return index, c.values()


# --- products on a fixed structure (the torch.compile path) ---------------------------------------


@dataclass(eq=False)
class ProductPlan:
    """The structure of :math:`C = A B` for fixed patterns of ``A`` and ``B`` (the values may
    change): ``C``'s pattern (``rowptr``, ``col``, the ``row`` of each entry; the structural one
    of :func:`spgemm`, with ``topk=None``) and, for each of its ``(i, m, k)`` terms, the entry of
    ``A`` and of ``B`` it multiplies and the entry of ``C`` it adds into. Built once, eagerly, by
    :func:`product_plan`; :func:`planned_spgemm` then forms the values with torch ops of static
    shape, which ``torch.compile`` traces without a graph break.
    """

    rowptr: Tensor
    col: Tensor
    row: Tensor
    num_rows: int
    num_cols: int
    a_entry: Tensor
    b_entry: Tensor
    c_entry: Tensor

    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def num_terms(self) -> int:
        return self.c_entry.numel()

    def csr(self, value: Tensor | None = None) -> CSR:
        """``C`` as a :class:`~graphops.ops.csr.CSR` with the given values."""
        dtype = index_dtype_for(self.num_rows, self.num_cols, self.nnz)
        return CSR(
            self.rowptr.to(dtype),
            self.col.to(dtype),
            value,
            self.num_rows,
            self.num_cols,
            trust_data=True,
        )


def product_plan(a: CSR, b: CSR) -> ProductPlan:
    """The :class:`ProductPlan` of ``a @ b`` (eager: its sizes depend on the data). It holds one
    index per ``(i, m, k)`` term, three ``int64`` tensors of the product's work."""
    if a.num_cols != b.num_rows:
        raise ValueError(f'cannot multiply a {a.shape} matrix by a {b.shape} one')
    a_rowptr, a_col, b_rowptr = a.rowptr.long(), a.col.long(), b.rowptr.long()
    work = _row_work(a_rowptr, a_col, b_rowptr)
    total = int(work[-1])
    a_entry, b_entry, rows = _expand(a_rowptr, a_col, b_rowptr, b.col, 0, a.num_rows, total)
    key = rows * max(b.num_cols, 1) + b.col.long()[b_entry]
    unique, c_entry = torch.unique(key, sorted=True, return_inverse=True)
    c_row = torch.div(unique, max(b.num_cols, 1), rounding_mode='floor')
    rowptr = torch.zeros(a.num_rows + 1, dtype=torch.long, device=a.device)
    if unique.numel():
        torch.cumsum(torch.bincount(c_row, minlength=a.num_rows), 0, out=rowptr[1:])
    return ProductPlan(
        rowptr=rowptr,
        col=unique - c_row * max(b.num_cols, 1),
        row=c_row,
        num_rows=a.num_rows,
        num_cols=b.num_cols,
        a_entry=a_entry,
        b_entry=b_entry,
        c_entry=c_entry.view(-1),
    )


def planned_spgemm(plan: ProductPlan, a_value: Tensor, b_value: Tensor) -> Tensor:
    r"""The values of :math:`C = A B` on ``plan``'s structure, from the values of ``A`` and ``B``
    in their patterns' entry order; leading dimensions (channels) broadcast. Plain torch ops
    (gather, multiply, ``index_add``), so autograd reaches both inputs and ``torch.compile``
    traces it; unlike :func:`spgemm` it keeps the ``[..., terms]`` products for backward.

    Shapes:
        ``a_value``: :math:`(\ldots, nnz_A)`, ``b_value``: :math:`(\ldots, nnz_B)` ->
        :math:`(\ldots, nnz_C)`.
    """
    terms = a_value.index_select(-1, plan.a_entry) * b_value.index_select(-1, plan.b_entry)
    out = terms.new_zeros(*terms.shape[:-1], plan.nnz)
    return out.index_add(terms.dim() - 1, plan.c_entry, terms)


# --- validation helpers -------------------------------------------------------------------------


def _check_product_fits(a: CSR, b: CSR, topk: int | None, dtype: torch.dtype, entry_bytes: int):
    """Refuses a product whose output would not fit the memory budget, before it allocates. The
    bound is one output entry per ``(i, m, k)`` term (capped by the shape and ``topk``); only when
    it is over budget is the exact count taken (numba's symbolic pass, on CPU)."""
    # per entry: int64 column and value out of the kernel, the int32/int64 copy, the value's grad
    per_entry = 8 + 8 + 2 * dtype.itemsize + entry_bytes
    rows_bytes = 2 * 8 * (a.num_rows + 1)
    work = _row_work(a.rowptr.long(), a.col.long(), b.rowptr.long())
    bound = min(int(work[-1]), a.num_rows * b.num_cols)
    if topk:
        bound = min(bound, a.num_rows * topk)
    if bound * per_entry + rows_bytes <= memory_budget(a.device):
        return
    exact = bound
    if a.device.type == 'cpu' and has_numba():
        symbolic, *_ = spgemm_kernels.loaded()
        counts = np.zeros(a.num_rows, dtype=np.int64)
        threads = threads_for(int(work[-1]), SPGEMM_SERIAL_WORK)
        symbolic(
            a.rowptr.long().numpy(),
            a.col.long().numpy(),
            b.rowptr.long().numpy(),
            b.col.long().numpy(),
            max(b.num_cols, 1),
            topk or 0,
            row_chunks(work.numpy(), 8 * threads),
            counts,
            threads=threads,
        )
        exact = int(counts.sum())
    check_fits(
        exact * per_entry + rows_bytes,
        f'spgemm of a {a.num_rows} x {a.num_cols} by a {b.num_rows} x {b.num_cols} matrix '
        f'({exact:,} output entries)',
        'select fewer output rows (GTN/GTLayer node_index), keep the top entries of each row '
        '(topk=...), use fewer layers (shorter meta-paths), or raise the budget',
        a.device,
    )


def check_topk(topk) -> int | None:
    if topk is None:
        return None
    if isinstance(topk, bool) or not isinstance(topk, int):
        raise TypeError(f'topk must be an int or None, got {type(topk).__name__}')
    if topk < 1:
        raise ValueError(f'topk must be >= 1 (or None for the exact product), got {topk}')
    return topk


def _coo_index(index, name: str) -> Tensor:
    if not isinstance(index, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(index).__name__}')
    if index.dim() != 2 or index.size(0) != 2:
        raise ValueError(f'{name} must have shape [2, nnz] (row, col), got {tuple(index.shape)}')
    return index


def _result_dtype(a: CSR, b: CSR) -> torch.dtype:
    dtypes = [c.value.dtype for c in (a, b) if c.value is not None]
    if not dtypes:
        return torch.float32
    return torch.promote_types(dtypes[0], dtypes[-1])


# --- the autograd Functions ---------------------------------------------------------------------


class _SpGEMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a_value, b_value, structure, topk, backend, chunk_size):
        a_rowptr, a_col, b_rowptr, b_col, num_rows, num_cols = structure
        run = _numba_forward if backend == 'numba' else _torch_forward
        rowptr, col, value = run(
            a_rowptr.long(),
            a_col.long(),
            a_value.detach(),
            b_rowptr.long(),
            b_col.long(),
            b_value.detach(),
            num_rows,
            num_cols,
            topk,
            chunk_size,
        )
        ctx.save_for_backward(a_value, b_value)
        ctx.structure = (a_rowptr, a_col, b_rowptr, b_col, rowptr, col, num_rows, num_cols)
        ctx.backend, ctx.chunk_size = backend, chunk_size
        ctx.mark_non_differentiable(rowptr, col)
        return rowptr, col, value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _grad_rowptr, _grad_col, grad_value):
        a_value, b_value = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if grad_value is None or not (need_a or need_b):
            return None, None, None, None, None, None
        a_rowptr, a_col, b_rowptr, b_col, c_rowptr, c_col, num_rows, num_cols = ctx.structure
        run = _numba_backward if ctx.backend == 'numba' else _torch_backward
        grad_a, grad_b = run(
            a_rowptr.long(),
            a_col.long(),
            a_value.detach(),
            b_rowptr.long(),
            b_col.long(),
            b_value.detach(),
            c_rowptr,
            c_col,
            grad_value.contiguous(),
            num_rows,
            num_cols,
            need_a,
            need_b,
            ctx.chunk_size,
        )
        return grad_a, grad_b, None, None, None, None


# --- helpers shared by both backends ------------------------------------------------------------


def _segment_arange(starts: Tensor, counts: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """For segments ``[starts[s], starts[s] + counts[s])``: every index, and its segment id."""
    segment = torch.repeat_interleave(
        torch.arange(counts.numel(), device=counts.device), counts, output_size=total
    )
    first = torch.cumsum(counts, 0) - counts
    index = starts[segment] + torch.arange(total, device=counts.device) - first[segment]
    return index, segment


def _row_work(a_rowptr: Tensor, a_col: Tensor, b_rowptr: Tensor) -> Tensor:
    """``[num_rows + 1]`` cumulative count of ``(i, m, k)`` terms up to each row of ``A``."""
    per_entry = (b_rowptr[1:] - b_rowptr[:-1])[a_col]
    cumulative = torch.zeros(a_col.numel() + 1, dtype=torch.long, device=a_col.device)
    torch.cumsum(per_entry, 0, out=cumulative[1:])
    return cumulative[a_rowptr]


def _row_blocks(work: Tensor, chunk_size: int) -> list[tuple[int, int]]:
    """Consecutive row ranges with at most ``chunk_size`` terms each (a heavier single row gets
    a block of its own)."""
    work_np = work.cpu().numpy()
    num_rows = work_np.size - 1
    blocks, start = [], 0
    while start < num_rows:
        end = int(np.searchsorted(work_np, work_np[start] + chunk_size, side='right')) - 1
        end = min(max(end, start + 1), num_rows)
        blocks.append((start, end))
        start = end
    return blocks


def _expand(a_rowptr, a_col, b_rowptr, b_col, start: int, end: int, total: int):
    """All ``(i, m, k)`` terms of rows ``start:end``: the A entry, the B entry, the row ``i``."""
    device = a_col.device
    a_begin, a_end = int(a_rowptr[start]), int(a_rowptr[end])
    a_index = torch.arange(a_begin, a_end, device=device)
    mid = a_col[a_index]
    b_start = b_rowptr[mid]
    counts = b_rowptr[mid + 1] - b_start
    b_index, segment = _segment_arange(b_start, counts, total)
    a_entry = a_index[segment]
    a_rows = torch.repeat_interleave(
        torch.arange(start, end, device=device),
        a_rowptr[start + 1 : end + 1] - a_rowptr[start:end],
        output_size=a_end - a_begin,
    )
    return a_entry, b_index, a_rows[segment]


def _top_k_mask(local_row: Tensor, value: Tensor, topk: int) -> Tensor:
    """Keeps the ``topk`` largest ``|value|`` of each row; ties go to the earlier (smaller-col)
    entry. Entries are sorted by ``(row, col)``."""
    by_value = torch.sort(-value.abs(), stable=True).indices
    order = by_value[torch.sort(local_row[by_value], stable=True).indices]
    counts = torch.bincount(local_row)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=value.device) - first[local_row[order]]
    keep = torch.zeros(value.numel(), dtype=torch.bool, device=value.device)
    keep[order[rank < topk]] = True
    return keep


# --- the torch backend (any device) -------------------------------------------------------------


def _torch_forward(
    a_rowptr, a_col, a_value, b_rowptr, b_col, b_value, num_rows, num_cols, topk, chunk_size
):
    device, dtype = a_col.device, a_value.dtype
    work = _row_work(a_rowptr, a_col, b_rowptr)
    rows, cols, values = [], [], []
    width = max(num_cols, 1)
    for start, end in _row_blocks(work, chunk_size):
        total = int(work[end] - work[start])
        if total == 0:
            continue
        a_entry, b_index, row = _expand(a_rowptr, a_col, b_rowptr, b_col, start, end, total)
        key = (row - start) * width + b_col[b_index]
        product = a_value[a_entry] * b_value[b_index]
        del a_entry, b_index, row
        unique, inverse = torch.unique(key, sorted=True, return_inverse=True)
        del key
        summed = torch.zeros(unique.numel(), dtype=dtype, device=device)
        summed.index_add_(0, inverse, product)
        del inverse, product
        local_row = torch.div(unique, width, rounding_mode='floor')
        col = unique - local_row * width
        if topk:
            keep = _top_k_mask(local_row, summed, topk)
            local_row, col, summed = local_row[keep], col[keep], summed[keep]
        rows.append(local_row + start)
        cols.append(col)
        values.append(summed)
    if rows:
        row, col, value = torch.cat(rows), torch.cat(cols), torch.cat(values)
    else:
        row = col = torch.zeros(0, dtype=torch.long, device=device)
        value = torch.zeros(0, dtype=dtype, device=device)
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=device)
    if row.numel():
        torch.cumsum(torch.bincount(row, minlength=num_rows), 0, out=rowptr[1:])
    return rowptr, col, value


def _torch_backward(
    a_rowptr,
    a_col,
    a_value,
    b_rowptr,
    b_col,
    b_value,
    c_rowptr,
    c_col,
    grad_c,
    num_rows,
    num_cols,
    need_a,
    need_b,
    chunk_size,
):
    device = a_col.device
    grad_a = torch.zeros_like(a_value) if need_a else None
    grad_b = torch.zeros_like(b_value) if need_b else None
    c_rowptr, c_col = c_rowptr.long(), c_col.long()
    work = _row_work(a_rowptr, a_col, b_rowptr)
    width = max(num_cols, 1)
    for start, end in _row_blocks(work, chunk_size):
        total = int(work[end] - work[start])
        c_begin, c_end = int(c_rowptr[start]), int(c_rowptr[end])
        if total == 0 or c_end == c_begin:
            continue
        a_entry, b_index, row = _expand(a_rowptr, a_col, b_rowptr, b_col, start, end, total)
        key = (row - start) * width + b_col[b_index]
        del row
        c_row = torch.repeat_interleave(
            torch.arange(start, end, device=device),
            c_rowptr[start + 1 : end + 1] - c_rowptr[start:end],
            output_size=c_end - c_begin,
        )
        c_key = (c_row - start) * width + c_col[c_begin:c_end]
        position = torch.searchsorted(c_key, key).clamp_(max=c_key.numel() - 1)
        # A term whose output entry was pruned away (top-k) gets no gradient.
        grad_term = torch.where(
            c_key[position] == key, grad_c[c_begin + position], grad_c.new_zeros(())
        )
        del key, position, c_key, c_row
        if need_a:
            grad_a.index_add_(0, a_entry, grad_term * b_value[b_index])
        if need_b:
            grad_b.index_add_(0, b_index, grad_term * a_value[a_entry])
    return grad_a, grad_b


def _num_partials(bytes_per_partial: int, threads: int) -> int:
    return max(1, min(threads, _PARTIAL_BUDGET_BYTES // max(bytes_per_partial, 1)))


# --- the numba backend (CPU) --------------------------------------------------------------------


def _numba_forward(
    a_rowptr, a_col, a_value, b_rowptr, b_col, b_value, num_rows, num_cols, topk, _chunk
):
    symbolic, numeric, *_ = spgemm_kernels.loaded()
    if num_rows == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return torch.zeros(1, dtype=torch.long), empty, torch.zeros(0, dtype=a_value.dtype)
    arrays = (a_rowptr.numpy(), a_col.numpy(), b_rowptr.numpy(), b_col.numpy())
    work = _row_work(a_rowptr, a_col, b_rowptr).numpy()
    threads = threads_for(int(work[-1]), SPGEMM_SERIAL_WORK)
    bounds = row_chunks(work, 8 * threads)
    counts = np.zeros(num_rows, dtype=np.int64)
    symbolic(*arrays, max(num_cols, 1), topk, bounds, counts, threads=threads)
    rowptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=rowptr[1:])
    col = np.empty(int(rowptr[-1]), dtype=np.int64)
    value = np.empty(int(rowptr[-1]), dtype=a_value.numpy().dtype)
    numeric(
        arrays[0],
        arrays[1],
        a_value.contiguous().numpy(),
        arrays[2],
        arrays[3],
        b_value.contiguous().numpy(),
        max(num_cols, 1),
        topk,
        bounds,
        rowptr,
        col,
        value,
        threads=threads,
    )
    return torch.from_numpy(rowptr), torch.from_numpy(col), torch.from_numpy(value)


def _numba_backward(
    a_rowptr,
    a_col,
    a_value,
    b_rowptr,
    b_col,
    b_value,
    c_rowptr,
    c_col,
    grad_c,
    num_rows,
    num_cols,
    need_a,
    need_b,
    _chunk,
):
    *_, backward = spgemm_kernels.loaded()
    dtype = a_value.dtype
    grad_a = torch.zeros(a_value.numel(), dtype=dtype)
    work = _row_work(a_rowptr, a_col, b_rowptr).numpy()
    threads = threads_for(int(work[-1]), SPGEMM_SERIAL_WORK)
    parts = _num_partials(b_value.numel() * b_value.element_size(), threads)
    parts = parts if need_b else threads
    grad_b_parts = torch.zeros(parts, b_value.numel() if need_b else 0, dtype=dtype)
    # One partial gradient of B per chunk: chunks never write to the same slot.
    bounds = row_chunks(work, parts)
    backward(
        a_rowptr.numpy(),
        a_col.numpy(),
        a_value.contiguous().numpy(),
        b_rowptr.numpy(),
        b_col.numpy(),
        b_value.contiguous().numpy(),
        c_rowptr.long().numpy(),
        c_col.long().numpy(),
        grad_c.to(dtype).numpy(),
        max(num_cols, 1),
        bounds,
        need_b,
        grad_a.numpy(),
        grad_b_parts.numpy(),
        threads=threads,
    )
    return (grad_a if need_a else None), (grad_b_parts.sum(0) if need_b else None)
