r"""Numba kernels for :class:`~graphops.transforms.EigenPooling` on small dense graphs.

PROTEINS-sized graphs (tens of nodes) make the numpy/scipy path spend most of its time in
per-call overhead, so the spectral embedding, k-means and the rest of one pooling level each run
as one compiled call here. :mod:`graphops.transforms.eigen_pooling` keeps the numpy twins (the
path without numba, and the one for large or sparse graphs); both give the same partitions from
the same random draws.
"""

from __future__ import annotations

import numpy as np

from graphops.ops import optional

# Largest input whose k-means++ seeding reads an n x n Gram matrix (32 MiB).
GRAM_MAX = 2048


# Kernels: compiled by ``_loaded`` (:class:`~graphops.ops.optional.NumbaKernels`) on first use.
def _embedding_kernel(adj, k):
    """Numba twin of :func:`spectral_embedding`'s dense path for small graphs (one LAPACK call
    and no array-call overhead)."""
    n = adj.shape[0]
    inv = np.empty(n)
    for i in range(n):
        d = 0.0
        for j in range(n):
            d += adj[i, j]
        inv[i] = 1.0 / np.sqrt(d) if d > 0 else 1.0
    m = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            m[i, j] = adj[i, j] * inv[i] * inv[j]
    for i in range(n):
        if inv[i] == 1.0:
            d = 0.0
            for j in range(n):
                d += adj[i, j]
            if d <= 0:
                m[i, i] = 1.0
    _, vecs = np.linalg.eigh(m)
    emb = np.empty((n, k))
    for c in range(k):
        col = n - 1 - c
        arg = 0
        for i in range(n):
            emb[i, c] = vecs[i, col] * inv[i]
            if abs(emb[i, c]) > abs(emb[arg, c]):
                arg = i
        if emb[arg, c] < 0:
            for i in range(n):
                emb[i, c] = -emb[i, c]
    return emb


def _kmeans_kernel(y, k, max_iter, rel_tol, draws, gram_max, best_labels):
    """Numba: each restart seeds with k-means++ from ``draws[r]`` and runs Lloyd's iterations;
    ``best_labels`` gets the labels of the lowest inertia (the first restart on ties). The
    tolerance is ``rel_tol`` times the mean per-column variance of ``y``."""
    n, dim = y.shape
    tol = 0.0
    for j in range(dim):
        mean = 0.0
        for i in range(n):
            mean += y[i, j]
        mean /= n
        var = 0.0
        for i in range(n):
            var += (y[i, j] - mean) * (y[i, j] - mean)
        tol += var / n
    tol = rel_tol * tol / dim
    best = np.inf
    centers = np.empty((k, dim))
    new = np.empty((k, dim))
    closest = np.empty(n)
    counts = np.empty(k)
    labels = np.empty(n, dtype=np.int64)
    ct = np.empty((dim, k))
    csq = np.empty(k)
    ysq = np.empty(n)
    for i in range(n):
        ysq[i] = 0.0
        for j in range(dim):
            ysq[i] += y[i, j] * y[i, j]
    # k-means++ only ever picks data points as centres, so every seeding distance is
    # |y_i|^2 + |y_p|^2 - 2 y_i.y_p: one Gram product shared by all restarts replaces k * n * dim
    # operations per restart (half the whole k-means at 620 nodes, k = 62). Large inputs (the
    # sparse path) compute the distances directly instead of holding an n x n Gram matrix.
    use_gram = n <= gram_max
    gram = y @ y.T if use_gram else np.empty((1, 1))
    for r in range(draws.shape[0]):
        for c in range(k):
            if c == 0:
                pick = min(int(draws[r, 0] * n), n - 1)
            else:
                total = 0.0
                for i in range(n):
                    total += closest[i]
                pick = n - 1
                if total > 0:
                    target = draws[r, c] * total
                    acc = 0.0
                    for i in range(n):
                        acc += closest[i]
                        if acc > target:
                            pick = i
                            break
                else:
                    pick = min(int(draws[r, c] * n), n - 1)
            for j in range(dim):
                centers[c, j] = y[pick, j]
            for i in range(n):
                if use_gram:
                    d = max(ysq[i] + ysq[pick] - 2.0 * gram[i, pick], 0.0)
                else:
                    d = 0.0
                    for j in range(dim):
                        t = y[i, j] - y[pick, j]
                        d += t * t
                if c == 0 or d < closest[i]:
                    closest[i] = d
            closest[pick] = 0.0
        inertia = 0.0
        converged = False
        for step in range(max_iter + 1):
            # ||y - c||^2 = ||y||^2 - 2 y.c + ||c||^2, the cross term one BLAS product.
            for c in range(k):
                csq[c] = 0.0
                for j in range(dim):
                    ct[j, c] = centers[c, j]
                    csq[c] += centers[c, j] * centers[c, j]
            cross = y @ ct
            inertia = 0.0
            # Unchanged labels give the same centers again: stop now rather than after one more
            # update and assignment (the labels and inertia are the same either way).
            changed = step == 0
            for i in range(n):
                best_d = np.inf
                arg = 0
                for c in range(k):
                    d = ysq[i] - 2.0 * cross[i, c] + csq[c]
                    if d < best_d:
                        best_d = d
                        arg = c
                if labels[i] != arg:
                    changed = True
                labels[i] = arg
                inertia += best_d
            if converged or step == max_iter or not changed:
                break
            new[:] = 0.0
            counts[:] = 0.0
            for i in range(n):
                counts[labels[i]] += 1.0
                for j in range(dim):
                    new[labels[i], j] += y[i, j]
            shift = 0.0
            for c in range(k):
                for j in range(dim):
                    value = new[c, j] / counts[c] if counts[c] > 0 else centers[c, j]
                    t = value - centers[c, j]
                    shift += t * t
                    centers[c, j] = value
            converged = shift <= tol
        if inertia < best:
            best = inertia
            for i in range(n):
                best_labels[i] = labels[i]


def _dense_level_kernel(adj, raw, modes, normalized, repeat):
    """Numba, one level of a dense graph after k-means: clusters renumbered by their lowest
    node, each subgraph's Laplacian eigenvectors (one LAPACK ``eigh`` per subgraph, no array
    call overhead), sign fixed and padded as :func:`_subgraph_modes` does, and
    Omega^T A_ext Omega."""
    n = raw.shape[0]
    remap = np.full(raw.max() + 1, -1, dtype=np.int64)
    cluster = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        if remap[raw[i]] < 0:
            remap[raw[i]] = k
            k += 1
        cluster[i] = remap[raw[i]]
    starts = np.zeros(k + 1, dtype=np.int64)
    for i in range(n):
        starts[cluster[i] + 1] += 1
    for c in range(k):
        starts[c + 1] += starts[c]
    fill = starts[:k].copy()
    members = np.empty(n, dtype=np.int64)
    for i in range(n):
        members[fill[cluster[i]]] = i
        fill[cluster[i]] += 1
    coarse = np.zeros((k, k))
    for i in range(n):
        for j in range(n):
            if adj[i, j] != 0.0 and cluster[i] != cluster[j]:
                coarse[cluster[i], cluster[j]] += adj[i, j]
    theta = np.zeros((n, modes))
    seen = np.empty(n, dtype=np.bool_)
    stack = np.empty(n, dtype=np.int64)
    for c in range(k):
        size = starts[c + 1] - starts[c]
        nodes = members[starts[c] : starts[c + 1]]
        if size == 1:
            for h in range(modes):
                theta[nodes[0], h] = 1.0 if (h == 0 or repeat) else 0.0
            continue
        lap = np.empty((size, size))
        deg = np.zeros(size)
        for a in range(size):
            for b in range(size):
                lap[a, b] = -adj[nodes[a], nodes[b]]
                deg[a] += adj[nodes[a], nodes[b]]
        connected = False
        if modes == 1:  # depth-first search over the subgraph's edges
            seen[:size] = False
            seen[0] = True
            stack[0] = 0
            top = 1
            count = 1
            while top > 0:
                top -= 1
                a = stack[top]
                for b in range(size):
                    if not seen[b] and lap[a, b] != 0.0:
                        seen[b] = True
                        stack[top] = b
                        top += 1
                        count += 1
            connected = count == size
        if connected:
            # A connected subgraph's smallest Laplacian eigenvalue (0) is simple and its
            # eigenvector known: D^1/2 1 normalised (I - D^-1/2 A D^-1/2) or the constant
            # (D - A), positive as the sign rule wants. No eigh needed (for H = 1, most calls).
            total = 0.0
            for a in range(size):
                total += deg[a] if normalized else 1.0
            for a in range(size):
                theta[nodes[a], 0] = np.sqrt((deg[a] if normalized else 1.0) / total)
            continue
        if normalized:
            for a in range(size):
                for b in range(size):
                    if deg[a] > 0 and deg[b] > 0:
                        lap[a, b] /= np.sqrt(deg[a] * deg[b])
                    else:
                        lap[a, b] = 0.0
                lap[a, a] += 1.0
        else:
            for a in range(size):
                lap[a, a] += deg[a]
        _, vecs = np.linalg.eigh(lap)
        for h in range(modes):
            if h >= size and not repeat:
                continue
            col = min(h, size - 1)
            top = 0.0
            for a in range(size):
                top = max(top, abs(vecs[a, col]))
            sign = 1.0
            for a in range(size):
                if abs(vecs[a, col]) > 1e-8 * top:
                    sign = 1.0 if vecs[a, col] > 0 else -1.0
                    break
            for a in range(size):
                theta[nodes[a], h] = sign * vecs[a, col]
    return cluster, theta, coarse


_loaded = optional.NumbaKernels(
    globals(), (_kmeans_kernel, False), (_dense_level_kernel, False), (_embedding_kernel, False)
)


def spectral_embedding_dense(adj: np.ndarray, k: int) -> np.ndarray:
    """The ``[N, k]`` spectral embedding of a small dense symmetric ``adj`` (see
    :func:`graphops.transforms.eigen_pooling.spectral_embedding`), in one compiled call."""
    return _loaded()[2](adj, k)


def kmeans_labels(
    y: np.ndarray, k: int, max_iter: int, rel_tol: float, draws: np.ndarray
) -> np.ndarray:
    """Labels of the best of ``draws.shape[0]`` k-means++ restarts of Lloyd's k-means on the rows
    of the C-contiguous float64 ``y``; ``draws`` ``[n_init, k]`` are the uniform draws that seed
    each restart, and the tolerance is ``rel_tol`` times the mean per-column variance."""
    labels = np.empty(y.shape[0], dtype=np.int64)
    _loaded()[0](y, k, max_iter, rel_tol, draws, GRAM_MAX, labels)
    return labels


def dense_level(
    adj: np.ndarray, raw: np.ndarray, modes: int, normalized: bool, repeat: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cluster, theta, coarse)`` of one pooling level of a dense graph from its k-means labels
    ``raw``: clusters renumbered by their lowest node, each subgraph's Laplacian eigenvectors
    (padded by repeating the last when ``repeat``), and the coarsened adjacency."""
    return _loaded()[1](adj, raw, modes, normalized, repeat)
