r"""The trainable DiffPool layer: an embedding GNN, a pooling GNN and the pooling step.

This file is named ``diff_pool_block.py`` rather than after its class (``diff_pool.py``) because
``diff_pool.py`` holds the functional :func:`dense_diff_pool` / :func:`sparse_diff_pool`, as in
PyG. The private ``_SAGEStack`` and ``_dense_in_mean_operator`` are shared with
:class:`graphops.nn.models.diff_pool_net.DiffPoolNet` (same layer family, not public API).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, Module, ModuleList

from graphops.nn.dense.diff_pool import LOSS_NORMS, dense_diff_pool, sparse_diff_pool
from graphops.ops import CSR, normalize, spmm, to_csr
from graphops.ops.batch_dense import graph_sizes
from graphops.ops.validate import check_float, check_positive_int, check_tensor


def _is_dense_adjacency(adj) -> bool:
    """A strided float tensor is a dense ``[B, N, N]``/``[N, N]`` adjacency; anything else
    (an integer ``edge_index``, a sparse tensor, a ``SparseTensor``, a ``CSR``) is sparse."""
    return isinstance(adj, Tensor) and adj.layout == torch.strided and adj.is_floating_point()


def _dense_in_mean_operator(adj: Tensor) -> Tensor:
    r"""``[B, N, N]`` operator ``P`` with ``(P X)_j`` the weighted mean of ``X_i`` over the edges
    ``i -> j`` (``adj[b, i, j]``): :math:`\mathbf{P} = \mathbf{D}_{in}^{-1}\mathbf{A}^\top`, zero
    rows for nodes without incoming edges, the dense twin of ``normalize(csr, 'rw')``."""
    in_degree = adj.sum(1, keepdim=True)  # [B, 1, N]: column sums
    has_in = in_degree > 0
    # 1 / degree only where it is positive: a 1/0 in the unused branch would make NaN gradients.
    inv = torch.where(has_in, 1.0 / torch.where(has_in, in_degree, 1.0), 0.0)
    return (adj * inv).transpose(1, 2)


def _masked_batch_norm(norm: BatchNorm1d, h: Tensor, real: Tensor) -> Tensor:
    """Training-mode ``norm(h[mask])`` scattered back into ``h``'s shape, with static shapes:
    batch statistics over the real rows (``real`` is the ``[B, N, 1]`` float mask), running
    statistics updated as :class:`~torch.nn.BatchNorm1d` updates them."""
    count = real.sum()
    mean = (h * real).sum((0, 1)) / count
    var = ((h - mean).square() * real).sum((0, 1)) / count
    if norm.track_running_stats:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            momentum = norm.momentum
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / norm.num_batches_tracked.to(h.dtype)
            unbiased = var * count / (count - 1)
            norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
            norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), momentum)
    out = (h - mean) * torch.rsqrt(var + norm.eps)
    if norm.affine:
        out = out * norm.weight + norm.bias
    return out * real


class _SAGEStack(Module):
    r"""``num_layers`` GraphSAGE-mean layers of width ``hidden_channels``, each
    :math:`\mathbf{h}_j \leftarrow \mathbf{W}_1 \operatorname{mean}_{i \to j} \mathbf{h}_i +
    \mathbf{W}_2 \mathbf{h}_j`, then :math:`\ell_2` normalisation (optional), ReLU and batch
    norm (optional, over real nodes only); the layers' outputs are concatenated and a linear
    layer maps them to ``out_channels``. Works on a sparse batch (``adj`` a row-normalised
    :class:`CSR`, ``x`` ``[N, F]``) and on a dense one (``adj`` the operator of
    :func:`_dense_in_mean_operator`, ``x`` ``[B, N, F]``, optional ``mask``)."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_layers: int,
        normalize: bool,
        batch_norm: bool,
    ):
        super().__init__()
        widths = [in_channels] + [hidden_channels] * num_layers
        self.neighbor_lins = ModuleList(
            Linear(widths[k], hidden_channels) for k in range(num_layers)
        )
        self.root_lins = ModuleList(
            Linear(widths[k], hidden_channels, bias=False) for k in range(num_layers)
        )
        self.norms = ModuleList(
            BatchNorm1d(hidden_channels) for _ in range(num_layers if batch_norm else 0)
        )
        self.out_lin = Linear(hidden_channels * num_layers, out_channels)
        self.normalize = normalize

    def reset_parameters(self) -> None:
        for module in [*self.neighbor_lins, *self.root_lins, *self.norms, self.out_lin]:
            module.reset_parameters()

    def _batch_norm(self, norm: BatchNorm1d, h: Tensor, mask: Tensor | None) -> Tensor:
        if h.dim() == 2:
            return norm(h)
        if mask is None:
            return norm(h.reshape(-1, h.size(-1))).view_as(h)
        real = mask.unsqueeze(-1).to(h.dtype)
        if not norm.training and norm.track_running_stats:
            # Running statistics: every row is normalised alike, padded rows are zeroed after.
            return norm(h.reshape(-1, h.size(-1))).view_as(h) * real
        if torch.compiler.is_compiling():
            # h[mask] has a data-dependent size (a graph break): the same statistics, weighted.
            return _masked_batch_norm(norm, h, real)
        # Statistics over real nodes only: padded rows would bias them towards zero.
        return torch.zeros_like(h).index_put((mask,), norm(h[mask]))

    def forward(self, x: Tensor, operator, mask: Tensor | None = None) -> Tensor:
        real = None if mask is None else mask.unsqueeze(-1).to(x.dtype)
        h, outs = x, []
        for k, (neighbor_lin, root_lin) in enumerate(
            zip(self.neighbor_lins, self.root_lins, strict=True)
        ):
            neighbors = spmm(operator, h) if isinstance(operator, CSR) else operator @ h
            h = neighbor_lin(neighbors) + root_lin(h)
            if self.normalize:
                h = F.normalize(h, p=2.0, dim=-1)
            h = F.relu(h)
            if self.norms:
                h = self._batch_norm(self.norms[k], h, mask)
            if real is not None:
                h = h * real
            outs.append(h)
        return self.out_lin(torch.cat(outs, dim=-1))


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
        self.embed_gnn = _SAGEStack(in_channels, hidden_channels, out_channels, *stack)
        self.pool_gnn = _SAGEStack(in_channels, hidden_channels, num_clusters, *stack)
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
        operator = _dense_in_mean_operator(adj)
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
