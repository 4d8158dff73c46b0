from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graphops.nn.conv.rgcn_conv import RGCNConv


class RGCN(torch.nn.Module):
    r"""The entity classifier of the `"Modeling Relational Data with Graph Convolutional
    Networks" <https://arxiv.org/abs/1703.06103>`_ paper: two :class:`RGCNConv` layers with a ReLU
    between them, on featureless input (each node's one-hot vector, so the first layer's weights
    are node embeddings per relation):

    .. math::
        \mathbf{Z} = \mathrm{RGCN}_2\big(\mathrm{ReLU}(\mathrm{RGCN}_1(\mathbf{I}))\big),
        \qquad \mathcal{L} = -\sum_{i \in \mathcal{Y}} \log \mathrm{softmax}(\mathbf{z}_i)_{y_i}
        + \lambda \lVert \mathbf{W}^{(1)} \rVert_2^2,

    where each layer is :math:`\mathbf{h}'_i = \mathbf{W}_0 \mathbf{h}_i + \sum_r \sum_{j \in
    \mathcal{N}_r(i)} \frac{1}{|\mathcal{N}_r(i)|} \mathbf{W}_r \mathbf{h}_j` and the L2 term acts on
    the first layer only (:meth:`l2_penalty`). Returns logits; the softmax is in the loss.

    Args:
        num_nodes (int): Number of nodes (the width of the featureless input).
        num_relations (int): Number of relations (PyG's ``Entities`` include the inverses).
        out_channels (int): Number of classes.
        hidden_channels (int, optional): Width of the hidden layer. (default: :obj:`16`)
        num_bases (int, optional): Basis decomposition in both layers; ``None`` for full
            per-relation weights. (default: :obj:`None`)
        dropout (float, optional): Dropout on the hidden layer. (default: :obj:`0.0`)
        in_channels (int, optional): Width of input features if there are any; ``None`` for the
            paper's featureless input. (default: :obj:`None`)
        cached (bool, optional): Keep each layer's sorted plan across calls on the same graph
            (full-graph training); :meth:`prepare` builds them before ``torch.compile``.
            (default: :obj:`True`)
        **kwargs (optional): Further :class:`RGCNConv` arguments (``aggr``, ``root_weight``,
            ``bias``, ``strategy``).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, node ids or :obj:`None`;
          edge indices :math:`(2, |\mathcal{E}|)`; edge types :math:`(|\mathcal{E}|)`.
        - **output:** logits :math:`(|\mathcal{V}|, C)`.
    """

    def __init__(
        self,
        num_nodes: int,
        num_relations: int,
        out_channels: int,
        hidden_channels: int = 16,
        num_bases: int | None = None,
        dropout: float = 0.0,
        in_channels: int | None = None,
        cached: bool = True,
        **kwargs,
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'dropout must lie in [0, 1), got {dropout}')
        self.num_nodes = num_nodes
        self.num_relations = num_relations
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.num_bases = num_bases
        self.dropout = dropout
        self.in_channels = in_channels
        first_in = num_nodes if in_channels is None else in_channels
        self.conv1 = RGCNConv(
            first_in, hidden_channels, num_relations, num_bases=num_bases, cached=cached, **kwargs
        )
        self.conv2 = RGCNConv(
            hidden_channels, out_channels, num_relations, num_bases=num_bases, cached=cached,
            **kwargs,
        )  # fmt: skip
        self.reset_parameters()

    def reset_parameters(self):
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def forward(self, x: Tensor | None, edge_index, edge_type: Tensor | None = None) -> Tensor:
        """Logits for every node. ``x`` is ``None`` (featureless), node ids, or features."""
        hidden = F.relu(self.conv1(x, edge_index, edge_type))
        if not torch.compiler.is_compiling():
            self._share_sorted_graph(x, hidden, edge_index, edge_type)
        hidden = F.dropout(hidden, p=self.dropout, training=self.training)
        return self.conv2(hidden, edge_index, edge_type)

    def prepare(self, x: Tensor | None, edge_index, edge_type: Tensor | None = None) -> None:
        """Builds both layers' plans for a static graph now, eagerly (see
        :meth:`RGCNConv.prepare`): the step before ``torch.compile``. Needs ``cached=True``."""
        graph = self.conv1.prepare(x, edge_index, edge_type)
        num_nodes = self.num_nodes if x is None else x.size(0)
        hidden = self.conv1.weight.new_zeros(num_nodes, self.hidden_channels)
        shared = graph if self._sorts_alike(x) else None
        self.conv2.prepare(hidden, edge_index, edge_type, graph=shared)

    def _sorts_alike(self, x: Tensor | None) -> bool:
        """Whether both layers sort the same edges into the same weight rows: not when the
        first layer reads node ids (its sources are then the ids' rows)."""
        return (
            self.conv1.cached
            and self.conv2.cached
            and (x is None or (isinstance(x, Tensor) and x.is_floating_point()))
        )

    def _share_sorted_graph(self, x, hidden: Tensor, edge_index, edge_type) -> None:
        # The second layer sorts the very edges the first one sorted: it reuses that sorted
        # graph (about 1.4 GB at AM's size) rather than building and keeping a second copy.
        if not self._sorts_alike(x) or (
            self.conv2.prepared_graph(hidden, edge_index, edge_type) is not None
        ):
            return
        graph = self.conv1.prepared_graph(x, edge_index, edge_type)
        if graph is not None:
            self.conv2.prepare(hidden, edge_index, edge_type, graph=graph)

    def l2_penalty(self) -> Tensor:
        r""":math:`\lVert \mathbf{W}^{(1)} \rVert_2^2`: the squared L2 norm of the first layer's
        relation weights (and basis coefficients), which the paper regularises."""
        penalty = self.conv1.weight.pow(2).sum()
        if self.conv1.comp is not None:
            penalty = penalty + self.conv1.comp.pow(2).sum()
        return penalty

    def __repr__(self) -> str:
        extra = f', hidden_channels={self.hidden_channels}'
        if self.num_bases is not None:
            extra += f', num_bases={self.num_bases}'
        if self.dropout:
            extra += f', dropout={self.dropout}'
        if self.in_channels is not None:
            extra += f', in_channels={self.in_channels}'
        return (
            f'{self.__class__.__name__}({self.num_nodes}, num_relations={self.num_relations}, '
            f'out_channels={self.out_channels}{extra})'
        )
