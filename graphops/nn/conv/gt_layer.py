"""One Graph Transformer layer: a meta-path adjacency product and its normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import Module

from graphops.nn.conv.gt_conv import GTConv
from graphops.ops.cache import InputCache
from graphops.ops.csr import CSR, normalize
from graphops.ops.edge_type import EdgeTypeStack, check_edge_type_stack, stack_weight
from graphops.ops.spgemm import (
    ProductPlan,
    check_topk,
    planned_spgemm,
    product_plan,
    spgemm,
)
from graphops.ops.validate import (
    check_condition,
    check_index_or_mask,
    check_positive_int,
    check_same_device,
)

# Bytes per meta-path entry a GTN spends after the product, per channel (normalisation, the
# read-out's row ids, masks and weights, SpMM's transposed pattern and gradients): counted
# against the memory budget with the product itself, so a graph too dense to multiply fails in
# seconds instead of growing until the OOM killer ends the process.
DOWNSTREAM_ENTRY_BYTES = 64
# 'each': the paper's eq. 5; 'between': HGB's benchmark GTN (see GTLayer).
PRODUCT_NORMS = ('each', 'between')


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

    ``product_norm='between'`` is the GTN of HGB's benchmark code (THUDM/HGB
    ``NC/benchmark/methods/GTN/model.py``, ``GTN.forward`` and ``GTN.norm``), which produced its
    GTN figures: the first product is left as it is, and every later layer first drops the
    diagonal of the previous product and row-normalises it, then applies its selection on the
    *aggregating* side (the last hop of the meta-path):

    .. math::
        \mathbf{H}^{(1)}_c = \mathbf{Q}^{(1)}_c \mathbf{Q}^{(2)}_c, \qquad
        \mathbf{H}^{(l)}_c = \mathbf{Q}^{(l+1)}_c \, \mathbf{D}^{-1}
            \big(\mathbf{H}^{(l-1)}_c - \mathrm{diag}(\mathbf{H}^{(l-1)}_c)\big),

    so the last product keeps its raw weights (its rows sum to about the weighted degree of
    the last selection, not to one). With ``'each'`` (the default) a row normalisation between
    right multiplications would cancel out; here it does not, because the new selection sits
    on the left. A later layer's rows are then rows of :math:`\mathbf{Q}`, whose columns must be
    rows of ``prev``: ``prev`` covers all nodes, or the nodes ``prev_rows`` of
    :meth:`propagate` (``GTN`` passes the neighbourhoods it needs).

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
        cached (bool, optional): keep, in an :class:`~graphops.ops.cache.InputCache`, what
            :meth:`prepare` builds for a static graph (union pattern, rows, the product's
            structure), so that ``torch.compile`` runs the layer with no graph break; the graph,
            ``node_index`` and ``prev``'s pattern are then checked against it on the device.
            Not state. (default: :obj:`False`)
        product_norm (str, optional): ``'each'`` (every product row-normalised, the new
            selection on the source side: the paper's eq. 5) or ``'between'`` (HGB's code: the
            previous product's diagonal dropped and its rows normalised, the new selection on
            the aggregating side, the product itself left raw). A ``'between'`` layer is planned
            through :meth:`GTN.prepare <graphops.nn.models.GTN.prepare>` (its rows depend on
            the next layer's), not by its own :meth:`prepare`. (default: ``'each'``)

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
        *,
        cached: bool = False,
        product_norm: str = 'each',
    ) -> None:
        super().__init__()
        if product_norm not in PRODUCT_NORMS:
            raise ValueError(f'product_norm must be one of {PRODUCT_NORMS}, got {product_norm!r}')
        self.product_norm = product_norm
        self.num_edge_types = check_positive_int(num_edge_types, 'num_edge_types')
        self.num_channels = check_positive_int(num_channels, 'num_channels')
        for name, flag in (('first', first), ('identity', identity)):
            if not isinstance(flag, bool):
                raise TypeError(f'{name} must be a bool, got {type(flag).__name__}')
        self.first = first
        self.identity = identity
        self.topk = check_topk(topk)
        if not isinstance(cached, bool):
            raise TypeError(f'cached must be a bool, got {type(cached).__name__}')
        self.cached = cached
        self._cache = InputCache()  # the _LayerPlan prepare() built; not state
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
        if torch.compiler.is_compiling():
            plan = self._held_plan(edge_index, edge_type, num_nodes, prev, node_index)
            if plan is not None:
                prev_values = None if self.first else torch.stack([h.values() for h in prev])
                weight = stack_weight(edge_weight, num_nodes, self.identity)
                values = self.propagate_planned(
                    plan.stack, weight, plan.product, prev_values, plan.select
                )
                return [plan.product.csr(v) for v in values.unbind(0)]
        stack = EdgeTypeStack.build(
            edge_index, edge_type, num_nodes, edge_weight, self.num_edge_types, self.identity
        )
        return self.propagate(stack, prev, node_index)

    def prepare(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        num_nodes: int,
        prev: Sequence[CSR] | None = None,
        node_index: Tensor | None = None,
    ) -> None:
        """Builds, eagerly, what the layer's output structure depends on for a static graph
        (``cached=True``, ``topk=None``): the union pattern, the stack entries of the rows of
        ``node_index`` and the product's structure (:func:`~graphops.ops.spgemm.product_plan`;
        for a later layer, of ``prev``'s pattern times the union). A compiled layer then runs
        with no graph break on that graph."""
        if torch.compiler.is_compiling():
            raise RuntimeError('prepare() builds a plan eagerly; call it outside torch.compile')
        if not self.cached or self.topk is not None:
            raise ValueError(
                'prepare() keeps a product plan, which needs cached=True and topk=None (top-k '
                'pruning depends on values)'
            )
        if self.product_norm != 'each':
            raise ValueError(
                "GTLayer.prepare() plans product_norm='each' only; a 'between' layer's rows "
                'depend on the next layer: prepare the GTN that holds it (GTN.prepare)'
            )
        num_nodes = check_edge_type_stack(
            edge_index, edge_type, num_nodes, None, self.num_edge_types
        )
        stack = EdgeTypeStack.build(
            edge_index, edge_type, num_nodes, None, self.num_edge_types, self.identity
        )
        pattern = stack.csr(None)
        select = None
        if self.first:
            if prev is not None:
                raise ValueError('prev must be None for the first layer (first=True)')
            left = pattern
            if node_index is not None:
                node_index = check_index_or_mask(node_index, 'node_index', size=num_nodes)
                left, select = pattern.select_rows_entries(node_index)
        else:
            if node_index is not None:
                raise ValueError(
                    'node_index only applies to the first layer; later layers keep the rows of prev'
                )
            left = self._check_prev(prev, num_nodes)[0].with_value(None)
        plan = _LayerPlan(
            stack=stack,
            edge_index=edge_index,
            edge_type=edge_type,
            node_index=node_index,
            prev_pattern=None if self.first else (left.rowptr, left.col),
            select=select,
            product=product_plan(left, pattern),
        )
        self._cache.store((edge_index, edge_type, node_index, num_nodes), plan)

    def reset_cache(self) -> None:
        """Drops the prepared plan."""
        self._cache.clear()

    def _held_plan(self, edge_index, edge_type, num_nodes, prev, node_index):
        """Inside ``torch.compile``: the prepared plan if it fits, checked on the device."""
        plan = self._cache.value if self.cached and self.topk is None else None
        if plan is None or plan.stack.num_nodes != num_nodes:
            return None
        if plan.edge_index.shape != edge_index.shape:
            return None
        if (node_index is None) != (plan.node_index is None) or (
            node_index is not None and node_index.shape != plan.node_index.shape
        ):
            return None
        same = (edge_index == plan.edge_index).all() & (edge_type == plan.edge_type).all()
        if node_index is not None:
            same = same & (node_index == plan.node_index).all()
        if not self.first:
            prev = self._check_prev(prev, num_nodes)
            rowptr, col = plan.prev_pattern
            for h in prev:
                if h.rowptr.shape != rowptr.shape or h.col.shape != col.shape:
                    return None
                same = same & (h.rowptr.long() == rowptr.long()).all()
                same = same & (h.col.long() == col.long()).all()
        message = (
            'the graph, node_index or prev passed to this GTLayer differs from what prepare() '
            'planned; call layer.prepare(...) on them outside torch.compile'
        )
        check_condition(same, message)
        return plan

    def propagate_planned(
        self,
        stack: EdgeTypeStack,
        element_weight: Tensor | None,
        product: ProductPlan,
        prev_values: Tensor | None = None,
        select: Tensor | None = None,
        *,
        step: BetweenStep | None = None,
    ) -> Tensor:
        """:meth:`propagate` on a planned product (static shapes, for ``torch.compile``):
        ``[C, product.nnz]`` values of the products (row-normalised with ``'each'``).
        ``prev_values`` ``[C, nnz]`` are the previous layer's values (later layers); ``select``
        the stack entries of the layer's rows (the first layer's ``node_index``; with
        ``product_norm='between'`` every layer's, ``step.select``), and ``step`` the layer's
        :meth:`plan_between`."""
        between = self.product_norm == 'between'
        if between and step is None:
            raise ValueError("product_norm='between' needs the layer's plan_between() step")
        if self.first or between:  # the selection acts on this side, with its rows chosen
            left = self.conv1.combine(stack, element_weight)
            if select is not None:
                left = left.index_select(1, select)
        if self.first:
            right = self.conv2.combine(stack, element_weight)
        elif between:  # HGB's norm of the previous product: diagonal dropped, rows summing to one
            kept = prev_values.index_select(1, step.keep)
            right = _row_normalized(kept, step.kept_row, step.prev_rows)
        else:
            left, right = prev_values, self.conv1.combine(stack, element_weight)
        values = planned_spgemm(product, left, right)
        return values if between else _row_normalized(values, product.row, product.num_rows)

    def plan_between(
        self,
        pattern: CSR,
        rows: Tensor | None,
        prev: ProductPlan | None = None,
        prev_rows: Tensor | None = None,
    ) -> tuple[BetweenStep, ProductPlan]:
        """Eagerly, for ``product_norm='between'``: the structure of this layer's product on the
        edge-type union ``pattern``, for the rows ``rows`` (``None``: every node) and, for a later
        layer, the previous layer's product ``prev`` with its rows ``prev_rows`` (as
        :meth:`propagate` takes them). :meth:`propagate_planned` then forms the values."""
        select, left = None, pattern
        if rows is not None:
            left, select = pattern.with_value(None).select_rows_entries(rows)
        if self.first:
            return BetweenStep(select, None, None, 0), product_plan(left, pattern)
        h = prev.csr()
        if prev_rows is not None:
            left = _columns_to_rows_of(left, prev_rows)
        keep = _off_diagonal(h, prev_rows).nonzero().view(-1)
        kept_row = h.row().long().index_select(0, keep)
        right = CSR.from_coo(
            kept_row,
            h.col.long().index_select(0, keep),
            None,
            h.num_rows,
            h.num_cols,
            is_sorted=True,
            trust_data=True,
        )
        return BetweenStep(select, keep, kept_row, h.num_rows), product_plan(left, right)

    def propagate(
        self,
        stack: EdgeTypeStack,
        prev: Sequence[CSR] | None,
        node_index: Tensor | None,
        *,
        prev_rows: Tensor | None = None,
    ) -> list[CSR]:
        """The layer on a prepared edge-type stack (what :class:`GTN` calls, building the stack
        once for all layers). With ``product_norm='between'`` a later layer takes the rows
        ``node_index`` of its selection, whose columns must lie in ``prev_rows``: the sorted,
        unique nodes of ``prev``'s rows (``None``: ``prev`` has a row per node)."""
        if self.first:
            if prev is not None:
                raise ValueError('prev must be None for the first layer (first=True)')
            if prev_rows is not None:
                raise ValueError('prev_rows only applies to a later layer (first=False)')
            left = self.conv1.combine(stack)
            right = self.conv2.combine(stack)
            lefts = [stack.csr(left[c]) for c in range(self.num_channels)]
            if node_index is not None:
                lefts = [q.select_rows(node_index) for q in lefts]
            rights = [stack.csr(right[c]) for c in range(self.num_channels)]
        elif self.product_norm == 'between':
            prev = self._check_prev(prev, stack.num_nodes)
            left = self.conv1.combine(stack)
            lefts = [stack.csr(left[c]) for c in range(self.num_channels)]
            if node_index is not None:
                lefts = [q.select_rows(node_index) for q in lefts]
            if prev_rows is None:
                if prev[0].num_rows != stack.num_nodes:
                    raise ValueError(
                        f'prev has {prev[0].num_rows} rows; without prev_rows it needs one per '
                        f'node ({stack.num_nodes})'
                    )
            else:
                prev_rows = check_index_or_mask(prev_rows, 'prev_rows', size=stack.num_nodes)
                if prev_rows.numel() != prev[0].num_rows:
                    raise ValueError(
                        f'prev_rows names {prev_rows.numel()} nodes but prev has '
                        f'{prev[0].num_rows} rows; give one node per row of prev'
                    )
                lefts = [_columns_to_rows_of(q, prev_rows) for q in lefts]
            rights = [_drop_diagonal_rw(h, prev_rows) for h in prev]
        else:
            if node_index is not None:
                raise ValueError(
                    'node_index only applies to the first layer; later layers keep the rows of prev'
                )
            if prev_rows is not None:
                raise ValueError("prev_rows only applies with product_norm='between'")
            lefts = self._check_prev(prev, stack.num_nodes)
            right = self.conv1.combine(stack)
            rights = [stack.csr(right[c]) for c in range(self.num_channels)]
        out = []
        for c in range(self.num_channels):
            product = spgemm(
                lefts[c],
                rights[c],
                topk=self.topk,
                entry_bytes=DOWNSTREAM_ENTRY_BYTES * self.num_channels,
            )
            if self.product_norm == 'each':
                product = normalize(product, 'rw', dtype=product.value.dtype)
            out.append(product)
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
        cached = ', cached=True' if self.cached else ''
        if self.product_norm != 'each':
            cached += f', product_norm={self.product_norm!r}'
        return (
            f'{self.__class__.__name__}({self.num_edge_types}, {self.num_channels}, '
            f'first={self.first}, identity={self.identity}, topk={self.topk}{cached})'
        )


def _columns_to_rows_of(q: CSR, rows: Tensor) -> CSR:
    """``q`` with its columns renumbered to their positions in ``rows`` (sorted, unique node
    ids), so it multiplies a matrix holding only those rows. Every column must be in ``rows``."""
    position = torch.full((q.num_cols,), -1, dtype=torch.long, device=q.device)
    position[rows] = torch.arange(rows.numel(), device=q.device)
    col = position[q.col.long()]
    check_condition(
        (col >= 0).all(),
        'a column of the selection is not a row of prev: prev_rows must hold every neighbour '
        'of node_index in the edge-type stack',
    )
    dtype = q.rowptr.dtype
    return CSR(q.rowptr, col.to(dtype), q.value, q.num_rows, rows.numel(), trust_data=True)


def _off_diagonal(h: CSR, rows: Tensor | None) -> Tensor:
    """``[nnz]`` bool: the entries of ``h`` off the diagonal (row ``r`` is node ``rows[r]``, or
    node ``r``)."""
    row = h.row()  # index dtype (int32 for most graphs): these are the widest products
    node = row if rows is None else rows.to(row.dtype)[row.long()]
    return node != h.col


def _row_normalized(values: Tensor, row: Tensor, num_rows: int) -> Tensor:
    """``[C, nnz]`` entry values divided by their row's sum (rows summing to zero stay zero)."""
    degree = values.new_zeros(values.size(0), num_rows).index_add(1, row, values)
    inverse = torch.where(degree != 0, 1.0 / degree, torch.zeros_like(degree))
    return values * inverse.index_select(1, row)


def _drop_diagonal_rw(h: CSR, rows: Tensor | None) -> CSR:
    """HGB's ``GTN.norm`` between layers: the diagonal dropped (row ``r`` is node ``rows[r]``,
    or node ``r``), then every row divided by its sum (empty rows stay empty)."""
    row = h.row()
    keep = _off_diagonal(h, rows)
    value = h.values()[keep]
    kept = CSR.from_coo(
        row[keep], h.col[keep], value, h.num_rows, h.num_cols, is_sorted=True, trust_data=True
    )
    return normalize(kept, 'rw', dtype=value.dtype)


@dataclass(eq=False)
class BetweenStep:
    """One layer of a planned ``product_norm='between'`` GTN (:meth:`GTLayer.plan_between`): the
    stack entries of the layer's rows (``None``: every node) and, for a later layer, the entries
    of the previous product off the diagonal, their rows and the previous product's row count.

    Shapes:
        ``select``: :math:`(nnz_{rows})`; ``keep``, ``kept_row``: :math:`(nnz_{kept})`.
    """

    select: Tensor | None
    keep: Tensor | None
    kept_row: Tensor | None
    prev_rows: int


@dataclass(eq=False)
class _LayerPlan:
    """What :meth:`GTLayer.prepare` builds: the union pattern (no weights), the graph, rows and
    previous pattern it was built for, the stack entries of the rows, the product's structure."""

    stack: EdgeTypeStack
    edge_index: Tensor
    edge_type: Tensor
    node_index: Tensor | None
    prev_pattern: tuple[Tensor, Tensor] | None
    select: Tensor | None
    product: ProductPlan
