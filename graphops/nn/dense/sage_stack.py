r"""The GraphSAGE-mean stack DiffPool's GNNs are built from (embedding and pooling GNNs, and
DiffPoolNet's last GNN), on sparse or padded dense batches, as in the authors' ``GcnEncoderGraph``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, Module, ModuleList

from graphops.ops import CSR, spmm

__all__ = ['SAGEStack', 'dense_in_mean_operator', 'masked_batch_norm']


def dense_in_mean_operator(adj: Tensor) -> Tensor:
    r"""``[B, N, N]`` operator ``P`` with ``(P X)_j`` the weighted mean of ``X_i`` over the edges
    ``i -> j`` (``adj[b, i, j]``): :math:`\mathbf{P} = \mathbf{D}_{in}^{-1}\mathbf{A}^\top`, zero
    rows for nodes without incoming edges, the dense twin of ``normalize(csr, 'rw')``."""
    in_degree = adj.sum(1, keepdim=True)  # [B, 1, N]: column sums
    has_in = in_degree > 0
    # 1 / degree only where it is positive: a 1/0 in the unused branch would make NaN gradients.
    inv = torch.where(has_in, 1.0 / torch.where(has_in, in_degree, 1.0), 0.0)
    return (adj * inv).transpose(1, 2)


def masked_batch_norm(norm: BatchNorm1d, h: Tensor, real: Tensor) -> Tensor:
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


class SAGEStack(Module):
    r"""``num_layers`` GraphSAGE-mean layers of width ``hidden_channels``, each
    :math:`\mathbf{h}_j \leftarrow \mathbf{W}_1 \operatorname{mean}_{i \to j} \mathbf{h}_i +
    \mathbf{W}_2 \mathbf{h}_j`, then :math:`\ell_2` normalisation (optional), ReLU and batch
    norm (optional, over real nodes only); the layers' outputs are concatenated and a linear
    layer maps them to ``out_channels``. Works on a sparse batch (``adj`` a row-normalised
    :class:`CSR`, ``x`` ``[N, F]``) and on a dense one (``adj`` the operator of
    :func:`dense_in_mean_operator`, ``x`` ``[B, N, F]``, optional ``mask``)."""

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
            return masked_batch_norm(norm, h, real)
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
