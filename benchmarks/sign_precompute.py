"""SIGN precompute: graphops vs PyG ``T.SIGN``, torch CSR matmul and scipy, per hop, same process.

    python -m benchmarks.sign_precompute [--quick] [--device cuda] [--plot PATH]

Cases:

* (a) a random directed graph, 1M nodes / 20M edges / 128 float32 features (``--quick``: 20k /
  400k / 32). First the correctness check (graphops ``SIGN(3)`` against PyG ``T.SIGN(3)``), then
  per-hop seconds of: the whole transform (graphops ``SIGN(3)`` vs PyG ``T.SIGN(3)``, divided by
  3; once more on a shallow copy of the data, which leaves out the deep copy both sides pay); one
  propagation product on the prepared matrix (graphops ``spmm`` vs PyG's
  ``EdgeIndex.matmul`` as ``T.SIGN`` calls it, ``torch.sparse.mm`` on a CSR tensor, and
  ``scipy.sparse.csr_matrix @ X``, the SIGN authors' and OGB's path), twice: on the caller's
  ``x`` as torch allocated it, and on the 2 MiB-aligned huge-page copy that graphops' transform
  makes (all contenders get the same ``x`` each time). The triangle operator's
  masked product and one PPR hop are timed separately.
* (b) a ``SyntheticPapers`` graph (``--papers-nodes``, 2M by default), symmetrised, precomputed by
  :func:`graphops.precompute.engine.precompute` into a FeatureStore (labelled rows only, float16)
  under ``--budget-mb`` of column-slice memory: per-hop seconds, the peak RSS above the
  process's resident size before the call, and the peak of the column-slice phase alone (after
  the operator's matrix is built) minus the matrix: the working memory the budget bounds. With
  ``--device cuda`` the graph is symmetrised on the device, and the same phase's peak of CUDA
  memory minus the matrix is reported (``cuda_slice_working_bytes``).

One JSON line per measurement (``benchmarks.common.emit``); ratios are baseline / graphops. The
contenders of case (a) run in alternating rounds (``benchmarks.common.time_interleaved``): on a
shared machine one call of the same product can take 2-3x another, and alternating keeps a burst
of load from landing on one contender only. Each record gives medians (``ratio_vs_*``), best
runs (``min_ratio_vs_*``: each side at its least disturbed) and process CPU time
(``cpu_ratio_vs_*``).
"""

from __future__ import annotations

import argparse
import copy
import gc
import shutil
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import (
    emit,
    plot_bars,
    process_peak_rss_bytes,
    ratio,
    time_interleaved,
)


def random_case(
    num_nodes: int, num_edges: int, num_features: int, seed: int = 0, reverses: bool = False
):
    """Uniform random edges (``reverses``: ``num_edges / 2`` of them plus each one reversed)."""
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(seed)
    drawn = num_edges // 2 if reverses else num_edges
    edge_index = torch.randint(0, num_nodes, (2, drawn), generator=gen)
    if reverses:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    x = torch.randn(num_nodes, num_features, generator=gen)
    return Data(x=x, edge_index=edge_index, num_nodes=num_nodes)


def check_against_pyg(data, device) -> dict:
    import torch_geometric.transforms as T

    from graphops.transforms.sign import SIGN

    ours = SIGN(3)(data.clone().to(device))
    theirs = T.SIGN(3)(data.clone().to(device))
    diff = max(float((ours[k] - theirs[k]).abs().max()) for k in ('x1', 'x2', 'x3'))
    scale = max(float(theirs[k].abs().max()) for k in ('x1', 'x2', 'x3'))
    ok = all(torch.allclose(ours[k], theirs[k], atol=1e-5, rtol=1e-4) for k in ('x1', 'x2', 'x3'))
    if not ok:
        raise SystemExit(f'graphops SIGN(3) differs from PyG T.SIGN(3): max abs diff {diff}')
    return {'max_abs_diff_vs_pyg': diff, 'max_abs_value': scale}


def timing_fields(timings: dict[str, dict], per: int = 1) -> dict:
    """``<name>_s`` (median), ``<name>_min_s``, ``<name>_cpu_s`` (each divided by ``per``) and
    ``<name>_peak_bytes`` for every contender."""
    fields = {}
    for name, t in timings.items():
        fields[f'{name}_s'] = t['median_s'] / per
        fields[f'{name}_min_s'] = t['min_s'] / per
        fields[f'{name}_cpu_s'] = t['cpu_s'] / per
        fields[f'{name}_peak_bytes'] = t['peak_bytes']
    return fields


def ratio_fields(timings: dict[str, dict], *baselines: str) -> dict:
    """``ratio_vs_<b>`` (medians), ``min_ratio_vs_<b>`` (best runs) and ``cpu_ratio_vs_<b>``:
    baseline / graphops."""
    ours = timings['graphops']
    fields = {}
    for b in baselines:
        fields[f'ratio_vs_{b}'] = ratio(timings[b]['median_s'], ours['median_s'])
        fields[f'min_ratio_vs_{b}'] = ratio(timings[b]['min_s'], ours['min_s'])
        fields[f'cpu_ratio_vs_{b}'] = ratio(timings[b]['cpu_s'], ours['cpu_s'])
    return fields


def sign_stages(data, args) -> dict:
    """Seconds (medians over ``args.repeat`` rounds) of each stage of graphops' ``SIGN(3)``, as
    its transform runs them: the CSR from ``edge_index``, the normalised matrix, the huge-page
    copy of ``x``, the three hops into fresh outputs, and the same hops into outputs already
    touched (the difference is the first touch of fresh output pages)."""
    from graphops.ops.spmm import host_empty, spmm
    from graphops.transforms.adjacency import Adjacency
    from graphops.transforms.operator import graph_adjacency

    op = Adjacency(3)
    stages: dict[str, list[float]] = {}

    def clock(name, fn):
        started = time.perf_counter()
        out = fn()
        stages.setdefault(name, []).append(time.perf_counter() - started)
        return out

    for _ in range(args.repeat):
        adj = clock('csr_from_edge_index_s', lambda: graph_adjacency(data))
        matrix = clock('normalise_s', lambda adj=adj: op.matrix(adj, torch.float32))
        x = clock(
            'huge_page_copy_of_x_s',
            lambda: host_empty(*data.x.shape, torch.float32).copy_(data.x),
        )

        def fresh(x=x, matrix=matrix):
            state, outs = x, []
            for _ in range(3):
                state = spmm(matrix, state)
                outs.append(state)
            return outs

        outs = clock('three_hops_fresh_outputs_s', fresh)

        def touched(x=x, matrix=matrix, outs=outs):
            state = x
            for out in outs:
                state = spmm(matrix, state, out=out)

        clock('three_hops_touched_outputs_s', touched)
        del adj, matrix, x, outs
        gc.collect()
    return {name: float(np.median(values)) for name, values in stages.items()}


def case_a(args, device) -> list[dict]:
    import torch_geometric.transforms as T
    from torch_geometric import EdgeIndex
    from torch_geometric.utils import scatter

    from graphops.ops import to_csr
    from graphops.ops.spmm import host_empty, spmm
    from graphops.ops.triangle import triangle_adjacency
    from graphops.transforms.adjacency import Adjacency
    from graphops.transforms.ppr import PPR
    from graphops.transforms.sign import SIGN

    n, e, f = (20_000, 400_000, 32) if args.quick else (args.nodes, args.edges, args.features)
    data = random_case(n, e, f, reverses=args.reverse_edges)
    shape = {'case': 'a', 'nodes': n, 'edges': e, 'features': f, 'device': str(device)}
    if args.reverse_edges:
        shape['edges'] = f'{e // 2} random + their reverses'
    records = [emit({**shape, 'check': 'SIGN(3) vs T.SIGN(3)', **check_against_pyg(data, device)})]
    data = data.to(device)

    # whole transforms, per hop; the contenders alternate (time_interleaved): this machine is
    # shared, and a burst of load must not land on one of them only
    whole = time_interleaved(
        {
            'graphops': lambda: SIGN(3)(data.clone()),
            'pyg': lambda: T.SIGN(3)(data.clone()),
        },
        repeat=args.repeat,
        device=device,
    )
    records.append(
        emit(
            {
                **shape,
                'op': 'transform SIGN(3) per hop',
                **timing_fields(whole, per=3),
                **ratio_fields(whole, 'pyg'),
            }
        )
    )

    # the same on a shallow copy: neither transform writes into its input's tensors, so this
    # leaves out the 0.8 GB deep copy above that both sides pay (the transforms alone)
    shallow = time_interleaved(
        {
            'graphops': lambda: SIGN(3)(copy.copy(data)),
            'pyg': lambda: T.SIGN(3)(copy.copy(data)),
        },
        repeat=args.repeat,
        device=device,
    )
    records.append(
        emit(
            {
                **shape,
                'op': 'transform SIGN(3) per hop, shallow copy of data',
                **timing_fields(shallow, per=3),
                **ratio_fields(shallow, 'pyg'),
            }
        )
    )
    records.append(emit({**shape, 'op': 'graphops SIGN(3) stages', **sign_stages(data, args)}))

    # one product on the prepared matrix: on the caller's x (torch memory, 4 KiB pages), then on
    # the 2 MiB-aligned huge-page copy the SIGN transform and the engine make; every contender
    # gets the same x
    matrix = Adjacency(1).matrix(to_csr(data.edge_index, num_nodes=n).to(device))
    row, col = data.edge_index
    deg = scatter(torch.ones(e, device=device), col, dim_size=n, reduce='sum')
    inv = deg.pow(-0.5).masked_fill_(deg == 0, 0)
    weight = inv[row] * inv[col]
    index, perm = EdgeIndex(data.edge_index, sparse_size=(n, n)).sort_by('col')
    weight = weight[perm]
    torch_csr = matrix.to_torch_csr()
    sp = matrix.to_scipy().astype(np.float32) if device.type == 'cpu' else None
    layouts = {'caller x': data.x}
    if device.type == 'cpu':
        layouts['huge-page x'] = host_empty(n, f).copy_(data.x)
    for layout, x in layouts.items():
        out = torch.empty_like(x)
        contenders = {
            'graphops': lambda x=x, out=out: spmm(matrix, x, out=out),
            'pyg': lambda x=x: index.matmul(x, weight, transpose=True),
            'torch_csr': lambda x=x: torch.sparse.mm(torch_csr, x),
        }
        if sp is not None:
            x_np = x.numpy()
            contenders['scipy'] = lambda x_np=x_np: sp @ x_np
        hop = time_interleaved(contenders, repeat=args.repeat, device=device)
        record = {
            **shape,
            'op': f'adjacency hop (prepared matrix, {layout})',
            'nnz': matrix.nnz,
            **timing_fields(hop),
            **ratio_fields(hop, *[name for name in hop if name != 'graphops']),
            'graphops_gather_GBps': matrix.nnz * f * 4 / hop['graphops']['median_s'] / 1e9,
        }
        records.append(emit(record))
        del out

    # triangle operator: the masked product alone
    adj = to_csr(data.edge_index, num_nodes=n).to(device)
    started = time.perf_counter()
    tri = triangle_adjacency(adj)
    tri_s = time.perf_counter() - started
    records.append(
        emit(
            {
                **shape,
                'op': 'triangle A o (A A) (masked product)',
                'graphops_s': tri_s,
                'triangle_nnz': tri.nnz,
                'triangles': int(tri.values().double().sum()) // 6,
            }
        )
    )
    # PPR: one hop is T products (on 16 columns, to keep the run short)
    ppr = PPR(1, tol=args.ppr_tol)
    ppr_matrix = ppr.matrix(adj)
    x16 = data.x[:, :16].contiguous()
    ppr_hop = time_interleaved(
        {'ppr': lambda: ppr.step(ppr_matrix, [x16])}, repeat=1, device=device
    )
    ppr_s = ppr_hop['ppr']['median_s']
    records.append(
        emit(
            {
                **shape,
                'op': 'PPR hop (16 columns)',
                'alpha': ppr.alpha,
                'tol': ppr.tol,
                'products_per_hop': ppr.products_per_hop,
                'graphops_s': ppr_s,
                'seconds_per_product': ppr_s / max(ppr.products_per_hop, 1),
            }
        )
    )
    return records


def case_b(args, device) -> list[dict]:
    from graphops.datasets.synthetic_papers import SyntheticPapers
    from graphops.ops import orient, to_csr
    from graphops.precompute.engine import precompute
    from graphops.transforms.adjacency import Adjacency

    n = 50_000 if args.quick else args.papers_nodes
    started = time.perf_counter()
    papers = SyntheticPapers(n, seed=0)
    generate_s = time.perf_counter() - started
    split = papers.get_idx_split()
    rows = torch.cat([split['train'], split['valid'], split['test']])
    # on CUDA the graph is built on the device too (the engine keeps a host copy of it)
    adj = orient(to_csr(papers.edge_index.to(device), num_nodes=n), 'symmetric').to('cpu')
    x = papers.x
    budget = (2 << 20) if args.quick else args.budget_mb << 20
    operator = Adjacency(3, remove_self_loops=True, add_self_loops=True, prefix='sym')
    # split the run in two phases: building the operator's matrix (outside the column budget),
    # then the column slices (what the budget bounds)
    phase = {}
    build = operator.matrix

    def timed_matrix(adj, dtype=torch.float32):
        matrix = build(adj, dtype)
        phase['matrix_bytes'] = sum(
            t.numel() * t.element_size() for t in (matrix.rowptr, matrix.col, matrix.value)
        )
        phase['slices_start'] = time.perf_counter()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        return matrix

    operator.matrix = timed_matrix
    folder = tempfile.mkdtemp(prefix='sign_b_')
    gc.collect()
    sampler = RssSampler()
    try:
        with sampler:
            started = time.perf_counter()
            store = precompute(
                adj,
                x,
                [operator],
                folder,
                rows=rows,
                device=device,
                column_budget_bytes=budget,
                storage_dtype=torch.float16,
                include_input=False,
                progress=not args.no_progress,
            )
            total_s = time.perf_counter() - started
        slices_s = time.perf_counter() - phase['slices_start']
        slice_peak = sampler.peak_after(phase['slices_start']) - sampler.start
        record = {
            'case': 'b',
            'graph': f'SyntheticPapers({n}, seed=0) symmetrised',
            'nodes': n,
            'nnz': adj.nnz,
            'features': x.shape[1],
            'labelled_rows': rows.numel(),
            'device': str(device),
            'generate_s': generate_s,
            'column_budget_bytes': budget,
            'slices': len(store.slices),
            'slice_width': store.slices[0][1] - store.slices[0][0],
            'precompute_s': total_s,
            'per_hop_s': slices_s / 3,
            'matrix_bytes': phase['matrix_bytes'],
            'peak_rss_above_start_bytes': sampler.peak - sampler.start,
            'slice_phase_peak_rss_above_start_bytes': slice_peak,
            'slice_phase_working_bytes': slice_peak - phase['matrix_bytes'],
            'working_under_budget': slice_peak - phase['matrix_bytes'] <= budget,
            'process_peak_rss_bytes': process_peak_rss_bytes(),
        }
        if device.type == 'cuda':
            working = torch.cuda.max_memory_allocated(device) - phase['matrix_bytes']
            record['cuda_slice_working_bytes'] = working
            record['cuda_working_under_budget'] = working <= budget
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [emit(record)]


class RssSampler:
    """Resident set size sampled every 2 ms, with timestamps (to split a run into phases)."""

    def __enter__(self):
        import threading

        self.samples = []
        self.start = _rss()
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.samples.append((time.perf_counter(), _rss()))
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), _rss()))

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)

    def peak_after(self, moment: float) -> int:
        return max(rss for when, rss in self.samples if when >= moment)


def _rss() -> int:
    import os

    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='tiny smoke run')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--plot', default=None, help='write a PNG bar chart here')
    parser.add_argument('--nodes', type=int, default=1_000_000)
    parser.add_argument('--edges', type=int, default=20_000_000)
    parser.add_argument('--features', type=int, default=128)
    parser.add_argument(
        '--reverse-edges',
        action='store_true',
        help='case (a): --edges / 2 random edges plus their reverses (a symmetric graph)',
    )
    parser.add_argument('--papers-nodes', type=int, default=2_000_000)
    parser.add_argument('--budget-mb', type=int, default=512)
    parser.add_argument('--ppr-tol', type=float, default=1e-2)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--cases', default='ab', help="which cases to run: 'a', 'b' or 'ab'")
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda but CUDA is not available')
    records = []
    if 'a' in args.cases:
        records += case_a(args, device)
    if 'b' in args.cases:
        records += case_b(args, device)
    if args.plot:
        bars = [r for r in records if 'pyg_s' in r]
        keys = ['graphops_s', 'pyg_s', 'torch_csr_s', 'scipy_s']
        plot_bars(
            bars,
            args.plot,
            label_key='op',
            value_keys=[k for k in keys if any(k in r for r in bars)],
            title=f'SIGN precompute per hop, case (a), {device}',
        )


if __name__ == '__main__':
    main()
