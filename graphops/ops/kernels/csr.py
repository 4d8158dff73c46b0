r"""Numba kernels that build and normalise a :class:`~graphops.ops.csr.CSR` on CPU.

Building a CSR from an unsorted edge list is a sort of :math:`E` keys. ``torch.sort`` of 20M
``int64`` keys takes about 1.5 s on two cores. A counting sort straight by row costs two random
accesses per entry (a row counter and the entry's slot), each a cache miss on a large graph; a
two-level one (:func:`sort_coo`) streams entries into a few thousand buckets of consecutive rows,
then sorts each bucket inside L2, and takes about a third of that. Normalising is one gather per
entry; one fused pass replaces four torch temporaries of :math:`E` elements each.

Both kernels give exactly what the torch paths in :mod:`graphops.ops.csr` give: the same stable
``(row, col)`` order (duplicates keep their input order) and the same float32 roundings. Small
inputs stay on the torch paths, which need no compilation; ``dispatch.CSR_NUMBA_MIN_ENTRIES`` is the cut-over.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from graphops.ops import optional

# Column bits per pass of the in-bucket radix sort (2048 counters: 16 KiB, in L1).
RADIX_BITS = 11
# Buckets of the first sorting level: few enough that every thread's write streams stay in cache.
MAX_BUCKETS = 2048
_numba = None  # bound by _loaded before the kernels compile


# Kernels: compiled by ``_loaded`` (:class:`~graphops.ops.optional.NumbaKernels`) on first use.
def _bucket_counts(row, shift, num_buckets, bounds):
    """Per-chunk histograms ``[chunks, num_buckets]`` of ``row >> shift`` (chunk ``t`` counts
    entries ``bounds[t]:bounds[t + 1]``), and whether the rows are already in order."""
    num_chunks = bounds.shape[0] - 1
    counts = np.zeros((num_chunks, num_buckets), dtype=np.int64)
    in_order = np.ones(num_chunks, dtype=np.bool_)
    for t in _numba.prange(num_chunks):
        previous = row[bounds[t] - 1] if bounds[t] > 0 else -1
        for e in range(bounds[t], bounds[t + 1]):
            r = row[e]
            counts[t, r >> shift] += 1
            if r < previous:
                in_order[t] = False
            previous = r
    return counts, in_order.all()


def _offsets(counts):
    """Turns the per-chunk counts into each chunk's first free slot per bucket (in place) and
    returns the bucket pointer: chunk ``t``'s entries of a bucket follow those of chunks ``< t``,
    which keeps the scatter stable."""
    num_chunks, width = counts.shape
    pointer = np.zeros(width + 1, dtype=np.int64)
    base = 0
    for b in range(width):
        pointer[b] = base
        for t in range(num_chunks):
            n = counts[t, b]
            counts[t, b] = base
            base += n
    pointer[width] = base
    return pointer


def _scatter_to_buckets(
    row, col, bounds, cursors, shift, with_perm, bucket_row, bucket_col, bucket_perm
):
    """Stable scatter of every entry to the next free slot of its bucket (a few thousand
    sequential write streams, instead of one random write per entry); rows are stored relative
    to their bucket's first row, so they fit in 32 bits."""
    for t in _numba.prange(bounds.shape[0] - 1):
        for e in range(bounds[t], bounds[t + 1]):
            r = row[e]
            b = r >> shift
            slot = cursors[t, b]
            cursors[t, b] = slot + 1
            bucket_row[slot] = r - (b << shift)
            bucket_col[slot] = col[e]
            if with_perm:
                bucket_perm[slot] = e


def _sort_buckets(
    pointer,
    bucket_row,
    bucket_col,
    bucket_perm,
    shift,
    num_rows,
    col_bits,
    scattered,
    with_perm,
    rowptr,
    out_col,
    perm,
):
    """Sorts each bucket (a few hundred rows whose entries fit in L2) by ``(row, col)``: a stable
    LSD radix sort by column, ``RADIX_BITS`` bits a pass, then a stable counting sort by row,
    which also fills ``rowptr``. Every pass is stable, so duplicates keep their input order."""
    span = 1 << shift
    radix = 1 << RADIX_BITS
    for b in _numba.prange(pointer.shape[0] - 1):
        first_row = b * span
        last_row = min(num_rows, first_row + span)
        if first_row >= last_row:
            continue
        start, end = pointer[b], pointer[b + 1]
        size = end - start
        # the scatter stored rows relative to their bucket, and each entry's input position;
        # input already in row order is its own bucketing, with absolute rows and positions
        base = 0 if scattered else first_row
        rows = np.empty(size, dtype=np.int32)
        cols = np.empty(size, dtype=out_col.dtype)
        order = np.empty(size if with_perm else 0, dtype=np.int64)
        for e in range(size):
            rows[e] = bucket_row[start + e] - base
            cols[e] = bucket_col[start + e]
            if with_perm:
                order[e] = bucket_perm[start + e] if scattered else start + e
        spare_rows = np.empty_like(rows)
        spare_cols = np.empty_like(cols)
        spare_order = np.empty_like(order)
        count = np.empty(radix + 1, dtype=np.int64)
        low_bit = 0
        while low_bit < col_bits:
            count[:] = 0
            for e in range(size):
                count[((cols[e] >> low_bit) & (radix - 1)) + 1] += 1
            for d in range(1, radix + 1):
                count[d] += count[d - 1]
            for e in range(size):
                digit = (cols[e] >> low_bit) & (radix - 1)
                slot = count[digit]
                count[digit] = slot + 1
                spare_rows[slot] = rows[e]
                spare_cols[slot] = cols[e]
                if with_perm:
                    spare_order[slot] = order[e]
            rows, spare_rows = spare_rows, rows
            cols, spare_cols = spare_cols, cols
            order, spare_order = spare_order, order
            low_bit += RADIX_BITS
        cursor = np.zeros(last_row - first_row + 1, dtype=np.int64)
        for e in range(size):
            cursor[rows[e] + 1] += 1
        cursor[0] = start
        for r in range(1, cursor.shape[0]):
            cursor[r] += cursor[r - 1]
        for r in range(first_row, last_row):
            rowptr[r] = cursor[r - first_row]
        for e in range(size):
            slot = cursor[rows[e]]
            cursor[rows[e]] = slot + 1
            out_col[slot] = cols[e]
            if with_perm:
                perm[slot] = order[e]
    rowptr[num_rows] = pointer[pointer.shape[0] - 1]


def _scale_values(rowptr, col, value, weighted, left, right, out):
    """``out[k] = (left[i] * value[k]) * right[col[k]]``, torch's float32 rounding order."""
    num_rows = rowptr.shape[0] - 1
    for i in _numba.prange(num_rows):
        a = left[i]
        for k in range(rowptr[i], rowptr[i + 1]):
            # both branches stay in the input dtype, so the rounding matches torch's
            scaled = a * value[k] if weighted else a
            out[k] = scaled * right[col[k]]


_loaded = optional.NumbaKernels(
    globals(),
    (_bucket_counts, True),
    (_offsets, False),
    (_scatter_to_buckets, True),
    (_sort_buckets, True),
    (_scale_values, True),
)


def bucket_shift(num_rows: int) -> int:
    """``log2`` of the rows per bucket: at most :data:`MAX_BUCKETS` buckets (rows relative to a
    bucket fit in ``int32``)."""
    return max(0, int(num_rows - 1).bit_length() - MAX_BUCKETS.bit_length() + 1)


def sort_coo(
    row: Tensor,
    col: Tensor,
    num_rows: int,
    num_cols: int,
    index_dtype: torch.dtype,
    with_perm: bool,
):
    """Stable lexicographic ``(row, col)`` order of a CPU edge list.

    Two levels: entries go to buckets of :math:`2^s` consecutive rows (a stable, streaming
    scatter), then each bucket, small enough for L2, is radix-sorted by column and counting-sorted
    by row. Rows already in order skip the first level.

    Returns ``(rowptr, col, perm)``: ``rowptr`` ``[num_rows + 1]`` and sorted ``col`` in
    ``index_dtype``, and ``perm`` (``int64``, sorted position -> input position) when
    ``with_perm``, else ``None``. Indices must already be validated (``0 <= row < num_rows``).
    """
    bucket_counts, offsets, scatter_to_buckets, sort_buckets, _ = _loaded()
    row_np = row.numpy()
    col_np = col.numpy()
    nnz = col_np.shape[0]
    shift = bucket_shift(num_rows)
    num_buckets = ((num_rows - 1) >> shift) + 1 if num_rows else 1
    num_chunks = max(1, min(optional.kernel_threads(), nnz // max(num_buckets, 1)))
    bounds = np.linspace(0, nnz, num_chunks + 1).astype(np.int64)
    counts, rows_in_order = bucket_counts(row_np, shift, num_buckets, bounds)
    pointer = offsets(counts)
    numpy_index = np.int32 if index_dtype == torch.int32 else np.int64
    if rows_in_order:  # the input is already bucketed
        bucket_row, bucket_col, bucket_perm = row_np, col_np, np.empty(0, np.int64)
    else:
        bucket_row = np.empty(nnz, dtype=np.int32)
        bucket_col = np.empty(nnz, dtype=numpy_index)
        bucket_perm = np.empty(nnz if with_perm else 0, dtype=np.int64)
        scatter_to_buckets(
            row_np, col_np, bounds, counts, shift, with_perm, bucket_row, bucket_col, bucket_perm
        )
    rowptr = np.empty(num_rows + 1, dtype=np.int64)
    out_col = np.empty(nnz, dtype=numpy_index)
    perm = np.empty(nnz if with_perm else 0, dtype=np.int64)
    sort_buckets(
        pointer,
        bucket_row,
        bucket_col,
        bucket_perm,
        shift,
        num_rows,
        max(1, int(num_cols - 1).bit_length()),
        not rows_in_order,
        with_perm,
        rowptr,
        out_col,
        perm,
    )
    return (
        torch.from_numpy(rowptr.astype(numpy_index, copy=False)),
        torch.from_numpy(out_col),
        torch.from_numpy(perm) if with_perm else None,
    )


def scale_values(
    rowptr: Tensor, col: Tensor, value: Tensor | None, left: Tensor, right: Tensor
) -> Tensor:
    """``left[row] * value * right[col]`` per entry (``value`` ``None`` means ones), in
    ``left``'s dtype."""
    *_, scale = _loaded()
    out = np.empty(col.numel(), dtype=left.numpy().dtype)
    weighted = value is not None
    value_np = value.detach().to(left.dtype).numpy() if weighted else np.empty(0, out.dtype)
    scale(rowptr.numpy(), col.numpy(), value_np, weighted, left.numpy(), right.numpy(), out)
    return torch.from_numpy(out)
