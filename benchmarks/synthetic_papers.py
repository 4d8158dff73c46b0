"""SyntheticPapers: generation time and peak memory at papers100M scale, and whether graph
diffusion beats an MLP on the generated features, as on the real ogbn-papers100M.

    python benchmarks/synthetic_papers.py                      # 10M-node generation + 1M-node check
    python benchmarks/synthetic_papers.py --write /tmp/sp      # also time write_ogb of the 10M graph
    python benchmarks/synthetic_papers.py --skip-generate --check-nodes 200000 --plot sp.png

Stages run in child processes so that each peak RSS (``ru_maxrss``) is its own. Output: JSON lines.

* ``generate``: ``SyntheticPapers(num_nodes)`` wall time and peak RSS (the spec: 10M nodes in
  under 2 minutes and 8 GB on a 2-core box), then optionally ``write_ogb`` time and size.
* ``check``: on a ``--check-nodes`` instance, trained on the train split, scored on valid/test:
  logistic regression on ``X``; a 1-hidden-layer MLP (256 units, ReLU, dropout 0.5) on ``X``; and
  logistic regression on ``[X, AX, A^2X, A^3X]`` with ``A = D^-1/2 (M + M^T) D^-1/2`` the
  symmetric-normalised symmetrised citation matrix (SIGN's adjacency operator, 3 hops).
  Each model: full-batch Adam, ``--epochs`` epochs, test accuracy at the best valid epoch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

try:
    from common import emit, process_peak_rss_bytes
except ImportError:  # imported as benchmarks.synthetic_papers
    from benchmarks.common import emit, process_peak_rss_bytes

GB = 1e9


def stage_generate(args) -> None:
    from graphops.datasets.synthetic_papers import SyntheticPapers

    baseline = process_peak_rss_bytes()
    start, cpu_start = time.perf_counter(), time.process_time()
    graph = SyntheticPapers(args.num_nodes, seed=args.seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = process_peak_rss_bytes()
    split = {k: int(v.numel()) for k, v in graph.get_idx_split().items()}
    emit(
        {
            'stage': 'generate',
            'num_nodes': graph.num_nodes,
            'num_edges': graph.num_edges,
            'mean_out_degree': round(graph.num_edges / graph.num_nodes, 3),
            'split': split,
            'seconds': round(seconds, 2),
            # CPU time of all threads: what the wall time would be on one uncontended core.
            'cpu_seconds': round(cpu_seconds, 2),
            'peak_rss_gb': round(peak / GB, 3),
            'peak_rss_gib': round(peak / 2**30, 3),
            # Before generating: the interpreter with torch, torch_geometric and graphops imported.
            'rss_before_gb': round(baseline / GB, 3),
            'output_gb': round((graph.x.nbytes + graph.edge_index.nbytes) / GB, 3),
            'ok_time': seconds < 120,
            'ok_memory_8gib': peak < 8 * 2**30,
            'ok_memory_8gb': peak < 8 * GB,
            'cpus': os.cpu_count(),
            'load_average': os.getloadavg()[0],
        }
    )
    if args.write:
        start = time.perf_counter()
        folder = graph.write_ogb(args.write, compress=args.compress)
        seconds = time.perf_counter() - start
        size = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files
        )
        emit(
            {
                'stage': 'write_ogb',
                'folder': str(folder),
                'compress': args.compress,
                'seconds': round(seconds, 2),
                'disk_gb': round(size / GB, 3),
                'peak_rss_gb': round(process_peak_rss_bytes() / GB, 3),
            }
        )


def _train(
    features, labels, split, hidden: int, epochs: int, seed: int, weight_decay: float
) -> dict:
    """Full-batch Adam; returns accuracies at the epoch with the best valid accuracy."""
    torch.manual_seed(seed)
    num_classes = int(labels.max()) + 1
    if hidden:
        model = torch.nn.Sequential(
            torch.nn.Linear(features.size(1), hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.5),
            torch.nn.Linear(hidden, num_classes),
        )
    else:
        model = torch.nn.Linear(features.size(1), num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=weight_decay)
    train = split['train']
    best = {'valid': -1.0}
    for epoch in range(1, epochs + 1):
        model.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features[train]), labels[train])
        loss.backward()
        optimizer.step()
        if epoch % 5 == 0 or epoch == epochs:
            model.eval()
            with torch.no_grad():
                pred = model(features).argmax(dim=-1)
            acc = {
                k: round(float((pred[v] == labels[v]).float().mean()), 4) for k, v in split.items()
            }
            if acc['valid'] > best['valid']:
                best = {**acc, 'epoch': epoch}
    return best


def stage_check(args) -> None:
    from graphops.datasets.synthetic_papers import SyntheticPapers
    from graphops.ops.csr import normalize, orient, to_csr
    from graphops.ops.spmm import spmm

    start = time.perf_counter()
    graph = SyntheticPapers(args.check_nodes, seed=args.seed)
    generate_s = time.perf_counter() - start
    split = graph.get_idx_split()
    labelled = torch.cat([split['train'], split['valid'], split['test']])
    # Work on the labelled rows only, re-indexed 0..L-1.
    local, offset = {}, 0
    for name in ('train', 'valid', 'test'):
        local[name] = torch.arange(offset, offset + split[name].numel())
        offset += split[name].numel()
    labels = graph.y[labelled]

    start = time.perf_counter()
    adj = normalize(orient(to_csr(graph.edge_index, num_nodes=graph.num_nodes), 'symmetric'), 'sym')
    hops, x = [graph.x[labelled]], graph.x
    for _ in range(args.hops):
        x = spmm(adj, x)
        hops.append(x[labelled])
    diffusion_s = time.perf_counter() - start
    del adj, x

    raw = hops[0]
    sign = torch.cat(hops, dim=1)
    results = {
        'logreg_x': _train(raw, labels, local, 0, args.epochs, args.seed, args.weight_decay),
        'mlp_x': _train(raw, labels, local, 256, args.epochs, args.seed, args.weight_decay),
        f'logreg_sign{args.hops}': _train(
            sign, labels, local, 0, args.epochs, args.seed, args.weight_decay
        ),
    }
    best_x = max(results['logreg_x']['test'], results['mlp_x']['test'])
    margin = results[f'logreg_sign{args.hops}']['test'] - best_x
    in_degree = torch.bincount(graph.edge_index[1], minlength=graph.num_nodes)
    emit(
        {
            'stage': 'check',
            'num_nodes': graph.num_nodes,
            'num_edges': graph.num_edges,
            'split': {k: int(v.numel()) for k, v in split.items()},
            'generate_s': round(generate_s, 2),
            'diffusion_s': round(diffusion_s, 2),
            'edge_homophily': round(
                float(
                    (graph.community[graph.edge_index[0]] == graph.community[graph.edge_index[1]])
                    .float()
                    .mean()
                ),
                4,
            ),
            'max_in_degree': int(in_degree.max()),
            **results,
            'test_margin_points': round(100 * margin, 2),
            'ok': margin >= 0.05,
        }
    )
    if args.plot:
        _plot(args.plot, results, in_degree)


def _plot(path: str, results: dict, in_degree: torch.Tensor) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(results)
    for k, split in enumerate(('valid', 'test')):
        left.bar(
            [i + 0.4 * k for i in range(len(names))],
            [results[n][split] for n in names],
            width=0.4,
            label=split,
        )
    left.set_xticks([i + 0.2 for i in range(len(names))])
    left.set_xticklabels(names)
    left.set_ylabel('accuracy')
    left.set_title('features alone vs 3-hop diffusion')
    left.legend()
    counts = torch.bincount(in_degree)
    ccdf = counts.flip(0).cumsum(0).flip(0).double() / in_degree.numel()
    ks = torch.arange(counts.numel())
    right.loglog(ks[1:], ccdf[1:], '.')
    right.set_xlabel('in-degree k')
    right.set_ylabel('P(in-degree >= k)')
    right.set_title('in-degree tail')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--num-nodes', type=int, default=10_000_000)
    parser.add_argument('--check-nodes', type=int, default=1_000_000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--hops', type=int, default=3)
    parser.add_argument('--epochs', type=int, default=300)
    parser.add_argument('--weight-decay', type=float, default=1e-4)
    parser.add_argument('--write', metavar='DIR', help='also time write_ogb(DIR) of the big graph')
    parser.add_argument('--compress', action='store_true', help='write_ogb(compress=True)')
    parser.add_argument('--skip-generate', action='store_true')
    parser.add_argument('--skip-check', action='store_true')
    parser.add_argument('--plot', metavar='PATH', help='PNG: accuracies and the in-degree tail')
    parser.add_argument('--stage', choices=('generate', 'check'), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.stage == 'generate':
        return stage_generate(args)
    if args.stage == 'check':
        return stage_check(args)
    # Each stage in its own process: its peak RSS is then its own.
    passthrough = [a for a in sys.argv[1:] if a not in ('--skip-generate', '--skip-check')]
    stages = [
        s for s, skip in (('generate', args.skip_generate), ('check', args.skip_check)) if not skip
    ]
    failed = False
    for stage in stages:
        proc = subprocess.run([sys.executable, __file__, *passthrough, '--stage', stage])
        failed |= proc.returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
