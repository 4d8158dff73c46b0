r"""DiffPool's hierarchical graph classifier."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Module, ModuleList

from graphops.nn.dense.diff_pool import LOSS_NORMS
from graphops.nn.dense.diff_pool_block import DiffPool
from graphops.nn.dense.sage_stack import SAGEStack, dense_in_mean_operator
from graphops.ops.validate import check_positive_int

READOUTS = ('mean', 'max', 'sum')


class DiffPoolNet(Module):
    r"""The hierarchical graph classifier of `"Hierarchical Graph Representation Learning with
    Differentiable Pooling" <https://arxiv.org/abs/1806.08804>`_ (Ying et al., NeurIPS 2018).

    ``num_pools`` :class:`~graphops.nn.dense.diff_pool_block.DiffPool` layers coarsen each graph
    (the first straight from the sparse mini-batch, so graphs of any size are kept whole; the next
    ones on the dense coarsened graphs), a final GraphSAGE GNN embeds the coarsest graph, a readout
    over its clusters gives one vector per graph and a two-layer MLP classifies it:

    .. math::
        (\mathbf{X}^{(l+1)}, \mathbf{A}^{(l+1)}) = \mathrm{DiffPool}_l
            (\mathbf{X}^{(l)}, \mathbf{A}^{(l)}), \qquad
        \hat{\mathbf{y}} = \mathrm{MLP}\Big(\mathrm{readout}_c\,
            \mathrm{GNN}(\mathbf{A}^{(L)}, \mathbf{X}^{(L)})_c\Big).

    Level ``l`` has :math:`C_l = \lceil r\, C_{l-1} \rceil` clusters with
    :math:`C_0` = ``max_num_nodes`` and :math:`r` = ``pool_ratio``; as in the paper, :math:`r`
    defaults to 25% with two or more pooling layers and 10% with one. ``max_num_nodes`` only sets
    the cluster counts: larger graphs are still pooled whole.

    :meth:`forward` returns the class logits and the auxiliary loss
    ``link_loss_weight * sum(link losses) + entropy_loss_weight * sum(entropy losses)`` over the
    pooling layers; train on ``F.cross_entropy(logits, y) + aux_loss`` (both weights are 1 by
    default, so the paper's losses are used unless switched off).

    Args:
        in_channels (int): input node feature size.
        hidden_channels (int): width of every GNN layer and of the pooled embeddings.
        out_channels (int): number of classes.
        max_num_nodes (int): largest graph size, from which the cluster counts follow.
        num_pools (int, optional): number of DiffPool layers. (default: ``2``)
        pool_ratio (float, optional): clusters per node of the previous level; ``None`` for
            0.25 (``num_pools >= 2``) or 0.1 (``num_pools == 1``). (default: ``None``)
        num_layers (int, optional): GraphSAGE layers per GNN. (default: ``3``)
        normalize (bool, optional): :math:`\ell_2`-normalise GNN layer outputs.
            (default: ``True``)
        batch_norm (bool, optional): batch norm after each GNN layer, as in the paper; off by
            default, see :class:`~graphops.nn.dense.diff_pool_block.DiffPool`.
            (default: ``False``)
        readout (str, optional): ``'mean'``, ``'max'`` or ``'sum'`` over the final clusters.
            (default: ``'mean'``)
        dropout (float, optional): dropout before the last linear layer. (default: ``0.0``)
        link_loss_weight (float, optional): weight of the link-prediction losses.
            (default: ``1.0``)
        entropy_loss_weight (float, optional): weight of the entropy losses. (default: ``1.0``)
        loss_norm (str, optional): ``'paper'`` or ``'pyg'`` normalisation of both losses.
            (default: ``'paper'``)

    Shapes:
        - **input:** ``x`` :math:`(N, F_{in})`, ``edge_index`` :math:`(2, E)`,
          ``batch`` :math:`(N)`, ``edge_weight`` :math:`(E)`
        - **output:** logits :math:`(B, F_{out})`, auxiliary loss :math:`()`
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        max_num_nodes: int,
        num_pools: int = 2,
        pool_ratio: float | None = None,
        num_layers: int = 3,
        normalize: bool = True,
        batch_norm: bool = False,
        readout: str = 'mean',
        dropout: float = 0.0,
        link_loss_weight: float = 1.0,
        entropy_loss_weight: float = 1.0,
        loss_norm: str = 'paper',
    ):
        super().__init__()
        for name, value in [
            ('in_channels', in_channels),
            ('hidden_channels', hidden_channels),
            ('out_channels', out_channels),
            ('max_num_nodes', max_num_nodes),
            ('num_pools', num_pools),
            ('num_layers', num_layers),
        ]:
            check_positive_int(value, name)
        if pool_ratio is None:
            pool_ratio = 0.25 if num_pools >= 2 else 0.1
        if not 0.0 < pool_ratio <= 1.0:
            raise ValueError(f'pool_ratio must lie in (0, 1], got {pool_ratio}')
        if readout not in READOUTS:
            raise ValueError(f'readout must be one of {READOUTS}, got {readout!r}')
        if loss_norm not in LOSS_NORMS:
            raise ValueError(f"loss_norm must be 'paper' or 'pyg', got {loss_norm!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'dropout must lie in [0, 1), got {dropout}')
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.max_num_nodes = max_num_nodes
        self.num_pools = num_pools
        self.pool_ratio = pool_ratio
        self.readout = readout
        self.dropout = dropout
        self.link_loss_weight = link_loss_weight
        self.entropy_loss_weight = entropy_loss_weight

        self.num_clusters = []
        size = max_num_nodes
        for _ in range(num_pools):
            size = max(1, math.ceil(pool_ratio * size))
            self.num_clusters.append(size)
        stack = {
            'num_layers': num_layers,
            'normalize': normalize,
            'batch_norm': batch_norm,
            'loss_norm': loss_norm,
        }
        self.pools = ModuleList(
            DiffPool(
                in_channels if level == 0 else hidden_channels,
                hidden_channels,
                hidden_channels,
                clusters,
                **stack,
            )
            for level, clusters in enumerate(self.num_clusters)
        )
        self.final_gnn = SAGEStack(
            hidden_channels, hidden_channels, hidden_channels, num_layers, normalize, batch_norm
        )
        self.lin1 = Linear(hidden_channels, hidden_channels)
        self.lin2 = Linear(hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for pool in self.pools:
            pool.reset_parameters()
        self.final_gnn.reset_parameters()
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index,
        batch: Tensor | None = None,
        edge_weight: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Returns ``(logits [B, out_channels], aux_loss)`` for a sparse mini-batch."""
        x, adj, link_loss, entropy_loss = self.pools[0](
            x, edge_index, batch=batch, edge_weight=edge_weight
        )
        for pool in self.pools[1:]:
            x, adj, link, entropy = pool(x, adj)
            link_loss, entropy_loss = link_loss + link, entropy_loss + entropy
        h = self.final_gnn(x, dense_in_mean_operator(adj))
        if self.readout == 'mean':
            h = h.mean(dim=1)
        elif self.readout == 'max':
            h = h.max(dim=1).values
        else:
            h = h.sum(dim=1)
        h = F.relu(self.lin1(h))
        h = F.dropout(h, p=self.dropout, training=self.training)
        aux_loss = self.link_loss_weight * link_loss + self.entropy_loss_weight * entropy_loss
        return self.lin2(h), aux_loss

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, '
            f'{self.out_channels}, max_num_nodes={self.max_num_nodes}, '
            f'num_clusters={self.num_clusters})'
        )
