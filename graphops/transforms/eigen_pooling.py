r"""EigenPooling precompute: spectral partitions, per-subgraph Laplacian eigenvectors, coarsened
graphs, for every level of an EigenPool hierarchy."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import lapack
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator, eigsh, splu
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from graphops.ops.kernels import eigen as eigen_kernels
from graphops.ops.optional import has_numba
from graphops.ops.validate import check_edge_index, check_edge_weight, check_positive_int

ROUNDINGS = ('floor', 'ceil')
_NUMPY_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}
PADDINGS = ('repeat', 'zero')


@dataclass
class EigenLevel:
    """One pooling level of one graph, as :meth:`EigenPooling.levels` returns it (numpy).

    ``cluster`` ``[N]`` holds each node's cluster in ``[0, K)`` (every cluster non-empty),
    ``theta`` ``[N, H]`` the entry of :math:`\\Theta_h` on the node's row (its cluster's column),
    ``adj`` the ``[N, N]`` input adjacency (symmetrised; dense up to ``dense_threshold`` nodes,
    else scipy CSR) and ``coarse`` the
    ``[K, K]`` coarsened one :math:`\\Omega^\\top A_{ext} \\Omega`.
    """

    cluster: np.ndarray
    theta: np.ndarray
    adj: np.ndarray | sp.csr_matrix
    coarse: np.ndarray | sp.csr_matrix

    @property
    def num_clusters(self) -> int:
        return self.coarse.shape[0]


class EigenPooling(BaseTransform):
    r"""Precomputes the pooling operators of `"Graph Convolutional Networks with EigenPooling"
    <https://arxiv.org/abs/1904.13107>`_ (Ma et al., KDD 2019) for every level of the hierarchy,
    for :class:`~graphops.nn.EigenPool` and :class:`~graphops.nn.models.EigenGCN`.

    Level :math:`l` partitions its graph (:math:`N_l` nodes) into
    :math:`K_l = \max(1, \lfloor N_l / s_l \rfloor)` subgraphs (``rounding='floor'``, the
    authors' code; ``'ceil'`` gives :math:`\lceil N_l / s_l \rceil`) by spectral clustering:
    k-means (k-means++ seeding, ``n_init`` restarts, best inertia kept) on the rows of the
    :math:`K_l` leading eigenvectors of :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}`
    scaled by :math:`\mathbf{D}^{-1/2}`, the embedding of scikit-learn's ``SpectralClustering``
    that the authors run. Graphs up to ``dense_threshold`` nodes use a dense ``eigh`` (up to 48
    nodes one compiled numba call, above that LAPACK's subset driver for the :math:`K_l` needed
    eigenpairs); larger ones are split into connected components, whose eigenvalue 1 (once per
    component, with eigenvector :math:`\mathbf{D}^{1/2}\mathbf{1}_c`) is known, the rest of each
    solved alone (LAPACK's subset driver up to ``dense_threshold`` nodes, else shift-invert
    Lanczos, re-run until no copy of a repeated eigenvalue is missing; no dense matrix above
    ``dense_threshold``), the top
    :math:`K_l` then taken over all components (ties: the larger component first), so the
    embedding is exact when eigenvalues repeat. The k-means restarts run in one compiled loop
    (numpy array ops without numba). Subgraph :math:`k` (nodes :math:`\mathcal{V}_k`) gets the
    eigenvectors :math:`\mathbf{u}_k^{(1)}, \dots, \mathbf{u}_k^{(H)}` of the :math:`H` smallest
    eigenvalues of its Laplacian :math:`\mathbf{L}_k = \mathbf{D}_k - \mathbf{A}_k` (or
    :math:`\mathbf{I} - \mathbf{D}_k^{-1/2}\mathbf{A}_k\mathbf{D}_k^{-1/2}` with
    ``normalized=True``), computed by small dense ``eigh`` calls (one per subgraph in a
    compiled loop with numba, where for :math:`H = 1` a connected subgraph takes its simple
    null vector, :math:`\mathbf{1}` or :math:`\mathbf{D}_k^{1/2}\mathbf{1}` normalised, with no
    ``eigh``; one batched call over all subgraphs, padded, without; a subgraph above
    ``dense_threshold`` nodes is solved by connected components as the embedding is), and

    .. math::
        (\boldsymbol{\Theta}_h)_{i,k} = [i \in \mathcal{V}_k]\, \mathbf{u}_k^{(h)}(i), \qquad
        \boldsymbol{\Omega}_{i,k} = [i \in \mathcal{V}_k], \qquad
        \mathbf{A}^{(l+1)} = \boldsymbol{\Omega}^\top \mathbf{A}_{ext} \boldsymbol{\Omega},

    with :math:`\mathbf{A}_{ext}` the inter-subgraph edges only, so
    :math:`\mathbf{A}^{(l+1)}_{ab}` counts (sums the weights of) the edges from subgraph
    :math:`a` to subgraph :math:`b`. Each eigenvector's sign is fixed so that its first clearly
    non-zero entry (lowest node id) is positive, as the authors do with the first entry. A
    subgraph with fewer than :math:`H` nodes has fewer eigenvectors: ``padding='repeat'`` fills
    the missing modes with its last eigenvector (the authors' code), ``'zero'`` with zeros. A
    one-node subgraph gets :math:`\mathbf{u} = [1]` (the authors' code and
    torch-geometric-pool write the node's self-loop weight there, 0 without one, which drops
    the node from the pooled features).

    ``final_modes > 0`` adds a last level with one cluster, the whole coarsest graph pooled by the
    eigenvectors of its Laplacian (the authors' ``num_pool_final_matrix``).

    Stored on the :class:`~torch_geometric.data.Data`, for level ``l`` (``prefix='eigen'``):
    ``eigen{l}_cluster_batch`` ``[N_l]`` (cluster of each level-``l`` node), ``eigen{l}_theta``
    ``[N_l, H]`` and ``eigen{l}_batch`` ``[K_l]`` (zeros: the graph of each cluster). Their names
    contain ``batch`` so that :class:`~torch_geometric.data.Batch` offsets them by their
    maximum + 1, PyG's rule for nested batch vectors: after collation the clusters are numbered
    across the whole mini-batch and ``eigen{l}_batch`` is the batch vector of level ``l + 1``.
    The coarsened adjacency is not stored: :class:`~graphops.nn.EigenPool` forms
    :math:`\boldsymbol{\Omega}^\top \mathbf{A}_{ext} \boldsymbol{\Omega}` from the previous
    level's edges with two gathers, so it needs no offsets; :meth:`levels` returns it.

    The result depends only on the graph and ``seed`` (the k-means seeding draws from
    ``numpy.random.default_rng(seed)``, reset for every graph).

    Args:
        pool_sizes (int or list of int, optional): the pool size :math:`s_l` of each level (one
            int: one level). (default: ``10``)
        num_modes (int, optional): eigenvectors :math:`H` per subgraph. (default: ``1``)
        final_modes (int, optional): eigenvectors of the whole coarsest graph used as a last
            pooling level; ``0`` for none. (default: ``0``)
        normalized (bool, optional): use the normalised subgraph Laplacian. (default: ``False``)
        rounding (str, optional): ``'floor'`` or ``'ceil'`` for :math:`K_l`.
            (default: ``'floor'``)
        padding (str, optional): ``'repeat'`` or ``'zero'`` for the modes a small subgraph
            lacks. (default: ``'repeat'``)
        n_init (int, optional): k-means restarts. (default: ``10``)
        seed (int, optional): seed of the k-means seeding and the Lanczos start vector.
            (default: ``0``)
        dense_threshold (int, optional): largest graph (or subgraph, or connected component
            of a larger one) solved with a dense ``eigh``. (default: ``1024``)
        max_iter (int, optional): k-means iterations per restart. (default: ``100``)
        prefix (str, optional): prefix of the stored keys. (default: ``'eigen'``)

    Shapes:
        - **input:** ``edge_index`` :math:`(2, E)`, optional ``edge_weight`` :math:`(E)`
        - **output:** per level :math:`l`: ``eigen{l}_cluster_batch`` :math:`(N_l)`,
          ``eigen{l}_theta`` :math:`(N_l, H)`, ``eigen{l}_batch`` :math:`(K_l)`
    """

    def __init__(
        self,
        pool_sizes: int | Sequence[int] = 10,
        num_modes: int = 1,
        final_modes: int = 0,
        normalized: bool = False,
        rounding: str = 'floor',
        padding: str = 'repeat',
        n_init: int = 10,
        seed: int = 0,
        dense_threshold: int = 1024,
        max_iter: int = 100,
        prefix: str = 'eigen',
    ):
        if isinstance(pool_sizes, int):
            pool_sizes = [pool_sizes]
        pool_sizes = list(pool_sizes)
        if not pool_sizes and final_modes == 0:
            raise ValueError('pool_sizes is empty and final_modes = 0: there is nothing to pool')
        for size in pool_sizes:
            check_positive_int(size, 'pool_sizes')
        check_positive_int(num_modes, 'num_modes')
        if isinstance(final_modes, bool) or not isinstance(final_modes, int) or final_modes < 0:
            raise ValueError(f'final_modes must be an int >= 0, got {final_modes!r}')
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be 'floor' or 'ceil', got {rounding!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be 'repeat' or 'zero', got {padding!r}")
        check_positive_int(n_init, 'n_init')
        check_positive_int(dense_threshold, 'dense_threshold')
        check_positive_int(max_iter, 'max_iter')
        if not isinstance(seed, int):
            raise TypeError(f'seed must be an int, got {type(seed).__name__}')
        self.pool_sizes = pool_sizes
        self.num_modes = num_modes
        self.final_modes = final_modes
        self.normalized = normalized
        self.rounding = rounding
        self.padding = padding
        self.n_init = n_init
        self.seed = seed
        self.dense_threshold = dense_threshold
        self.max_iter = max_iter
        self.prefix = prefix

    @property
    def num_levels(self) -> int:
        """Pooling levels stored per graph (the final one included)."""
        return len(self.pool_sizes) + (self.final_modes > 0)

    def keys(self, level: int) -> tuple[str, str, str]:
        """The ``(cluster_batch, theta, batch)`` keys of ``level``."""
        p = f'{self.prefix}{level}'
        return f'{p}_cluster_batch', f'{p}_theta', f'{p}_batch'

    def num_clusters(self, num_nodes: int, pool_size: int) -> int:
        k = num_nodes // pool_size if self.rounding == 'floor' else -(-num_nodes // pool_size)
        return max(1, min(k, num_nodes))

    def levels(self, edge_index, num_nodes: int, edge_weight=None) -> list[EigenLevel]:
        """Every level of one graph (numpy), the final one included."""
        # Many tiny eigh/einsum calls: a BLAS thread pool only adds hand-off cost (5x on 40x40).
        with _one_blas_thread():
            return self._levels(edge_index, num_nodes, edge_weight)

    def _levels(self, edge_index, num_nodes, edge_weight) -> list[EigenLevel]:
        check_edge_index(edge_index)
        num_nodes = int(num_nodes)
        if num_nodes < 1:
            raise ValueError('the graph has no nodes; EigenPooling needs at least one node')
        if num_nodes < self.num_modes:
            raise ValueError(
                f'the graph has {num_nodes} nodes, fewer than num_modes = {self.num_modes}; '
                'lower num_modes or drop such graphs (e.g. with a pre_filter)'
            )
        edges = edge_index.cpu().numpy()
        if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
            raise ValueError(f'edge_index holds node ids outside [0, num_nodes = {num_nodes})')
        check_edge_weight(edge_weight, edge_index.size(1))
        if edge_weight is not None and edge_weight.numel() and float(edge_weight.min()) < 0:
            raise ValueError(
                'edge_weight has negative entries; spectral clustering needs non-negative '
                'affinities (take abs() or shift them)'
            )
        row, col = edges
        w = (
            np.ones(row.size)
            if edge_weight is None
            else edge_weight.detach().cpu().double().numpy()
        )
        # Spectral clustering needs a symmetric affinity: (A + A^T) / 2. Small graphs stay dense
        # numpy (scipy.sparse's per-call overhead dominates below ~1000 nodes), large ones CSR.
        if num_nodes <= self.dense_threshold:
            flat = np.bincount(row * num_nodes + col, 0.5 * w, num_nodes * num_nodes)
            adj = flat.reshape(num_nodes, num_nodes)
            adj = adj + adj.T
        else:
            adj = sp.coo_matrix((w, (row, col)), shape=(num_nodes, num_nodes)).tocsr()
            adj = ((adj + adj.T) * 0.5).tocsr()
            adj.sum_duplicates()
        rng = self._fresh_rng()
        out = []
        sizes = [(s, self.num_modes) for s in self.pool_sizes]
        if self.final_modes:
            sizes.append((None, self.final_modes))
        for pool_size, modes in sizes:
            n = adj.shape[0]
            k = 1 if pool_size is None else self.num_clusters(n, pool_size)
            raw = self._partition(adj, k, rng)
            if not sp.issparse(adj) and has_numba():
                # One compiled call for the rest of the level: on PROTEINS-sized graphs the
                # numpy path below spends most of its time in array-call overhead.
                cluster, theta, coarse = eigen_kernels.dense_level(
                    adj, raw, modes, self.normalized, self.padding == 'repeat'
                )
                out.append(EigenLevel(cluster, theta, adj, coarse))
                adj = coarse
                continue
            cluster = _compact(raw)
            k = int(cluster.max()) + 1
            theta = _subgraph_modes(
                adj, cluster, k, modes, self.normalized, self.padding, self.dense_threshold, rng
            )
            coarse = _coarsen(adj, cluster, k)
            out.append(EigenLevel(cluster, theta, adj, coarse))
            adj = coarse.toarray() if sp.issparse(coarse) and k <= self.dense_threshold else coarse
        return out

    def forward(self, data: Data) -> Data:
        # getattr, not `'edge_weight' in data`: that builds the list of every key (PyG).
        edge_weight = getattr(data, 'edge_weight', None)
        levels = self.levels(data.edge_index, data.num_nodes, edge_weight)
        dtype = data.x.dtype if data.x is not None and data.x.is_floating_point() else None
        dtype = dtype or torch.get_default_dtype()
        np_dtype = _NUMPY_FLOATS.get(dtype)
        for level, lv in enumerate(levels):
            c_key, t_key, b_key = self.keys(level)
            data[c_key] = torch.from_numpy(lv.cluster.astype(np.int64, copy=False))
            if np_dtype is not None:  # numpy's cast: 2.5x cheaper than .to() at these sizes
                data[t_key] = torch.from_numpy(lv.theta.astype(np_dtype, copy=False))
            else:
                data[t_key] = torch.from_numpy(lv.theta).to(dtype)
            data[b_key] = torch.from_numpy(np.zeros(lv.num_clusters, dtype=np.int64))
        return data

    def _fresh_rng(self) -> np.random.Generator:
        """``numpy.random.default_rng(self.seed)``, as new: one generator kept and its seeded
        state restored (seeding hashes the seed: 25 us a graph, most of a small graph's time)."""
        cached = self.__dict__.get('_rng')
        if cached is None or cached[0] != self.seed:
            gen = np.random.default_rng(self.seed)
            cached = (self.seed, gen, gen.bit_generator.state)
            self._rng = cached
        cached[1].bit_generator.state = cached[2]
        return cached[1]

    def _partition(self, adj, k: int, rng: np.random.Generator) -> np.ndarray:
        n = adj.shape[0]
        if k == 1:
            return np.zeros(n, dtype=np.int64)
        if k >= n:
            return np.arange(n, dtype=np.int64)
        emb = spectral_embedding(adj, k, rng, self.dense_threshold)
        return kmeans(emb, k, self.n_init, rng, self.max_iter)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(pool_sizes={self.pool_sizes}, '
            f'num_modes={self.num_modes}, final_modes={self.final_modes}, '
            f'normalized={self.normalized})'
        )


_CONTROLLER: list = []


@contextmanager
def _one_blas_thread():
    if not _CONTROLLER:  # decided once per process: asking the libraries costs ~2 ms
        try:  # optional (scikit-learn's dependency): without it BLAS keeps its thread count
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController()
            blas = controller.select(user_api='blas')
            busy = any(lib['num_threads'] > 1 for lib in blas.info())
            _CONTROLLER.append(controller if busy else None)
        except ImportError:
            _CONTROLLER.append(None)
    if _CONTROLLER[0] is None:
        yield
        return
    with _CONTROLLER[0].limit(limits=1, user_api='blas'):
        yield


def spectral_embedding(
    adj, k: int, rng: np.random.Generator, dense_threshold: int = 1024
) -> np.ndarray:
    r"""The ``[N, k]`` spectral embedding scikit-learn's ``SpectralClustering`` clusters: the
    eigenvectors of the ``k`` largest eigenvalues of
    :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` (smallest of the normalised Laplacian),
    divided row-wise by :math:`\sqrt{d_i}`, each column's sign fixed by its largest entry.
    An isolated node is its own connected component (eigenvalue 1), as in scipy's Laplacian."""
    n = adj.shape[0]
    if not sp.issparse(adj) and n <= _SMALL and has_numba():
        return eigen_kernels.spectral_embedding_dense(adj, k)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    isolated = deg <= 0
    dd = np.sqrt(np.where(isolated, 1.0, deg))
    inv = 1.0 / dd
    # Shift-invert Lanczos beats LAPACK's subset driver only on large sparse graphs (PROTEINS'
    # three largest, 481-620 nodes, 1 thread: the dense subset solve is 13-19% faster).
    sparse_enough = sp.issparse(adj) or (n > 800 and np.count_nonzero(adj) < 0.05 * n * n)
    if (not sp.issparse(adj) or n <= dense_threshold) and not sparse_enough:
        m = (adj.toarray() if sp.issparse(adj) else adj) * inv[:, None]
        m *= inv[None, :]
        m[isolated, isolated] = 1.0
        # Only the k leading eigenpairs: LAPACK's MRRR subset driver (1.5x faster at N = 600),
        # called directly: scipy.linalg.eigh's checks cost ~0.5 ms a call, 15% at N = 150.
        _, vecs, _, _, info = lapack.dsyevr(
            m, compute_v=1, range='I', il=n - k + 1, iu=n, lower=1, overwrite_a=1
        )
        if info != 0:
            raise np.linalg.LinAlgError(f'LAPACK dsyevr failed (info = {info})')
        vecs = vecs[:, :k][:, ::-1]
    else:
        # Sparse: block-diagonal by connected components, each one's eigenvalue 1 (D^1/2 1_c)
        # known; see _top_eigenpairs for why one Lanczos run over the whole graph is not enough.
        m = (sp.diags(inv) @ sp.csr_matrix(adj) @ sp.diags(inv)).tocsr()
        m = (m + sp.diags(isolated.astype(float))).tocsr()
        _, vecs = _top_eigenpairs(m, k, dd, 1.0, rng, dense_threshold)
    emb = vecs * inv[:, None]
    top = np.abs(emb).argmax(axis=0)
    emb = emb * np.sign(emb[top, np.arange(emb.shape[1])])
    return emb


def kmeans(
    y: np.ndarray, k: int, n_init: int, rng: np.random.Generator, max_iter: int = 100
) -> np.ndarray:
    """Lloyd's k-means on the rows of ``y`` with ``n_init`` k-means++ restarts, the best inertia
    kept; tolerance as scikit-learn's (1e-4 of the mean per-column variance). A compiled numba
    loop when numba is present (graphs are small: array calls would cost more than the
    arithmetic), else the restarts side by side as numpy array ops. Both draw the same random
    numbers from ``rng``."""
    y = np.ascontiguousarray(y, dtype=np.float64)
    draws = rng.random((n_init, k))
    if has_numba():
        return eigen_kernels.kmeans_labels(y, k, max_iter, 1e-4, draws)
    tol = 1e-4 * float(np.mean(np.var(y, axis=0)))
    return _kmeans_numpy(y, k, max_iter, tol, draws)


_SMALL = 48  # graphs up to this size take the compiled full eigh; above, the subset solver wins


def _kmeans_numpy(
    y: np.ndarray, k: int, max_iter: int, tol: float, draws: np.ndarray
) -> np.ndarray:
    """The kernel's algorithm with the ``n_init`` restarts as one batch of array ops."""
    n_init = draws.shape[0]
    n = y.shape[0]
    rows = np.arange(n_init)
    ysq = (y * y).sum(1)
    gram = y @ y.T if n <= eigen_kernels.GRAM_MAX else None

    def seed_distances(pick):  # [n_init, n]: the kernel's k-means++ distances to y[pick]
        if gram is None:
            d = ((y[None] - y[pick][:, None]) ** 2).sum(-1)
        else:
            d = np.maximum(ysq[None, :] + ysq[pick][:, None] - 2.0 * gram[pick], 0.0)
        d[rows, pick] = 0.0
        return d

    centers = np.empty((n_init, k, y.shape[1]))
    pick = np.minimum((draws[:, 0] * n).astype(np.int64), n - 1)
    centers[:, 0] = y[pick]
    closest = seed_distances(pick)
    for c in range(1, k):
        cum = np.cumsum(closest, axis=1)
        total = cum[:, -1]
        pick = np.minimum((cum <= (draws[:, c] * total)[:, None]).sum(1), n - 1)
        flat = np.minimum((draws[:, c] * n).astype(np.int64), n - 1)
        pick = np.where(total > 0, pick, flat)
        centers[:, c] = y[pick]
        closest = np.minimum(closest, seed_distances(pick))
    eye = np.eye(k)
    done = np.zeros(n_init, dtype=bool)
    for step in range(max_iter + 1):
        dist = ysq[:, None] - 2.0 * (y @ centers.transpose(0, 2, 1))  # [n_init, n, k]
        dist += (centers * centers).sum(-1)[:, None, :]
        labels = dist.argmin(-1)
        if done.all() or step == max_iter:
            break
        onehot = eye[labels]
        counts = onehot.sum(1)
        sums = onehot.transpose(0, 2, 1) @ y
        new = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], centers)
        shift = ((new - centers) ** 2).sum(axis=(1, 2))
        centers = np.where(done[:, None, None], centers, new)  # a converged restart stays put
        done |= shift <= tol
    inertia = np.take_along_axis(dist, labels[..., None], -1)[..., 0].sum(1)
    return labels[int(inertia.argmin())]


def _compact(labels: np.ndarray) -> np.ndarray:
    """Cluster ids renumbered to ``0..K-1`` in order of each cluster's lowest node id."""
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first, kind='stable')
    remap = np.empty(labels.max() + 1, dtype=np.int64)
    remap[np.unique(labels)[order]] = np.arange(order.size)
    return remap[labels]


def _coarsen(adj, cluster: np.ndarray, k: int):
    if not sp.issparse(adj):
        omega = np.eye(k)[cluster]
        out = omega.T @ adj @ omega
        out -= np.diag(np.diag(out))  # Omega^T A_ext Omega: intra-cluster edges left out
        return out
    coo = adj.tocoo()
    a, b = cluster[coo.row], cluster[coo.col]
    ext = a != b
    out = sp.coo_matrix((coo.data[ext], (a[ext], b[ext])), shape=(k, k)).tocsr()
    out.sum_duplicates()
    return out


def _laplacian(a: np.ndarray, normalized: bool) -> np.ndarray:
    """Batched dense Laplacians of ``a`` ``[B, s, s]``."""
    deg = a.sum(-1)
    eye = np.eye(a.shape[-1])
    if not normalized:
        return deg[..., None] * eye - a
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    return eye - inv[..., :, None] * a * inv[..., None, :]


def _fix_sign(vecs: np.ndarray) -> np.ndarray:
    """Flips each eigenvector (axis -2) so that its first clearly non-zero entry is positive."""
    mag = np.abs(vecs)
    significant = mag > 1e-8 * np.maximum(mag.max(axis=-2, keepdims=True), 1e-300)
    first = significant.argmax(axis=-2)[..., None, :]
    sign = np.sign(np.take_along_axis(vecs, first, axis=-2))
    return vecs * np.where(sign == 0, 1.0, sign)


def _subgraph_modes(
    adj,
    cluster: np.ndarray,
    k: int,
    modes: int,
    normalized: bool,
    padding: str,
    dense_threshold: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``theta`` ``[N, H]``: each node's entry of its subgraph's first ``H`` Laplacian
    eigenvectors: one padded batched ``eigh`` (dense graphs) or one per subgraph size."""
    n = cluster.size
    sizes = np.bincount(cluster, minlength=k)
    order = np.argsort(cluster, kind='stable')  # nodes by cluster, ascending ids inside
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    dense = not sp.issparse(adj)
    if not dense:
        pos = np.empty(n, dtype=np.int64)
        pos[order] = np.arange(n) - np.repeat(starts, sizes)
        coo = adj.tocoo()
        intra = cluster[coo.row] == cluster[coo.col]
        row, col, w = coo.row[intra], coo.col[intra], coo.data[intra]
    smax = int(sizes.max())
    if dense and k * smax**3 <= 8 * int((sizes.astype(np.int64) ** 3).sum()) + 32**3:
        return _padded_modes(adj, sizes, order, starts, modes, normalized, padding)
    theta = np.zeros((n, modes))
    for s in np.unique(sizes):
        s = int(s)
        members = np.nonzero(sizes == s)[0]
        nodes = order[starts[members][:, None] + np.arange(s)]  # [G, s]
        if s == 1:
            theta[nodes[:, 0]] = 1.0 if padding == 'repeat' else 0.0
            theta[nodes[:, 0], 0] = 1.0
            continue
        if s > dense_threshold:
            for g in range(members.size):
                theta[nodes[g]] = _sparse_modes(
                    adj, nodes[g], modes, normalized, padding, rng, dense_threshold
                )
            continue
        if dense:
            a = adj[nodes[:, :, None], nodes[:, None, :]]  # [G, s, s] induced blocks
        else:
            slot = np.full(k, -1)
            slot[members] = np.arange(members.size)
            mine = slot[cluster[row]] >= 0
            a = np.zeros((members.size, s, s))
            np.add.at(a, (slot[cluster[row[mine]]], pos[row[mine]], pos[col[mine]]), w[mine])
        _, vecs = np.linalg.eigh(_laplacian(a, normalized))
        vecs = _fix_sign(vecs)
        theta[nodes] = _pad(vecs, modes, padding)
    return theta


def _padded_modes(
    adj: np.ndarray,
    sizes: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    modes: int,
    normalized: bool,
    padding: str,
) -> np.ndarray:
    """All subgraphs in one batched ``eigh``: each block padded to the largest size with a
    diagonal above every Laplacian eigenvalue, so the padding's eigenpairs sort last and the
    block-diagonal structure leaves the subgraph's own eigenpairs exact (zero on the padding)."""
    smax = int(sizes.max())
    slot = np.arange(smax)
    valid = slot[None, :] < sizes[:, None]  # [K, smax]
    nodes = order[np.minimum(starts[:, None] + slot[None, :], order.size - 1)]
    nodes = np.where(valid, nodes, 0)
    a = adj[nodes[:, :, None], nodes[:, None, :]] * (valid[:, :, None] & valid[:, None, :])
    lap = _laplacian(a, normalized)
    # D - A has eigenvalues <= 2 max degree; I - D^-1/2 A D^-1/2 at most 2.
    top = 2.0 * float(a.sum(-1).max()) + 1.0 if not normalized else 3.0
    lap[:, slot, slot] += np.where(valid, 0.0, top)
    _, vecs = np.linalg.eigh(lap)  # [K, smax, smax], ascending eigenvalues
    take = np.minimum(np.arange(modes)[None, :], sizes[:, None] - 1)  # [K, H]
    chosen = np.take_along_axis(vecs, take[:, None, :], axis=2) * valid[:, :, None]
    chosen = _fix_sign(chosen)
    if padding == 'zero':
        chosen = chosen * (np.arange(modes)[None, :] < sizes[:, None])[:, None, :]
    theta = np.zeros((order.size, modes))
    theta[nodes[valid]] = chosen[valid]
    return theta


def _pad(vecs: np.ndarray, modes: int, padding: str) -> np.ndarray:
    s = vecs.shape[-1]
    take = np.minimum(np.arange(modes), s - 1)
    out = vecs[..., take]
    if padding == 'zero' and modes > s:
        out = out.copy()
        out[..., s:] = 0.0
    return out


def _sparse_modes(
    adj: sp.csr_matrix,
    nodes: np.ndarray,
    modes: int,
    normalized: bool,
    padding: str,
    rng: np.random.Generator,
    dense_threshold: int,
) -> np.ndarray:
    """One large subgraph's ``H`` smallest Laplacian eigenpairs, exact when the subgraph is
    disconnected (eigenvalue 0 once per component): the largest of ``-L``, by component."""
    sub = sp.csr_matrix(adj)[nodes][:, nodes].tocsr()
    deg = np.asarray(sub.sum(axis=1)).ravel()
    if normalized:
        inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
        lap = sp.identity(nodes.size) - sp.diags(inv) @ sub @ sp.diags(inv)
        known = np.sqrt(deg)  # L D^1/2 1_c = 0 on each component
    else:
        lap = sp.diags(deg) - sub
        known = np.ones(nodes.size)  # L 1_c = 0
    k = min(modes, nodes.size)
    _, vecs = _top_eigenpairs((-lap).tocsr(), k, known, 0.0, rng, dense_threshold)
    return _pad(_fix_sign(vecs), modes, padding)


# Shift-invert pole above the top of the spectrum, as a fraction of its radius bound: close
# enough that the leading eigenvalues are far apart after the inversion, far enough that the
# factorisation stays well conditioned.
_SHIFT = 1e-2


def _top_eigenpairs(
    mat: sp.csr_matrix,
    k: int,
    known: np.ndarray,
    known_value: float,
    rng: np.random.Generator,
    dense_threshold: int,
) -> tuple[np.ndarray, np.ndarray]:
    r"""The ``k`` largest eigenpairs of the symmetric ``mat`` (values descending, vectors
    ``[N, k]``), exact when eigenvalues repeat.

    ``mat`` is block-diagonal over the connected components of its pattern, and on each
    multi-node component its largest eigenvalue is ``known_value``, simple, with eigenvector
    ``known`` restricted to the component (normalised): 1 and :math:`D^{1/2}\mathbf{1}_c` for
    :math:`D^{-1/2}AD^{-1/2}`, 0 and :math:`\mathbf{1}_c` or :math:`D^{1/2}\mathbf{1}_c` for
    minus a Laplacian. One Lanczos run over the whole matrix finds one vector per eigenspace in
    exact arithmetic and misses copies of a repeated eigenvalue (``known_value`` repeats once per
    component). So each component is solved alone with its known pair deflated: a dense subset
    ``dsyevr`` up to ``dense_threshold`` nodes, else shift-invert Lanczos just above the known
    eigenvalue, then re-run on the complement of what it found until nothing left there exceeds
    the smallest kept (repeats inside a component). A one-node component is its diagonal entry.
    The global top ``k`` is then taken by value; ties go to the larger component, then the one
    with the lowest node id, then the component's own order."""
    n = mat.shape[0]
    mat = sp.csr_matrix(mat, copy=True)
    mat.eliminate_zeros()
    num, labels = connected_components(mat, directed=False)
    order = np.argsort(labels, kind='stable')  # nodes by component, ascending ids inside
    sizes = np.bincount(labels, minlength=num)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    first = order[starts]  # each component's lowest node id
    blocks = mat[order][:, order].tocsr()
    diag = mat.diagonal()
    vals, comp, rank, local = [], [], [], {}
    single = np.nonzero(sizes == 1)[0]
    vals.append(diag[first[single]])
    comp.append(single)
    rank.append(np.zeros(single.size, dtype=np.int64))
    for c in np.nonzero(sizes > 1)[0]:
        s, size = int(starts[c]), int(sizes[c])
        v = known[order[s : s + size]].astype(np.float64)
        v /= np.linalg.norm(v)
        count = min(k, size)
        if count == 1:
            cv, cvecs = np.array([known_value]), v[:, None]
        else:
            block = blocks[s : s + size, s : s + size]
            # no dense matrix above dense_threshold: the caller's memory bound on a large graph
            if size <= dense_threshold:
                ov, ovecs = _dense_top(block, count - 1, v, known_value)
            else:
                ov, ovecs = _lanczos_top(block, count - 1, v, known_value, rng)
            cv = np.concatenate([[known_value], ov])
            cvecs = np.concatenate([v[:, None], ovecs], axis=1)
        local[int(c)] = cvecs
        vals.append(cv)
        comp.append(np.full(count, c))
        rank.append(np.arange(count))
    vals, comp, rank = np.concatenate(vals), np.concatenate(comp), np.concatenate(rank)
    pick = np.lexsort((rank, first[comp], -sizes[comp], -vals))[:k]
    out = np.zeros((n, pick.size))
    for j, (c, r) in enumerate(zip(comp[pick], rank[pick])):
        s, size = starts[c], sizes[c]
        out[order[s : s + size], j] = local[int(c)][:, r] if size > 1 else 1.0
    return vals[pick], out


def _dense_top(
    block: sp.csr_matrix, count: int, known: np.ndarray, known_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenpairs of ``block`` after its known top pair: that pair moved
    below the spectrum (a rank-one update), then LAPACK's subset driver."""
    size = block.shape[0]
    b = block.toarray()
    drop = known_value + float(np.abs(b).sum(1).max()) + 1.0  # past the Gershgorin bound
    b -= drop * np.outer(known, known)
    vals, vecs, _, _, info = lapack.dsyevr(
        b, compute_v=1, range='I', il=size - count + 1, iu=size, lower=1, overwrite_a=1
    )
    if info != 0:
        raise np.linalg.LinAlgError(f'LAPACK dsyevr failed (info = {info})')
    return vals[:count][::-1], vecs[:, :count][:, ::-1]


def _lanczos_top(
    block: sp.csr_matrix, count: int, known: np.ndarray, known_value: float, rng
) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenpairs of ``block`` after its known top pair, by shift-invert
    Lanczos on the complement of the pairs found so far, repeated until the complement's top
    does not exceed the smallest kept (a Krylov space from one start vector holds one vector
    per eigenspace, so copies of a repeated eigenvalue are found one run at a time)."""
    size = block.shape[0]
    radius = float(np.abs(block).sum(1).max())
    sigma = known_value + _SHIFT * max(radius, 1e-12)
    lu = splu((block - sigma * sp.identity(size)).tocsc())
    gap = 1e-8 * max(radius, 1e-12)

    def complement_top(basis, how_many):
        def apply(x):
            x = np.asarray(x, dtype=np.float64).ravel()
            x = x - basis @ (basis.T @ x)
            y = lu.solve(x)
            return y - basis @ (basis.T @ y)

        op = LinearOperator((size, size), matvec=apply, dtype=np.float64)
        start = apply(rng.uniform(-1.0, 1.0, size))
        got, vecs = eigsh(block, k=how_many, sigma=sigma, which='LM', OPinv=op, v0=start, tol=1e-10)
        keep = np.argsort(-got, kind='stable')
        vecs = vecs[:, keep]
        vecs -= basis @ (basis.T @ vecs)  # exactly in the complement
        return got[keep], vecs

    vals, vecs = complement_top(known[:, None], count)
    while count + 2 < size:
        basis, _ = np.linalg.qr(np.concatenate([known[:, None], vecs], axis=1))
        more, extra = complement_top(basis, 1)
        if more[0] <= vals[-1] + gap:
            break
        vals = np.concatenate([vals, more])
        vecs = np.concatenate([vecs, extra / np.linalg.norm(extra)], axis=1)
        keep = np.argsort(-vals, kind='stable')[:count]
        vals, vecs = vals[keep], vecs[:, keep]
    return vals, vecs
