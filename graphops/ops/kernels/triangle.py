"""The numba kernel of :func:`graphops.ops.triangle_adjacency`: triangles through each edge."""

from graphops.ops.optional import NumbaKernels


def intersection_counts(rowptr, col, bounds, markers, out):
    # Row i marks its neighbours in a per-thread byte array; edge (i, j) then counts the marked
    # entries of row j: one branch-free lookup per entry instead of a merge of two sorted lists.
    for chunk in _numba.prange(bounds.shape[0] - 1):
        marker = markers[_numba.get_thread_id()]
        for i in range(bounds[chunk], bounds[chunk + 1]):
            row_start, row_end = rowptr[i], rowptr[i + 1]
            for k in range(row_start, row_end):
                marker[col[k]] = 1
            for k in range(row_start, row_end):
                j = col[k]
                common = 0
                for m in range(rowptr[j], rowptr[j + 1]):
                    common += marker[col[m]]
                out[k] = common
            for k in range(row_start, row_end):
                marker[col[k]] = 0


_numba = None  # bound by loaded before the kernel compiles
loaded = NumbaKernels(globals(), (intersection_counts, True))
