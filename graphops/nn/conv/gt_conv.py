"""The 1x1 convolution over a stack of edge-type adjacencies of Graph Transformer Networks."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Module, Parameter

from graphops.ops.cache import InputCache
from graphops.ops.edge_type import EdgeTypeStack, check_edge_type_stack, stack_weight
from graphops.ops.validate import (
    check_condition,
    check_positive_int,
)


class GTConv(Module):
    r"""The graph transformer convolution from the `"Graph Transformer Networks"
    <https://arxiv.org/abs/1911.06455>`_ paper: a 1x1 convolution over the stack of edge-type
    adjacencies :math:`\mathbb{A} = [\mathbf{A}_1, \ldots, \mathbf{A}_K]` with softmax-normalised
    weights, one soft selection of edge types per output channel:

    .. math::
        \mathbf{Q}_c = \sum_{k=1}^{K} \mathrm{softmax}(\mathbf{W}_{c})_k \, \mathbf{A}_k,
        \qquad c = 1, \ldots, C.

    With ``identity=True`` (the authors' setting) the identity matrix is appended as an extra
    edge type :math:`\mathbf{A}_{K+1} = \mathbf{I}`, so a product of :math:`\mathbf{Q}` s can
    learn shorter meta-paths too. :math:`\mathbf{A}_k` is the weighted ``adj_t`` of edge type
    :math:`k`: :math:`(\mathbf{A}_k)_{ij}` sums the weights of the type-:math:`k` edges
    :math:`j \to i` (duplicates add up).

    The input is the homogeneous "edge-type stack" (:func:`graphops.transforms.to_edge_type_stack`):
    one ``edge_index`` with an ``edge_type`` per edge. All channels share one pattern, the union
    of the edge types, so the output is one coalesced ``edge_index`` with a weight row per
    channel; gradients flow to :attr:`weight` (and to ``edge_weight`` if it requires them).

    An edge type with no edges is allowed: its :math:`\mathbf{A}_k` is zero, so the share of the
    softmax it receives adds nothing to :math:`\mathbf{Q}_c` (as in the authors' code, the
    weights are not renormalised over the present types); :meth:`attention` still reports it.

    Weights start from :math:`\mathcal{N}(0, 0.01^2)` as in the authors' sparse GTN, i.e. a
    nearly uniform selection.

    Args:
        num_edge_types (int): number of edge types :math:`K` in the input (``edge_type`` values
            lie in :math:`[0, K)`).
        num_channels (int): number of output channels :math:`C`.
        identity (bool, optional): append the identity as edge type :math:`K`.
            (default: :obj:`True`)
        cached (bool, optional): keep the union pattern of the last graph (a sort of all edges)
            in an :class:`~graphops.ops.cache.InputCache`, built by :meth:`prepare` or on the
            first eager call and reused while the same ``edge_index`` and ``edge_type`` tensors
            come back. Its size depends on the data, so under ``torch.compile`` only a layer
            with a held pattern compiles without a graph break; the graph passed in is then
            checked against it on the device (``torch._assert_async``). Not state: left out of
            pickling. (default: :obj:`False`)

    Shapes:
        - **input:** ``edge_index`` :math:`(2, E)` (row 0 source, row 1 target), ``edge_type``
          :math:`(E)`, ``num_nodes`` :math:`N`, ``edge_weight`` :math:`(E)` or :obj:`None`
        - **output:** ``(edge_index, edge_weight)``: :math:`(2, E')` coalesced union of the edge
          types (plus :math:`N` self-loops with ``identity``), sorted by (target, source), and
          :math:`(C, E')`, row :math:`c` the weights of :math:`\mathbf{Q}_c`
    """

    def __init__(
        self, num_edge_types: int, num_channels: int, identity: bool = True, *, cached: bool = False
    ) -> None:
        super().__init__()
        self.num_edge_types = check_positive_int(num_edge_types, 'num_edge_types')
        self.num_channels = check_positive_int(num_channels, 'num_channels')
        if not isinstance(identity, bool):
            raise TypeError(f'identity must be a bool, got {type(identity).__name__}')
        self.identity = identity
        if not isinstance(cached, bool):
            raise TypeError(f'cached must be a bool, got {type(cached).__name__}')
        self.cached = cached
        # (pattern stack without weights, edge_index, edge_type) of the last graph; not state.
        self._cache = InputCache()
        self.weight = Parameter(torch.empty(num_channels, num_edge_types + int(identity)))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.01) -> None:
        torch.nn.init.normal_(self.weight, std=std)

    def attention(self) -> Tensor:
        """``[C, K (+1)]`` softmax weight of each edge type (the identity last), detached."""
        return torch.softmax(self.weight.detach(), dim=1)

    def combine(self, stack: EdgeTypeStack, element_weight: Tensor | None = None) -> Tensor:
        r"""``[C, nnz]`` values of every :math:`\mathbf{Q}_c` on the pattern of ``stack``; the
        weight of each stack element is ``stack.weight``, or ``element_weight`` when given."""
        if stack.num_types != self.weight.size(1):
            raise ValueError(
                f'the edge-type stack has {stack.num_types} types (identity included) but this '
                f'GTConv weighs {self.weight.size(1)}; build it with the same num_edge_types and '
                'identity'
            )
        filt = torch.softmax(self.weight, dim=1)
        per_edge = filt[:, stack.edge_type]
        weight = stack.weight if element_weight is None else element_weight
        if weight is not None:
            per_edge = per_edge * weight.to(per_edge.dtype)
        out = per_edge.new_zeros(self.num_channels, stack.nnz)
        return out.index_add_(1, stack.position, per_edge)

    def prepare(self, edge_index: Tensor, edge_type: Tensor, num_nodes: int) -> EdgeTypeStack:
        """Builds the union pattern of a static graph now, eagerly, and keeps it
        (``cached=True``): the step before ``torch.compile``. Returns the pattern."""
        if torch.compiler.is_compiling():
            raise RuntimeError('prepare() builds a pattern eagerly; call it outside torch.compile')
        if not self.cached:
            raise ValueError('prepare() keeps a pattern for later calls, which needs cached=True')
        num_nodes = check_edge_type_stack(
            edge_index, edge_type, num_nodes, None, self.num_edge_types
        )
        return self._pattern(edge_index, edge_type, num_nodes, rebuild=True)

    def reset_cache(self) -> None:
        """Drops the cached pattern."""
        self._cache.clear()

    def _pattern(self, edge_index, edge_type, num_nodes: int, rebuild: bool = False):
        def build():
            stack = EdgeTypeStack.build(
                edge_index, edge_type, num_nodes, None, self.num_edge_types, self.identity
            )
            return stack, edge_index, edge_type

        key = (edge_index, edge_type, num_nodes)
        if rebuild:
            return self._cache.store(key, build())[0]
        return self._cache.get(key, build)[0]

    def _held_pattern(self, edge_index, edge_type, num_nodes) -> EdgeTypeStack | None:
        """Inside ``torch.compile``: the held pattern if its sizes fit, checked on the device."""
        held = self._cache.value if self.cached else None
        if held is None:
            return None
        stack, held_index, held_type = held
        if stack.num_nodes != num_nodes or held_index.shape != edge_index.shape:
            return None
        same = (edge_index == held_index).all() & (edge_type == held_type).all()
        message = (
            'the graph passed to this cached GTConv differs from the one its pattern was built '
            'from; call prepare(edge_index, edge_type, num_nodes) on it outside torch.compile'
        )
        check_condition(same, message)
        return stack

    def forward(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        num_nodes: int,
        edge_weight: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        num_nodes = check_edge_type_stack(
            edge_index, edge_type, num_nodes, edge_weight, self.num_edge_types
        )
        if torch.compiler.is_compiling():
            stack = self._held_pattern(edge_index, edge_type, num_nodes)
        elif self.cached:
            stack = self._pattern(edge_index, edge_type, num_nodes)
        else:
            stack = None
        if stack is None:  # no pattern held: built here (data-dependent size)
            stack = EdgeTypeStack.build(
                edge_index, edge_type, num_nodes, None, self.num_edge_types, self.identity
            )
        value = self.combine(stack, stack_weight(edge_weight, num_nodes, self.identity))
        return stack.edge_index(), value

    def __repr__(self) -> str:
        cached = ', cached=True' if self.cached else ''
        return (
            f'{self.__class__.__name__}({self.num_edge_types}, {self.num_channels}, '
            f'identity={self.identity}{cached})'
        )
