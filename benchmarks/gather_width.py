"""SpMM cost per entry and column against the slice width: why the out-of-core plan slices the
features in whole 64-byte lines (``graphops.precompute.out_of_core.column_slices``).

    python -m benchmarks.gather_width --nodes 32000000 --edges 120000000 --widths 15 16 26 32
    python -m benchmarks.gather_width --nodes 4000000 --edges 58000000 --widths 16 32 64 128

A random graph (uniform sources and targets, columns sorted within rows, as a converted matrix);
for each width ``w`` the features are a fresh ``[N, w]`` float32 buffer from
:func:`graphops.ops.host_empty` (2 MiB aligned, huge pages), and ``graphops.ops.spmm`` is timed
against torch's own CSR product (``torch.sparse.mm``) in interleaved rounds after a correctness
check on the first rows. One JSON line per width: nanoseconds per entry and per entry-column
(median and best round) and the ratio to torch.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import emit, plot_bars, ratio, time_interleaved
from graphops.ops import CSR, host_empty, spmm
from graphops.ops.csr import torch_csr_tensor


def random_csr(num_nodes: int, num_edges: int, seed: int = 0) -> CSR:
    rng = np.random.default_rng(seed)
    row = rng.integers(0, num_nodes, num_edges)
    col = rng.integers(0, num_nodes, num_edges)
    order = np.lexsort((col, row))
    return CSR.from_coo(
        torch.from_numpy(row[order]),
        torch.from_numpy(col[order]),
        torch.from_numpy(rng.random(num_edges, dtype=np.float32)),
        num_nodes,
        num_nodes,
        is_sorted=True,
    )


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--nodes', type=int, default=2_000_000)
    parser.add_argument('--edges', type=int, default=20_000_000)
    parser.add_argument('--widths', type=int, nargs='+', default=[15, 16, 26, 32, 64])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--plot', default=None, help='a PNG of ns per entry-column')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    matrix = random_csr(args.nodes, args.edges)
    theirs = torch_csr_tensor(
        matrix.rowptr.long(), matrix.col.long(), matrix.value, (args.nodes, args.nodes)
    )
    records = []
    for width in args.widths:
        x = host_empty(args.nodes, width)
        x.uniform_()
        out = host_empty(args.nodes, width)
        check = torch.sparse.mm(theirs, x)[:1000]
        torch.testing.assert_close(spmm(matrix, x, out=out)[:1000], check, rtol=1e-4, atol=1e-4)
        del check
        times = time_interleaved(
            {
                'graphops': lambda x=x, out=out: spmm(matrix, x, out=out),
                'torch': lambda x=x: torch.sparse.mm(theirs, x),
            },
            repeat=args.repeat,
        )
        per = 1e9 / args.edges
        record = {
            'benchmark': 'gather_width',
            'nodes': args.nodes,
            'edges': args.edges,
            'width': width,
            'threads': torch.get_num_threads(),
            'ns_per_entry': round(times['graphops']['median_s'] * per, 2),
            'ns_per_entry_column': round(times['graphops']['median_s'] * per / width, 3),
            'ns_per_entry_column_best': round(times['graphops']['min_s'] * per / width, 3),
            'torch_ns_per_entry_column': round(times['torch']['median_s'] * per / width, 3),
            'ratio_vs_torch': ratio(times['torch']['median_s'], times['graphops']['median_s']),
        }
        records.append(emit(record))
        del x, out
    if args.plot:
        plot_bars(
            records,
            args.plot,
            label_key='width',
            value_keys=['ns_per_entry_column', 'torch_ns_per_entry_column'],
            title=f'SpMM, {args.nodes:,} nodes, {args.edges:,} entries',
            ylabel='ns per entry-column (median)',
        )
    return records


if __name__ == '__main__':
    main()
