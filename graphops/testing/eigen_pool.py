r"""Dense EigenPooling reference, straight from the paper's equations (Ma et al., KDD 2019).

For one graph with dense adjacency :math:`\mathbf{A}` and a partition ``cluster``:
:math:`\boldsymbol{\Theta}_h \in \mathbb{R}^{N \times K}` holds in column :math:`k` the
eigenvector of the :math:`h`-th smallest eigenvalue of subgraph :math:`k`'s Laplacian, on that
subgraph's rows; :math:`\mathbf{X}' = [\boldsymbol{\Theta}_1^\top\mathbf{X} \| \cdots \|
\boldsymbol{\Theta}_H^\top\mathbf{X}]`; :math:`\mathbf{A}' = \boldsymbol{\Omega}^\top
\mathbf{A}_{ext} \boldsymbol{\Omega}`. One ``eigh`` per subgraph, in a Python loop: small graphs
only.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense_omega(cluster: Tensor, num_clusters: int | None = None, dtype=torch.float64) -> Tensor:
    """The one-hot assignment :math:`\\boldsymbol{\\Omega}` ``[N, K]``."""
    k = int(cluster.max()) + 1 if num_clusters is None else num_clusters
    return torch.nn.functional.one_hot(cluster.long(), k).to(dtype)


def dense_laplacian(adj: Tensor, normalized: bool = False) -> Tensor:
    r""":math:`\mathbf{D} - \mathbf{A}`, or :math:`\mathbf{I} - \mathbf{D}^{-1/2}\mathbf{A}
    \mathbf{D}^{-1/2}` (an isolated node's row is the identity's)."""
    deg = adj.sum(1)
    if not normalized:
        return torch.diag(deg) - adj
    inv = torch.where(deg > 0, deg.clamp(min=1e-300).rsqrt(), torch.zeros_like(deg))
    return torch.eye(adj.size(0), dtype=adj.dtype) - inv[:, None] * adj * inv[None, :]


def dense_theta(
    adj: Tensor,
    cluster: Tensor,
    num_modes: int,
    normalized: bool = False,
    padding: str = 'repeat',
) -> list[Tensor]:
    """``[Theta_1, ..., Theta_H]``, each ``[N, K]``. Each eigenvector's first clearly non-zero
    entry (lowest node id) is positive; a subgraph with ``s < H`` nodes repeats its last
    eigenvector (``padding='repeat'``) or leaves zeros; a one-node subgraph has ``u = [1]``."""
    num_nodes = adj.size(0)
    k = int(cluster.max()) + 1
    thetas = [adj.new_zeros(num_nodes, k) for _ in range(num_modes)]
    for c in range(k):
        nodes = (cluster == c).nonzero().view(-1)  # ascending node ids
        sub = adj[nodes][:, nodes]
        _, vecs = torch.linalg.eigh(dense_laplacian(sub, normalized))
        for j in range(vecs.size(1)):
            v = vecs[:, j]
            first = (v.abs() > 1e-8 * v.abs().max()).nonzero()[0, 0]
            vecs[:, j] = v * torch.sign(v[first])
        for h in range(num_modes):
            if h < nodes.numel():
                thetas[h][nodes, c] = vecs[:, h]
            elif padding == 'repeat':
                thetas[h][nodes, c] = vecs[:, -1]
    return thetas


def dense_eigen_pool(
    x: Tensor, adj: Tensor, cluster: Tensor, thetas: list[Tensor]
) -> tuple[Tensor, Tensor]:
    r"""``(X', A')``: :math:`[\Theta_1^\top X \| \cdots \| \Theta_H^\top X]` and
    :math:`\Omega^\top A_{ext} \Omega`, with :math:`A_{ext}` the inter-cluster entries of
    :math:`A`."""
    k = thetas[0].size(1)
    omega = dense_omega(cluster, k, adj.dtype)
    same = (cluster[:, None] == cluster[None, :]).to(adj.dtype)
    a_ext = adj * (1 - same)
    x_pooled = torch.cat([theta.T @ x for theta in thetas], dim=1)
    return x_pooled, omega.T @ a_ext @ omega


def normalized_cut(adj: Tensor, cluster: Tensor) -> float:
    r"""Shi and Malik's normalised cut :math:`\sum_k \mathrm{cut}(\mathcal{V}_k,
    \bar{\mathcal{V}}_k) / \mathrm{vol}(\mathcal{V}_k)` of a partition (clusters with no volume
    add nothing)."""
    omega = dense_omega(cluster, dtype=adj.dtype)
    vol = omega.T @ adj.sum(1)
    inside = torch.diagonal(omega.T @ adj @ omega)
    cut = vol - inside
    keep = vol > 0
    return float((cut[keep] / vol[keep]).sum())
