"""Edge-type stacks (``edge_index``, ``edge_type``): their input check, per-type normalisation and
the union pattern (:class:`EdgeTypeStack`) the GTN family works on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from graphops.ops.csr import CSR, index_dtype_for, rowptr_from_rows
from graphops.ops.validate import (
    check_edge_index,
    check_edge_weight,
    check_index,
    check_length,
    check_num_nodes,
    check_positive_int,
    check_same_device,
)


def check_edge_type_stack(
    edge_index: Tensor,
    edge_type: Tensor,
    num_nodes: int,
    edge_weight: Tensor | None,
    num_edge_types: int,
) -> int:
    """Validates an edge-type stack (indices, types in ``[0, num_edge_types)``, lengths, weights,
    devices); returns ``num_nodes`` as an int."""
    check_edge_index(edge_index)
    num_nodes = check_num_nodes(num_nodes)
    num_edges = edge_index.size(1)
    check_index(edge_type, 'edge_type', upper=num_edge_types, upper_name='num_edge_types')
    check_length(edge_type, num_edges, 'edge_type', 'the number of edges (edge_index.size(1))')
    check_index(edge_index[0], 'edge_index[0] (sources)', upper=num_nodes, upper_name='num_nodes')
    check_index(edge_index[1], 'edge_index[1] (targets)', upper=num_nodes, upper_name='num_nodes')
    check_edge_weight(edge_weight, num_edges)
    check_same_device(
        [('edge_index', edge_index), ('edge_type', edge_type), ('edge_weight', edge_weight)]
    )
    return num_nodes


def edge_type_norm(
    edge_index: Tensor,
    edge_type: Tensor,
    num_nodes: int,
    num_edge_types: int | None = None,
    edge_weight: Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Edge weights that row-normalise every edge type of a stack on its own:

    .. math::
        w'_{ij} = \frac{w_{ij}}{\sum_{k :\, (k \to j) \in E_{r(i \to j)}} w_{kj}}

    for an edge :math:`i \to j` of type :math:`r`: each adjacency :math:`\mathbf{A}_r` (``adj_t``
    form, row :math:`j` the target) becomes :math:`\mathbf{D}_r^{-1} \mathbf{A}_r`, so every
    target's in-edges of one type sum to one, whatever that type's degree.

    Use it for models that mix edge types by learned weights (GTN's
    :class:`~graphops.nn.conv.GTConv`): raw binary adjacencies let a dense type (HGB ACM's
    paper-term, ~85 terms per paper and ~135 papers per term) outweigh a sparse one
    (paper-author) by orders of magnitude in every product, whatever the selection weights,
    until the selections have moved far. FastGTN normalises its edge types the same way.

    Args:
        edge_index (Tensor): ``[2, E]`` sources and targets.
        edge_type (Tensor): ``[E]`` edge type ids in ``[0, num_edge_types)``.
        num_nodes (int): number of nodes (every source and target must be below it).
        num_edge_types (int, optional): number of edge types (default: ``edge_type.max() + 1``).
        edge_weight (Tensor, optional): ``[E]`` weights to normalise (default: ones).
        dtype (torch.dtype, optional): output dtype (default: ``edge_weight``'s, else float32).

    Returns:
        Tensor: ``[E]`` normalised weights, aligned with the input edges. Every weight is
        finite: a target's in-edges of one type summing to zero keep weight zero.

    Shapes:
        - **input:** ``edge_index`` :math:`(2, E)`, ``edge_type`` :math:`(E)`, ``edge_weight``
          :math:`(E)` or :obj:`None`
        - **output:** :math:`(E)`
    """
    if num_edge_types is None:
        check_index(edge_type, 'edge_type')
        num_edge_types = int(edge_type.max()) + 1 if edge_type.numel() else 1
    num_edge_types = check_positive_int(num_edge_types, 'num_edge_types')
    num_nodes = check_edge_type_stack(edge_index, edge_type, num_nodes, edge_weight, num_edge_types)
    if dtype is None:
        dtype = edge_weight.dtype if edge_weight is not None else torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise TypeError(f'dtype must be a floating dtype, got {dtype}')
    return edge_type_norm_unchecked(
        edge_index, edge_type, num_nodes, num_edge_types, edge_weight, dtype
    )[0]


def edge_type_norm_unchecked(
    edge_index: Tensor,
    edge_type: Tensor,
    num_nodes: int,
    num_edge_types: int,
    edge_weight: Tensor | None,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """:func:`edge_type_norm` on validated inputs; also returns each edge's ``(type, target)``
    slot ``edge_type * num_nodes + target``."""
    weight = (
        torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
        if edge_weight is None
        else edge_weight.to(dtype)
    )
    slot = edge_type.long() * num_nodes + edge_index[1].long()
    degree = torch.zeros(num_edge_types * num_nodes, dtype=dtype, device=edge_index.device)
    degree.index_add_(0, slot, weight)
    inverse = torch.where(degree != 0, 1.0 / degree, torch.zeros_like(degree))
    return weight * inverse[slot], slot


@dataclass(frozen=True)
class EdgeTypeStack:
    """The union pattern of all edge types (plus the identity "type"): the core structure of the
    GTN family, shared by every :class:`~graphops.nn.GTConv`, :class:`~graphops.nn.GTLayer` and
    :class:`~graphops.nn.models.GTN` that reads the same graph. Build one with :meth:`build`.

    ``rowptr``/``col`` are the coalesced union in ``adj_t`` form (row = target). Input edge ``e``
    (then, with ``identity``, the ``num_nodes`` self-loops) lands on union entry ``position[e]``
    with type ``edge_type[e]`` and weight ``weight[e]`` (``None``: all ones).
    """

    rowptr: Tensor
    col: Tensor
    position: Tensor
    edge_type: Tensor
    weight: Tensor | None
    num_nodes: int
    num_types: int

    @property
    def nnz(self) -> int:
        return self.col.numel()

    def csr(self, value: Tensor | None) -> CSR:
        return CSR(self.rowptr, self.col, value, self.num_nodes, self.num_nodes, trust_data=True)

    def edge_index(self) -> Tensor:
        """``[2, nnz]`` (source, target) of the union entries."""
        return self.csr(None).to_edge_index()[0]

    @classmethod
    def build(
        cls,
        edge_index: Tensor,
        edge_type: Tensor,
        num_nodes: int,
        edge_weight: Tensor | None,
        num_edge_types: int,
        identity: bool,
    ) -> EdgeTypeStack:
        """Coalesces all edge types (and the identity) into one pattern; inputs must be validated."""
        device = edge_index.device
        source, target = edge_index[0].long(), edge_index[1].long()
        edge_type = edge_type.long()
        if identity:
            loops = torch.arange(num_nodes, device=device)
            source, target = torch.cat([source, loops]), torch.cat([target, loops])
            edge_type = torch.cat(
                [
                    edge_type,
                    torch.full((num_nodes,), num_edge_types, dtype=torch.long, device=device),
                ]
            )
        edge_weight = stack_weight(edge_weight, num_nodes, identity)
        key = target * max(num_nodes, 1) + source
        unique, position = torch.unique(key, sorted=True, return_inverse=True)
        rows = torch.div(unique, max(num_nodes, 1), rounding_mode='floor')
        dtype = index_dtype_for(num_nodes, num_nodes, unique.numel())
        return cls(
            rowptr=rowptr_from_rows(rows, num_nodes).to(dtype),
            col=(unique - rows * max(num_nodes, 1)).to(dtype),
            position=position,
            edge_type=edge_type,
            weight=edge_weight,
            num_nodes=num_nodes,
            num_types=num_edge_types + int(identity),
        )


def stack_weight(edge_weight: Tensor | None, num_nodes: int, identity: bool) -> Tensor | None:
    """The weight of every stack element: the edges' own, then 1 for each identity loop."""
    if edge_weight is None or not identity:
        return edge_weight
    return torch.cat([edge_weight, edge_weight.new_ones(num_nodes)])
