"""One Graph Transformer layer: a meta-path adjacency product and its normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import Module

from graphops.nn.conv.gt_conv import (
    GTConv,
    _build_edge_type_stack,
    _EdgeTypeStack,
)
from graphops.ops.csr import CSR, normalize
from graphops.ops.edge_type import check_edge_type_stack
from graphops.ops.spgemm import _check_topk, spgemm
from graphops.ops.validate import check_index_or_mask, check_positive_int, check_same_device


class GTLayer(Module):
    r"""The graph transformer layer from the `"Graph Transformer Networks"
    <https://arxiv.org/abs/1911.06455>`_ paper: it grows a meta-path adjacency by one soft
    edge-type selection (:class:`~graphops.nn.conv.GTConv`) per channel.

    The first layer multiplies two selections, later layers multiply the previous meta-path
    adjacency by a new one, and every product is normalised by its row sums (eq. 5 of the
    paper):

    .. math::
        \mathbf{H}^{(1)}_c = \mathbf{D}^{-1} \mathbf{Q}^{(1)}_c \mathbf{Q}^{(2)}_c,
        \qquad
        \mathbf{H}^{(l)}_c = \mathbf{D}^{-1} \mathbf{H}^{(l-1)}_c \mathbf{Q}^{(l+1)}_c,

    with :math:`\mathbf{D} = \mathrm{diag}(\mathbf{H}\mathbf{1})` the degree of the product.
    The matrices are ``adj_t`` (row :math:`i` = the node that aggregates), so :math:`\mathbf{D}`
    is the (weighted) in-degree, ``graphops.ops.normalize(..., 'rw')``: every non-empty row
    sums to one. This is the degree of the paper's equations, of the authors' dense
    ``model.py`` (row sums of the matrix that multiplies :math:`\mathbf{X}`) and of their first
    sparse GTN (degree over the aggregating index). Their current ``model_gtn.py`` sums over
    ``edge_index[0]`` while its GCN aggregates at ``edge_index[1]``, i.e. it divides by the
    degree of the *sending* node; we keep the paper's. Self-loops are kept between layers (as
    in ``model_gtn.py``); :class:`~graphops.nn.models.GTN`'s GCN replaces the diagonal by
    :math:`\mathbf{I}` at the end.

    Reading a product as a walk: :math:`(\mathbf{A}\mathbf{B})_{ik}` collects the paths
    :math:`k \to m` (via :math:`\mathbf{B}`) then :math:`m \to i` (via :math:`\mathbf{A}`), so
    the *last* selection is the first hop of the meta-path.

    Products are sparse (:func:`graphops.ops.spgemm.spgemm`), differentiable in every weight.
    ``topk`` prunes each product row to its largest entries before normalising (an
    approximation; off by default). ``node_index`` computes only the rows of those nodes, which
    is exact because every step (product, normalisation) is row-local; the output then has
    ``len(node_index)`` rows, row :math:`r` belonging to node ``node_index[r]``.

    Args:
        num_edge_types (int): number of edge types :math:`K`.
        num_channels (int): number of channels :math:`C`.
        first (bool, optional): the first layer (two selections) or a later one (one
            selection, multiplied onto ``prev``). (default: :obj:`True`)
        identity (bool, optional): offer the identity as an extra edge type.
            (default: :obj:`True`)
        topk (int, optional): keep at most ``topk`` entries per row of each product.
            (default: :obj:`None`, exact)

    Shapes:
        - **input:** ``edge_index`` :math:`(2, E)`, ``edge_type`` :math:`(E)`, ``num_nodes``
          :math:`N`, ``edge_weight`` :math:`(E)` or :obj:`None`, ``prev`` (later layers) a list of
          :math:`C` CSR matrices :math:`(R, N)`, ``node_index`` (first layer) :math:`(R)` or
          :obj:`None` (:math:`R = N`)
        - **output:** a list of :math:`C` :class:`~graphops.ops.csr.CSR` matrices :math:`(R, N)`
          (``adj_t`` form) whose values carry gradients
    """

    def __init__(
        self,
        num_edge_types: int,
        num_channels: int,
        first: bool = True,
        identity: bool = True,
        topk: int | None = None,
    ) -> None:
        super().__init__()
        self.num_edge_types = check_positive_int(num_edge_types, 'num_edge_types')
        self.num_channels = check_positive_int(num_channels, 'num_channels')
        for name, flag in (('first', first), ('identity', identity)):
            if not isinstance(flag, bool):
                raise TypeError(f'{name} must be a bool, got {type(flag).__name__}')
        self.first = first
        self.identity = identity
        self.topk = _check_topk(topk)
        self.conv1 = GTConv(num_edge_types, num_channels, identity)
        self.conv2 = GTConv(num_edge_types, num_channels, identity) if first else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs():
            conv.reset_parameters()

    def convs(self) -> list[GTConv]:
        """The selections in product order: ``[conv1, conv2]`` (first layer) or ``[conv1]``."""
        return [self.conv1] if self.conv2 is None else [self.conv1, self.conv2]

    def attention(self) -> Tensor:
        """``[len(convs()), C, K (+1)]`` softmax weights, in product order, detached."""
        return torch.stack([conv.attention() for conv in self.convs()])

    def forward(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        num_nodes: int,
        edge_weight: Tensor | None = None,
        prev: Sequence[CSR] | None = None,
        node_index: Tensor | None = None,
    ) -> list[CSR]:
        num_nodes = check_edge_type_stack(
            edge_index, edge_type, num_nodes, edge_weight, self.num_edge_types
        )
        if node_index is not None:
            node_index = check_index_or_mask(node_index, 'node_index', size=num_nodes)
        check_same_device([('edge_index', edge_index), ('node_index', node_index)])
        stack = _build_edge_type_stack(
            edge_index, edge_type, num_nodes, edge_weight, self.num_edge_types, self.identity
        )
        return self.propagate(stack, prev, node_index)

    def propagate(
        self, stack: _EdgeTypeStack, prev: Sequence[CSR] | None, node_index: Tensor | None
    ) -> list[CSR]:
        """The layer on a prepared edge-type stack (what :class:`GTN` calls, building the stack
        once for all layers)."""
        if self.first:
            if prev is not None:
                raise ValueError('prev must be None for the first layer (first=True)')
            left = self.conv1.combine(stack)
            right = self.conv2.combine(stack)
            lefts = [stack.csr(left[c]) for c in range(self.num_channels)]
            if node_index is not None:
                lefts = [q.select_rows(node_index) for q in lefts]
        else:
            if node_index is not None:
                raise ValueError(
                    'node_index only applies to the first layer; later layers keep the rows of prev'
                )
            lefts = self._check_prev(prev, stack.num_nodes)
            right = self.conv1.combine(stack)
        out = []
        for c in range(self.num_channels):
            product = spgemm(lefts[c], stack.csr(right[c]), topk=self.topk)
            out.append(normalize(product, 'rw', dtype=product.value.dtype))
        return out

    def _check_prev(self, prev, num_nodes: int) -> list[CSR]:
        if prev is None:
            raise ValueError('a later layer (first=False) needs prev, the previous layer output')
        prev = list(prev)
        if len(prev) != self.num_channels or not all(isinstance(h, CSR) for h in prev):
            raise ValueError(
                f'prev must be a list of {self.num_channels} CSR matrices (one per channel), got '
                f'{len(prev)} items'
            )
        for c, h in enumerate(prev):
            if h.num_cols != num_nodes or h.num_rows != prev[0].num_rows:
                raise ValueError(
                    f'prev[{c}] has shape {h.shape} but must be ({prev[0].num_rows}, {num_nodes}) '
                    '(num_nodes columns, the same rows in every channel)'
                )
        return prev

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.num_edge_types}, {self.num_channels}, '
            f'first={self.first}, identity={self.identity}, topk={self.topk})'
        )
