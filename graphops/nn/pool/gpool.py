from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from graphops.ops import to_csr
from graphops.ops.csr import CSR
from graphops.ops.induced import augmented_subgraph, induced_edge_index, induced_subgraph
from graphops.ops.optional import is_sparse_tensor
from graphops.ops.topk import check_ratio, topk
from graphops.ops.validate import (
    check_batch,
    check_condition,
    check_edge_index,
    check_edge_weight,
    check_finite,
    check_float,
    check_nonempty_graph,
    check_same_device,
)

_GATES = {'sigmoid': torch.sigmoid, 'tanh': torch.tanh}


class _Projection(torch.nn.Module):
    """The trainable projection :math:`\\mathbf{p}`, ``[1, in_channels]``, held in a child
    named ``select`` so GPool's ``state_dict`` (``select.weight``) is the one of PyG's
    :class:`~torch_geometric.nn.pool.TopKPooling`: checkpoints move between them."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.weight = torch.nn.Parameter(torch.empty(1, in_channels))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.in_channels)
        torch.nn.init.uniform_(self.weight, -bound, bound)


class GPool(torch.nn.Module):
    r"""The gPool layer from the `"Graph U-Nets" <https://arxiv.org/abs/1905.05178>`_ paper,
    batched: every graph of a :class:`~torch_geometric.data.Batch` is pooled at once.

    .. math::
        \mathbf{y} &= \frac{\mathbf{X}\mathbf{p}}{\| \mathbf{p} \|}

        \mathbf{i} &= \mathrm{top}_k(\mathbf{y}) \quad \text{(per graph)}

        \tilde{\mathbf{y}} &= \sigma(\mathbf{y}_{\mathbf{i}})

        \mathbf{X}^{\prime} &= \mathbf{X}_{\mathbf{i}, :} \odot
        \left( \tilde{\mathbf{y}} \mathbf{1}^{\top} \right)

        \mathbf{A}^{\prime} &= \mathbf{A}_{\mathbf{i}, \mathbf{i}}

    with the paper's gate :math:`\sigma` = sigmoid (PyG's
    :class:`~torch_geometric.nn.pool.TopKPooling` uses tanh; ``nonlinearity='tanh'`` gives it).
    With ``augment=True`` the pooled graph uses the paper's graph power, the kept block of the
    squared adjacency (the input's self-loops replaced by unit ones first, so one-hop links
    survive as well as two-hop ones):

    .. math::
        \mathbf{A}^{\prime} = \big((\mathbf{A} + \mathbf{I})^2\big)_{\mathbf{i}, \mathbf{i}}
        = (\mathbf{A} + \mathbf{I})_{\mathbf{i}, :} \, (\mathbf{A} + \mathbf{I})_{:, \mathbf{i}},

    weighted by path counts, with its diagonal dropped (a following GCN adds its own self-loops),
    as PyG's :class:`~torch_geometric.nn.models.GraphUNet` does. Only the kept block is computed,
    never the full square.

    Kept nodes are returned in ascending index order (``perm`` is sorted), so each graph's nodes
    stay contiguous and in their original order; equal scores keep the lower index.

    Parity with PyG's :class:`~torch_geometric.nn.pool.TopKPooling`: with
    ``nonlinearity='tanh'`` and ``augment=False``, GPool keeps the same nodes with the same gates,
    features and edges as ``TopKPooling(in_channels, ratio)`` (which lists them by score instead),
    and the two share one ``state_dict`` layout (``select.weight``). Only the arguments and
    forward of that case are shared: ``min_score`` and ``multiplier`` are not offered.

    Args:
        in_channels (int): size of each input node feature.
        ratio (float or int): fraction of each graph's nodes to keep, :math:`k = \lceil
            \mathrm{ratio} \cdot N \rceil` (a float in ``(0, 1]``), or the number :math:`k` of
            nodes itself (an int ``>= 1``; smaller graphs keep all their nodes).
            (default: ``0.5``)
        nonlinearity (str or callable): the gate :math:`\sigma`, ``'sigmoid'`` (the paper),
            ``'tanh'`` (PyG's TopKPooling) or a monotone callable. (default: ``'sigmoid'``)
        augment (bool): use :math:`((\mathbf{A} + \mathbf{I})^2)_{\mathbf{i},\mathbf{i}}`
            instead of :math:`\mathbf{A}_{\mathbf{i},\mathbf{i}}`. (default: ``False``)

    Shapes:
        - **input:** node features :math:`(N, F)`, ``edge_index`` :math:`(2, E)` (or a
          ``SparseTensor`` / ``torch.sparse`` / :class:`~graphops.ops.CSR` adjacency),
          edge weights :math:`(E)` or edge attributes :math:`(E, D)` (optional), batch vector
          :math:`(N)` (optional, sorted), ``attn`` :math:`(N, F)` (optional)
        - **output:** ``(x, edge_index, edge_weight, batch, perm, score)``: node features
          :math:`(N', F)`, the pooled adjacency in the input's form, its weights :math:`(E')` or
          attributes :math:`(E', D)` (``None`` when the input had none and ``augment=False``, or
          when the adjacency is a sparse matrix, whose values are the weights), batch
          :math:`(N')`, ``perm`` :math:`(N')` kept node indices, ``score`` :math:`(N')` gates
          :math:`\tilde{\mathbf{y}}`.
    """

    def __init__(
        self,
        in_channels: int,
        ratio: float | int = 0.5,
        nonlinearity: str | Callable[[Tensor], Tensor] = 'sigmoid',
        augment: bool = False,
    ):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be an int >= 1, got {in_channels!r}')
        self.in_channels = in_channels
        self.ratio = check_ratio(ratio)
        if isinstance(nonlinearity, str):
            if nonlinearity not in _GATES:
                raise ValueError(
                    f"nonlinearity must be 'sigmoid', 'tanh' or a callable, got {nonlinearity!r}"
                )
            self.gate = _GATES[nonlinearity]
        elif callable(nonlinearity):
            self.gate = nonlinearity
        else:
            raise TypeError(f'nonlinearity must be a str or a callable, got {nonlinearity!r}')
        self.nonlinearity = nonlinearity
        self.augment = bool(augment)
        self.select = _Projection(in_channels)
        self.reset_parameters()

    @property
    def weight(self) -> torch.nn.Parameter:
        r"""The projection :math:`\mathbf{p}`, ``[1, in_channels]`` (stored as
        ``select.weight``)."""
        return self.select.weight

    def reset_parameters(self):
        self.select.reset_parameters()

    def score(self, x: Tensor) -> Tensor:
        r"""The projection :math:`\mathbf{y} = \mathbf{X}\mathbf{p} / \|\mathbf{p}\|`, ``[N]``."""
        return (x * self.weight).sum(dim=-1) / self.weight.norm(p=2)

    def forward(
        self,
        x: Tensor,
        edge_index,
        edge_attr: Tensor | None = None,
        batch: Tensor | None = None,
        attn: Tensor | None = None,
    ):
        num_nodes = x.size(0) if isinstance(x, Tensor) else -1
        # Finiteness is checked on the scores below: one value per node instead of N x F, and a
        # NaN or Inf anywhere in a row of x makes that row's score non-finite.
        check_float(x, 'x', finite=False)
        if x.dim() != 2:
            raise ValueError(f'x must be 2-dimensional [num_nodes, F], got {tuple(x.shape)}')
        check_nonempty_graph(num_nodes, 'x')
        if x.size(1) != self.in_channels:
            raise ValueError(
                f'x has {x.size(1)} channels but this GPool was built with '
                f'in_channels = {self.in_channels}'
            )
        if attn is not None:
            check_float(attn, 'attn', finite=False)
            if attn.dim() != 2 or attn.size(0) != num_nodes:
                raise ValueError(f'attn must have shape [{num_nodes}, {self.in_channels}]')
            if attn.size(1) != self.in_channels:
                raise ValueError(f'attn must have in_channels = {self.in_channels} columns')
        if batch is None:
            batch = torch.zeros(num_nodes, dtype=torch.long, device=x.device)
        else:
            check_batch(batch, num_nodes)
        check_same_device([('x', x), ('batch', batch), ('attn', attn), ('edge_attr', edge_attr)])

        if attn is not None:
            check_finite(attn, 'attn')
            check_finite(x, 'x')
        y = self.score(x if attn is None else attn)
        if attn is None:
            message = (
                'x contains NaN or Inf (its projection scores are not finite); clean it '
                '(e.g. torch.nan_to_num) first'
            )
            check_condition(torch.isfinite(y.detach()).all(), message)
        perm = topk(y, self.ratio, batch.to(x.device))
        score = self.gate(y[perm])
        x = x[perm] * score.unsqueeze(-1)
        new_batch = batch[perm]
        adj, edge_attr = self._pool_adjacency(edge_index, edge_attr, perm, num_nodes, x.dtype)
        return x, adj, edge_attr, new_batch, perm, score

    def _pool_adjacency(self, adj, edge_attr, perm: Tensor, num_nodes: int, dtype: torch.dtype):
        is_edge_index = isinstance(adj, Tensor) and adj.layout == torch.strided
        if is_edge_index and not self.augment:
            # Filter the edge list directly: edge order and attributes of any width survive.
            check_edge_index(adj)
            if edge_attr is not None and (edge_attr.dim() == 0 or edge_attr.size(0) != adj.size(1)):
                raise ValueError(
                    f'edge_attr must have one row per edge ({adj.size(1)}), '
                    f'got shape {tuple(edge_attr.shape)}'
                )
            check_same_device([('edge_index', adj), ('perm', perm)])
            pooled, mask = induced_edge_index(adj, perm, num_nodes)
            return pooled, None if edge_attr is None else edge_attr[mask]
        if is_edge_index:
            check_edge_weight(edge_attr, adj.size(1), 'edge_attr')
        elif edge_attr is not None:
            raise ValueError('edge_attr must be None when the adjacency is a sparse matrix')
        csr = to_csr(adj, edge_attr, num_nodes=num_nodes)
        if csr.shape != (num_nodes, num_nodes):
            raise ValueError(
                f'the adjacency has shape {csr.shape} but x has {num_nodes} nodes; they must match'
            )
        if self.augment:
            # As PyG's GraphUNet: existing self-loops are replaced by I, not added to it.
            weighted = csr.with_value(csr.values(dtype)).remove_self_loops()
            pooled = augmented_subgraph(weighted, perm, dtype, self_loops=True)
            pooled = pooled.remove_self_loops()
        else:
            pooled = induced_subgraph(csr, perm)
        return _as_input_form(pooled, adj, is_edge_index, dtype)

    def __repr__(self) -> str:
        gate = self.nonlinearity if isinstance(self.nonlinearity, str) else 'callable'
        return (
            f'{self.__class__.__name__}({self.in_channels}, ratio={self.ratio}, '
            f"nonlinearity='{gate}', augment={self.augment})"
        )


def _as_input_form(pooled: CSR, like, is_edge_index: bool, dtype: torch.dtype):
    """Returns ``(adjacency, edge_weight)`` in the form the caller passed in."""
    if is_edge_index:
        edge_index, weight = pooled.to_edge_index()
        return edge_index, weight
    if is_sparse_tensor(like):
        return pooled.to_sparse_tensor(), None
    if isinstance(like, Tensor):  # torch.sparse COO / CSR / CSC
        value_dtype = pooled.value.dtype if pooled.value is not None else dtype
        out = pooled.to_torch_csr(value_dtype)
        return (out if like.layout == torch.sparse_csr else out.to_sparse_coo()), None
    return pooled, None  # a graphops CSR (or a scipy matrix, read into one)
