from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops.induced import check_node_subset
from graphops.ops.validate import check_float, check_length, check_num_nodes, check_same_device


class GUnpool(torch.nn.Module):
    r"""The gUnpool layer from the `"Graph U-Nets" <https://arxiv.org/abs/1905.05178>`_ paper:
    the inverse of :class:`~graphops.nn.pool.gpool.GPool`. It puts each pooled node back at the
    position it was taken from and fills the dropped nodes with zeros,

    .. math::
        \mathbf{X}^{\prime} = \mathrm{distribute}(\mathbf{0}_{N \times C}, \mathbf{X},
        \mathbf{i}),

    i.e. :math:`\mathbf{X}^{\prime}_{\mathbf{i}_t} = \mathbf{X}_t` and zero elsewhere. The graph
    itself is restored by using again the adjacency (and batch vector) that went into the matching
    :class:`GPool`; ``perm`` and ``num_nodes`` are what that GPool recorded.

    The layer has no parameters.

    Shapes:
        - **input:** pooled features :math:`(N', C)`, ``perm`` :math:`(N')` (the matching GPool's
          output), ``num_nodes`` :math:`N`
        - **output:** node features :math:`(N, C)`
    """

    def forward(self, x: Tensor, perm: Tensor, num_nodes: int) -> Tensor:
        check_float(x, 'x')
        if x.dim() != 2:
            raise ValueError(f'x must be 2-dimensional [num_pooled_nodes, C], got {tuple(x.shape)}')
        num_nodes = check_num_nodes(num_nodes)
        perm = check_node_subset(perm, num_nodes, 'perm')
        check_length(x, perm.numel(), 'x', 'perm.numel() (the number of pooled nodes)')
        check_same_device([('x', x), ('perm', perm)])
        return x.new_zeros(num_nodes, x.size(1)).index_copy(0, perm, x)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
