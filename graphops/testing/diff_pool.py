r"""Dense per-graph reference for DiffPool, written straight from the paper's equations.

`"Hierarchical Graph Representation Learning with Differentiable Pooling"
<https://arxiv.org/abs/1806.08804>`_, eqs. (3)-(4) and Section 3.3: for one graph with real-node
features :math:`\mathbf{Z}`, adjacency :math:`\mathbf{A}` and assignment
:math:`\mathbf{S} = \mathrm{softmax}(\mathbf{s})`,
:math:`\mathbf{X}' = \mathbf{S}^\top \mathbf{Z}`, :math:`\mathbf{A}' = \mathbf{S}^\top
\mathbf{A}\mathbf{S}`, :math:`L_{LP} = \|\mathbf{A} - \mathbf{S}\mathbf{S}^\top\|_F` and
:math:`L_E = \frac{1}{n}\sum_i H(\mathbf{S}_i)`. One graph at a time, small graphs only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.testing.core import awkward_graphs, dense_adjacency


def diff_pool_reference(
    x: Tensor,
    adj: Tensor,
    s: Tensor,
    mask: Tensor | None = None,
    normalize: bool = True,
    *,
    loss_norm: str = 'pyg',
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Loops over the graphs of a padded batch, keeping each graph's real nodes only.

    ``x`` ``[B, N, F]``, ``adj`` ``[B, N, N]`` (``adj[b, i, j]`` = edge ``i -> j``), ``s``
    ``[B, N, C]``, ``mask`` ``[B, N]``. ``loss_norm='paper'`` averages the per-graph losses;
    ``'pyg'`` is PyG's normalisation (one norm over the padded batch, ``/ B N^2`` when
    ``normalize``; entropy ``/ B N``).
    """
    num_graphs, num_nodes = x.shape[:2]
    pooled_x, pooled_adj, links, entropies = [], [], [], []
    for b in range(num_graphs):
        real = (
            torch.arange(num_nodes) if mask is None else mask[b].nonzero().flatten()
        )  # this graph's real nodes
        z = x[b, real]
        a = adj[b][real][:, real]
        assign = torch.softmax(s[b, real], dim=-1)
        pooled_x.append(assign.t() @ z)
        pooled_adj.append(assign.t() @ a @ assign)
        links.append(torch.linalg.matrix_norm(a - assign @ assign.t(), ord='fro'))
        entropies.append(torch.special.entr(assign).sum(-1))  # H(S_i) per real node
    if loss_norm == 'paper':
        link = torch.stack(links).mean()
        entropy = torch.stack([h.mean() for h in entropies]).mean()
    elif loss_norm == 'pyg':
        link = torch.stack(links).pow(2).sum().sqrt()
        if normalize:
            link = link / (num_graphs * num_nodes**2)
        entropy = torch.cat(entropies).sum() / (num_graphs * num_nodes)
    else:
        raise ValueError(loss_norm)
    return torch.stack(pooled_x), torch.stack(pooled_adj), link, entropy


def dense_batch(
    x: Tensor,
    edge_index: Tensor,
    batch: Tensor,
    s: Tensor,
    edge_weight: Tensor | None = None,
    max_num_nodes: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A sparse mini-batch as padded dense ``(x, adj, s, mask)``, graph by graph.

    ``adj[b, i, j]`` sums the weights of the edges ``i -> j`` of graph ``b`` (PyG's
    ``to_dense_adj``). Node ids in ``edge_index`` are global; ``batch`` is sorted.
    """
    sizes = torch.bincount(batch)
    num_graphs = sizes.numel()
    width = int(sizes.max()) if max_num_nodes is None else max_num_nodes
    offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    dense_x = x.new_zeros(num_graphs, width, x.size(1))
    dense_s = s.new_zeros(num_graphs, width, s.size(1))
    adj = x.new_zeros(num_graphs, width, width)
    mask = torch.zeros(num_graphs, width, dtype=torch.bool)
    for b in range(num_graphs):
        lo, n = int(offsets[b]), int(sizes[b])
        dense_x[b, :n] = x[lo : lo + n]
        dense_s[b, :n] = s[lo : lo + n]
        mask[b, :n] = True
        inside = (edge_index[0] >= lo) & (edge_index[0] < lo + n)
        weight = None if edge_weight is None else edge_weight[inside]
        adj_t = dense_adjacency(edge_index[:, inside] - lo, n, weight, x.dtype)
        adj[b, :n, :n] = adj_t.t()
    return dense_x, adj, dense_s, mask


def sage_stack_reference(stack, x: Tensor, adj: Tensor) -> Tensor:
    r"""One graph through a DiffPool GNN (``SAGEStack``) in eval mode, from its parameters:
    :math:`\mathbf{h}_j \leftarrow \mathbf{W}_1 \frac{\sum_i A_{ij} \mathbf{h}_i}{\sum_i A_{ij}}
    + \mathbf{b}_1 + \mathbf{W}_2 \mathbf{h}_j` (a zero mean without in-edges), then
    :math:`\ell_2` normalisation, ReLU and batch norm with running statistics; the layers'
    outputs concatenated and mapped by the output linear layer. ``x`` ``[n, F]``, ``adj``
    ``[n, n]`` with ``adj[i, j]`` the edge ``i -> j``."""
    in_weight = adj.sum(0)
    h, outs = x, []
    for k in range(len(stack.neighbor_lins)):
        neighbor, root = stack.neighbor_lins[k], stack.root_lins[k]
        mean = torch.zeros_like(h)
        has_in = in_weight > 0
        mean[has_in] = (adj.t() @ h)[has_in] / in_weight[has_in, None]
        h = mean @ neighbor.weight.t() + neighbor.bias + h @ root.weight.t()
        if stack.normalize:
            h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        h = h.clamp_min(0)
        if len(stack.norms):
            bn = stack.norms[k]
            h = (h - bn.running_mean) / (bn.running_var + bn.eps).sqrt() * bn.weight + bn.bias
        outs.append(h)
    return torch.cat(outs, -1) @ stack.out_lin.weight.t() + stack.out_lin.bias


def diff_pool_layer_reference(layer, x: Tensor, adj: Tensor, mask: Tensor | None = None):
    """A :class:`~graphops.nn.dense.diff_pool_block.DiffPool` layer in eval mode, graph by graph
    on a padded batch: ``Z = GNN_embed``, ``s = GNN_pool`` on each graph's real nodes, then
    :func:`diff_pool_reference`."""
    num_graphs, num_nodes = x.shape[:2]
    z = x.new_zeros(num_graphs, num_nodes, layer.out_channels)
    s = x.new_zeros(num_graphs, num_nodes, layer.num_clusters)
    for b in range(num_graphs):
        real = torch.arange(num_nodes) if mask is None else mask[b].nonzero().flatten()
        a = adj[b][real][:, real]
        z[b, real] = sage_stack_reference(layer.embed_gnn, x[b, real], a)
        s[b, real] = sage_stack_reference(layer.pool_gnn, x[b, real], a)
    return diff_pool_reference(z, adj, s, mask, loss_norm=layer.loss_norm)


def awkward_batch(
    graph_names: list[str], weighted: bool = False, seed: int = 0
) -> tuple[Tensor, Tensor | None, Tensor, int]:
    """A sparse mini-batch of the named :func:`~graphops.testing.core.awkward_graphs`, in order:
    ``(edge_index with global node ids, edge_weight or None, sorted batch, num_nodes)``."""
    graphs = {g.name: g for g in awkward_graphs(weighted=weighted, seed=seed)}
    edge_index, weights, batch, offset = [], [], [], 0
    for b, name in enumerate(graph_names):
        g = graphs[name]
        edge_index.append(g.edge_index + offset)
        if weighted:
            weights.append(g.edge_weight)
        batch.append(torch.full((g.num_nodes,), b))
        offset += g.num_nodes
    edge_weight = torch.cat(weights) if weighted else None
    return torch.cat(edge_index, 1), edge_weight, torch.cat(batch), offset
