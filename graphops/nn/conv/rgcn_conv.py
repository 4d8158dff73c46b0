from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.inits import glorot, zeros

from graphops.ops.cache import InputCache
from graphops.ops.optional import is_sparse_tensor
from graphops.ops.relational import (
    STRATEGIES,
    RelationalGraph,
    StaticRelationalPlan,
    dense_relational_matmul,
    relational_matmul,
    static_plan,
    static_relational_matmul,
)
from graphops.ops.validate import (
    check_condition,
    check_edge_index,
    check_float,
    check_index,
    check_length,
    check_positive_int,
    check_same_device,
)

AGGRS = ('add', 'sum', 'mean', 'max', 'min')
# MessagePassing arguments PyG's RGCNConv forwards: only their defaults are what this layer does.
_MESSAGE_PASSING_DEFAULTS = {
    'aggr_kwargs': None,
    'flow': 'source_to_target',
    'decomposed_layers': 1,
}
_MESSAGE_PASSING_FIXES = {
    'aggr_kwargs': 'drop it (aggr is one of the built-in reductions)',
    'flow': "pass edge_index.flip(0) with the default flow='source_to_target'",
    'decomposed_layers': 'drop it (it changes memory use only, which this layer plans itself)',
    'node_dim': 'drop it (node features are rows, node_dim=0, as in PyG)',
}


class RGCNConv(MessagePassing):
    r"""The relational graph convolution from the `"Modeling Relational Data with Graph
    Convolutional Networks" <https://arxiv.org/abs/1703.06103>`_ paper, a drop-in for
    :class:`torch_geometric.nn.RGCNConv` (same arguments, parameter names and shapes: a state_dict
    saved from one loads into the other and gives the same output):

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{\Theta}_{\textrm{root}} \cdot \mathbf{x}_i +
        \sum_{r \in \mathcal{R}} \sum_{j \in \mathcal{N}_r(i)}
        \frac{1}{|\mathcal{N}_r(i)|} \mathbf{\Theta}_r \cdot \mathbf{x}_j + \mathbf{b},

    with the basis decomposition :math:`\mathbf{\Theta}_r = \sum_{b=1}^{B} a_{rb}
    \mathbf{V}_b` or the block-diagonal one :math:`\mathbf{\Theta}_r =
    \operatorname{diag}(\mathbf{Q}_{1r}, \dots, \mathbf{Q}_{Br})`.

    The per-relation mean :math:`1/|\mathcal{N}_r(i)|` holds on every code path. No code path
    loops over relations in Python: the sum is computed by one of the strategies of
    :func:`graphops.ops.relational.relational_matmul` (aggregate-first into (target, relation)
    pairs with one batched product over tiles; dense aggregation and one GEMM; or transform-first),
    chosen per shape by a cost model measured on CPU. With ``num_bases`` the bases are mixed per
    edge or per pair and the ``[R, in, out]`` weight tensor is never formed.

    Args:
        in_channels (int or tuple): Size of each input sample, or ``(source, target)`` sizes. With
            no input features (``x=None`` or node ids), the number of nodes: rows of the weights
            are the node embeddings.
        out_channels (int): Size of each output sample.
        num_relations (int): Number of relations.
        num_bases (int, optional): Use the basis decomposition with this many bases.
            (default: :obj:`None`)
        num_blocks (int, optional): Use the block-diagonal decomposition with this many blocks;
            ``in_channels`` and ``out_channels`` must be divisible by it. (default: :obj:`None`)
        aggr (str, optional): ``'mean'`` (the paper's per-relation mean), ``'add'``/``'sum'``,
            ``'max'`` or ``'min'`` (element-wise over each relation's neighbours, then transformed,
            as PyG). (default: :obj:`'mean'`)
        root_weight (bool, optional): Add the transformed root node features.
            (default: :obj:`True`)
        is_sorted (bool, optional): PyG's flag that ``edge_index`` is sorted by ``edge_type``.
            The plan here sorts by (relation, target, source) whatever the input order, so the
            flag changes nothing; it is accepted for compatibility. (default: :obj:`False`)
        bias (bool, optional): Learn an additive bias. (default: :obj:`True`)
        cached (bool, optional): Keep the sorted plan (pairs, per-(node, relation) degrees,
            sparse patterns, and the static plan a compiled forward reads) in an
            :class:`~graphops.ops.cache.InputCache`, built by :meth:`prepare` or on the first
            eager call. In eager mode it is reused while the same ``edge_index`` and
            ``edge_type`` tensors (same objects, unmodified) come back, and rebuilt otherwise.
            Under ``torch.compile`` the held plan is used when the sizes match, and the graph
            passed in is checked against it on the device (``torch._assert_async``, no sync): a
            different graph of the same sizes fails; call :meth:`prepare` on it first. The plan
            is not state: it is left out of the ``state_dict`` and of pickling.
            (default: :obj:`False`)
        strategy (str, optional): ``'auto'``, ``'pairs'``, ``'aggregate'`` or ``'transform'``;
            every strategy gives the same result. (default: :obj:`'auto'`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`, as PyG's ``RGCNConv`` takes them.
            ``flow``, ``aggr_kwargs`` and ``decomposed_layers`` are accepted at their defaults
            only, and ``node_dim`` not at all: any other value raises a ``TypeError`` naming the
            argument rather than being ignored.

    ``cached=True`` and ``strategy`` are graphops' own and keyword-only. :meth:`__repr__` is
    PyG's (``RGCNConv(in, out, num_relations=R)``), plus ``cached``/``strategy`` when set.

    Under ``torch.compile`` (``fullgraph=True`` works, with no graph break) the forward runs
    :func:`~graphops.ops.relational.static_relational_matmul` on the cached plan, or without one
    :func:`~graphops.ops.relational.dense_relational_matmul`: the same sum in ops of static shape.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or node ids
          :math:`(|\mathcal{V}|)` or :obj:`None`, or a pair of them for bipartite graphs
          :math:`((|\mathcal{V}_s|, F_{s}), (|\mathcal{V}_t|, F_{t}))`; edge indices
          :math:`(2, |\mathcal{E}|)` or a ``torch_sparse.SparseTensor`` ``adj_t`` whose values
          are the edge types; edge types :math:`(|\mathcal{E}|)`.
        - **output:** node features :math:`(|\mathcal{V}_t|, F_{out})`.
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        num_relations: int,
        num_bases: int | None = None,
        num_blocks: int | None = None,
        aggr: str = 'mean',
        root_weight: bool = True,
        is_sorted: bool = False,
        bias: bool = True,
        *,
        cached: bool = False,
        strategy: str = 'auto',
        **kwargs,
    ):
        kwargs.setdefault('aggr', aggr)
        if kwargs['aggr'] not in AGGRS:
            raise ValueError(f'aggr must be one of {AGGRS}, got {kwargs["aggr"]!r}')
        for name, value in kwargs.items():
            if name == 'aggr':
                continue
            if name not in _MESSAGE_PASSING_DEFAULTS or value != _MESSAGE_PASSING_DEFAULTS[name]:
                fix = _MESSAGE_PASSING_FIXES.get(name, 'it is not an argument of RGCNConv')
                raise TypeError(
                    f'RGCNConv does not support {name}={value!r}: {fix}'
                    if name in _MESSAGE_PASSING_FIXES
                    else f'RGCNConv got an unexpected keyword argument {name!r}: {fix}'
                )
        super().__init__(aggr=kwargs['aggr'], node_dim=0)
        if num_bases is not None and num_blocks is not None:
            raise ValueError(
                'num_bases and num_blocks are exclusive: use the basis decomposition or the '
                'block-diagonal one, not both'
            )
        if strategy not in STRATEGIES:
            raise ValueError(f'strategy must be one of {STRATEGIES}, got {strategy!r}')
        pair = (in_channels, in_channels) if isinstance(in_channels, int) else tuple(in_channels)
        if len(pair) != 2:
            raise ValueError(f'in_channels must be an int or a pair of ints, got {in_channels!r}')
        check_positive_int(pair[0], 'in_channels')
        check_positive_int(pair[1], 'in_channels')
        check_positive_int(out_channels, 'out_channels')
        check_positive_int(num_relations, 'num_relations')

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_relations = num_relations
        self.num_bases = num_bases
        self.num_blocks = num_blocks
        self.is_sorted = is_sorted
        self.cached = cached
        self.strategy = strategy
        self.in_channels_l = pair[0]
        # (RelationalGraph, StaticRelationalPlan) of the graph seen last; not state.
        self._cache = InputCache()

        if num_bases is not None:
            check_positive_int(num_bases, 'num_bases')
            self.weight = Parameter(torch.empty(num_bases, pair[0], out_channels))
            self.comp = Parameter(torch.empty(num_relations, num_bases))
        elif num_blocks is not None:
            check_positive_int(num_blocks, 'num_blocks')
            if pair[0] % num_blocks or out_channels % num_blocks:
                raise ValueError(
                    f'num_blocks = {num_blocks} must divide both in_channels ({pair[0]}) and '
                    f'out_channels ({out_channels}); pick a common divisor'
                )
            self.weight = Parameter(
                torch.empty(
                    num_relations, num_blocks, pair[0] // num_blocks, out_channels // num_blocks
                )
            )
            self.register_parameter('comp', None)
        else:
            self.weight = Parameter(torch.empty(num_relations, pair[0], out_channels))
            self.register_parameter('comp', None)

        if root_weight:
            self.root = Parameter(torch.empty(pair[1], out_channels))
        else:
            self.register_parameter('root', None)
        if bias:
            self.bias = Parameter(torch.empty(out_channels))
        else:
            self.register_parameter('bias', None)
        self.reset_parameters()

    def reset_parameters(self):
        # Same initialisers, in the same order, as PyG: equal seeds give equal parameters.
        super().reset_parameters()
        glorot(self.weight)
        glorot(self.comp)
        glorot(self.root)
        zeros(self.bias)

    # --- input handling ---------------------------------------------------------------------
    def _node_input(self, value, name: str, num_channels: int) -> Tensor | None:
        """Float features ``[N, num_channels]``, ids in ``[0, num_channels)``, or ``None``."""
        if value is None:
            return None
        if not isinstance(value, Tensor):
            raise TypeError(f'{name} must be a Tensor or None, got {type(value).__name__}')
        if value.is_floating_point():
            check_float(value, name)
            if value.dim() != 2 or value.size(1) != num_channels:
                raise ValueError(
                    f'{name} must have shape [num_nodes, {num_channels}], got '
                    f'{tuple(value.shape)}; in_channels of this layer is {self.in_channels}'
                )
            if value.dtype != self.weight.dtype:
                raise TypeError(
                    f'{name} is {value.dtype} but the layer weights are {self.weight.dtype}; '
                    f'convert one of them (e.g. conv.to({name}.dtype))'
                )
            return value
        check_index(value, f'{name} (node ids)', upper=num_channels, upper_name='in_channels')
        return value

    def _edges(self, edge_index, edge_type, num_src: int, num_dst: int):
        """``(src, dst, rel)`` validated against the node counts and ``num_relations``."""
        if is_sparse_tensor(edge_index):
            if edge_type is not None:
                raise ValueError(
                    'edge_type must be None when edge_index is a SparseTensor: its values are the '
                    'edge types'
                )
            dst, src, rel = edge_index.coo()
            if rel is None:
                raise ValueError(
                    'the SparseTensor carries no values; store the edge types in them '
                    '(SparseTensor(row=..., col=..., value=edge_type, ...))'
                )
            check_index(
                rel, 'SparseTensor values (edge types)', upper=self.num_relations,
                upper_name='num_relations',
            )  # fmt: skip
            sizes = tuple(edge_index.sparse_sizes())
            if sizes != (num_dst, num_src):
                raise ValueError(
                    f'the SparseTensor (adj_t) has sparse sizes {sizes} but the inputs give '
                    f'(num_dst, num_src) = {(num_dst, num_src)}'
                )
            return src, dst, rel
        if isinstance(edge_index, Tensor) and edge_index.layout != torch.strided:
            raise TypeError(
                'edge_index must be a [2, E] Tensor or a torch_sparse.SparseTensor with edge '
                f'types as values; got a {edge_index.layout} tensor'
            )
        check_edge_index(edge_index)
        if edge_type is None:
            raise ValueError(
                'edge_type is required with an edge_index tensor: pass the relation of each edge'
            )
        check_index(edge_type, 'edge_type', upper=self.num_relations, upper_name='num_relations')
        check_length(edge_type, edge_index.size(1), 'edge_type', 'edge_index.size(1)')
        check_index(
            edge_index[0], 'edge_index[0] (sources)', upper=num_src,
            upper_name='the number of source nodes',
        )  # fmt: skip
        check_index(
            edge_index[1], 'edge_index[1] (targets)', upper=num_dst,
            upper_name='the number of target nodes',
        )  # fmt: skip
        return edge_index[0], edge_index[1], edge_type

    def _relational_edges(self, edge_index, edge_type, ids, featureless, num_src, num_dst):
        """``(src, dst, rel, num_weight_rows)``: the validated edges, sources mapped to the
        weight rows they read."""
        src, dst, rel = self._edges(edge_index, edge_type, num_src, num_dst)
        if ids is not None:  # node ids: source j stands for weight row ids[j]
            src = ids.long()[src.long()]
        num_weight_rows = self.in_channels_l if featureless else num_src
        return src, dst, rel, num_weight_rows

    def _relational_graph(
        self, edge_index, edge_type, ids, featureless: bool, num_src: int, num_dst: int
    ) -> RelationalGraph:
        """Validates the graph and sorts it."""
        src, dst, rel, rows = self._relational_edges(
            edge_index, edge_type, ids, featureless, num_src, num_dst
        )
        return RelationalGraph(src, dst, rel, rows, num_dst, self.num_relations)

    def _build(
        self,
        edge_index,
        edge_type,
        ids,
        featureless: bool,
        num_src: int,
        num_dst: int,
        graph: RelationalGraph | None = None,
    ) -> tuple[RelationalGraph, StaticRelationalPlan]:
        """What the cache holds: the sorted graph (``graph`` when one is given, checked against
        these edges) and the plan a compiled forward reads."""
        if graph is None:
            graph = self._relational_graph(
                edge_index, edge_type, ids, featureless, num_src, num_dst
            )
        else:
            self._check_shared_graph(
                graph, edge_index, edge_type, ids, featureless, num_src, num_dst
            )
        if featureless:
            return graph, static_plan(graph)
        return graph, static_plan(graph, self.in_channels_l, self.out_channels, self.num_bases)

    @staticmethod
    def _cache_key(edge_index, edge_type, ids, featureless, num_src, num_dst) -> tuple:
        if is_sparse_tensor(edge_index):
            storage = edge_index.storage
            parts = (storage._row, storage._col, storage._value, storage._rowptr)
            tensors = (edge_index, *parts)
        else:
            tensors = (edge_index, edge_type)
        return (*tensors, ids, featureless, num_src, num_dst)

    def _graph(
        self, edge_index, edge_type, ids, featureless: bool, num_src: int, num_dst: int
    ) -> RelationalGraph:
        """The sorted plan: from the cache while the very same graph tensors come back."""
        if not self.cached:
            return self._relational_graph(edge_index, edge_type, ids, featureless, num_src, num_dst)
        key = self._cache_key(edge_index, edge_type, ids, featureless, num_src, num_dst)
        build = lambda: self._build(  # noqa: E731
            edge_index, edge_type, ids, featureless, num_src, num_dst
        )
        return self._cache.get(key, build)[0]

    def _inputs(self, x):
        """``(x_src, x_dst, featureless, ids, num_src, num_dst)`` from the forward's ``x``."""
        in_src, in_dst = (
            (self.in_channels, self.in_channels)
            if isinstance(self.in_channels, int)
            else tuple(self.in_channels)
        )
        if isinstance(x, tuple | list):
            if len(x) != 2:
                raise ValueError(f'x as a tuple must be (x_src, x_dst), got {len(x)} entries')
            x_src, x_dst = x
            if x_dst is None:
                raise ValueError(
                    'x_dst (x[1]) must be given for bipartite input: target features or ids'
                )
        else:
            x_src = x_dst = x
        if x_src is x_dst:
            x_src = x_dst = self._node_input(x_src, 'x', in_src)
        else:
            x_src = self._node_input(x_src, 'x[0]', in_src)
            x_dst = self._node_input(x_dst, 'x[1]', in_dst)
        featureless = x_src is None or not x_src.is_floating_point()
        if self.num_blocks is not None and featureless:
            raise ValueError(
                'the block-diagonal decomposition needs float input features; featureless input '
                '(x=None or node ids) works with plain or basis weights'
            )
        num_src = in_src if x_src is None else x_src.size(0)
        num_dst = in_src if x_dst is None else x_dst.size(0)
        if x_dst is None and in_dst < num_dst:
            raise ValueError(
                f'without x the targets are nodes 0..{num_dst - 1}, but the root weight has only '
                f'{in_dst} rows; pass x_dst ids or features'
            )
        ids = x_src if (x_src is not None and featureless) else None
        return x_src, x_dst, featureless, ids, num_src, num_dst

    def _check_shared_graph(self, graph, edge_index, edge_type, ids, featureless, num_src, num_dst):
        """``graph`` is the sorted graph this layer would build from these edges."""
        if not isinstance(graph, RelationalGraph):
            raise TypeError(
                "graph must be a RelationalGraph (another layer's prepare() result), got "
                f'{type(graph).__name__}'
            )
        src, dst, rel, rows = self._relational_edges(
            edge_index, edge_type, ids, featureless, num_src, num_dst
        )
        sizes = (graph.num_src, graph.num_dst, graph.num_relations, graph.num_edges)
        expected = (rows, num_dst, self.num_relations, src.numel())
        same = sizes == expected and bool(graph.same_edges(src, dst, rel))
        if not same:
            raise ValueError(
                'graph was not built from these edges for this layer (its (num_src, num_dst, '
                f'num_relations, num_edges) are {sizes}, this layer needs {expected}, or its '
                'edges differ); pass the prepare() result of a layer that saw the same '
                'edge_index and edge_type'
            )

    def prepared_graph(self, x, edge_index, edge_type: Tensor | None = None):
        """The sorted :class:`~graphops.ops.relational.RelationalGraph` this cached layer keeps
        for exactly these inputs (the same tensors, unmodified), or ``None``: what another layer
        on the same edges can reuse through ``prepare(..., graph=)``."""
        if not self.cached or torch.compiler.is_compiling():
            return None
        x_src, x_dst, featureless, ids, num_src, num_dst = self._inputs(x)
        key = self._cache_key(edge_index, edge_type, ids, featureless, num_src, num_dst)
        found = self._cache.lookup(key)
        return None if found is None else found[0]

    def prepare(
        self,
        x,
        edge_index,
        edge_type: Tensor | None = None,
        *,
        graph: RelationalGraph | None = None,
    ) -> RelationalGraph:
        r"""Builds the plan of a static graph now, in eager mode, and keeps it (``cached=True``):
        the step to run before ``torch.compile`` so that the compiled forward reads the plan
        instead of working without one. Takes the forward's arguments; returns the
        :class:`~graphops.ops.relational.RelationalGraph`.

        ``graph`` (keyword-only): another layer's sorted graph of the same edges (its
        :meth:`prepare` or :meth:`prepared_graph` result), reused instead of sorting again, so
        stacked layers hold one copy; it is checked against the edges (``ValueError`` if it was
        built from others or for other sizes).
        """
        if torch.compiler.is_compiling():
            raise RuntimeError('prepare() builds a plan eagerly; call it outside torch.compile')
        if not self.cached:
            raise ValueError(
                'prepare() keeps a plan for later calls, which needs a cached layer: build it '
                'with cached=True'
            )
        x_src, x_dst, featureless, ids, num_src, num_dst = self._inputs(x)
        key = self._cache_key(edge_index, edge_type, ids, featureless, num_src, num_dst)
        value = self._build(edge_index, edge_type, ids, featureless, num_src, num_dst, graph)
        return self._cache.store(key, value)[0]

    def reset_cache(self) -> None:
        """Drops the cached plan (it is rebuilt on the next eager call or by :meth:`prepare`)."""
        self._cache.clear()

    def _compiled_relational(self, edge_index, edge_type, ids, features, num_src, num_dst):
        """The relational sum inside ``torch.compile``: static shapes, no value read back."""
        featureless = features is None
        src, dst, rel = self._edges(edge_index, edge_type, num_src, num_dst)
        if ids is not None:  # node ids: source j stands for weight row ids[j]
            src = ids.long()[src.long()]
        src, dst, rel = src.long(), dst.long(), rel.long()
        held = self._cache.value if self.cached else None
        if held is not None:
            graph, plan = held
            rows = self.in_channels_l if featureless else num_src
            if (graph.num_src, graph.num_dst, graph.num_edges) == (rows, num_dst, src.numel()) and (
                plan.slot is None
            ) == (featureless or graph.num_edges == 0):
                same = graph.same_edges(src, dst, rel)
                message = (
                    'the graph passed to this cached RGCNConv differs from the one its plan was '
                    'built from; call conv.prepare(x, edge_index, edge_type) on the new graph '
                    'outside torch.compile (or use cached=False)'
                )
                check_condition(same, message)
                return static_relational_matmul(
                    plan, features, self.weight, self.comp, aggr=self.aggr
                )
        return dense_relational_matmul(
            src,
            dst,
            rel,
            self.in_channels_l if featureless else num_src,
            num_dst,
            self.num_relations,
            features,
            self.weight,
            self.comp,
            aggr=self.aggr,
        )

    def forward(
        self,
        x: Tensor | None | tuple[Tensor | None, Tensor],
        edge_index,
        edge_type: Tensor | None = None,
    ) -> Tensor:
        r"""Runs the layer.

        Args:
            x (Tensor, tuple or None): node features ``[N, in_channels]``, node ids ``[N]``
                (rows of the weights act as embeddings), ``None`` (ids ``0..in_channels-1``), or a
                ``(source, target)`` pair of those for bipartite graphs.
            edge_index (Tensor or SparseTensor): ``[2, E]`` edges (row 0 source, row 1 target) or
                a ``torch_sparse.SparseTensor`` ``adj_t`` carrying the edge types as values.
            edge_type (Tensor, optional): ``[E]`` relation of each edge in
                ``[0, num_relations)``; ``None`` only with a SparseTensor.
        """
        x_src, x_dst, featureless, ids, num_src, num_dst = self._inputs(x)
        check_same_device(
            [
                ('x', x_src),
                ('x[1]', x_dst),
                ('edge_index', edge_index if isinstance(edge_index, Tensor) else None),
                ('edge_type', edge_type),
                ('weight', self.weight),
            ]
        )
        features = None if featureless else x_src
        if torch.compiler.is_compiling():
            out = self._compiled_relational(edge_index, edge_type, ids, features, num_src, num_dst)
        else:
            graph = self._graph(edge_index, edge_type, ids, featureless, num_src, num_dst)
            out = relational_matmul(
                graph,
                features,
                self.weight,
                self.comp,
                aggr=self.aggr,
                strategy=self.strategy,
            )
        if self.root is not None:
            if x_dst is None:
                out = out + self.root[:num_dst]
            elif x_dst.is_floating_point():
                out = out + x_dst @ self.root
            else:
                out = out + self.root.index_select(0, x_dst.long())
        if self.bias is not None:
            out = out + self.bias
        return out

    def __repr__(self) -> str:
        # PyG's repr (PyG's own tests assert it), plus graphops' keyword-only options when set.
        extra = ''
        if self.cached:
            extra += ', cached=True'
        if self.strategy != 'auto':
            extra += f', strategy={self.strategy!r}'
        return (
            f'{self.__class__.__name__}({self.in_channels}, {self.out_channels}, '
            f'num_relations={self.num_relations}{extra})'
        )
