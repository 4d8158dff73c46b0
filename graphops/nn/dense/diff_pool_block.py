r"""The trainable DiffPool layer: an embedding GNN, a pooling GNN and the pooling step.

This file is named ``diff_pool_block.py`` rather than after its class (``diff_pool.py``) because
``diff_pool.py`` holds the functional :func:`dense_diff_pool` / :func:`sparse_diff_pool`, as in
PyG. Its GNNs are :class:`~graphops.nn.dense.sage_stack.SAGEStack`, shared with
:class:`graphops.nn.models.diff_pool_net.DiffPoolNet`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Module

from graphops.nn.dense.diff_pool import LOSS_NORMS, dense_diff_pool, sparse_diff_pool
from graphops.nn.dense.sage_stack import SAGEStack, dense_in_mean_operator
from graphops.ops import normalize, to_csr
from graphops.ops.batch_dense import graph_sizes
from graphops.ops.validate import check_float, check_positive_int, check_tensor


def _is_dense_adjacency(adj) -> bool:
    """A strided float tensor is a dense ``[B, N, N]``/``[N, N]`` adjacency; anything else
    (an integer ``edge_index``, a sparse tensor, a ``SparseTensor``, a ``CSR``) is sparse."""
    return isinstance(adj, Tensor) and adj.layout == torch.strided and adj.is_floating_point()


class DiffPool(Module):
    r"""The differentiable pooling layer from `"Hierarchical Graph Representation Learning with
    Differentiable Pooling" <https://arxiv.org/abs/1806.08804>`_ (Ying et al., NeurIPS 2018),
    with GraphSAGE (mean) embedding and pooling GNNs as in the paper:

    .. math::
        \mathbf{Z} = \mathrm{GNN}_{\mathrm{embed}}(\mathbf{A}, \mathbf{X}), \quad
        \mathbf{S} = \mathrm{softmax}\left(\mathrm{GNN}_{\mathrm{pool}}(\mathbf{A},
        \mathbf{X})\right), \quad
        \mathbf{X}' = \mathbf{S}^{\top}\mathbf{Z}, \quad
        \mathbf{A}' = \mathbf{S}^{\top}\mathbf{A}\mathbf{S},

    returning the paper's link-prediction and entropy losses too (see
    :func:`~graphops.nn.dense.diff_pool.dense_diff_pool` for their exact normalisation).

    Each GNN is ``num_layers`` GraphSAGE-mean layers of width ``hidden_channels``, each followed by
    :math:`\ell_2` normalisation (``normalize``, which the paper found to stabilise training), ReLU
    and, optionally, batch normalisation (``batch_norm``, over real nodes only); the layers'
    outputs are concatenated (as in the authors' code) and a linear layer maps them to
    ``out_channels`` (embedding) or ``num_clusters`` (assignment logits). The paper puts batch norm
    after every layer, but it is off by default here: its eval-mode statistics over coarsened
    graphs, most of whose clusters hold almost no mass, cost accuracy (PROTEINS, 10-fold CV with
    :class:`~graphops.nn.models.diff_pool_net.DiffPoolNet`: 71.9 with it, 75.7 without).

    The layer takes a sparse mini-batch (``adj`` an ``edge_index`` or any form
    :func:`graphops.ops.to_csr` accepts, plus ``batch``; pooled by
    :func:`~graphops.nn.dense.diff_pool.sparse_diff_pool`, so no graph is dropped or padded) or a
    dense one (``adj`` a float ``[B, N, N]``, plus ``mask``). Messages flow along edges in both:
    node ``j`` averages over its in-neighbours ``i`` (``edge_index`` column ``(i, j)`` or
    ``adj[b, i, j]``), as :class:`torch_geometric.nn.SAGEConv` does. The same weights give the same
    result on both forms.

    Args:
        in_channels (int): input node feature size.
        hidden_channels (int): width of every GraphSAGE layer.
        out_channels (int): size of the pooled node embeddings.
        num_clusters (int): number of clusters ``C`` (nodes of the coarsened graph).
        num_layers (int, optional): GraphSAGE layers per GNN. (default: ``3``)
        normalize (bool, optional): :math:`\ell_2`-normalise each layer's output.
            (default: ``True``)
        batch_norm (bool, optional): batch normalisation after each layer, as in the paper.
            (default: ``False``)
        loss_norm (str, optional): ``'paper'`` or ``'pyg'`` loss normalisation.
            (default: ``'paper'``)

    Shapes:
        - **input (sparse):** ``x`` :math:`(N, F_{in})`, ``adj`` :math:`(2, E)`,
          ``batch`` :math:`(N)`, ``edge_weight`` :math:`(E)`
        - **input (dense):** ``x`` :math:`(B, N, F_{in})`, ``adj`` :math:`(B, N, N)`,
          ``mask`` :math:`(B, N)`
        - **output:** ``(x' (B, C, F_{out}), adj' (B, C, C), link_loss (), entropy_loss ())``
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_clusters: int,
        num_layers: int = 3,
        normalize: bool = True,
        batch_norm: bool = False,
        loss_norm: str = 'paper',
    ):
        super().__init__()
        for name, value in [
            ('in_channels', in_channels),
            ('hidden_channels', hidden_channels),
            ('out_channels', out_channels),
            ('num_clusters', num_clusters),
            ('num_layers', num_layers),
        ]:
            check_positive_int(value, name)
        if loss_norm not in LOSS_NORMS:
            raise ValueError(f"loss_norm must be 'paper' or 'pyg', got {loss_norm!r}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_clusters = num_clusters
        self.num_layers = num_layers
        self.normalize = normalize
        self.batch_norm = batch_norm
        self.loss_norm = loss_norm
        stack = (num_layers, normalize, batch_norm)
        self.embed_gnn = SAGEStack(in_channels, hidden_channels, out_channels, *stack)
        self.pool_gnn = SAGEStack(in_channels, hidden_channels, num_clusters, *stack)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embed_gnn.reset_parameters()
        self.pool_gnn.reset_parameters()

    def forward(
        self,
        x: Tensor,
        adj,
        batch: Tensor | None = None,
        mask: Tensor | None = None,
        edge_weight: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pools a sparse batch (``adj`` sparse, with ``batch``/``edge_weight``) or a dense one
        (``adj`` a float tensor, with ``mask``); returns ``(x', adj', link_loss,
        entropy_loss)``."""
        if _is_dense_adjacency(adj):
            if batch is not None or edge_weight is not None:
                raise ValueError(
                    'batch and edge_weight belong to a sparse adjacency; a dense adj takes mask'
                )
            return self._forward_dense(x, adj, mask)
        if mask is not None:
            raise ValueError(
                'mask belongs to a dense adj [B, N, N]; a sparse adjacency takes batch'
            )
        return self._forward_sparse(x, adj, batch, edge_weight)

    def _forward_sparse(self, x, adj, batch, edge_weight):
        check_float(x, 'x')
        if x.dim() != 2:
            raise ValueError(f'a sparse batch needs x [N, F], got shape {tuple(x.shape)}')
        _check_channels(x, self.in_channels)
        graph_sizes(batch, x.size(0))  # fail on a bad batch before any layer runs
        adj_t = to_csr(adj, edge_weight, x.size(0))
        operator = normalize(adj_t, 'rw', dtype=x.dtype)
        z = self.embed_gnn(x, operator)
        s = self.pool_gnn(x, operator)
        return sparse_diff_pool(z, adj_t, s, batch, loss_norm=self.loss_norm)

    def _forward_dense(self, x, adj, mask):
        check_float(x, 'x')
        check_float(adj, 'adj')
        x = x.unsqueeze(0) if x.dim() == 2 else x
        adj = adj.unsqueeze(0) if adj.dim() == 2 else adj
        if x.dim() != 3 or adj.shape != (x.size(0), x.size(1), x.size(1)):
            raise ValueError(
                f'a dense batch needs x [B, N, F] and adj [B, N, N], got {tuple(x.shape)} and '
                f'{tuple(adj.shape)}'
            )
        _check_channels(x, self.in_channels)
        if mask is not None:
            check_tensor(mask, 'mask')
            if mask.dtype != torch.bool:
                raise TypeError(
                    f'mask must be a torch.bool tensor, got {mask.dtype}; use mask.bool()'
                )
            if mask.shape != x.shape[:2]:
                raise ValueError(
                    f'mask must be [B, N] = {tuple(x.shape[:2])} to match x, got shape '
                    f'{tuple(mask.shape)}'
                )
            # Padded nodes must not feed real ones through the GNNs' mean aggregation.
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
            adj = adj.masked_fill(~(mask.unsqueeze(-1) & mask.unsqueeze(-2)), 0.0)
        operator = dense_in_mean_operator(adj)
        z = self.embed_gnn(x, operator, mask)
        s = self.pool_gnn(x, operator, mask)
        return dense_diff_pool(z, adj, s, mask, loss_norm=self.loss_norm)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, '
            f'{self.out_channels}, num_clusters={self.num_clusters}, '
            f'num_layers={self.num_layers})'
        )


def _check_channels(x: Tensor, in_channels: int) -> None:
    if x.size(-1) != in_channels:
        raise ValueError(
            f'x has {x.size(-1)} features per node but the layer was built with in_channels = '
            f'{in_channels}'
        )
