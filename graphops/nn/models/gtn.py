"""Graph Transformer Networks (GTN) and FastGTN for node classification."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Module, ModuleList, Parameter

from graphops.nn.conv.gt_conv import GTConv
from graphops.nn.conv.gt_layer import PRODUCT_NORMS, BetweenStep, GTLayer
from graphops.ops.cache import InputCache
from graphops.ops.csr import CSR
from graphops.ops.edge_type import (
    EdgeTypeStack,
    check_edge_type_stack,
    edge_type_norm_unchecked,
    stack_weight,
)
from graphops.ops.spgemm import (
    ProductPlan,
    check_topk,
    product_plan,
)
from graphops.ops.spmm import spmm
from graphops.ops.validate import (
    check_condition,
    check_index_or_mask,
    check_node_features,
    check_positive_int,
    check_same_device,
)

CHANNEL_AGGREGATIONS = ('concat', 'mean')
HEADS = ('linear', 'mlp')
# Meta-path enumeration is exhaustive below this many edge-type chains, a beam search above.
_MAX_ENUMERATED_PATHS = 1 << 20


class GTN(Module):
    r"""The Graph Transformer Network from the `"Graph Transformer Networks"
    <https://arxiv.org/abs/1911.06455>`_ paper, and with ``fast=True`` FastGTN from
    `"Graph Transformer Networks: Learning Meta-path Graphs to Improve GNNs"
    <https://arxiv.org/abs/2106.06218>`_, for node classification on an edge-type stack
    (:func:`graphops.transforms.to_edge_type_stack`).

    **GTN** (``fast=False``) learns :math:`C` meta-path adjacencies with ``num_layers``
    :class:`~graphops.nn.conv.GTLayer` s (meta-paths of up to ``num_layers + 1`` hops; fewer
    through the identity edge type), each a sparse product normalised by its row sums, then runs
    one GCN per channel with a *shared* weight and classifies the concatenation:

    .. math::
        \mathbf{H}^{(1)}_c &= \mathbf{D}^{-1} \mathbf{Q}^{(1)}_c \mathbf{Q}^{(2)}_c, \qquad
            \mathbf{H}^{(l)}_c = \mathbf{D}^{-1} \mathbf{H}^{(l-1)}_c \mathbf{Q}^{(l+1)}_c,
            \qquad \mathbf{H}_c = \mathbf{H}^{(L)}_c

        \mathbf{Z}_c &= \mathrm{ReLU}\big(\tilde{\mathbf{D}}_c^{-1} \tilde{\mathbf{H}}_c
            \mathbf{X} \mathbf{W} + \mathbf{b}\big), \qquad
            \tilde{\mathbf{H}}_c = \mathbf{H}_c - \mathrm{diag}(\mathbf{H}_c) + \mathbf{I}

        \mathbf{Y} &= [\mathbf{Z}_1 \Vert \cdots \Vert \mathbf{Z}_C] \, \mathbf{W}_{out}
            + \mathbf{b}_{out}

    with :math:`\tilde{\mathbf{D}}_c` the row sums of :math:`\tilde{\mathbf{H}}_c`: the
    authors' GCN removes the self-loops of :math:`\mathbf{H}_c`, adds unit ones and divides by
    the aggregating node's degree (:math:`\mathbf{D}^{-1}\mathbf{A}`, not the symmetric norm).

    **FastGTN** (``fast=True``) never forms a product. Each edge type is first row-normalised
    (a node with no in-edges of that type keeps itself: a unit self-loop, the authors' tiny
    :math:`10^{-20}` loop), then the selections are applied to per-channel features, one
    :class:`~graphops.nn.conv.GTConv` per layer:

    .. math::
        \mathbf{H}^{(0)}_c = \mathbf{X}\mathbf{W}_c, \qquad
        \mathbf{H}^{(l)}_c = \mathbf{Q}^{(l)}_c \mathbf{H}^{(l-1)}_c, \qquad
        \mathbf{Z}_c = \mathrm{ReLU}\big(\beta\,\mathbf{X}\mathbf{W}_c
            + (1-\beta)\,\mathbf{H}^{(L)}_c\big)

    and the channels are aggregated by ``channel_agg``: ``'concat'``
    (:math:`\mathrm{ReLU}([\mathbf{Z}_1 \Vert \cdots] \mathbf{W}_1)`) or ``'mean'``, followed by
    the output linear layer. The first hop of the meta-path is :math:`\mathbf{Q}^{(1)}`. The
    authors' non-local edge type and stacked FastGTN blocks are not included.

    GTN mixes the edge types' adjacencies as given. When their degrees differ by orders of
    magnitude (HGB ACM: about 85 paper-term edges per paper against 3 paper-author ones) the
    dense type dominates every product until the selections have moved far; pass
    ``edge_weight=graphops.ops.edge_type_norm(edge_index, edge_type, num_nodes)`` to give every
    type unit in-weight per node first, as FastGTN does internally (``examples/gtn.py`` does so
    by default).

    Four keyword-only options reproduce the GTN of HGB's benchmark code (THUDM/HGB
    ``NC/benchmark/methods/GTN/model.py``), which differs from the authors' release that the
    defaults follow: ``product_norm='between'`` (see :class:`~graphops.nn.conv.GTLayer`: the
    previous product's diagonal dropped and its rows normalised before the next selection,
    which acts on the aggregating side, and the last product left raw, so the GCN's unit
    self-loop weighs against the meta-path's raw degree), ``head='mlp'``
    (:math:`\mathbf{Y} = \mathrm{ReLU}([\mathbf{Z}_1 \Vert \cdots] \mathbf{W}_1 +
    \mathbf{b}_1) \mathbf{W}_{out} + \mathbf{b}_{out}`, HGB's ``linear1``/``linear2``),
    ``bias=False`` (HGB's GCN adds none) and ``selection_std=0.0`` (HGB starts every selection
    at a constant: uniform).

    ``node_index`` computes only the outputs of those nodes. For GTN this is exact and is what
    keeps it lean: every step (products, normalisations, the GCN) is row-local, so only the
    rows of the requested nodes are ever formed. ``topk`` prunes each product row to its
    ``topk`` largest entries (an approximation, off by default; see
    :func:`graphops.ops.spgemm.spgemm`).

    The edge-type stack (a sort of all edges) and the input checks are done once per graph: the
    model remembers the last inputs it saw (weakly, by identity and version), so a training loop
    passing the same tensors every epoch pays for them once; an in-place edit is seen.
    :meth:`metapath_adjacencies` returns GTN's :math:`\mathbf{H}_c` themselves.

    :meth:`metapath_attention` reads the learned selections: the softmax weight of every edge
    type per layer and channel, and the top meta-paths per channel ranked by the product of
    their weights, named with the dataset's edge-type names.

    Args:
        in_channels (int): size of each input node feature.
        hidden_channels (int): size of the GCN output (GTN) or per-channel embedding (FastGTN).
        out_channels (int): number of classes.
        num_edge_types (int): number of edge types :math:`K` in the input.
        num_channels (int, optional): number of meta-path channels :math:`C`. (default: ``2``)
        num_layers (int, optional): number of GT layers :math:`L`. (default: ``1``)
        identity (bool, optional): offer the identity as an extra edge type.
            (default: :obj:`True`)
        fast (bool, optional): FastGTN instead of GTN. (default: :obj:`False`)
        channel_agg (str, optional): FastGTN's channel aggregation, ``'concat'`` or ``'mean'``.
            (default: ``'concat'``)
        beta (float, optional): FastGTN's weight of the untransformed :math:`\mathbf{XW}_c`.
            (default: ``0.0``)
        topk (int, optional): GTN's per-row pruning of every product. (default: :obj:`None`)
        product_norm (str, optional, keyword-only): GTN's products, ``'each'`` (the paper) or
            ``'between'`` (HGB's code); see :class:`~graphops.nn.conv.GTLayer`.
            Both compile after :meth:`prepare`. (default: ``'each'``)
        head (str, optional, keyword-only): GTN's classifier on the concatenated channels,
            ``'linear'`` (the authors') or ``'mlp'`` (HGB's: a ``hidden_channels`` ReLU layer
            first). FastGTN's head is set by ``channel_agg``. (default: ``'linear'``)
        bias (bool, optional, keyword-only): GTN's GCN adds a learned bias :math:`\mathbf{b}`
            (the authors'; HGB's has none). (default: :obj:`True`)
        selection_std (float, optional, keyword-only): standard deviation of the selections'
            normal start; ``0.0`` starts them uniform (HGB's constant). (default: :obj:`None`:
            the authors', 0.01 for GTN, 0.1 for FastGTN)

    Shapes:
        - **input:** ``x`` :math:`(N, F_{in})`, ``edge_index`` :math:`(2, E)`, ``edge_type``
          :math:`(E)`, ``edge_weight`` :math:`(E)` or :obj:`None`, ``node_index`` :math:`(R)` or
          :obj:`None` (:math:`R = N`)
        - **output:** logits :math:`(R, F_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_edge_types: int,
        num_channels: int = 2,
        num_layers: int = 1,
        identity: bool = True,
        fast: bool = False,
        channel_agg: str = 'concat',
        beta: float = 0.0,
        topk: int | None = None,
        *,
        product_norm: str = 'each',
        head: str = 'linear',
        bias: bool = True,
        selection_std: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, 'in_channels')
        self.hidden_channels = check_positive_int(hidden_channels, 'hidden_channels')
        self.out_channels = check_positive_int(out_channels, 'out_channels')
        self.num_edge_types = check_positive_int(num_edge_types, 'num_edge_types')
        self.num_channels = check_positive_int(num_channels, 'num_channels')
        self.num_layers = check_positive_int(num_layers, 'num_layers')
        for name, flag in (('identity', identity), ('fast', fast), ('bias', bias)):
            if not isinstance(flag, bool):
                raise TypeError(f'{name} must be a bool, got {type(flag).__name__}')
        if channel_agg not in CHANNEL_AGGREGATIONS:
            raise ValueError(
                f'channel_agg must be one of {CHANNEL_AGGREGATIONS}, got {channel_agg!r}'
            )
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
            raise ValueError(f'beta must be a float in [0, 1], got {beta!r}')
        if product_norm not in PRODUCT_NORMS:
            raise ValueError(f'product_norm must be one of {PRODUCT_NORMS}, got {product_norm!r}')
        if head not in HEADS:
            raise ValueError(f'head must be one of {HEADS}, got {head!r}')
        if fast and (product_norm != 'each' or head != 'linear' or not bias):
            raise ValueError(
                'product_norm, head and bias shape GTN; FastGTN forms no products, has no GCN '
                "bias and its head is set by channel_agg: leave them at 'each', 'linear', True"
            )
        if selection_std is not None and (
            isinstance(selection_std, bool)
            or not isinstance(selection_std, (int, float))
            or not 0 <= selection_std < float('inf')
        ):
            raise ValueError(
                f'selection_std must be a finite float >= 0 or None, got {selection_std!r}'
            )
        self.product_norm = product_norm
        self.head = head
        self.selection_std = None if selection_std is None else float(selection_std)
        self.identity = identity
        self.fast = fast
        self.channel_agg = channel_agg
        self.beta = float(beta)
        self.topk = check_topk(topk)
        if fast and topk is not None:
            raise ValueError('topk prunes adjacency products, which FastGTN never forms; drop it')

        C, hidden = num_channels, hidden_channels
        if fast:
            self.layers = ModuleList(
                GTConv(num_edge_types, num_channels, identity) for _ in range(num_layers)
            )
            self.weight = Parameter(torch.empty(C, in_channels, hidden))
            self.register_parameter('bias', None)
            concat = channel_agg == 'concat'
            self.lin_channels = Linear(C * hidden, hidden) if concat else None
            self.lin = Linear(hidden, out_channels)
        else:
            self.layers = ModuleList(
                GTLayer(
                    num_edge_types, num_channels, i == 0, identity, topk, product_norm=product_norm
                )
                for i in range(num_layers)
            )
            self.weight = Parameter(torch.empty(in_channels, hidden))
            if bias:
                self.bias = Parameter(torch.empty(hidden))
            else:
                self.register_parameter('bias', None)
            mlp = head == 'mlp'
            self.lin_channels = Linear(C * hidden, hidden) if mlp else None
            self.lin = Linear(hidden if mlp else C * hidden, out_channels)
        self._cache = InputCache()  # the edge-type stack of the last graph; not state
        self._plan = InputCache()  # what prepare() built for torch.compile; not state
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The authors start FastGTN's selections wider (std 0.1) than GTN's (0.01).
        std = self.selection_std
        if std is None:
            std = 0.1 if self.fast else 0.01
        for module in self.layers:
            convs = [module] if isinstance(module, GTConv) else module.convs()
            for conv in convs:
                conv.reset_parameters(std=std)
        for weight in self.weight if self.fast else [self.weight]:
            torch.nn.init.xavier_uniform_(weight)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)
        if self.lin_channels is not None:
            self.lin_channels.reset_parameters()
        self.lin.reset_parameters()

    # --- forward -----------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_type: Tensor,
        edge_weight: Tensor | None = None,
        node_index: Tensor | None = None,
    ) -> Tensor:
        if torch.compiler.is_compiling():
            plan = self._held_plan(x, edge_index, edge_type, edge_weight, node_index)
            if plan is not None:
                return self._forward_planned(x, plan, edge_weight)
        stack = self._prepare(x, edge_index, edge_type, edge_weight)
        if node_index is not None:
            node_index = check_index_or_mask(node_index, 'node_index', size=x.size(0))
        check_same_device([('x', x), ('node_index', node_index)])
        if self.fast:
            return self._forward_fast(x, stack, node_index)
        return self._forward_gtn(x, stack, node_index)

    # --- the torch.compile path ------------------------------------------------------------
    def prepare(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_type: Tensor,
        edge_weight: Tensor | None = None,
        node_index: Tensor | None = None,
    ) -> None:
        r"""Builds, eagerly, everything about a static graph whose size depends on the data,
        so that a model compiled afterwards (``torch.compile(model, fullgraph=True)``) runs with
        no graph break on that graph: the edge-type stack's union pattern and, for GTN, the
        structure of every meta-path product for the rows of ``node_index``
        (:func:`~graphops.ops.spgemm.product_plan`), or, for FastGTN, the unit self-loops its
        per-type normalisation adds and the entries of the rows of ``node_index``. The values
        (selections, products, normalisations, the GCN) are then formed with ops of static
        shape, and the graph and ``node_index`` passed in are checked against the prepared ones
        on the device (``torch._assert_async``). A GTN plan holds one index per term of each
        product (their work); it is not state (left out of pickling). ``topk`` pruning depends
        on values and runs eagerly.

        Takes the forward's arguments (``edge_weight`` only for its checks: weights may change
        between calls).
        """
        if torch.compiler.is_compiling():
            raise RuntimeError('prepare() builds a plan eagerly; call it outside torch.compile')
        if self.topk is not None:
            raise ValueError(
                'prepare() plans products without pruning: top-k pruning depends on values and '
                'runs eagerly (build the model with topk=None to compile it)'
            )
        self._prepare(x, edge_index, edge_type, edge_weight)
        num_nodes = x.size(0)
        if node_index is not None:
            node_index = check_index_or_mask(node_index, 'node_index', size=num_nodes)
        device = edge_index.device
        stack_index, stack_type, num_loops = edge_index, edge_type, 0
        if self.fast:  # the self-loops FastGTN's normalisation adds depend on the structure only
            stack_index, stack_type, loop_weight = _normalize_edge_types(
                edge_index, edge_type, None, num_nodes, self.num_edge_types, x.dtype
            )
            num_loops = loop_weight.numel() - edge_index.size(1)
        stack = EdgeTypeStack.build(
            stack_index, stack_type, num_nodes, None, self.num_edge_types, self.identity
        )
        pattern = stack.csr(None)
        select, select_row, left = None, None, pattern
        if node_index is not None:
            left, select = pattern.select_rows_entries(node_index)
            select_row = left.row().long()
        products, steps = [], None
        if self.product_norm == 'between':
            steps, layer_rows = [], self._between_rows(pattern, node_index)
            for i, layer in enumerate(self.layers):
                prev, prev_rows = (products[-1], layer_rows[i - 1]) if i else (None, None)
                step, product = layer.plan_between(pattern, layer_rows[i], prev, prev_rows)
                steps.append(step)
                products.append(product)
        elif not self.fast:
            for _ in self.layers:
                product = product_plan(left, pattern)
                products.append(product)
                left = product.csr()
        rows = node_index if node_index is not None else torch.arange(num_nodes, device=device)
        plan = _GTNPlan(
            stack=stack,
            edge_index=edge_index,
            edge_type=edge_type,
            node_index=node_index,
            rows=rows,
            select=select,
            products=products,
            steps=steps,
            num_loops=num_loops,
            entry_row=pattern.row().long(),
            select_row=select_row,
        )
        self._plan.store((edge_index, edge_type, node_index, num_nodes), plan)

    def _held_plan(self, x, edge_index, edge_type, edge_weight, node_index) -> _GTNPlan | None:
        """Inside ``torch.compile``: the prepared plan if it fits, with the inputs checked (shapes
        here, values on the device)."""
        plan = self._plan.value
        if plan is None or self.topk is not None:
            return None
        if not isinstance(x, Tensor) or x.dim() != 2:
            return None
        if plan.stack.num_nodes != x.size(0) or plan.edge_index.shape != edge_index.shape:
            return None
        if (node_index is None) != (plan.node_index is None):
            return None
        if node_index is not None and (
            node_index.dtype == torch.bool or node_index.shape != plan.node_index.shape
        ):
            return None
        check_node_features(x, x.size(0))
        if x.size(1) != self.in_channels:
            raise ValueError(
                f'x has {x.size(1)} features but the model was built with in_channels = '
                f'{self.in_channels}'
            )
        check_edge_type_stack(edge_index, edge_type, x.size(0), edge_weight, self.num_edge_types)
        same = (edge_index == plan.edge_index).all() & (edge_type == plan.edge_type).all()
        if node_index is not None:
            same = same & (node_index == plan.node_index).all()
        message = (
            'the graph or node_index passed to this GTN differs from the one prepare() planned; '
            'call model.prepare(...) on them outside torch.compile'
        )
        check_condition(same, message)
        return plan

    def _forward_planned(self, x, plan: _GTNPlan, edge_weight):
        """GTN on a prepared plan: the same computation as the eager forward, in ops of static
        shape (for ``torch.compile``)."""
        if self.fast:
            return self._forward_fast_planned(x, plan, edge_weight)
        weight = stack_weight(edge_weight, plan.stack.num_nodes, self.identity)
        values = None
        for i, (layer, product) in enumerate(zip(self.layers, plan.products)):
            step = plan.steps[i] if plan.steps is not None else None
            select = step.select if step is not None else plan.select if layer.first else None
            values = layer.propagate_planned(plan.stack, weight, product, values, select, step=step)
        last = plan.products[-1]
        xw = x @ self.weight
        xw_self = xw.index_select(0, plan.rows)
        on_diagonal = last.col == plan.rows.index_select(0, last.row)
        outs = []
        for h_value in values.to(xw.dtype).unbind(0):
            diagonal = xw.new_zeros(last.num_rows).index_add(0, last.row, h_value * on_diagonal)
            row_sum = xw.new_zeros(last.num_rows).index_add(0, last.row, h_value)
            messages = h_value.unsqueeze(-1) * xw.index_select(0, last.col)
            aggregated = xw.new_zeros(last.num_rows, xw.size(1)).index_add(0, last.row, messages)
            aggregated = aggregated - diagonal[:, None] * xw_self + xw_self
            out = aggregated / (row_sum - diagonal + 1.0)[:, None]
            outs.append(F.relu(out if self.bias is None else out + self.bias))
        return self._classify(torch.cat(outs, dim=1))

    def _forward_fast_planned(self, x, plan: _GTNPlan, edge_weight):
        """FastGTN on a prepared plan (static shapes): as :meth:`_forward_fast`."""
        num_nodes = plan.stack.num_nodes
        weight, _ = edge_type_norm_unchecked(
            plan.edge_index, plan.edge_type, num_nodes, self.num_edge_types, edge_weight, x.dtype
        )
        weight = torch.cat([weight, weight.new_ones(plan.num_loops)])
        weight = stack_weight(weight, num_nodes, self.identity)
        col = plan.stack.col.long()
        xw = torch.einsum('nf,cfh->cnh', x, self.weight)
        hs = list(xw.unbind(0))
        for i, conv in enumerate(self.layers):
            value = conv.combine(plan.stack, weight)
            last = i == len(self.layers) - 1
            entries, rows, num_rows = None, plan.entry_row, num_nodes
            if last and plan.select is not None:
                entries, rows, num_rows = plan.select, plan.select_row, plan.rows.numel()
            for c in range(self.num_channels):
                v, source = value[c], col
                if entries is not None:
                    v, source = v.index_select(0, entries), col.index_select(0, entries)
                messages = v.to(hs[c].dtype).unsqueeze(-1) * hs[c].index_select(0, source)
                hs[c] = hs[c].new_zeros(num_rows, hs[c].size(1)).index_add(0, rows, messages)
        outs = []
        for c in range(self.num_channels):
            base = xw[c] if plan.select is None else xw[c].index_select(0, plan.rows)
            outs.append(F.relu(self.beta * base + (1.0 - self.beta) * hs[c]))
        if self.channel_agg == 'concat':
            z = F.relu(self.lin_channels(torch.cat(outs, dim=1)))
        else:
            z = torch.stack(outs).mean(0)
        return self.lin(z)

    def metapath_adjacencies(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        num_nodes: int,
        edge_weight: Tensor | None = None,
        node_index: Tensor | None = None,
    ) -> list[CSR]:
        """GTN's learned meta-path adjacencies :math:`\\mathbf{H}_c` (``adj_t`` CSR, rows of
        ``node_index``), before the GCN's self-loop replacement."""
        if self.fast:
            raise ValueError(
                'FastGTN never forms meta-path adjacencies; build the model with fast=False'
            )
        num_nodes = check_edge_type_stack(
            edge_index, edge_type, num_nodes, edge_weight, self.num_edge_types
        )
        if node_index is not None:
            node_index = check_index_or_mask(node_index, 'node_index', size=num_nodes)
        stack = EdgeTypeStack.build(
            edge_index, edge_type, num_nodes, edge_weight, self.num_edge_types, self.identity
        )
        return self._propagate(stack, node_index)

    def _between_rows(self, pattern: CSR, node_index: Tensor | None) -> list[Tensor | None]:
        """``product_norm='between'``: the nodes each layer computes (``None``: all). A later
        layer's selection acts on the aggregating side, so its rows need the previous product at
        their neighbours in the edge-type union ``pattern``."""
        rows = [node_index]
        if node_index is None:
            return rows * len(self.layers)
        for _ in range(len(self.layers) - 1):
            reach = pattern.select_rows(rows[0]).col.long()
            rows.insert(0, torch.unique(torch.cat([rows[0].long(), reach])))
        return rows

    def _propagate(self, stack, node_index):
        hs = None
        if self.product_norm == 'between':
            rows = self._between_rows(stack.csr(None), node_index)
            for i, layer in enumerate(self.layers):
                prev_rows = rows[i - 1] if i > 0 else None
                hs = layer.propagate(stack, hs, rows[i], prev_rows=prev_rows)
            return hs
        for i, layer in enumerate(self.layers):
            hs = layer.propagate(stack, hs, node_index if i == 0 else None)
        return hs

    def _prepare(self, x, edge_index, edge_type, edge_weight):
        """Validates the inputs and builds the edge-type stack, once per graph: a transductive
        loop passes the same tensors every epoch, so the stack (a sort of all edges) and the
        checks (a pass over ``x``) are kept in an :class:`~graphops.ops.cache.InputCache` for
        the last inputs seen, matched by identity and version (weak references: nothing is kept
        alive; not pickled). Weights that require a gradient are
        never memoised (the stack would hold a freed autograd graph)."""
        inputs = (x, edge_index, edge_type, edge_weight)
        found = self._cache.lookup(inputs)
        if found is not None:
            return found
        # x defines num_nodes: an edge_index reaching past its rows is a num_nodes mismatch.
        check_node_features(x, x.size(0) if isinstance(x, Tensor) and x.dim() == 2 else 0)
        if x.size(1) != self.in_channels:
            raise ValueError(
                f'x has {x.size(1)} features but the model was built with in_channels = '
                f'{self.in_channels}'
            )
        num_nodes = check_edge_type_stack(
            edge_index, edge_type, x.size(0), edge_weight, self.num_edge_types
        )
        check_same_device([('x', x), ('edge_index', edge_index)])
        if self.fast:
            edge_index, edge_type, edge_weight = _normalize_edge_types(
                edge_index, edge_type, edge_weight, num_nodes, self.num_edge_types, x.dtype
            )
        stack = EdgeTypeStack.build(
            edge_index, edge_type, num_nodes, edge_weight, self.num_edge_types, self.identity
        )
        if stack.weight is None or not stack.weight.requires_grad:
            self._cache.store(inputs, stack)
        return stack

    def _forward_gtn(self, x, stack, node_index):
        hs = self._propagate(stack, node_index)
        xw = x @ self.weight
        rows = node_index if node_index is not None else torch.arange(x.size(0), device=x.device)
        xw_self = xw[rows]
        outs = []
        for h in hs:
            h_value = h.values(xw.dtype)
            # Index dtype kept (int32 for most graphs): H can hold tens of millions of entries.
            entry_row = h.row()
            on_diagonal = h.col == rows.to(h.col.dtype)[entry_row]
            diagonal = xw.new_zeros(h.num_rows).index_add(0, entry_row, h_value * on_diagonal)
            row_sum = xw.new_zeros(h.num_rows).index_add(0, entry_row, h_value)
            aggregated = spmm(h, xw) - diagonal[:, None] * xw_self + xw_self
            # Row sum of H - diag(H) + I is at least 1: no zero division.
            out = aggregated / (row_sum - diagonal + 1.0)[:, None]
            outs.append(F.relu(out if self.bias is None else out + self.bias))
        return self._classify(torch.cat(outs, dim=1))

    def _classify(self, z: Tensor) -> Tensor:
        """GTN's head on the concatenated channels: linear, or HGB's two-layer MLP."""
        if self.lin_channels is not None:
            z = F.relu(self.lin_channels(z))
        return self.lin(z)

    def _forward_fast(self, x, stack, node_index):
        xw = torch.einsum('nf,cfh->cnh', x, self.weight)
        hs = list(xw.unbind(0))
        for i, conv in enumerate(self.layers):
            value = conv.combine(stack)
            last = i == len(self.layers) - 1
            for c in range(self.num_channels):
                q = stack.csr(value[c])
                if last and node_index is not None:
                    q = q.select_rows(node_index)
                hs[c] = spmm(q, hs[c])
        outs = []
        for c in range(self.num_channels):
            base = xw[c] if node_index is None else xw[c][node_index]
            outs.append(F.relu(self.beta * base + (1.0 - self.beta) * hs[c]))
        if self.channel_agg == 'concat':
            z = F.relu(self.lin_channels(torch.cat(outs, dim=1)))
        else:
            z = torch.stack(outs).mean(0)
        return self.lin(z)

    # --- the learned meta-paths ----------------------------------------------------------------

    def hops(self) -> list[tuple[int, int, GTConv]]:
        """``(layer, conv, GTConv)`` for every edge-type selection, in meta-path order: the first
        entry selects the first hop (from the source node) of the learned meta-paths."""
        if self.fast:
            return [(i, 0, conv) for i, conv in enumerate(self.layers)]
        product_order = [
            (i, j, conv)
            for i, layer in enumerate(self.layers)
            for j, conv in enumerate(layer.convs())
        ]
        if self.product_norm == 'between':
            # H = Q_L ... Q_2 (Q_1a Q_1b): the first layer's right selection is the source hop,
            # every later selection a hop further toward the aggregating node.
            first = product_order[:2][::-1]
            return first + product_order[2:]
        # H = Q1 Q2 ... : the right-most selection acts first on the source.
        return product_order[::-1]

    def metapath_attention(
        self,
        edge_type_names: Sequence[str] | None = None,
        top: int = 5,
        edge_types: Sequence[tuple[str, str, str]] | None = None,
        *,
        target_node_type: str | None = None,
    ) -> dict:
        """The learned edge-type attention and the top meta-paths of every channel.

        Args:
            edge_type_names (list of str, optional): a name per edge type (e.g.
                ``data.edge_type_names`` of :func:`graphops.transforms.to_edge_type_stack`);
                default ``'type0'``, ``'type1'``, ... The identity is named ``'identity'``.
            top (int, optional): meta-paths to list per channel. (default: ``5``)
            edge_types (list of (str, str, str), optional): the ``(source node type, relation,
                target node type)`` of every edge type (``data._edge_type_names`` of the stack).
                When given, chains that cannot be walked (a hop starting at a node type the
                previous hop does not end at; identity hops stay in place) are left out: their
                adjacency product is empty, so their weight product means nothing.
            target_node_type (str, optional): keep only the chains that end at this node type
                (needs ``edge_types``): the rows the model classifies (HGB DBLP's ``'author'``)
                aggregate only along those; a chain ending elsewhere carries weight but never
                reaches them. A chain of identities alone is kept.

        Returns:
            dict: ``'edge_type_names'`` (with ``'identity'`` last when used); ``'weights'``, one
            record per selection in meta-path (hop) order, ``{'hop', 'layer', 'conv',
            'channels'}`` with ``channels[c]`` mapping each edge-type name to its softmax weight;
            ``'metapaths'``, per channel the ``top`` meta-paths as ``{'path', 'score'}``, where
            ``path`` lists edge-type names in hop order (source first) with identity hops
            dropped (a chain of identities alone is ``('identity',)``) and ``score`` sums the
            weight products of every chain that reduces to that path. Chains are enumerated
            exhaustively up to 2**20 of them, else by a beam search (then scores are lower
            bounds).
        """
        names = self._edge_type_names(edge_type_names)
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f'top must be a positive int, got {top!r}')
        ends = self._edge_type_ends(edge_types)
        if target_node_type is not None and ends is None:
            raise ValueError(
                'target_node_type needs edge_types, the (source, relation, target) triples that '
                'say where each edge type ends'
            )
        hops = self.hops()
        weights = [torch.softmax(conv.weight.detach().double(), dim=1) for _, _, conv in hops]
        records = [
            {
                'hop': h,
                'layer': layer,
                'conv': j,
                'channels': [
                    {name: float(w) for name, w in zip(names, weights[h][c])}
                    for c in range(self.num_channels)
                ],
            }
            for h, (layer, j, _) in enumerate(hops)
        ]
        metapaths = [
            self._top_paths([w[c] for w in weights], names, top, ends, target_node_type)
            for c in range(self.num_channels)
        ]
        return {'edge_type_names': names, 'weights': records, 'metapaths': metapaths}

    def _edge_type_names(self, edge_type_names) -> list[str]:
        if edge_type_names is None:
            names = [f'type{k}' for k in range(self.num_edge_types)]
        else:
            names = [str(n) for n in edge_type_names]
            if len(names) != self.num_edge_types:
                raise ValueError(
                    f'edge_type_names has {len(names)} names but the model has num_edge_types = '
                    f'{self.num_edge_types}'
                )
        return [*names, 'identity'] if self.identity else names

    def _edge_type_ends(self, edge_types) -> list[tuple[str, str]] | None:
        if edge_types is None:
            return None
        triples = list(edge_types)
        if len(triples) != self.num_edge_types or not all(
            isinstance(t, (tuple, list)) and len(t) == 3 for t in triples
        ):
            raise ValueError(
                f'edge_types must hold {self.num_edge_types} (source, relation, target) triples, '
                f'one per edge type; got {triples!r}'
            )
        return [(str(t[0]), str(t[2])) for t in triples]

    def _walkable(self, chain: tuple[int, ...], ends, target_node_type=None) -> bool:
        """Whether each hop starts where the previous one ended (source hop first) and, with
        ``target_node_type``, the last hop ends there."""
        if ends is None:
            return True
        here = None
        for k in chain:
            if k == self.num_edge_types:  # the identity stays on its node type
                continue
            source, target = ends[k]
            if here is not None and source != here:
                return False
            here = target
        return target_node_type is None or here is None or here == target_node_type

    def _top_paths(
        self, per_hop: list[Tensor], names: list[str], top: int, ends=None, target=None
    ) -> list[dict]:
        num_types = len(names)
        identity = num_types - 1 if self.identity else -1
        if num_types ** len(per_hop) <= _MAX_ENUMERATED_PATHS:
            chains = list(itertools.product(range(num_types), repeat=len(per_hop)))
            scores = per_hop[0]
            for w in per_hop[1:]:
                scores = (scores[:, None] * w[None, :]).reshape(-1)
            scored = [
                (chain, score)
                for chain, score in zip(chains, scores.tolist())
                if self._walkable(chain, ends, target)
            ]
        else:
            beam = [((), 1.0)]
            width = max(top * 64, 256)
            for w in per_hop:
                grown = [
                    (chain + (k,), s * float(w[k]))
                    for chain, s in beam
                    for k in range(num_types)
                    if self._walkable(chain + (k,), ends)
                ]
                beam = sorted(grown, key=lambda item: -item[1])[:width]
            scored = [(chain, s) for chain, s in beam if self._walkable(chain, ends, target)]
        merged: dict[tuple[str, ...], float] = {}
        for chain, score in scored:
            path = tuple(names[k] for k in chain if k != identity) or ('identity',)
            merged[path] = merged.get(path, 0.0) + score
        ranked = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [{'path': path, 'score': score} for path, score in ranked]

    def __repr__(self) -> str:
        args = (
            f'{self.in_channels}, {self.hidden_channels}, {self.out_channels}, '
            f'num_edge_types={self.num_edge_types}, num_channels={self.num_channels}, '
            f'num_layers={self.num_layers}, identity={self.identity}, fast={self.fast}'
        )
        if self.fast:
            args += f', channel_agg={self.channel_agg!r}, beta={self.beta}'
        else:
            args += f', topk={self.topk}'
            if self.product_norm != 'each':
                args += f', product_norm={self.product_norm!r}'
            if self.head != 'linear':
                args += f', head={self.head!r}'
            if self.bias is None:
                args += ', bias=False'
        if self.selection_std is not None:
            args += f', selection_std={self.selection_std}'
        return f'{self.__class__.__name__}({args})'


def _normalize_edge_types(
    edge_index: Tensor,
    edge_type: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    num_edge_types: int,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor]:
    """FastGTN's input: each edge type row-normalised (:func:`graphops.ops.edge_type_norm`);
    nodes without in-edges of a type get a unit self-loop of that type."""
    device = edge_index.device
    # inputs were checked once by GTN._prepare
    weight, slot = edge_type_norm_unchecked(
        edge_index, edge_type, num_nodes, num_edge_types, edge_weight, dtype
    )
    present = torch.zeros(num_edge_types * num_nodes, dtype=torch.bool, device=device)
    present[slot] = True
    empty = (~present).nonzero().view(-1)
    node = empty % num_nodes
    loops = torch.stack([node, node], dim=0)
    return (
        torch.cat([edge_index.long(), loops], dim=1),
        torch.cat([edge_type.long(), torch.div(empty, num_nodes, rounding_mode='floor')]),
        torch.cat([weight, torch.ones(empty.numel(), dtype=dtype, device=device)]),
    )


@dataclass(eq=False)
class _GTNPlan:
    """What :meth:`GTN.prepare` builds for ``torch.compile``: the union pattern (no weights),
    the graph and rows it was built for, the stack entries of those rows (and their new rows),
    the row of every entry, the structure of every layer's product (GTN) and the number of
    self-loops FastGTN's normalisation appends."""

    stack: EdgeTypeStack
    edge_index: Tensor
    edge_type: Tensor
    node_index: Tensor | None
    rows: Tensor
    select: Tensor | None
    products: list[ProductPlan]
    steps: list[BetweenStep] | None
    num_loops: int
    entry_row: Tensor
    select_row: Tensor | None
