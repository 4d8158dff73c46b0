r"""Stack a heterogeneous graph into one homogeneous graph with a relation id per edge.

This is the input form of relational layers (RGCN's ``edge_type``, GTN's per-relation adjacency
stack): every node gets a global id, every edge keeps the id of the edge type it came from.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.transforms import BaseTransform

from graphops.ops.validate import (
    check_edge_index,
    check_edge_weight,
    check_index,
    check_length,
    check_node_features,
    check_num_nodes,
    check_same_device,
    check_tensor,
)


class ToEdgeTypeStack(BaseTransform):
    r"""Turns a :class:`~torch_geometric.data.HeteroData` into a homogeneous
    :class:`~torch_geometric.data.Data` whose edges carry their relation id, the form
    :class:`~graphops.nn.RGCNConv` (`"Modeling Relational Data with Graph Convolutional Networks"
    <https://arxiv.org/abs/1703.06103>`_) and GTN (`"Graph Transformer Networks"
    <https://arxiv.org/abs/1911.06455>`_) consume.

    Node types are laid out one after another in ``data.node_types`` order, type :math:`t` from
    offset :math:`o_t = \sum_{t' < t} N_{t'}` (PyG's ``data.node_offsets``; for
    :class:`~graphops.datasets.HGBDataset` these are HGB's global ids). The :math:`r`-th edge type
    :math:`(s, r, d)` with local edge :math:`(i, j)` becomes

    .. math::
        (i + o_s,\; j + o_d) \quad\text{with}\quad \mathrm{edge\_type} = r,

    edge types in ``data.edge_types`` order, then, with ``add_reverse=True``, one
    ``(d, 'rev_' + r, s)`` with flipped edges for each edge type whose reverse is not already
    present (a type :math:`(d, r', s)`, possibly :math:`r` itself, holding exactly the flipped
    edge set; HGB's ACM already holds both directions of every link type, so nothing is added).

    Features: ``x`` is the row-wise stack of every type's ``x``, zero-padded on the right to the
    widest type; types without ``x`` (HGB's featureless types) get all-zero rows. Build one-hot
    or learned embeddings for them afterwards if the model needs them (HGB's ``feats_type``).
    ``y`` and every ``*_mask`` of the target type are lifted to all nodes: masks are
    :obj:`False`, integer ``y`` is :obj:`-1` and float (multi-label) ``y`` is :obj:`0` outside it.
    ``edge_weight`` is stacked when some edge type has one (others count 1).

    The result also holds ``node_type`` (long), ``node_type_names``, ``node_type_offsets``
    (aligned with ``node_type_names``), ``edge_type_names`` (relation names, index = edge type
    id), ``num_relations``, ``target_node_type`` (when there is one) and ``num_classes`` (when the
    input has it); PyG's ``_node_type_names`` / ``_edge_type_names`` are set too, so
    :meth:`~torch_geometric.data.Data.to_heterogeneous` inverts the stack.

    Args:
        add_reverse (bool, optional): add reversed relations ``'rev_<name>'`` where missing.
            (default: :obj:`False`)
        target_node_type (str, optional): node type whose ``y`` and masks are lifted. (default:
            ``data.target_node_type`` if set, else the only node type with ``y``)

    Shapes:
        - **input:** :class:`HeteroData` with :math:`N_t` nodes per type, :math:`E_r` edges per
          edge type, optional ``x`` :math:`(N_t, F_t)`
        - **output:** ``edge_index`` :math:`(2, E)`, ``edge_type`` :math:`(E)`, ``node_type``
          :math:`(N)`, ``x`` :math:`(N, \max_t F_t)`, ``y`` :math:`(N)` or :math:`(N, C)`, masks
          :math:`(N)`, with :math:`N = \sum_t N_t` and :math:`E = \sum_r E_r` (more with reverses)
    """

    def __init__(self, add_reverse: bool = False, target_node_type: str | None = None) -> None:
        if not isinstance(add_reverse, bool):
            raise TypeError(f'add_reverse must be a bool, got {type(add_reverse).__name__}')
        if target_node_type is not None and not isinstance(target_node_type, str):
            raise TypeError(
                f'target_node_type must be a str or None, got {type(target_node_type).__name__}'
            )
        self.add_reverse = add_reverse
        self.target_node_type = target_node_type

    def forward(self, data: HeteroData) -> Data:
        return to_edge_type_stack(
            data, add_reverse=self.add_reverse, target_node_type=self.target_node_type
        )

    def __repr__(self) -> str:
        args = f'add_reverse={self.add_reverse}'
        if self.target_node_type is not None:
            args += f', target_node_type={self.target_node_type!r}'
        return f'{self.__class__.__name__}({args})'


def to_edge_type_stack(
    data: HeteroData, add_reverse: bool = False, target_node_type: str | None = None
) -> Data:
    r"""Functional form of :class:`ToEdgeTypeStack`; see there for the layout and arguments."""
    if not isinstance(data, HeteroData):
        raise TypeError(f'data must be a torch_geometric HeteroData, got {type(data).__name__}')
    node_types = list(data.node_types)
    if not node_types:
        raise ValueError('data has no node types; pass a HeteroData with at least one node type')

    sizes, offsets, total = {}, {}, 0
    for nt in node_types:
        num = data[nt].num_nodes
        if num is None:
            raise ValueError(f"data['{nt}'] has no num_nodes and no x to infer it from; set it")
        sizes[nt] = check_num_nodes(num, f"data['{nt}'].num_nodes")
        offsets[nt], total = total, total + sizes[nt]

    # --- edges -------------------------------------------------------------------------------
    relations: list[tuple[str, str, str]] = []
    stacks: list[tuple[Tensor, Tensor | None]] = []  # local edge_index, edge_weight per relation
    for et in data.edge_types:
        src, _, dst = et
        store = data[et]
        name = f'data[{et!r}].edge_index'
        edge_index = check_edge_index(store.edge_index, name)
        check_index(edge_index[0], f'{name}[0]', upper=sizes[src], upper_name=f"'{src}' nodes")
        check_index(edge_index[1], f'{name}[1]', upper=sizes[dst], upper_name=f"'{dst}' nodes")
        weight = check_edge_weight(
            store.get('edge_weight'), edge_index.size(1), f'data[{et!r}].edge_weight'
        )
        relations.append(et)
        stacks.append((edge_index.long(), weight))
    if add_reverse:
        codes: dict[int, Tensor] = {}
        for k in range(len(relations)):
            (src, rel, dst), (edge_index, weight) = relations[k], stacks[k]
            if _has_reverse(k, relations, stacks, sizes, codes):
                continue
            reverse = (dst, f'rev_{rel}', src)
            if reverse in relations:
                raise ValueError(
                    f'cannot add the reverse of {relations[k]}: edge type {reverse} already exists '
                    'but does not hold the flipped edges; rename it'
                )
            relations.append(reverse)
            stacks.append((edge_index.flip(0), weight))

    # --- features (checked before anything is built, so all inputs share one device) ----------
    xs = {}
    for nt in node_types:
        if data[nt].get('x') is not None:
            xs[nt] = check_node_features(data[nt].x, sizes[nt], f"data['{nt}'].x")
    device = check_same_device(
        [(f'data[{et!r}].edge_index', e) for et, (e, _) in zip(relations, stacks)]
        + [(f'data[{et!r}].edge_weight', w) for et, (_, w) in zip(relations, stacks)]
        + [(f"data['{nt}'].x", x) for nt, x in xs.items()]
    )
    device = device if device is not None else torch.device('cpu')

    # --- stack ------------------------------------------------------------------------------------
    weight_dtypes = [w.dtype for _, w in stacks if w is not None]
    parts, types, weights = [], [], []
    for r, ((src, _, dst), (edge_index, weight)) in enumerate(zip(relations, stacks)):
        shift = torch.tensor([[offsets[src]], [offsets[dst]]], device=device)
        parts.append(edge_index + shift)
        types.append(torch.full((edge_index.size(1),), r, dtype=torch.long, device=device))
        if weight_dtypes:  # relations without weights count 1
            ones = torch.ones(edge_index.size(1), dtype=weight_dtypes[0], device=device)
            weights.append(weight if weight is not None else ones)
    out = Data()
    out.edge_index = torch.cat(parts, 1) if parts else torch.empty(2, 0, dtype=torch.long)
    out.edge_type = torch.cat(types) if types else torch.empty(0, dtype=torch.long)
    if weights:
        dtype = functools.reduce(torch.promote_types, weight_dtypes)
        out.edge_weight = torch.cat([w.to(dtype) for w in weights])
    out.num_nodes = total
    counts = torch.tensor([sizes[nt] for nt in node_types], device=device)
    out.node_type = torch.repeat_interleave(torch.arange(len(node_types), device=device), counts)

    if xs:  # zero-pad every type to the widest; featureless types stay zero
        width = max(x.size(1) for x in xs.values())
        dtype = functools.reduce(torch.promote_types, [x.dtype for x in xs.values()])
        x_out = torch.zeros(total, width, dtype=dtype, device=device)
        for nt, x in xs.items():
            x_out[offsets[nt] : offsets[nt] + sizes[nt], : x.size(1)] = x
        out.x = x_out

    # --- labels and masks ----------------------------------------------------------------------
    target = _resolve_target(data, node_types, target_node_type)
    if target is not None:
        store, begin, end = data[target], offsets[target], offsets[target] + sizes[target]
        for key, value in store.items():
            if key == 'y':
                y = check_length(
                    check_tensor(value, f"data['{target}'].y"),
                    sizes[target],
                    f"data['{target}'].y",
                    f"data['{target}'].num_nodes",
                )
                fill = 0 if y.is_floating_point() or y.dtype == torch.bool else -1
                lifted = torch.full((total, *y.shape[1:]), fill, dtype=y.dtype, device=y.device)
                lifted[begin:end] = y
                out.y = lifted
            elif key.endswith('_mask') and isinstance(value, Tensor):
                name = f"data['{target}'].{key}"
                if value.dtype != torch.bool or value.dim() != 1:
                    raise ValueError(
                        f'{name} must be a 1-dimensional bool mask, got {value.dtype} {tuple(value.shape)}'
                    )
                check_length(value, sizes[target], name, f"data['{target}'].num_nodes")
                lifted = torch.zeros(total, dtype=torch.bool, device=value.device)
                lifted[begin:end] = value
                out[key] = lifted
        out.target_node_type = target
    if 'num_classes' in data:
        out.num_classes = data.num_classes

    out.node_type_names = list(node_types)
    out.node_type_offsets = [offsets[nt] for nt in node_types]
    out.edge_type_names = [rel for _, rel, _ in relations]
    out.num_relations = len(relations)
    # PyG's own names, so Data.to_heterogeneous() rebuilds the HeteroData without arguments.
    out._node_type_names = list(node_types)
    out._edge_type_names = list(relations)
    return out


def _resolve_target(data: HeteroData, node_types: list[str], target: str | None) -> str | None:
    if target is None and 'target_node_type' in data:
        target = data.target_node_type
    if target is not None:
        if target not in node_types:
            raise ValueError(
                f'target_node_type {target!r} is not a node type of data; choose one of {node_types}'
            )
        return target
    labelled = [nt for nt in node_types if 'y' in data[nt]]
    if len(labelled) > 1:
        raise ValueError(f'node types {labelled} all have y; pass target_node_type to pick one')
    return labelled[0] if labelled else None


def _has_reverse(k: int, relations, stacks, sizes, codes: dict[int, Tensor]) -> bool:
    """Whether some relation holds exactly the flipped edge set of relation ``k``.

    ``codes`` caches each relation's sorted unique ``src * num_dst + dst`` codes: equal codes =
    equal edge sets.
    """
    src, _, dst = relations[k]
    edge_index = stacks[k][0]
    flipped = torch.unique(edge_index[1] * max(sizes[src], 1) + edge_index[0])
    for j, ((s, _, d), (other, _)) in enumerate(zip(relations, stacks)):
        if s == dst and d == src and other.size(1) >= flipped.numel():
            if j not in codes:
                codes[j] = torch.unique(other[0] * max(sizes[d], 1) + other[1])
            if torch.equal(codes[j], flipped):
                return True
    return False
