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
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from graphops.ops.csr import CSR, rowptr_from_rows, segment_arange, to_csr
from graphops.ops.dispatch import SPGEMM_SERIAL_WORK, choose_backend, threads_for
from graphops.ops.kernels import spgemm as spgemm_kernels
from graphops.ops.memory import check_fits, memory_budget
from graphops.ops.spmm import has_numba, row_chunks
from graphops.ops.streaming import row_blocks
from graphops.ops.validate import check_num_nodes, check_positive_int, check_same_device

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
    check_positive_int(chunk_size, 'chunk_size')
    if isinstance(entry_bytes, bool) or not isinstance(entry_bytes, int) or entry_bytes < 0:
        raise ValueError(f'entry_bytes must be a non-negative int, got {entry_bytes!r}')
    dtype = _result_dtype(a, b)
    ready = has_numba()
    chosen = choose_backend(
        'spgemm', backend, a.device, kernel='numba', kernel_ready=ready, inputs=(a.col, b.col)
    )
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
    return CSR.from_csr(rowptr, col, value, a.num_rows, b.num_cols)


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
        return CSR.from_csr(self.rowptr, self.col, value, self.num_rows, self.num_cols)


def product_plan(a: CSR, b: CSR) -> ProductPlan:
    """The :class:`ProductPlan` of ``a @ b`` (eager: its sizes depend on the data). It holds one
    index per ``(i, m, k)`` term, three ``int64`` tensors of the product's work."""
    if a.num_cols != b.num_rows:
        raise ValueError(f'cannot multiply a {a.shape} matrix by a {b.shape} one')
    operands = _Operands.of((a.rowptr, a.col, b.rowptr, b.col, a.num_rows, b.num_cols))
    total = int(operands.row_work()[-1])
    a_entry, b_entry, rows = operands.expand(0, a.num_rows, total)
    width = max(b.num_cols, 1)
    unique, c_entry = torch.unique(rows * width + operands.b_col[b_entry], return_inverse=True)
    c_row = torch.div(unique, width, rounding_mode='floor')
    return ProductPlan(
        rowptr=rowptr_from_rows(c_row, a.num_rows),
        col=unique - c_row * width,
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
    operands = _Operands.of((a.rowptr, a.col, b.rowptr, b.col, a.num_rows, b.num_cols))
    work = operands.row_work()
    bound = min(int(work[-1]), a.num_rows * b.num_cols)
    if topk:
        bound = min(bound, a.num_rows * topk)
    if bound * per_entry + rows_bytes <= memory_budget(a.device):
        return
    exact = bound
    if a.device.type == 'cpu' and has_numba():
        threads = threads_for(int(work[-1]), SPGEMM_SERIAL_WORK)
        exact = int(_numba_counts(operands, topk or 0, work.numpy(), threads)[0].sum())
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


# --- the autograd Function ----------------------------------------------------------------------


class _Operands(NamedTuple):
    """Both inputs of one product as the backends read them (``int64`` indices, detached values;
    values are ``None`` where only the structure is needed)."""

    a_rowptr: Tensor
    a_col: Tensor
    a_value: Tensor | None
    b_rowptr: Tensor
    b_col: Tensor
    b_value: Tensor | None
    num_rows: int
    num_cols: int

    @classmethod
    def of(cls, structure, a_value=None, b_value=None) -> _Operands:
        a_rowptr, a_col, b_rowptr, b_col, num_rows, num_cols = structure
        a_value = None if a_value is None else a_value.detach()
        b_value = None if b_value is None else b_value.detach()
        return cls(
            a_rowptr.long(), a_col.long(), a_value, b_rowptr.long(), b_col.long(), b_value,
            num_rows, num_cols,
        )  # fmt: skip

    def row_work(self) -> Tensor:
        """``[num_rows + 1]`` cumulative count of ``(i, m, k)`` terms up to each row of ``A``."""
        per_entry = (self.b_rowptr[1:] - self.b_rowptr[:-1])[self.a_col]
        cumulative = torch.zeros(self.a_col.numel() + 1, dtype=torch.long, device=per_entry.device)
        torch.cumsum(per_entry, 0, out=cumulative[1:])
        return cumulative[self.a_rowptr]

    def expand(self, start: int, end: int, total: int) -> tuple[Tensor, Tensor, Tensor]:
        """Every ``(i, m, k)`` term of rows ``start:end``: its A entry, its B entry, its row."""
        a_rowptr = self.a_rowptr
        a_index = torch.arange(int(a_rowptr[start]), int(a_rowptr[end]), device=a_rowptr.device)
        mid = self.a_col[a_index]
        b_start = self.b_rowptr[mid]
        b_index, segment = segment_arange(b_start, self.b_rowptr[mid + 1] - b_start, total)
        return a_index[segment], b_index, _block_rows(a_rowptr, start, end)[segment]


class _SpGEMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a_value, b_value, structure, topk, backend, chunk_size):
        operands = _Operands.of(structure, a_value, b_value)
        if backend == 'numba':
            rowptr, col, value = _numba_forward(operands, topk)
        else:
            rowptr, col, value = _torch_forward(operands, topk, chunk_size)
        ctx.save_for_backward(a_value, b_value)
        ctx.structure, ctx.product = structure, (rowptr, col)
        ctx.backend, ctx.chunk_size = backend, chunk_size
        ctx.mark_non_differentiable(rowptr, col)
        return rowptr, col, value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _grad_rowptr, _grad_col, grad_value):
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if grad_value is None or not (need_a or need_b):
            return None, None, None, None, None, None
        operands = _Operands.of(ctx.structure, *ctx.saved_tensors)
        c_rowptr, c_col = ctx.product
        grad_c = grad_value.contiguous()
        if ctx.backend == 'numba':
            grad_a, grad_b = _numba_backward(operands, c_rowptr, c_col, grad_c, need_a, need_b)
        else:
            grad_a, grad_b = _torch_backward(
                operands, c_rowptr, c_col, grad_c, need_a, need_b, ctx.chunk_size
            )
        return grad_a, grad_b, None, None, None, None


# --- helpers shared by both backends ------------------------------------------------------------


def _block_rows(rowptr: Tensor, start: int, end: int) -> Tensor:
    """The row of each entry of rows ``start:end``."""
    counts = rowptr[start + 1 : end + 1] - rowptr[start:end]
    rows = torch.arange(start, end, device=rowptr.device)
    return torch.repeat_interleave(rows, counts, output_size=int(rowptr[end] - rowptr[start]))


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


def _torch_forward(p: _Operands, topk: int, chunk_size: int):
    device, dtype = p.a_col.device, p.a_value.dtype
    work = p.row_work()
    rows, cols, values = [], [], []
    width = max(p.num_cols, 1)
    for start, end in row_blocks(work, chunk_size):
        total = int(work[end] - work[start])
        if total == 0:
            continue
        a_entry, b_index, row = p.expand(start, end, total)
        key = (row - start) * width + p.b_col[b_index]
        product = p.a_value[a_entry] * p.b_value[b_index]
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
    return rowptr_from_rows(row, p.num_rows), col, value


def _torch_backward(p: _Operands, c_rowptr, c_col, grad_c, need_a, need_b, chunk_size):
    grad_a = torch.zeros_like(p.a_value) if need_a else None
    grad_b = torch.zeros_like(p.b_value) if need_b else None
    c_rowptr, c_col = c_rowptr.long(), c_col.long()
    work = p.row_work()
    width = max(p.num_cols, 1)
    for start, end in row_blocks(work, chunk_size):
        total = int(work[end] - work[start])
        c_begin, c_end = int(c_rowptr[start]), int(c_rowptr[end])
        if total == 0 or c_end == c_begin:
            continue
        a_entry, b_index, row = p.expand(start, end, total)
        key = (row - start) * width + p.b_col[b_index]
        del row
        c_key = (_block_rows(c_rowptr, start, end) - start) * width + c_col[c_begin:c_end]
        position = torch.searchsorted(c_key, key).clamp_(max=c_key.numel() - 1)
        # A term whose output entry was pruned away (top-k) gets no gradient.
        grad_term = torch.where(
            c_key[position] == key, grad_c[c_begin + position], grad_c.new_zeros(())
        )
        del key, position, c_key
        if need_a:
            grad_a.index_add_(0, a_entry, grad_term * p.b_value[b_index])
        if need_b:
            grad_b.index_add_(0, b_index, grad_term * p.a_value[a_entry])
    return grad_a, grad_b


# --- the numba backend (CPU) --------------------------------------------------------------------


def _numba_counts(p: _Operands, topk: int, work: np.ndarray, threads: int):
    """The symbolic pass: ``(counts, bounds)``, the entries of each output row (at most ``topk``
    when given) and the row chunks the threads ran."""
    symbolic, *_ = spgemm_kernels.loaded()
    bounds = row_chunks(work, 8 * threads)
    counts = np.zeros(p.num_rows, dtype=np.int64)
    indices = (p.a_rowptr.numpy(), p.a_col.numpy(), p.b_rowptr.numpy(), p.b_col.numpy())
    symbolic(*indices, max(p.num_cols, 1), topk, bounds, counts, threads=threads)
    return counts, bounds


def _numba_forward(p: _Operands, topk: int):
    _, numeric, _ = spgemm_kernels.loaded()
    if p.num_rows == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return torch.zeros(1, dtype=torch.long), empty, torch.zeros(0, dtype=p.a_value.dtype)
    work = p.row_work().numpy()
    threads = threads_for(int(work[-1]), SPGEMM_SERIAL_WORK)
    counts, bounds = _numba_counts(p, topk, work, threads)
    rowptr = np.zeros(p.num_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=rowptr[1:])
    col = np.empty(int(rowptr[-1]), dtype=np.int64)
    value = np.empty(int(rowptr[-1]), dtype=p.a_value.numpy().dtype)
    a_value, b_value = p.a_value.contiguous().numpy(), p.b_value.contiguous().numpy()
    a_index, b_index = (p.a_rowptr.numpy(), p.a_col.numpy()), (p.b_rowptr.numpy(), p.b_col.numpy())
    numeric(
        *a_index, a_value, *b_index, b_value, max(p.num_cols, 1), topk, bounds, rowptr, col, value,
        threads=threads,
    )  # fmt: skip
    return torch.from_numpy(rowptr), torch.from_numpy(col), torch.from_numpy(value)


def _numba_backward(p: _Operands, c_rowptr, c_col, grad_c, need_a, need_b):
    *_, backward = spgemm_kernels.loaded()
    dtype = p.a_value.dtype
    grad_a = torch.zeros(p.a_value.numel(), dtype=dtype)
    work = p.row_work().numpy()
    threads = threads_for(int(work[-1]), SPGEMM_SERIAL_WORK)
    # One partial gradient of B per chunk (chunks never write to the same slot), merged into
    # fewer when they would take more than _PARTIAL_BUDGET_BYTES.
    partial_bytes = max(p.b_value.numel() * p.b_value.element_size(), 1)
    parts = max(1, min(threads, _PARTIAL_BUDGET_BYTES // partial_bytes)) if need_b else threads
    grad_b_parts = torch.zeros(parts, p.b_value.numel() if need_b else 0, dtype=dtype)
    a_value, b_value = p.a_value.contiguous().numpy(), p.b_value.contiguous().numpy()
    a_index, b_index = (p.a_rowptr.numpy(), p.a_col.numpy()), (p.b_rowptr.numpy(), p.b_col.numpy())
    backward(
        *a_index, a_value, *b_index, b_value, c_rowptr.long().numpy(), c_col.long().numpy(),
        grad_c.to(dtype).numpy(), max(p.num_cols, 1), row_chunks(work, parts), need_b,
        grad_a.numpy(), grad_b_parts.numpy(), threads=threads,
    )  # fmt: skip
    return (grad_a if need_a else None), (grad_b_parts.sum(0) if need_b else None)
