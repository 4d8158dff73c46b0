"""GTN and FastGTN training epochs: graphops vs the authors' algorithm on plain torch.sparse.

Neither PyG nor DGL ships GTN, and the authors' code needs an old torch-sparse, so the
counterpart is their current ``model_gtn.py`` / ``model_fastgtn.py`` algorithm re-expressed on
``torch.sparse`` (COO ``coalesce`` for the 1x1 convolution, ``torch.sparse.mm`` for the
sparse x sparse products and the GCN): same equations, same parameters, all rows, as they train.

First a dense-reference check (float64, small random multi-relational graph): GTN at 1, 2, 3
layers and FastGTN against ``graphops.testing.gtn``, and the counterpart against graphops. Then
one JSON line per case ``(graph, model, layers, impl)``, each run in a fresh subprocess (so its
peak RSS is its own) with a time limit:

* ``impl='graphops'``: how GTN trains here, only the training rows (``node_index``, exact);
* ``impl='graphops-all'``: every row, the same work as the counterpart;
* ``impl='authors'``: the counterpart (every row).

A training epoch = forward on the training nodes, cross-entropy, backward, Adam step; times are
medians over ``--repeat`` epochs after one warm-up (``epoch_cpu_s``: process CPU seconds per
epoch, steadier than wall time on a shared machine); ``peak_rss_gb`` is the subprocess's peak
resident memory (data included), ``epoch_peak_gb`` the growth of RSS during one epoch.

Graphs (``--graphs``):
  acm: the shipped HGB ACM (10,942 nodes, 547,872 edges, 8 edge types, 726 training papers);
  synthetic: 200,000 nodes of 4 types, 1,200,000 edges of 8 types (4 relations and their
    reverses, power-law degrees), 64 features, 2,000 training nodes;
  dblp: DBLP-shaped (HGB DBLP's node/edge counts per type: 26,128 nodes, 239,566 edges, 6 edge
    types, 4,231-wide features as the edge-type stack pads them, 973 training authors). HGB's
    DBLP.zip is not shipped, so this graph is synthetic; it is the memory goal's case
    (GTN, 3 layers, 2 channels).

    python -m benchmarks.gtn --graphs acm,synthetic --plot gtn.png
    python -m benchmarks.gtn --graphs dblp --models gtn --layers 3 --impls graphops
    python -m benchmarks.gtn --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.common import PeakMemory, emit, plot_bars, process_peak_rss_bytes, ratio

GB = 1024**3


# --- graphs ------------------------------------------------------------------------------------


def _power_law_ids(count: int, size: int, gen: torch.Generator, exponent: float = 1.0):
    """``count`` ids in ``[0, size)`` with Zipf-like popularity (rank ``r`` ~ ``1/r^exponent``)."""
    weight = 1.0 / torch.arange(1, size + 1, dtype=torch.float64).pow(exponent)
    ids = torch.multinomial(weight, count, replacement=True, generator=gen)
    return torch.randperm(size, generator=gen)[ids]  # popular ids scattered, not 0, 1, 2...


def _with_reverses(relations, offsets):
    """Stacks ``[(src_type, dst_type, src_ids, dst_ids)]`` and their reverses into one graph."""
    parts, types = [], []
    for k, (s, d, src, dst) in enumerate(relations):
        parts += [
            torch.stack([src + offsets[s], dst + offsets[d]]),
            torch.stack([dst + offsets[d], src + offsets[s]]),
        ]
        types += [torch.full((src.numel(),), 2 * k), torch.full((src.numel(),), 2 * k + 1)]
    return torch.cat(parts, 1), torch.cat(types)


def make_dblp_like(seed: int = 0):
    """HGB DBLP's shape: author 4057, paper 14328, term 7723, venue 20; paper-author 19645,
    paper-term 85810, paper-venue 14328 (one venue per paper), each with its reverse."""
    gen = torch.Generator().manual_seed(seed)
    sizes = {'author': 4057, 'paper': 14328, 'term': 7723, 'venue': 20}
    names = list(sizes)
    offsets = dict(zip(names, torch.tensor([0, *sizes.values()]).cumsum(0).tolist()))
    papers = torch.arange(sizes['paper'])
    author_paper = papers[torch.randint(0, sizes['paper'], (19645,), generator=gen)]
    author_paper[: sizes['paper']] = papers  # every paper has an author
    relations = [
        ('paper', 'author', author_paper, _power_law_ids(19645, sizes['author'], gen, 0.7)),
        (
            'paper',
            'term',
            torch.randint(0, sizes['paper'], (85810,), generator=gen),
            _power_law_ids(85810, sizes['term'], gen),
        ),
        ('paper', 'venue', papers, _power_law_ids(sizes['paper'], sizes['venue'], gen, 0.5)),
    ]
    edge_index, edge_type = _with_reverses(relations, offsets)
    num_nodes = sum(sizes.values())
    # Features as the edge-type stack lays them out: padded to the widest type (paper, 4231);
    # sparse binary bag-of-words rows; venues featureless.
    x = torch.zeros(num_nodes, 4231)
    for name, width, ones in (('author', 334, 8), ('paper', 4231, 20), ('term', 50, 5)):
        rows = torch.arange(offsets[name], offsets[name] + sizes[name]).repeat_interleave(ones)
        x[rows, torch.randint(0, width, (rows.numel(),), generator=gen)] = 1.0
    labelled = torch.randperm(sizes['author'], generator=gen)[:1217]
    train = labelled[: int(0.8 * 1217)]
    y = torch.randint(0, 4, (num_nodes,), generator=gen)
    return {
        'x': x,
        'edge_index': edge_index,
        'edge_type': edge_type,
        'y': y,
        'train': train,
        'num_classes': 4,
        'num_edge_types': 6,
        'name': 'dblp-shaped (synthetic)',
    }


def make_synthetic(num_nodes: int = 200_000, num_edges: int = 1_200_000, seed: int = 0):
    """4 node types of equal size, 4 relations (+ reverses) with power-law targets."""
    gen = torch.Generator().manual_seed(seed)
    per_type = num_nodes // 4
    names = ['a', 'b', 'c', 'd']
    offsets = {n: i * per_type for i, n in enumerate(names)}
    pairs = [('a', 'b'), ('a', 'c'), ('b', 'd'), ('c', 'a')]
    each = num_edges // (2 * len(pairs))
    relations = [
        (
            s,
            d,
            torch.randint(0, per_type, (each,), generator=gen),
            _power_law_ids(each, per_type, gen, 0.8),
        )
        for s, d in pairs
    ]
    edge_index, edge_type = _with_reverses(relations, offsets)
    return {
        'x': torch.randn(4 * per_type, 64, generator=gen),
        'edge_index': edge_index,
        'edge_type': edge_type,
        'y': torch.randint(0, 5, (4 * per_type,), generator=gen),
        'train': torch.randperm(per_type, generator=gen)[:2000],
        'num_classes': 5,
        'num_edge_types': 8,
        'name': f'synthetic {4 * per_type} nodes',
    }


def load_acm():
    from graphops.datasets import load
    from graphops.transforms import ToEdgeTypeStack

    dataset = load('HGB/ACM', transform=ToEdgeTypeStack())
    data = dataset[0]
    return {
        'x': data.x,
        'edge_index': data.edge_index,
        'edge_type': data.edge_type,
        'y': data.y,
        'train': data.train_mask.nonzero().view(-1),
        'num_classes': dataset.num_classes,
        'num_edge_types': int(data.num_relations),
        'name': 'HGB ACM',
    }


def make_quick():
    data = make_synthetic(2000, 16_000, seed=1)
    data['train'] = data['train'][:100]
    return data


GRAPHS = {'acm': load_acm, 'synthetic': make_synthetic, 'dblp': make_dblp_like, 'quick': make_quick}


# --- the counterpart: the authors' algorithm on torch.sparse -----------------------------------


def _coo(index, value, n):
    return torch.sparse_coo_tensor(index, value, (n, n)).coalesce()


def _authors_selection(conv, edge_index, edge_type, n, identity):
    """GTConv as model_gtn.py does it: per channel, concatenate the weighted edge lists of all
    types (the identity appended) and coalesce. Rows = targets (adj_t)."""
    index = torch.stack([edge_index[1], edge_index[0]])
    loops = torch.arange(n)
    types = edge_type
    if identity:
        index = torch.cat([index, torch.stack([loops, loops])], 1)
        types = torch.cat([edge_type, torch.full((n,), conv.num_edge_types)])
    filt = torch.softmax(conv.weight, 1)
    return [_coo(index, filt[c, types], n) for c in range(conv.num_channels)]


def _row_normalize(mat):
    index, value = mat.indices(), mat.values()
    degree = torch.zeros(mat.size(0), dtype=value.dtype).index_add(0, index[0], value)
    inverse = torch.where(degree != 0, 1.0 / degree, torch.zeros_like(degree))
    return torch.sparse_coo_tensor(index, value * inverse[index[0]], mat.shape).coalesce()


def authors_forward(model, x, edge_index, edge_type, rows):
    """The counterpart's logits for ``rows`` (computed for all nodes, then indexed)."""
    n = x.size(0)
    if model.fast:
        from graphops.nn.models.gtn import _normalize_edge_types

        edge_index, edge_type, weight = _normalize_edge_types(
            edge_index, edge_type, None, n, model.num_edge_types, x.dtype
        )
        index = torch.cat(
            [torch.stack([edge_index[1], edge_index[0]]), torch.arange(n).repeat(2, 1)], 1
        )
        types = torch.cat([edge_type, torch.full((n,), model.num_edge_types)])
        weight = torch.cat([weight, torch.ones(n, dtype=weight.dtype)])
        xws = [x @ model.weight[c] for c in range(model.num_channels)]
        hs = list(xws)
        for conv in model.layers:
            filt = torch.softmax(conv.weight, 1)
            for c in range(model.num_channels):
                q = _coo(index, filt[c, types] * weight, n)
                hs[c] = torch.sparse.mm(q, hs[c])
        outs = [F.relu(model.beta * xw + (1 - model.beta) * h) for xw, h in zip(xws, hs)]
        z = (
            F.relu(model.lin_channels(torch.cat(outs, 1)))
            if model.lin_channels is not None
            else torch.stack(outs).mean(0)
        )
        return model.lin(z)[rows]
    h = None
    for layer in model.layers:
        if layer.first:
            a = _authors_selection(layer.conv1, edge_index, edge_type, n, model.identity)
            b = _authors_selection(layer.conv2, edge_index, edge_type, n, model.identity)
            h = [_row_normalize(torch.sparse.mm(a[c], b[c])) for c in range(model.num_channels)]
        else:
            q = _authors_selection(layer.conv1, edge_index, edge_type, n, model.identity)
            h = [_row_normalize(torch.sparse.mm(h[c], q[c])) for c in range(model.num_channels)]
    xw = x @ model.weight
    outs = []
    loops = torch.arange(n)
    for mat in h:
        index, value = mat.indices(), mat.values()
        keep = index[0] != index[1]  # the GCN: drop self-loops, add unit ones, D^-1
        index = torch.cat([index[:, keep], torch.stack([loops, loops])], 1)
        value = torch.cat([value[keep], torch.ones(n, dtype=value.dtype)])
        gcn = _row_normalize(torch.sparse_coo_tensor(index, value, (n, n)).coalesce())
        outs.append(F.relu(torch.sparse.mm(gcn, xw) + model.bias))
    return model.lin(torch.cat(outs, 1))[rows]


# --- the dense-reference check -------------------------------------------------------------------


def check_correctness() -> dict:
    from graphops.nn.models.gtn import GTN
    from graphops.testing import random_features, random_graph
    from graphops.testing.gtn import (
        dense_edge_type_stack,
        dense_fast_gtn,
        dense_fast_type_normalize,
        dense_gtn,
    )

    graph = random_graph(40, 160, seed=0)
    n, k = 40, 4
    edge_type = torch.randint(
        0, k, (graph.edge_index.size(1),), generator=torch.Generator().manual_seed(0)
    )
    x = random_features(n, 6)
    stack = dense_edge_type_stack(graph.edge_index, edge_type, n, k)
    worst = {}
    for fast, layers in [(False, 1), (False, 2), (False, 3), (True, 3)]:
        torch.manual_seed(layers)
        model = GTN(6, 5, 3, k, num_layers=layers, fast=fast).double()
        for p in model.parameters():
            torch.nn.init.normal_(p)
        out = model(x, graph.edge_index, edge_type)
        with torch.no_grad():
            if fast:
                lin_c = (model.lin_channels.weight, model.lin_channels.bias)
                ref = dense_fast_gtn(
                    x,
                    dense_fast_type_normalize(stack, k),
                    [c.weight for c in model.layers],
                    model.weight,
                    lin_c,
                    model.lin.weight,
                    model.lin.bias,
                )
            else:
                weights = [[c.weight for c in layer.convs()] for layer in model.layers]
                ref = dense_gtn(
                    x, stack, weights, model.weight, model.bias, model.lin.weight, model.lin.bias
                )
            authors = authors_forward(model, x, graph.edge_index, edge_type, torch.arange(n))
        name = f'{"fastgtn" if fast else "gtn"}-{layers}'
        worst[f'{name}_vs_dense'] = float((out - ref).detach().abs().max())
        worst[f'{name}_authors_vs_dense'] = float((authors - ref).detach().abs().max())
    ok = all(v < 1e-8 for v in worst.values())
    if not ok:
        raise AssertionError(f'GTN disagrees with the dense reference: {worst}')
    return {'check': 'dense reference (float64)', 'max_abs_error': max(worst.values()), 'ok': ok}


# --- one case (runs in its own subprocess) ------------------------------------------------------


def run_case(graph: str, model_name: str, layers: int, impl: str, repeat: int, topk) -> dict:
    from graphops.nn.models.gtn import GTN

    torch.manual_seed(0)
    data = GRAPHS[graph]()
    x, edge_index, edge_type, y = data['x'], data['edge_index'], data['edge_type'], data['y']
    train = data['train']
    fast = model_name == 'fastgtn'
    model = GTN(
        x.size(1),
        64,
        data['num_classes'],
        data['num_edge_types'],
        num_channels=2,
        num_layers=layers,
        fast=fast,
        channel_agg='mean',
        topk=None if fast else topk,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def epoch():
        optimizer.zero_grad()
        if impl == 'authors':
            out = authors_forward(model, x, edge_index, edge_type, train)
        elif impl == 'graphops-all':
            out = model(x, edge_index, edge_type)[train]
        else:
            out = model(x, edge_index, edge_type, node_index=train)
        loss = F.cross_entropy(out, y[train])
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    epoch()  # warm-up (numba compilation, memo of the edge-type stack)
    first_s = time.perf_counter() - start
    with PeakMemory('cpu') as meter:
        epoch()
    times = []
    cpu_start = time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    cpu_s = (time.process_time() - cpu_start) / repeat
    times.sort()
    return {
        'graph': data['name'],
        'nodes': int(x.size(0)),
        'edges': int(edge_index.size(1)),
        'model': model_name,
        'layers': layers,
        'channels': 2,
        'impl': impl,
        'topk': None if fast else topk,
        'epoch_s': round(times[len(times) // 2], 4),
        'epoch_cpu_s': round(cpu_s, 3),
        'first_epoch_s': round(first_s, 3),
        'epoch_peak_gb': round(meter.peak_bytes / GB, 3),
        'peak_rss_gb': round(process_peak_rss_bytes() / GB, 3),
        'threads': torch.get_num_threads(),
    }


def spawn(case: dict, timeout: int) -> dict:
    command = [sys.executable, '-m', 'benchmarks.gtn', '--run-case', json.dumps(case)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
        )
    except subprocess.TimeoutExpired:
        return {**case, 'skipped': f'over the {timeout}s limit'}
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ['no output']
        reason = 'killed (out of memory?)' if done.returncode < 0 else tail[0][:200]
        return {**case, 'skipped': f'failed: {reason}'}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--graphs', default='acm,synthetic')
    parser.add_argument('--models', default='gtn,fastgtn')
    parser.add_argument('--layers', default='1,2,3')
    parser.add_argument('--impls', default='graphops,graphops-all,authors')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--topk', type=int, default=None, help='GTN: prune product rows')
    parser.add_argument('--timeout', type=int, default=600, help='seconds per case')
    parser.add_argument('--quick', action='store_true', help='tiny graph, one layer count')
    parser.add_argument('--plot', default=None)
    parser.add_argument('--run-case', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_case:
        emit(run_case(**json.loads(args.run_case)))
        return
    if args.quick:
        args.graphs, args.layers, args.repeat = 'quick', '1,2', 1
    emit(check_correctness())
    records = []
    for graph in args.graphs.split(','):
        for model_name in args.models.split(','):
            for layers in (int(v) for v in args.layers.split(',')):
                by_impl = {}
                for impl in args.impls.split(','):
                    case = {
                        'graph': graph,
                        'model_name': model_name,
                        'layers': layers,
                        'impl': impl,
                        'repeat': args.repeat,
                        'topk': args.topk,
                    }
                    record = emit(spawn(case, args.timeout))
                    by_impl[impl] = record
                    records.append(record)
                authors, same_work = by_impl.get('authors', {}), by_impl.get('graphops-all', {})
                ours = by_impl.get('graphops', {})
                if 'epoch_s' in authors and ('epoch_s' in same_work or 'epoch_s' in ours):
                    emit(
                        {
                            'graph': graph,
                            'model': model_name,
                            'layers': layers,
                            'speedup_same_work': ratio(authors['epoch_s'], same_work['epoch_s'])
                            if 'epoch_s' in same_work
                            else None,
                            'speedup_train_rows': ratio(authors['epoch_s'], ours['epoch_s'])
                            if 'epoch_s' in ours
                            else None,
                            'memory_ratio_same_work': round(
                                authors['peak_rss_gb'] / same_work['peak_rss_gb'], 3
                            )
                            if 'epoch_s' in same_work
                            else None,
                        }
                    )
    if args.plot:
        timed = [
            dict(r, label=f'{r["graph"][:10]} {r["model"]} L{r["layers"]} {r["impl"]}')
            for r in records
            if 'epoch_s' in r
        ]
        plot_bars(
            timed,
            args.plot,
            label_key='label',
            value_keys=['epoch_s'],
            title='GTN / FastGTN training epoch',
            log=True,
        )


if __name__ == '__main__':
    main()
