"""DiffPool's pooling step: graphops sparse and dense vs PyG's ``dense_diff_pool``.

    python -m benchmarks.diff_pool [--quick] [--plot diff_pool.png]
    python -m benchmarks.diff_pool --memory-case     # 20 graphs x 5,000 nodes, C = 500, sparse

Cases (forward + backward of the pooled features, adjacency and both losses, as in training):
``proteins``: a mini-batch of 20 PROTEINS graphs, C = 155 (25% of the largest PROTEINS graph,
620 nodes; PyG's example drops every graph over 150 nodes instead); ``2000-node``: a batch of
random graphs of 2,000 nodes (C = 500). ``x`` (F = 64) and the assignment logits are random:
the GNNs that produce them are not what is timed. The dense methods get ready padded tensors
(``to_dense_batch``/``to_dense_adj``, built once and not timed); the sparse one takes the
``edge_index`` mini-batch as is.

Correctness first: graphops sparse == graphops dense (paper losses), and graphops with
``loss_norm='pyg'`` == PyG on all four outputs. One JSON line per case: median seconds, peak
memory above the baseline (sampled RSS on CPU after handing freed pages back to the OS, allocator
peak on CUDA) and speed-ups.

``--memory-case`` runs only the sparse first level on 20 graphs of 5,000 nodes (C = 500) in this
process and reports its peak RSS (``ru_maxrss``, whole process, torch included); the dense path
would need the padded adjacency alone, ``B N^2`` floats.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import time

import torch

from benchmarks.common import PeakMemory, emit, plot_bars, process_peak_rss_bytes, ratio, time_fn
from graphops.nn.dense.diff_pool import dense_diff_pool, sparse_diff_pool

MB = 2**20


def random_graph_batch(num_graphs: int, num_nodes: int, avg_degree: int, seed: int):
    """``num_graphs`` undirected random graphs of ``num_nodes`` nodes as one sparse batch."""
    gen = torch.Generator().manual_seed(seed)
    num_edges = num_nodes * avg_degree // 2
    edges = []
    for g in range(num_graphs):
        pairs = torch.randint(0, num_nodes, (2, num_edges), generator=gen) + g * num_nodes
        edges.append(torch.cat([pairs, pairs.flip(0)], 1))
    batch = torch.arange(num_graphs).repeat_interleave(num_nodes)
    return torch.cat(edges, 1), batch


def proteins_batch(num_graphs: int, seed: int):
    from torch_geometric.data import Batch

    from graphops.datasets import load

    dataset = load('PROTEINS')
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(dataset), generator=gen)[:num_graphs].tolist()
    data = Batch.from_data_list([dataset[i] for i in picks])
    max_nodes = max(d.num_nodes for d in dataset)
    return data.edge_index, data.batch, max_nodes


def make_inputs(edge_index, batch, channels: int, clusters: int, seed: int, dtype):
    gen = torch.Generator().manual_seed(seed)
    num_nodes = batch.numel()
    x = torch.randn(num_nodes, channels, generator=gen, dtype=dtype)
    s = 2 * torch.randn(num_nodes, clusters, generator=gen, dtype=dtype)
    return x, s


def dense_inputs(x, edge_index, s, batch):
    from torch_geometric.utils import to_dense_adj, to_dense_batch

    dense_x, mask = to_dense_batch(x, batch)
    dense_s, _ = to_dense_batch(s, batch)
    adj = to_dense_adj(edge_index, batch).to(x.dtype)
    return dense_x, adj, dense_s, mask


def release_freed_memory() -> None:
    """Returns freed heap pages to the OS (glibc), so the next block's RSS growth is its own:
    without it a warmed-up step reuses retained pages and its peak reads as ~0."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: deltas may under-read
        ctypes.CDLL('libc.so.6').malloc_trim(0)


def measured_peak_bytes(fn, device) -> int:
    fn()
    release_freed_memory()
    with PeakMemory(device) as meter:
        fn()
    return meter.peak_bytes


def training_step(pool, leaves):
    """Forward + backward through every output, the way a training step uses them."""

    def step():
        for leaf in leaves:
            leaf.grad = None
        out, out_adj, link, entropy = pool()
        (out.sum() + out_adj.sum() + link + entropy).backward()

    return step


def check_correctness(x, edge_index, s, batch, dense):
    from torch_geometric.nn import dense_diff_pool as pyg_dense_diff_pool

    x64, s64 = x.double(), s.double()
    dense64 = dense_inputs(x64, edge_index, s64, batch)
    sparse_out = sparse_diff_pool(x64, edge_index, s64, batch)
    dense_out = dense_diff_pool(*dense64)
    for a, b in zip(sparse_out, dense_out, strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7)
    ours = dense_diff_pool(*dense64, loss_norm='pyg')
    theirs = pyg_dense_diff_pool(*dense64)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7)
    del dense


def run_case(name, edge_index, batch, clusters, args, device):
    dtype = torch.float32
    x, s = make_inputs(edge_index, batch, args.channels, clusters, args.seed, dtype)
    dense = dense_inputs(x, edge_index, s, batch)
    check_correctness(x, edge_index, s, batch, dense)
    x, s, edge_index, batch = (t.to(device) for t in (x, s, edge_index, batch))
    dense_x, adj, dense_s, mask = (t.to(device) for t in dense)
    for leaf in (x, s, dense_x, dense_s):
        leaf.requires_grad_()

    from torch_geometric.nn import dense_diff_pool as pyg_dense_diff_pool

    methods = {
        'graphops_sparse': training_step(lambda: sparse_diff_pool(x, edge_index, s, batch), (x, s)),
        'graphops_dense': training_step(
            lambda: dense_diff_pool(dense_x, adj, dense_s, mask), (dense_x, dense_s)
        ),
        'pyg_dense': training_step(
            lambda: pyg_dense_diff_pool(dense_x, adj, dense_s, mask), (dense_x, dense_s)
        ),
    }
    record = {
        'case': name,
        'graphs': int(batch.max()) + 1,
        'nodes': batch.numel(),
        'max_nodes': int(torch.bincount(batch).max()),
        'edges': edge_index.size(1),
        'clusters': clusters,
        'channels': args.channels,
        'device': str(device),
        'threads': torch.get_num_threads(),
        'timed': 'forward+backward',
    }
    for method, fn in methods.items():
        timing = time_fn(fn, repeat=args.repeat, warmup=1, device=device)
        record[f'{method}_s'] = round(timing['median_s'], 6)
        record[f'{method}_peak_mb'] = round(measured_peak_bytes(fn, device) / MB, 1)
    record['speedup_sparse_vs_pyg'] = ratio(record['pyg_dense_s'], record['graphops_sparse_s'])
    record['speedup_dense_vs_pyg'] = ratio(record['pyg_dense_s'], record['graphops_dense_s'])
    record['dense_adj_mb'] = round(adj.numel() * adj.element_size() / MB, 1)
    return emit(record)


def memory_case(args, device):
    """Sparse first level only, in this process, so ru_maxrss is this case's peak."""
    num_graphs, num_nodes, clusters = args.memory_graphs, args.memory_nodes, args.memory_clusters
    edge_index, batch = random_graph_batch(num_graphs, num_nodes, args.avg_degree, args.seed)
    x, s = make_inputs(edge_index, batch, args.channels, clusters, args.seed, torch.float32)
    x, s, edge_index, batch = (t.to(device) for t in (x, s, edge_index, batch))
    x.requires_grad_()
    s.requires_grad_()
    inputs_rss = process_peak_rss_bytes()
    start = time.perf_counter()
    out, out_adj, link, entropy = sparse_diff_pool(x, edge_index, s, batch)
    forward_s = time.perf_counter() - start
    forward_rss = process_peak_rss_bytes()
    (out.sum() + out_adj.sum() + link + entropy).backward()
    total_s = time.perf_counter() - start
    dense_adj_bytes = num_graphs * num_nodes**2 * 4
    return emit(
        {
            'case': 'memory',
            'graphs': num_graphs,
            'nodes': batch.numel(),
            'edges': edge_index.size(1),
            'clusters': clusters,
            'channels': args.channels,
            'forward_s': round(forward_s, 3),
            'forward_backward_s': round(total_s, 3),
            'peak_rss_after_inputs_mb': round(inputs_rss / MB, 1),
            'peak_rss_forward_mb': round(forward_rss / MB, 1),
            'peak_rss_forward_backward_mb': round(process_peak_rss_bytes() / MB, 1),
            'goal_mb': 4096,
            'dense_adj_alone_mb': round(dense_adj_bytes / MB, 1),
            'link_loss': round(link.item(), 4),
            'entropy_loss': round(entropy.item(), 4),
        }
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='tiny smoke run')
    parser.add_argument('--memory-case', action='store_true')
    parser.add_argument('--plot', default=None, help='write a PNG bar chart here')
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--big-graphs', type=int, default=8, help='graphs in the 2000-node case')
    parser.add_argument('--big-nodes', type=int, default=2000)
    parser.add_argument('--avg-degree', type=int, default=10)
    parser.add_argument('--memory-graphs', type=int, default=20)
    parser.add_argument('--memory-nodes', type=int, default=5000)
    parser.add_argument('--memory-clusters', type=int, default=500)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.quick:
        args.repeat, args.big_graphs, args.big_nodes = 2, 2, 200
        args.memory_graphs, args.memory_nodes, args.memory_clusters = 2, 500, 50

    if args.memory_case:
        memory_case(args, device)
        return
    records = []
    edge_index, batch, max_nodes = proteins_batch(20, args.seed)
    records.append(run_case('proteins', edge_index, batch, -(-max_nodes // 4), args, device))
    edge_index, batch = random_graph_batch(
        args.big_graphs, args.big_nodes, args.avg_degree, args.seed
    )
    name = f'{args.big_nodes}-node'
    records.append(run_case(name, edge_index, batch, -(-args.big_nodes // 4), args, device))
    if args.plot:
        plot_bars(
            records,
            args.plot,
            label_key='case',
            value_keys=['graphops_sparse_s', 'graphops_dense_s', 'pyg_dense_s'],
            title='DiffPool pooling step, forward + backward',
            log=True,
        )


if __name__ == '__main__':
    main()
