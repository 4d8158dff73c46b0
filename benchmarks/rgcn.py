"""graphops RGCNConv vs PyG RGCNConv and FastRGCNConv: forward + backward, same process, same data.

Each case first checks that the outputs and gradients agree (after loading one state_dict into
every layer), then times the implementations interleaved (one call of each per round, so load
drift on a shared machine hits all alike) and measures peak memory. One JSON line per case, with
median wall-clock seconds (``*_s``), median CPU seconds of this process (``*_cpu_s``: less
sensitive to other load on a shared machine), peak memory above the starting RSS (``*_peak_mb``,
measured on the first call of each, after handing freed heap pages back to the OS) and ratios.

Cases (``--cases``):
  a: AIFB-shaped: the shipped AIFB graph (8,285 nodes, 58,086 edges, 90 relations), 16 -> 16;
  b: 100k nodes, 1M random edges, 50 relations, 64 -> 64;
  c: 200k nodes, 2M random edges, 100 relations, 32 -> 32 (many relations: PyG loops over them);
  d: AM-shaped at 1/50 (the paper's largest set: 1.9M featureless nodes, 5.7M triples in both
     directions, 266 relation types, 10 hidden): 37,703 nodes, 226,748 random edges, 266
     relations, featureless input (in = nodes) -> 10;
each without and with bases (30, 10, 20, 40). ``--strategies`` also times every graphops strategy and
prints the cost model's estimate beside it (how the model's constants were set).

    python -m benchmarks.rgcn --cases a,b --plot rgcn.png
    python -m benchmarks.rgcn --quick
    python -m benchmarks.rgcn --cases b,c --device cuda   # every layer on the GPU (peak: CUDA memory)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import time

import torch
from torch_geometric.nn import FastRGCNConv
from torch_geometric.nn import RGCNConv as PyGRGCNConv

from benchmarks.common import PeakMemory, emit, plot_bars, ratio, synchronize
from graphops.nn.conv.rgcn_conv import RGCNConv
from graphops.ops.relational import RelationalGraph, strategy_costs

CASES = {
    'a': {'nodes': 8285, 'edges': 58086, 'relations': 90, 'channels': 16, 'bases': 30},
    'b': {'nodes': 100_000, 'edges': 1_000_000, 'relations': 50, 'channels': 64, 'bases': 10},
    'c': {'nodes': 200_000, 'edges': 2_000_000, 'relations': 100, 'channels': 32, 'bases': 20},
    'd': {
        'nodes': 37_703,
        'edges': 226_748,
        'relations': 266,
        'channels': 10,
        'bases': 40,
        'featureless': True,
    },
    'quick': {'nodes': 2000, 'edges': 10_000, 'relations': 20, 'channels': 16, 'bases': 4},
}
# FastRGCNConv gathers one [in, out] weight per edge; skip it above this many bytes.
FAST_LIMIT_BYTES = 2 * 2**30


def _trim() -> None:
    """Hands freed heap pages back to the OS so each peak starts from an honest baseline."""
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc
        ctypes.CDLL('libc.so.6').malloc_trim(0)


def make_graph(case: str, seed: int = 0):
    spec = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    if case == 'a':
        try:
            from graphops.datasets import load

            data = load('AIFB')[0]
            return data.edge_index, data.edge_type, data.num_nodes, 'AIFB'
        except (FileNotFoundError, ImportError):
            pass
    n, e, r = spec['nodes'], spec['edges'], spec['relations']
    edge_index = torch.randint(0, n, (2, e), generator=gen)
    edge_type = torch.randint(0, r, (e,), generator=gen)
    return edge_index, edge_type, n, 'random'


def fwd_bwd(conv, x, edge_index, edge_type, grad_out):
    def run():
        for p in conv.parameters():
            p.grad = None
        if x is not None:
            x.grad = None
        out = conv(x, edge_index, edge_type)
        out.backward(grad_out)

    return run


def check_agree(ours, reference, x, edge_index, edge_type, grad_out, name: str) -> float:
    """Largest absolute difference of outputs and gradients; raises past float32 tolerance."""
    worst = 0.0
    results = []
    for conv in (ours, reference):
        for p in conv.parameters():
            p.grad = None
        if x is not None:
            x.grad = None
        out = conv(x, edge_index, edge_type)
        out.backward(grad_out)
        grads = {k: p.grad.clone() for k, p in conv.named_parameters()}
        grad_x = out.new_zeros(()) if x is None else x.grad.clone()  # featureless: no x
        results.append((out.detach(), grads, grad_x))
    (out_a, grads_a, gx_a), (out_b, grads_b, gx_b) = results
    pairs = [(out_a, out_b), (gx_a, gx_b), *((grads_a[k], grads_b[k]) for k in grads_b)]
    for a, b in pairs:
        scale = max(1.0, float(b.abs().max()))
        diff = float((a - b).abs().max()) / scale
        worst = max(worst, diff)
    if worst > 1e-4:
        raise AssertionError(f'{name}: graphops and PyG disagree (max scaled diff {worst:.2e})')
    return worst


def run_case(case: str, bases: int | None, args) -> dict:
    spec = CASES[case]
    device = torch.device(args.device)
    edge_index, edge_type, num_nodes, source = make_graph(case)
    channels, relations = spec['channels'], spec['relations']
    featureless = spec.get('featureless', False)
    in_channels = num_nodes if featureless else channels
    torch.manual_seed(0)
    x = None if featureless else torch.randn(num_nodes, channels).to(device).requires_grad_()
    grad_out = torch.randn(num_nodes, channels).to(device)

    ours = RGCNConv(in_channels, channels, relations, num_bases=bases)
    ours_cached = RGCNConv(in_channels, channels, relations, num_bases=bases, cached=True)
    pyg = PyGRGCNConv(in_channels, channels, relations, num_bases=bases)
    for conv in (ours_cached, pyg):
        conv.load_state_dict(ours.state_dict())
    impls = {'graphops': ours, 'graphops_cached': ours_cached, 'pyg': pyg}
    fast_bytes = edge_index.size(1) * channels * channels * 4 * 3
    if fast_bytes <= FAST_LIMIT_BYTES and not featureless:  # FastRGCNConv ignores node ids
        fast = FastRGCNConv(channels, channels, relations, num_bases=bases)
        fast.load_state_dict(ours.state_dict())
        impls['pyg_fast'] = fast

    graph = RelationalGraph(
        edge_index[0], edge_index[1], edge_type, num_nodes, num_nodes, relations
    )
    costs = strategy_costs(graph, in_channels, channels, num_bases=bases, featureless=featureless)
    auto = min(costs, key=costs.get)
    edge_index, edge_type = edge_index.to(device), edge_type.to(device)
    for conv in impls.values():
        conv.to(device)

    diff = check_agree(ours, pyg, x, edge_index, edge_type, grad_out, f'case {case}')
    runs = {
        name: _synchronized(fwd_bwd(conv, x, edge_index, edge_type, grad_out), device)
        for name, conv in impls.items()
    }

    peaks = {}
    for name, run in runs.items():  # the first call of each: warm-up and peak memory
        _trim()
        with PeakMemory(device) as meter:
            run()
        peaks[name] = meter.peak_bytes
    times = {name: [] for name in runs}
    cpu_times = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    cpu_median = {name: sorted(t)[len(t) // 2] for name, t in cpu_times.items()}

    record = {
        'case': case,
        'label': f'{case}{"+bases" if bases else ""}',
        'graph': source,
        'nodes': num_nodes,
        'edges': int(edge_index.size(1)),
        'pairs': graph.num_pairs,
        'relations': relations,
        'channels': channels,
        'featureless': featureless,
        'bases': bases,
        'device': str(device),
        'threads': torch.get_num_threads(),
        'strategy': auto,
        'max_scaled_diff': diff,
        'repeat': args.repeat,
    }
    for name in runs:
        record[f'{name}_s'] = round(median[name], 5)
    for name in runs:
        record[f'{name}_cpu_s'] = round(cpu_median[name], 5)
    for name in runs:
        record[f'{name}_peak_mb'] = round(peaks[name] / 2**20, 1)
    record['speedup_vs_pyg'] = ratio(median['pyg'], median['graphops'])
    record['speedup_cached_vs_pyg'] = ratio(median['pyg'], median['graphops_cached'])
    record['cpu_speedup_vs_pyg'] = ratio(cpu_median['pyg'], cpu_median['graphops'])
    if 'pyg_fast' in median:
        record['speedup_vs_pyg_fast'] = ratio(median['pyg_fast'], median['graphops'])
    record['peak_ratio_vs_pyg'] = round(peaks['graphops'] / max(peaks['pyg'], 1), 3)

    if args.strategies:
        record['strategies'] = {}
        for strategy, estimate in costs.items():
            conv = RGCNConv(in_channels, channels, relations, num_bases=bases, strategy=strategy)
            conv.load_state_dict(ours.state_dict())
            conv.to(device)
            run = _synchronized(fwd_bwd(conv, x, edge_index, edge_type, grad_out), device)
            run()
            measured = sorted(_timed(run) for _ in range(args.repeat))[args.repeat // 2]
            record['strategies'][strategy] = {
                'measured_s': round(measured, 5),
                'model_s': round(estimate, 5),
            }
    return emit(record)


def _synchronized(run, device: torch.device):
    """``run`` that returns only once the device has finished its work (CUDA runs async)."""

    def synchronized():
        run()
        synchronize(device)

    return synchronized


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', default='a,b,c,d', help='comma-separated: a, b, c, d')
    parser.add_argument('--repeat', type=int, default=3, help='timed rounds (median reported)')
    parser.add_argument('--quick', action='store_true', help='one tiny case, for a smoke run')
    parser.add_argument('--no-bases', action='store_true', help='skip the basis variants')
    parser.add_argument('--bases-only', action='store_true', help='only the basis variants')
    parser.add_argument('--strategies', action='store_true', help='time every strategy too')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    parser.add_argument('--plot', default=None, help='write a PNG bar chart here')
    parser.add_argument('--device', default='cpu', help="where the layers run: 'cpu' or 'cuda'")
    args = parser.parse_args(argv)
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but CUDA is not available')
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = ['quick'] if args.quick else [c.strip() for c in args.cases.split(',') if c.strip()]
    if args.quick:
        args.repeat = min(args.repeat, 2)
    records = []
    for case in cases:
        if case not in CASES:
            parser.error(f'unknown case {case!r}; choose from {sorted(CASES)}')
        variants = [None, CASES[case]['bases']]
        if args.no_bases:
            variants = [None]
        if args.bases_only:
            variants = [CASES[case]['bases']]
        for bases in variants:
            records.append(run_case(case, bases, args))
    if args.plot:
        keys = ['graphops_s', 'graphops_cached_s', 'pyg_s', 'pyg_fast_s']
        plot_bars(
            records,
            args.plot,
            label_key='label',
            value_keys=keys,
            title=f'RGCNConv forward + backward ({args.device})',
            log=True,
        )
    return records


if __name__ == '__main__':
    main()
