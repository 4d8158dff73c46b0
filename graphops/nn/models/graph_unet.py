from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from graphops.nn.models.gcn_layer import GCNLayer
from graphops.nn.models.gcn_propagation import GCNPropagation
from graphops.nn.pool.gpool import GPool
from graphops.nn.pool.gunpool import GUnpool
from graphops.ops import to_csr
from graphops.ops.topk import check_ratio
from graphops.ops.validate import (
    check_batch,
    check_node_features,
    check_nonempty_graph,
    check_same_device,
)


def resolve_activation(act) -> Callable[[Tensor], Tensor]:
    """``None`` / ``'identity'`` (the paper's node-classification choice) or any activation
    PyG's resolver knows (``'relu'``, ``'elu'``...) or a callable."""
    if act is None or act == 'identity':
        return torch.nn.Identity()
    if callable(act) and not isinstance(act, str):
        return act
    from torch_geometric.nn.resolver import activation_resolver

    return activation_resolver(act)


def expand_ratios(pool_ratios, depth: int) -> list[float | int]:
    """One pooling ratio per level, each checked (float in (0, 1] or int >= 1)."""
    if isinstance(pool_ratios, Sequence) and not isinstance(pool_ratios, str):
        ratios = list(pool_ratios)
        if len(ratios) > depth:
            raise ValueError(f'got {len(ratios)} pool_ratios for depth = {depth}')
        ratios += [ratios[-1]] * (depth - len(ratios))  # PyG's repeat(): pad with the last
    else:
        ratios = [pool_ratios] * depth
    return [check_ratio(r) for r in ratios]


class GraphUNet(torch.nn.Module):
    r"""The Graph U-Net from the `"Graph U-Nets" <https://arxiv.org/abs/1905.05178>`_ paper for
    node-level tasks, batched (many graphs of a :class:`~torch_geometric.data.Batch` at once) and
    a drop-in for :class:`torch_geometric.nn.models.GraphUNet`: the same positional arguments and
    defaults, ``repr`` and ``state_dict``, and with the defaults the same outputs (tanh gate as
    PyG's :class:`~torch_geometric.nn.pool.TopKPooling`). The paper's sigmoid gate is
    ``nonlinearity='sigmoid'``.

    Every GCN layer is PyG's ``GCNConv(improved=True)``, the paper's

    .. math::
        \mathbf{X}_{\ell+1} = \sigma\left(\hat{\mathbf{D}}^{-1/2} \hat{\mathbf{A}}_\ell
        \hat{\mathbf{D}}^{-1/2} \mathbf{X}_\ell \mathbf{W}_\ell\right), \qquad
        \hat{\mathbf{A}}_\ell = \mathbf{A}_\ell + 2\mathbf{I}

    (a node that already has a self-loop keeps that loop's weight instead of 2, as in PyG).

    The encoder is a GCN followed by ``depth`` blocks of :class:`~graphops.nn.pool.gpool.GPool`
    then GCN; the decoder has ``depth`` blocks of :class:`~graphops.nn.pool.gunpool.GUnpool`, a
    skip connection from the encoder level of the same size (summed, or concatenated with
    ``sum_res=False``), then GCN; the last GCN maps to ``out_channels`` with no activation. With
    ``augment=True`` (PyG's behaviour) each GPool keeps the block
    :math:`((\mathbf{A}+\mathbf{I})^2)_{idx,idx}` (the paper's graph power), computed for the
    kept nodes only. Gradients reach ``x``, every parameter and ``edge_weight``.

    Args:
        in_channels (int): size of each input node feature.
        hidden_channels (int): size of each hidden node feature.
        out_channels (int): size of each output node feature.
        depth (int): number of pooling levels.
        pool_ratios (float or int or list): per-level pooling ratio (fraction in ``(0, 1]``) or
            node count :math:`k` (int); a list shorter than ``depth`` is padded with its last
            entry. (default: ``0.5``)
        sum_res (bool): sum the skip connections; ``False`` concatenates them.
            (default: ``True``)
        act (str or callable, optional): activation after every GCN but the last; ``None`` is
            the identity (the paper's node-classification choice). (default: ``'relu'``)
        augment (bool, keyword-only): graph-power connectivity augmentation in every GPool.
            (default: ``True``)
        nonlinearity (str or callable, keyword-only): GPool's gate, ``'tanh'`` (PyG's
            TopKPooling) or ``'sigmoid'`` (the paper). (default: ``'tanh'``)
        dropout (float, keyword-only): dropout on the input of every GCN layer during training.
            (default: ``0.0``)

    Shapes:
        - **input:** node features :math:`(N, F_{in})`, ``edge_index`` :math:`(2, E)` (or any
          adjacency :func:`graphops.ops.to_csr` reads), batch vector :math:`(N)` (optional,
          sorted), edge weights :math:`(E)` (optional)
        - **output:** node features :math:`(N, F_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        depth: int,
        pool_ratios: float | int | list = 0.5,
        sum_res: bool = True,
        act: str | Callable | None = 'relu',
        *,
        augment: bool = True,
        nonlinearity: str | Callable = 'tanh',
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, value in (
            ('in_channels', in_channels),
            ('hidden_channels', hidden_channels),
            ('out_channels', out_channels),
            ('depth', depth),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be an int >= 1, got {value!r}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'dropout must lie in [0, 1), got {dropout}')
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.depth = depth
        self.pool_ratios = expand_ratios(pool_ratios, depth)
        self.sum_res = sum_res
        self.act_name = act if isinstance(act, str) or act is None else 'callable'
        self.act = resolve_activation(act)
        self.augment = augment
        self.nonlinearity = nonlinearity
        self.dropout = dropout

        # Built in PyG's order (GCN, then per level pool and GCN), so a seeded construction
        # draws the same initial weights as PyG's GraphUNet.
        self.down_convs = torch.nn.ModuleList([GCNLayer(in_channels, hidden_channels)])
        self.pools = torch.nn.ModuleList()
        for ratio in self.pool_ratios:
            self.pools.append(GPool(hidden_channels, ratio, nonlinearity, augment))
            self.down_convs.append(GCNLayer(hidden_channels, hidden_channels))
        up_in = hidden_channels if sum_res else 2 * hidden_channels
        self.up_convs = torch.nn.ModuleList(
            [GCNLayer(up_in, hidden_channels) for _ in range(depth - 1)]
        )
        self.up_convs.append(GCNLayer(up_in, out_channels))
        self.unpool = GUnpool()
        self.reset_parameters()

    def reset_parameters(self):
        for module in (*self.down_convs, *self.pools, *self.up_convs):
            module.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index,
        batch: Tensor | None = None,
        edge_weight: Tensor | None = None,
    ) -> Tensor:
        num_nodes = x.size(0) if isinstance(x, Tensor) else -1
        check_node_features(x, num_nodes)
        check_nonempty_graph(num_nodes, 'x')
        if x.size(1) != self.in_channels:
            raise ValueError(
                f'x has {x.size(1)} channels, expected in_channels = {self.in_channels}'
            )
        if batch is None:
            batch = torch.zeros(num_nodes, dtype=torch.long, device=x.device)
        check_batch(batch, num_nodes)
        check_same_device([('x', x), ('batch', batch)])
        adj = to_csr(edge_index, edge_weight, num_nodes=num_nodes)
        if adj.shape != (num_nodes, num_nodes):
            raise ValueError(f'the adjacency has shape {adj.shape} but x has {num_nodes} nodes')
        # The weights stay in the autograd graph: edge_weight gets a gradient, as in PyG.
        adj = adj.with_value(adj.values(x.dtype))

        norm = GCNPropagation(adj, x.dtype)
        x = self.act(self.down_convs[0](norm, self._drop(x)))
        skips, norms, perms = [x], [norm], []
        for level in range(1, self.depth + 1):
            x, adj, _, batch, perm, _ = self.pools[level - 1](x, adj, None, batch)
            norm = GCNPropagation(adj, x.dtype)
            x = self.act(self.down_convs[level](norm, self._drop(x)))
            perms.append(perm)
            if level < self.depth:
                skips.append(x)
                norms.append(norm)

        for i in range(self.depth):
            level = self.depth - 1 - i
            res = skips[level]
            up = self.unpool(x, perms[level], res.size(0))
            x = res + up if self.sum_res else torch.cat((res, up), dim=-1)
            x = self.up_convs[i](norms[level], self._drop(x))
            if i < self.depth - 1:
                x = self.act(x)
        return x

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def __repr__(self) -> str:
        # PyG's repr, then only the arguments that differ from their defaults.
        extra = []
        if not self.sum_res:
            extra.append('sum_res=False')
        if self.act_name != 'relu':
            extra.append(f'act={self.act_name!r}' if self.act_name is not None else 'act=None')
        if not self.augment:
            extra.append('augment=False')
        if self.nonlinearity != 'tanh':
            gate = self.nonlinearity if isinstance(self.nonlinearity, str) else 'callable'
            extra.append(f'nonlinearity={gate!r}')
        if self.dropout:
            extra.append(f'dropout={self.dropout}')
        return (
            f'{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, '
            f'{self.out_channels}, depth={self.depth}, pool_ratios={self.pool_ratios}'
            + ''.join(f', {e}' for e in extra)
            + ')'
        )
