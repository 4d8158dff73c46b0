"""The numba kernel of :func:`graphops.ops.sddmm`: each row walked once, its left row in cache."""

from graphops.ops.optional import NumbaKernels


def sddmm_kernel(rowptr, col, left, right, bounds, out):
    features = left.shape[1]
    for chunk in _numba.prange(bounds.shape[0] - 1):
        for i in range(bounds[chunk], bounds[chunk + 1]):
            for e in range(rowptr[i], rowptr[i + 1]):
                j = col[e]
                total = 0.0
                for f in range(features):
                    total += left[i, f] * right[j, f]
                out[e] = total


_numba = None  # bound by loaded before the kernel compiles
loaded = NumbaKernels(globals(), (sddmm_kernel, True))
