r"""EigenGCN: GCN stacks and EigenPool levels for graph classification."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, Module, ModuleList
from torch_geometric.nn import GCNConv

from graphops.nn.pool.eigen_pool import EigenPool
from graphops.ops.csr import from_edge_index, normalize
from graphops.ops.spmm import spmm_unchecked
from graphops.ops.validate import check_float, check_positive_int


class EigenGCN(Module):
    r"""The graph classifier of `"Graph Convolutional Networks with EigenPooling"
    <https://arxiv.org/abs/1904.13107>`_ (Ma et al., KDD 2019), as the authors' code builds it.

    Stage :math:`s = 0, \dots, P` runs ``num_layers`` GCN layers
    (:math:`\hat{\mathbf{D}}^{-1/2}(\mathbf{A}+\mathbf{I})\hat{\mathbf{D}}^{-1/2}\mathbf{X}
    \mathbf{W}`, PyG's :class:`~torch_geometric.nn.conv.GCNConv`; each output
    :math:`\ell_2`-normalised, ReLU and batch norm after all but the last) and concatenates the
    layers' outputs into :math:`\mathbf{H}^{(s)}`; between stages an
    :class:`~graphops.nn.EigenPool` level coarsens the graph:

    .. math::
        \mathbf{X}^{(s+1)} = \big[\boldsymbol{\Theta}_1^{(s)\top}\mathbf{H}^{(s)} \,\|\, \cdots
            \,\|\, \boldsymbol{\Theta}_H^{(s)\top}\mathbf{H}^{(s)}\big], \quad
        \mathbf{A}^{(s+1)} = \boldsymbol{\Omega}^{(s)\top}\mathbf{A}^{(s)}_{ext}
            \boldsymbol{\Omega}^{(s)}, \quad
        \hat{\mathbf{y}} = \mathrm{MLP}\big(\big\|_{s} \max_i \mathbf{H}^{(s)}_i \,\big\|\,
            \mathbf{g}\big),

    where :math:`\mathbf{g}` is the final EigenPool level over the whole coarsest graph
    (``final_modes > 0``, the authors' ``num_pool_final_matrix``) and the MLP has one hidden
    ReLU layer. The pooling operators come precomputed from
    :class:`~graphops.transforms.EigenPooling` with the same ``num_pools`` (its ``pool_sizes``),
    ``num_modes`` and ``final_modes``. Every graph of the mini-batch runs at once. The layers
    are GCNConv modules (their weights and state_dict); a stage normalises its adjacency once
    and propagates every layer by a CSR SpMM (:func:`graphops.ops.spmm`), GCNConv's math
    without renormalising per call or forming ``[E, F]`` messages.

    Args:
        in_channels (int): input node features.
        hidden_channels (int): width of every GCN layer but the last of a stage.
        out_channels (int): number of classes.
        num_pools (int, optional): EigenPool levels between stages. (default: ``1``)
        num_modes (int, optional): eigenvectors per subgraph :math:`H`. (default: ``1``)
        final_modes (int, optional): eigenvectors of the final whole-graph level; ``0`` for
            none. (default: ``0``)
        num_layers (int, optional): GCN layers per stage (at least 2). (default: ``3``)
        embedding_channels (int, optional): width of each stage's last GCN layer; ``None`` for
            ``hidden_channels``. (default: ``None``)
        mlp_channels (int, optional): hidden width of the MLP head. (default: ``50``)
        dropout (float, optional): dropout on the input of the middle GCN layers of each stage
            (the authors' placement). (default: ``0.0``)
        batch_norm (bool, optional): batch norm after every GCN layer but a stage's last.
            (default: ``True``)
        propagation (str, optional): ``'gcn'``, the paper's
            :math:`\hat{\mathbf{D}}^{-1/2}(\mathbf{A}+\mathbf{I})\hat{\mathbf{D}}^{-1/2}`
            (GCNConv's), or ``'sum'``, the authors' code: :math:`\mathbf{A}\mathbf{X}\mathbf{W}`
            over the raw (pooled) adjacency, no self-loops, no normalisation. Keyword-only.
            (default: ``'gcn'``)

    Shapes:
        - **input:** ``x`` :math:`(N, F_{in})`, ``edge_index`` :math:`(2, E)`, ``batch``
          :math:`(N)`, per level :math:`l`: ``clusters[l]`` :math:`(N_l)`, ``thetas[l]``
          :math:`(N_l, H)`, ``batches[l]`` :math:`(K_l)`; dense form: ``x`` :math:`(B, N,
          F_{in})`, ``adj`` :math:`(B, N, N)`, ``mask`` :math:`(B, N)`, ``clusters[l]``
          :math:`(B, N_l)` (ids local to each graph), ``thetas[l]`` :math:`(B, N_l, H)`
        - **output:** logits :math:`(B, F_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_pools: int = 1,
        num_modes: int = 1,
        final_modes: int = 0,
        num_layers: int = 3,
        embedding_channels: int | None = None,
        mlp_channels: int = 50,
        dropout: float = 0.0,
        batch_norm: bool = True,
        *,
        propagation: str = 'gcn',
    ):
        super().__init__()
        if propagation not in ('gcn', 'sum'):
            raise ValueError(f"propagation must be 'gcn' or 'sum', got {propagation!r}")
        for name, value in [
            ('in_channels', in_channels),
            ('hidden_channels', hidden_channels),
            ('out_channels', out_channels),
            ('num_modes', num_modes),
            ('mlp_channels', mlp_channels),
        ]:
            check_positive_int(value, name)
        if isinstance(num_pools, bool) or not isinstance(num_pools, int) or num_pools < 0:
            raise ValueError(f'num_pools must be an int >= 0, got {num_pools!r}')
        if isinstance(final_modes, bool) or not isinstance(final_modes, int) or final_modes < 0:
            raise ValueError(f'final_modes must be an int >= 0, got {final_modes!r}')
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 2:
            raise ValueError(f'num_layers must be an int >= 2, got {num_layers!r}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'dropout must lie in [0, 1), got {dropout}')
        embedding_channels = embedding_channels or hidden_channels
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_pools = num_pools
        self.num_modes = num_modes
        self.final_modes = final_modes
        self.num_layers = num_layers
        self.embedding_channels = embedding_channels
        self.mlp_channels = mlp_channels
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.propagation = propagation
        self.stage_channels = hidden_channels * (num_layers - 1) + embedding_channels

        self.convs = ModuleList()
        self.norms = ModuleList()
        for stage in range(num_pools + 1):
            width = in_channels if stage == 0 else self.stage_channels * num_modes
            sizes = [width] + [hidden_channels] * (num_layers - 1) + [embedding_channels]
            self.convs.append(
                ModuleList(
                    GCNConv(a, b, add_self_loops=False) for a, b in zip(sizes[:-1], sizes[1:])
                )
            )
            self.norms.append(
                ModuleList(
                    BatchNorm1d(hidden_channels) if batch_norm else torch.nn.Identity()
                    for _ in range(num_layers - 1)
                )
            )
        self.pools = ModuleList(EigenPool(num_modes) for _ in range(num_pools))
        self.final_pool = EigenPool(final_modes) if final_modes else None
        readout = self.stage_channels * (num_pools + 1 + final_modes)
        self.lin1 = Linear(readout, mlp_channels)
        self.lin2 = Linear(mlp_channels, out_channels)
        self.reset_parameters()

    @property
    def num_levels(self) -> int:
        """Pooling levels the inputs must hold (the final one included)."""
        return self.num_pools + (self.final_modes > 0)

    def reset_parameters(self) -> None:
        for convs, norms in zip(self.convs, self.norms):
            for conv in convs:
                conv.reset_parameters()
            for norm in norms:
                if hasattr(norm, 'reset_parameters'):
                    norm.reset_parameters()
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        batch: Tensor | None,
        clusters: Sequence[Tensor],
        thetas: Sequence[Tensor],
        batches: Sequence[Tensor] | None = None,
        edge_weight: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Logits ``[B, out_channels]``. Sparse: ``clusters``/``thetas``/``batches`` are the
        collated ``eigen{l}_cluster_batch``/``eigen{l}_theta``/``eigen{l}_batch`` of
        :class:`~graphops.transforms.EigenPooling`. Dense (``x`` 3-D): ``edge_index`` is the
        ``[B, N, N]`` adjacency, ``mask`` the ``[B, N]`` node mask and ``clusters``/``thetas``
        padded per graph; ``batch`` and ``batches`` are unused."""
        check_float(x, 'x')
        if len(clusters) != self.num_levels or len(thetas) != self.num_levels:
            raise ValueError(
                f'clusters and thetas must hold {self.num_levels} levels (num_pools = '
                f'{self.num_pools} + a final level when final_modes > 0), got '
                f'{len(clusters)} and {len(thetas)}; build them with EigenPooling(pool_sizes of '
                f'length {self.num_pools}, final_modes={self.final_modes})'
            )
        if x.dim() == 3:
            return self._dense(x, edge_index, mask, clusters, thetas)
        if batches is None or len(batches) != self.num_levels:
            raise ValueError(f'batches must hold {self.num_levels} levels (eigen{{l}}_batch)')
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
        num_graphs = batches[-1].numel() if self.final_modes else None
        # Every level's clusters and thetas checked once, here; the pooling below runs unchecked
        # on features this model computed.
        pools = [*self.pools, *([self.final_pool] if self.final_pool is not None else [])]
        num_nodes = x.size(0)
        for level, pool in enumerate(pools):
            num_nodes = pool.check_level(
                num_nodes, clusters[level], thetas[level], batches[level].numel()
            )
        weight = edge_weight if edge_weight is not None else x.new_ones(edge_index.size(1))
        readouts = []
        for stage in range(self.num_pools + 1):
            h = self._stage(stage, x, edge_index, weight)
            readouts.append(_max_readout(h, batch, num_graphs))
            if stage < self.num_pools:
                x, edge_index, weight = self.pools[stage].pool_unchecked(
                    h, edge_index, clusters[stage], thetas[stage], weight, batches[stage].numel()
                )
                batch = batches[stage]
        if self.final_pool is not None:
            g, _, _ = self.final_pool.pool_unchecked(
                h, edge_index, clusters[-1], thetas[-1], weight, num_graphs
            )
            readouts.append(g)
        return self._head(torch.cat(readouts, dim=-1))

    def _stage(self, stage: int, x: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
        num_nodes = x.size(0)
        if self.propagation == 'sum':  # the authors' code: A X W on the raw adjacency
            prop = normalize(from_edge_index(edge_index, weight, num_nodes), None, dtype=x.dtype)
            return self._layers(stage, x, prop)
        # Self-loops of weight 1 on every node, added here rather than by GCNConv: after pooling
        # the intra-cluster edges are zero-weight self-loops, which GCNConv's add_remaining
        # would keep as the loop weight.
        loops = torch.arange(num_nodes, device=x.device)
        edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        weight = torch.cat([weight, weight.new_ones(num_nodes)])
        # GCNConv's propagation D^-1/2 (A + I) D^-1/2 (gcn_norm: in-degrees, messages from
        # source to target), normalised once for all of the stage's layers rather than by each
        # call, as a CSR SpMM: no [E, F] message tensor forward or backward.
        prop = normalize(from_edge_index(edge_index, weight, num_nodes), 'sym', dtype=x.dtype)
        return self._layers(stage, x, prop)

    def _layers(self, stage: int, x: Tensor, prop) -> Tensor:
        outs = []
        convs, norms = self.convs[stage], self.norms[stage]
        for i, conv in enumerate(convs):
            if 0 < i < len(convs) - 1:
                x = F.dropout(x, self.dropout, self.training)
            out = spmm_unchecked(prop, conv.lin(x))  # GCNConv.forward: lin, propagate, bias
            if conv.bias is not None:
                out = out + conv.bias
            x = F.normalize(out, p=2.0, dim=-1)
            if i < len(convs) - 1:
                x = norms[i](F.relu(x))
            outs.append(x)
        return torch.cat(outs, dim=-1)

    def _head(self, h: Tensor) -> Tensor:
        return self.lin2(F.relu(self.lin1(h)))

    def _dense(self, x, adj, mask, clusters, thetas) -> Tensor:
        if not isinstance(adj, Tensor) or adj.dim() != 3:
            raise ValueError('dense form: edge_index must be the [B, N, N] adjacency')
        batch_size, num_nodes, _ = x.shape
        adj = adj.to(x.dtype)  # to_dense_adj gives float32 whatever the features
        if mask is None:
            mask = x.new_ones(batch_size, num_nodes, dtype=torch.bool)
        readouts = []
        for stage in range(self.num_pools + 1):
            h = self._dense_stage(stage, x, adj, mask)
            readouts.append(h.masked_fill(~mask.unsqueeze(-1), float('-inf')).max(1).values)
            if stage < self.num_pools:
                cluster = clusters[stage].masked_fill(~mask, 0)
                counts = clusters[stage].masked_fill(~mask, -1).max(1).values + 1
                k = int(counts.max())
                x, adj = self.pools[stage](
                    h, adj, cluster, thetas[stage], num_clusters=k, mask=mask
                )
                mask = torch.arange(k, device=x.device) < counts.unsqueeze(-1)
        if self.final_pool is not None:
            cluster = clusters[-1].masked_fill(~mask, 0)
            g, _ = self.final_pool(h, adj, cluster, thetas[-1], num_clusters=1, mask=mask)
            readouts.append(g.squeeze(1))
        return self._head(torch.cat(readouts, dim=-1))

    def _dense_stage(self, stage: int, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        m = mask.to(x.dtype)
        a_hat = adj * m.unsqueeze(1) * m.unsqueeze(2)
        if self.propagation == 'gcn':
            a_hat = a_hat + torch.diag_embed(m)
            deg = a_hat.sum(1)  # GCNConv's in-degree (target side), loops included
            inv = torch.where(deg > 0, deg.clamp(min=1e-30).rsqrt(), torch.zeros_like(deg))
            a_hat = inv.unsqueeze(1) * a_hat * inv.unsqueeze(2)
        # a_hat[b, j, i] = weight of edge j -> i; GCNConv sums messages over sources j.
        prop = a_hat.transpose(1, 2)
        outs = []
        convs, norms = self.convs[stage], self.norms[stage]
        for i, conv in enumerate(convs):
            if 0 < i < len(convs) - 1:
                x = F.dropout(x, self.dropout, self.training)
            out = prop @ conv.lin(x)
            if conv.bias is not None:
                out = out + conv.bias
            x = F.normalize(out, p=2.0, dim=-1) * m.unsqueeze(-1)
            if i < len(convs) - 1:
                x = F.relu(x)
                flat = norms[i](x[mask])
                x = x.new_zeros(x.shape).masked_scatter(mask.unsqueeze(-1), flat)
            outs.append(x)
        return torch.cat(outs, dim=-1)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, '
            f'{self.out_channels}, num_pools={self.num_pools}, num_modes={self.num_modes}, '
            f'final_modes={self.final_modes}, num_layers={self.num_layers}'
            + ('' if self.batch_norm else ', batch_norm=False')
            + (f", propagation='{self.propagation}'" if self.propagation != 'gcn' else '')
            + ')'
        )


def _max_readout(h: Tensor, batch: Tensor, num_graphs: int | None) -> Tensor:
    size = num_graphs if num_graphs is not None else int(batch.max()) + 1
    out = h.new_full((size, h.size(1)), float('-inf'))
    return out.scatter_reduce(0, batch.unsqueeze(-1).expand_as(h), h, 'amax', include_self=True)
