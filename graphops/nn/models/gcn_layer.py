"""The GCN layer of the Graph U-Net models, on a precomputed :class:`GCNPropagation`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from graphops.nn.models.gcn_propagation import GCNPropagation

__all__ = ['GCNLayer']


class GCNLayer(torch.nn.Module):
    r""":math:`\mathbf{X}^{\prime} = \hat{\mathbf{S}} \mathbf{X} \mathbf{W}^{\top} + \mathbf{b}`
    for a pre-normalised propagation :math:`\hat{\mathbf{S}}`. Parameters are named as in PyG's
    ``GCNConv`` (``lin.weight``, ``bias``), so a PyG GraphUNet's ``state_dict`` loads as it is."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lin = torch.nn.Linear(in_channels, out_channels, bias=False)
        self.bias = torch.nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        bound = math.sqrt(6.0 / (self.in_channels + self.out_channels))  # glorot, as GCNConv
        torch.nn.init.uniform_(self.lin.weight, -bound, bound)
        torch.nn.init.zeros_(self.bias)

    @property
    def weight(self) -> torch.nn.Parameter:
        return self.lin.weight

    def forward(self, op: GCNPropagation, x: Tensor) -> Tensor:
        # Multiply by W on the narrow side of the sparse product.
        if self.in_channels > self.out_channels:
            out = op(self.lin(x))
        else:
            out = self.lin(op(x))
        return out + self.bias

    def __repr__(self) -> str:
        return f'GCN({self.in_channels}, {self.out_channels})'
