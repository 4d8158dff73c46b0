from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from graphops.nn.models.gcn_layer import GCNLayer
from graphops.nn.models.gcn_propagation import GCNPropagation
from graphops.nn.models.graph_unet import (
    expand_ratios,
    resolve_activation,
)
from graphops.nn.pool.gpool import GPool
from graphops.nn.pool.gunpool import GUnpool
from graphops.ops import to_csr
from graphops.ops.validate import (
    check_batch,
    check_node_features,
    check_nonempty_graph,
    check_same_device,
)


def graph_readout(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """``[max || sum || mean]`` of each graph's node features, ``[num_graphs, 3 * C]``; a graph
    with no nodes reads out zeros."""
    index = batch.unsqueeze(-1).expand_as(x)
    zeros = x.new_zeros(num_graphs, x.size(1))
    h_max = zeros.scatter_reduce(0, index, x, reduce='amax', include_self=False)
    h_sum = zeros.index_add(0, batch, x)
    count = torch.bincount(batch, minlength=num_graphs).clamp_(min=1).to(x.dtype)
    return torch.cat([h_max, h_sum, h_sum / count.unsqueeze(-1)], dim=-1)


class GraphUNetClassifier(torch.nn.Module):
    r"""The graph-classification Graph U-Net of the `"Graph U-Nets"
    <https://arxiv.org/abs/1905.05178>`_ paper, as in the authors' code (``GNet``), batched: all
    graphs of a :class:`~torch_geometric.data.Batch` go through one pass, with no loop over graphs.

    A GCN embeds the nodes; the g-U-Net encoder has ``depth`` blocks of GCN then
    :class:`~graphops.nn.pool.gpool.GPool`, a bottom GCN follows, and the decoder has ``depth``
    blocks of :class:`~graphops.nn.pool.gunpool.GUnpool`, GCN and a summed skip connection from
    the encoder GCN of the same level. Every decoder output :math:`\mathbf{H}^{(j)}` (each at its
    own level's resolution), and the last one plus the first embedding, is read out per graph
    :math:`g` as

    .. math::
        \mathbf{r}^{(j)}_g = \Big[\max_{i \in g} \mathbf{H}^{(j)}_i \,\Big\|\,
        \sum_{i \in g} \mathbf{H}^{(j)}_i \,\Big\|\, \frac{1}{|g|}\sum_{i \in g}
        \mathbf{H}^{(j)}_i\Big],

    and the concatenated readouts go through a two-layer MLP. Every GCN is the paper's
    :math:`\sigma(\hat{\mathbf{D}}^{-1/2}(\mathbf{A} + 2\mathbf{I})\hat{\mathbf{D}}^{-1/2}
    \mathbf{X}\mathbf{W})` with dropout on its input; GPool scores see dropped-out features too.

    Args:
        in_channels (int): size of each input node feature.
        hidden_channels (int): size of the node embeddings (the authors' ``l_dim``).
        out_channels (int): number of classes.
        depth (int): number of pooling levels. (default: ``3``)
        pool_ratios (float or int or list): per-level pooling ratio (fraction in ``(0, 1]``) or
            node count (int). (default: ``[0.9, 0.8, 0.7]``, the authors' setting)
        mlp_channels (int): hidden size of the classifier MLP. (default: ``512``)
        dropout (float): dropout on the input of every GCN and GPool score. (default: ``0.3``)
        classifier_dropout (float): dropout before each MLP layer. (default: ``0.3``)
        act (str or callable, optional): activation of the GCNs (and of the MLP, unless
            ``classifier_act`` says otherwise). (default: ``'elu'``)
        augment (bool): graph-power connectivity augmentation in every GPool.
            (default: ``True``)
        nonlinearity (str or callable): GPool's gate. (default: ``'sigmoid'``)
        classifier_act (str or callable, optional): activation of the MLP's hidden layer, the
            authors' ``activation_classifier`` (their COLLAB config pairs ELU GCNs with a ReLU
            MLP); ``'same'`` for ``act``. Keyword-only. (default: ``'same'``)

    Shapes:
        - **input:** node features :math:`(N, F_{in})`, ``edge_index`` :math:`(2, E)` (or any
          adjacency :func:`graphops.ops.to_csr` reads), batch vector :math:`(N)` (optional,
          sorted), edge weights :math:`(E)` (optional)
        - **output:** class logits :math:`(B, C_{out})`, one row per graph
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        depth: int = 3,
        pool_ratios: float | int | list = (0.9, 0.8, 0.7),
        mlp_channels: int = 512,
        dropout: float = 0.3,
        classifier_dropout: float = 0.3,
        act: str | Callable | None = 'elu',
        augment: bool = True,
        nonlinearity: str | Callable = 'sigmoid',
        *,
        classifier_act: str | Callable | None = 'same',
    ):
        super().__init__()
        for name, value in (
            ('in_channels', in_channels),
            ('hidden_channels', hidden_channels),
            ('out_channels', out_channels),
            ('depth', depth),
            ('mlp_channels', mlp_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be an int >= 1, got {value!r}')
        for name, value in (('dropout', dropout), ('classifier_dropout', classifier_dropout)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f'{name} must lie in [0, 1), got {value}')
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.depth = depth
        self.pool_ratios = expand_ratios(pool_ratios, depth)
        self.mlp_channels = mlp_channels
        self.dropout = dropout
        self.classifier_dropout = classifier_dropout
        self.act_name = act if isinstance(act, str) or act is None else 'callable'
        self.act = resolve_activation(act)
        if isinstance(classifier_act, str) and classifier_act == 'same':
            # no second module: the state_dict stays the one a model without it saved
            self.classifier_act_name, self.classifier_act = self.act_name, None
        else:
            named = isinstance(classifier_act, str) or classifier_act is None
            self.classifier_act_name = classifier_act if named else 'callable'
            self.classifier_act = resolve_activation(classifier_act)
        self.augment = augment
        self.nonlinearity = nonlinearity

        self.start_conv = GCNLayer(in_channels, hidden_channels)
        self.down_convs = torch.nn.ModuleList()
        self.pools = torch.nn.ModuleList()
        self.up_convs = torch.nn.ModuleList()
        for ratio in self.pool_ratios:
            self.down_convs.append(GCNLayer(hidden_channels, hidden_channels))
            self.pools.append(GPool(hidden_channels, ratio, nonlinearity, augment))
            self.up_convs.append(GCNLayer(hidden_channels, hidden_channels))
        self.bottom_conv = GCNLayer(hidden_channels, hidden_channels)
        self.unpool = GUnpool()
        self.lin1 = torch.nn.Linear(3 * hidden_channels * (depth + 1), mlp_channels)
        self.lin2 = torch.nn.Linear(mlp_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        modules = (self.start_conv, *self.down_convs, *self.pools, *self.up_convs)
        for module in (*modules, self.bottom_conv, self.lin1, self.lin2):
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
        batch = batch.long()
        num_graphs = int(batch[-1]) + 1
        adj = to_csr(edge_index, edge_weight, num_nodes=num_nodes)
        if adj.shape != (num_nodes, num_nodes):
            raise ValueError(f'the adjacency has shape {adj.shape} but x has {num_nodes} nodes')
        # The weights stay in the autograd graph: edge_weight gets a gradient.
        adj = adj.with_value(adj.values(x.dtype))

        def conv(layer, op, h):
            return self.act(layer(op, self._drop(h)))

        op = GCNPropagation(adj, x.dtype)
        h = conv(self.start_conv, op, x)
        first = h
        skips, ops, perms, batches = [], [], [], []
        for level in range(self.depth):
            h = conv(self.down_convs[level], op, h)
            skips.append(h)
            ops.append(op)
            batches.append(batch)
            h, adj, _, batch, perm, _ = self.pools[level](h, adj, None, batch, self._drop(h))
            perms.append(perm)
            op = GCNPropagation(adj, x.dtype)
        h = conv(self.bottom_conv, op, h)

        readouts = []
        for i in range(self.depth):
            level = self.depth - 1 - i
            h = self.unpool(h, perms[level], skips[level].size(0))
            h = conv(self.up_convs[i], ops[level], h) + skips[level]
            readouts.append(graph_readout(h, batches[level], num_graphs))
        readouts.append(graph_readout(h + first, batches[0], num_graphs))
        # The authors' order: all maxima, then all sums, then all means.
        parts = [r.chunk(3, dim=-1) for r in readouts]
        z = torch.cat([p[j] for j in range(3) for p in parts], dim=-1)

        z = F.dropout(z, self.classifier_dropout, self.training)
        act = self.act if self.classifier_act is None else self.classifier_act
        z = act(self.lin1(z))
        z = F.dropout(z, self.classifier_dropout, self.training)
        return self.lin2(z)

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def __repr__(self) -> str:
        gate = self.nonlinearity if isinstance(self.nonlinearity, str) else 'callable'
        act = f"'{self.act_name}'" if isinstance(self.act_name, str) else None
        extra = ''
        if self.classifier_act_name != self.act_name:
            name = self.classifier_act_name
            extra = f', classifier_act={f"{name!r}" if name is not None else None}'
        return (
            f'{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, '
            f'{self.out_channels}, depth={self.depth}, pool_ratios={self.pool_ratios}, '
            f'mlp_channels={self.mlp_channels}, dropout={self.dropout}, '
            f'classifier_dropout={self.classifier_dropout}, act={act}, '
            f"augment={self.augment}, nonlinearity='{gate}'{extra})"
        )
