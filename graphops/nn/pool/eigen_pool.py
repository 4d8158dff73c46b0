r"""EigenPool: one level of eigenvector pooling over a precomputed partition."""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops.validate import (
    check_edge_index,
    check_edge_weight,
    check_float,
    check_index,
    check_length,
    check_positive_int,
    check_same_device,
)


class EigenPool(torch.nn.Module):
    r"""The EigenPooling layer from `"Graph Convolutional Networks with EigenPooling"
    <https://arxiv.org/abs/1904.13107>`_ (Ma et al., KDD 2019): one level of pooling through the
    precomputed partition and subgraph eigenvectors of
    :class:`~graphops.transforms.EigenPooling`, for every graph of a mini-batch at once.

    .. math::
        \mathbf{X}^{\prime} = \big[\boldsymbol{\Theta}_1^{\top}\mathbf{X} \,\|\, \cdots \,\|\,
            \boldsymbol{\Theta}_H^{\top}\mathbf{X}\big], \qquad
        \mathbf{A}^{\prime} = \boldsymbol{\Omega}^{\top}\mathbf{A}_{ext}\boldsymbol{\Omega},

    with :math:`(\boldsymbol{\Theta}_h)_{i,k} = [c_i = k]\,\theta_{i,h}` (``cluster`` :math:`c`,
    ``theta`` :math:`\theta`), :math:`\boldsymbol{\Omega}_{i,k} = [c_i = k]` and
    :math:`\mathbf{A}_{ext}` the edges between different clusters. The pooled features of cluster
    :math:`k` are mode-major: columns :math:`hF .. (h+1)F - 1` hold
    :math:`(\boldsymbol{\Theta}_{h+1}^{\top}\mathbf{X})_k`.

    Sparse form: every edge :math:`(u, v)` becomes :math:`(c_u, c_v)` with its weight, times 0
    when :math:`c_u = c_v`, so the edge list keeps its length (no data-dependent shape, nothing
    to synchronise; summing duplicates gives :math:`\mathbf{A}^{\prime}` exactly). A
    following GCN should add its own self-loops with weight 1 rather than keep the zero-weight
    ones (:class:`~graphops.nn.models.EigenGCN` does). Dense form: ``x`` :math:`(B, N, F)`,
    ``adj`` :math:`(B, N, N)`, ``cluster`` :math:`(B, N)`, ``theta`` :math:`(B, N, H)` and a
    node ``mask``; it returns :math:`(B, K, HF)` and :math:`(B, K, K)` with a zero diagonal.

    The layer has no parameters; gradients flow to ``x`` (and ``edge_weight``/``adj``).

    Args:
        num_modes (int): eigenvectors per subgraph :math:`H` (the width of ``theta``).

    Shapes:
        - **input:** ``x`` :math:`(N, F)`, ``edge_index`` :math:`(2, E)`, ``cluster``
          :math:`(N)`, ``theta`` :math:`(N, H)`, ``edge_weight`` :math:`(E)`, ``num_clusters``
          :math:`K` (the pooled node count of the whole batch)
        - **output:** ``x`` :math:`(K, HF)`, ``edge_index`` :math:`(2, E)`, ``edge_weight``
          :math:`(E)`
    """

    def __init__(self, num_modes: int):
        super().__init__()
        self.num_modes = check_positive_int(num_modes, 'num_modes')
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Nothing to reset: the pooling operators are precomputed, not learned."""

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        cluster: Tensor,
        theta: Tensor,
        edge_weight: Tensor | None = None,
        num_clusters: int | None = None,
        mask: Tensor | None = None,
    ):
        """Sparse: ``(x, edge_index, edge_weight)`` of the pooled batch. Dense (``x`` 3-D,
        ``edge_index`` the adjacency): ``(x, adj)``.

        ``num_clusters`` is the pooled node count; by default ``cluster.max() + 1`` (read back
        from the tensor: pass it, e.g. ``batch_l.numel()``, under ``torch.compile``)."""
        check_float(x, 'x')
        check_float(theta, 'theta')
        if x.dim() == 3:
            return self._dense(x, edge_index, cluster, theta, num_clusters, mask)
        if x.dim() != 2:
            raise ValueError(
                f'x must be [num_nodes, F] (sparse) or [B, N, F] (dense), got {tuple(x.shape)}'
            )
        check_edge_index(edge_index)
        num_nodes = x.size(0)
        edge_weight = check_edge_weight(edge_weight, edge_index.size(1))
        check_same_device(
            [('x', x), ('edge_index', edge_index), ('cluster', cluster), ('theta', theta)]
        )
        num_clusters = self.check_level(num_nodes, cluster, theta, num_clusters)
        check_index(edge_index, 'edge_index', dim=2, upper=num_nodes, upper_name='x.size(0)')
        return self.pool_unchecked(x, edge_index, cluster, theta, edge_weight, num_clusters)

    def check_level(
        self, num_nodes: int, cluster: Tensor, theta: Tensor, num_clusters: int | None
    ) -> int:
        """Validates one level's ``cluster`` ``[num_nodes]`` and ``theta`` ``[num_nodes, H]``
        (sparse form) and returns ``num_clusters`` (by default ``cluster.max() + 1``)."""
        check_float(theta, 'theta')
        check_index(cluster, 'cluster', dim=1)
        check_length(cluster, num_nodes, 'cluster', 'x.size(0)')
        self._check_theta(theta, num_nodes)
        if num_clusters is None:
            num_clusters = int(cluster.max()) + 1 if cluster.numel() else 0
        check_index(cluster, 'cluster', upper=num_clusters, upper_name='num_clusters')
        return num_clusters

    def pool_unchecked(
        self,
        x: Tensor,
        edge_index: Tensor,
        cluster: Tensor,
        theta: Tensor,
        edge_weight: Tensor | None,
        num_clusters: int,
    ):
        """The sparse :meth:`forward` on inputs already validated (:meth:`check_level`), for
        models that check every level once and pool features they computed themselves."""
        cluster = cluster.long()
        heads = theta.unsqueeze(-1) * x.unsqueeze(1)  # [N, H, F]: row i of every Theta_h^T X
        out = x.new_zeros(num_clusters, self.num_modes * x.size(1))
        out = out.index_add(0, cluster, heads.reshape(x.size(0), -1))
        pooled = cluster[edge_index]
        external = (pooled[0] != pooled[1]).to(x.dtype)
        weight = external if edge_weight is None else edge_weight * external
        return out, pooled, weight

    def _check_theta(self, theta: Tensor, num_nodes: int) -> None:
        if theta.dim() != 2 or theta.size(0) != num_nodes or theta.size(1) != self.num_modes:
            raise ValueError(
                f'theta must be [num_nodes = {num_nodes}, num_modes = {self.num_modes}], got '
                f'{tuple(theta.shape)}; build it with EigenPooling(num_modes={self.num_modes})'
            )

    def _dense(self, x, adj, cluster, theta, num_clusters, mask):
        batch_size, num_nodes, _ = x.shape
        if not isinstance(adj, Tensor) or adj.dim() != 3:
            raise ValueError('dense form: the adjacency must be a [B, N, N] tensor')
        if adj.shape != (batch_size, num_nodes, num_nodes):
            raise ValueError(
                f'adj must be square per graph, [B, N, N] = {(batch_size, num_nodes, num_nodes)}, '
                f'got {tuple(adj.shape)}'
            )
        check_float(adj, 'adj')
        check_index(cluster, 'cluster', dim=2)
        if cluster.shape != (batch_size, num_nodes):
            raise ValueError(f'cluster must be [B, N], got {tuple(cluster.shape)}')
        if theta.shape != (batch_size, num_nodes, self.num_modes):
            raise ValueError(
                f'theta must be [B, N, num_modes = {self.num_modes}], got {tuple(theta.shape)}'
            )
        if num_clusters is None:
            num_clusters = int(cluster.max()) + 1 if cluster.numel() else 0
        check_index(cluster, 'cluster', dim=2, upper=num_clusters, upper_name='num_clusters')
        omega = torch.nn.functional.one_hot(cluster.long(), num_clusters).to(x.dtype)
        if mask is not None:
            if mask.shape != (batch_size, num_nodes):
                raise ValueError(f'mask must be [B, N], got {tuple(mask.shape)}')
            omega = omega * mask.unsqueeze(-1).to(x.dtype)
        heads = theta.unsqueeze(-1) * x.unsqueeze(2)  # [B, N, H, F]
        out = torch.einsum('bnk,bnhf->bkhf', omega, heads).reshape(batch_size, num_clusters, -1)
        coarse = omega.transpose(1, 2) @ adj @ omega
        eye = torch.eye(num_clusters, dtype=torch.bool, device=x.device)
        coarse = coarse.masked_fill(eye, 0.0)  # Omega^T A_ext Omega: intra-cluster edges dropped
        return out, coarse

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_modes={self.num_modes})'
