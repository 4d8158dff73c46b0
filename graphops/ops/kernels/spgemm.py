"""Numba kernels of :func:`graphops.ops.spgemm`: the symbolic pass (entries per output row), the
numeric pass and the backward pass, row-parallel over chunks of equal work."""

import numpy as np

from graphops.ops.optional import NumbaKernels


# Compiled by ``loaded`` (:class:`~graphops.ops.optional.NumbaKernels`) on first use.
def symbolic_kernel(a_rowptr, a_col, b_rowptr, b_col, num_cols, topk, bounds, counts):
    for chunk in _numba.prange(bounds.shape[0] - 1):
        marker = np.full(num_cols, -1, dtype=np.int64)
        for i in range(bounds[chunk], bounds[chunk + 1]):
            n = 0
            for e in range(a_rowptr[i], a_rowptr[i + 1]):
                m = a_col[e]
                for f in range(b_rowptr[m], b_rowptr[m + 1]):
                    k = b_col[f]
                    if marker[k] != i:
                        marker[k] = i
                        n += 1
            counts[i] = min(n, topk) if topk > 0 else n


def numeric_kernel(
    a_rowptr,
    a_col,
    a_value,
    b_rowptr,
    b_col,
    b_value,
    num_cols,
    topk,
    bounds,
    c_rowptr,
    c_col,
    c_value,
):
    for chunk in _numba.prange(bounds.shape[0] - 1):
        acc = np.zeros(num_cols, dtype=c_value.dtype)
        marker = np.full(num_cols, -1, dtype=np.int64)
        touched = np.empty(num_cols, dtype=np.int64)
        for i in range(bounds[chunk], bounds[chunk + 1]):
            n = 0
            # Terms are summed in (A entry, B entry) order, as the torch backend does.
            for e in range(a_rowptr[i], a_rowptr[i + 1]):
                m = a_col[e]
                a = a_value[e]
                for f in range(b_rowptr[m], b_rowptr[m + 1]):
                    k = b_col[f]
                    if marker[k] != i:
                        marker[k] = i
                        touched[n] = k
                        n += 1
                    acc[k] += a * b_value[f]
            cols = np.sort(touched[:n])
            if topk > 0 and n > topk:
                magnitude = np.empty(n, dtype=c_value.dtype)
                for t in range(n):
                    magnitude[t] = -abs(acc[cols[t]])
                order = np.argsort(magnitude, kind='mergesort')
                cols = np.sort(cols[order[:topk]])
            start = c_rowptr[i]
            for t in range(cols.shape[0]):
                c_col[start + t] = cols[t]
                c_value[start + t] = acc[cols[t]]
            for t in range(n):
                acc[touched[t]] = 0


def backward_kernel(
    a_rowptr,
    a_col,
    a_value,
    b_rowptr,
    b_col,
    b_value,
    c_rowptr,
    c_col,
    grad_c,
    num_cols,
    bounds,
    need_b,
    grad_a,
    grad_b_parts,
):
    for chunk in _numba.prange(bounds.shape[0] - 1):
        grad_row = np.zeros(num_cols, dtype=grad_a.dtype)
        for i in range(bounds[chunk], bounds[chunk + 1]):
            for t in range(c_rowptr[i], c_rowptr[i + 1]):
                grad_row[c_col[t]] = grad_c[t]
            for e in range(a_rowptr[i], a_rowptr[i + 1]):
                m = a_col[e]
                a = a_value[e]
                total = 0.0
                for f in range(b_rowptr[m], b_rowptr[m + 1]):
                    g = grad_row[b_col[f]]
                    total += g * b_value[f]
                    if need_b:
                        grad_b_parts[chunk, f] += a * g
                grad_a[e] = total
            for t in range(c_rowptr[i], c_rowptr[i + 1]):
                grad_row[c_col[t]] = 0


_numba = None  # bound by loaded before the kernels compile
loaded = NumbaKernels(
    globals(),
    (symbolic_kernel, True),
    (numeric_kernel, True),
    (backward_kernel, True),
)
