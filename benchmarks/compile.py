"""Eager vs ``torch.compile`` (inductor, CPU): graphops RGCNConv and SIGNClassifier, and PyG's
RGCNConv eager and compiled, forward + backward, in one process on the same data.

Each case first checks correctness (compiled outputs and gradients equal eager ones, and
graphops equals PyG after a state_dict exchange) and counts graph breaks with
``torch._dynamo.explain``; then it compiles (the first call's seconds are reported as
``*_compile_s``) and times the contenders interleaved (:func:`benchmarks.common.time_interleaved`).
One JSON line per case with median seconds and ratios:

* ``compiled_vs_eager``: graphops eager (cached plan) seconds over graphops compiled (cached plan,
  built by ``prepare``) seconds; above 1 means the compiled layer is faster;
* ``compiled_uncached_vs_eager``: the same without a plan (the static dense path);
* ``compiled_vs_pyg`` / ``compiled_vs_pyg_compiled``: PyG eager / PyG compiled over graphops
  compiled.

PyG has no SIGN classifier (its SIGN example trains a plain MLP), so SIGN rows compare graphops
eager and compiled only.

    python -m benchmarks.compile --threads 1
    python -m benchmarks.compile --cases rgcn --no-pyg-compile
"""

from __future__ import annotations

import argparse
import time

import torch
import torch._dynamo as dynamo
from torch_geometric.nn import RGCNConv as PyGRGCNConv

from benchmarks.common import emit, ratio, time_interleaved
from benchmarks.rgcn import CASES as RGCN_CASES
from benchmarks.rgcn import check_agree, make_graph
from graphops.nn import RGCNConv
from graphops.nn.models import SIGNClassifier


def graph_breaks(module, *args) -> int:
    dynamo.reset()
    return dynamo.explain(module)(*args).graph_break_count


def fwd_bwd(module, inputs, grad_out, params):
    def run():
        for p in params:
            p.grad = None
        out = module(*inputs)
        out.backward(grad_out)
        return out

    return run


def first_call_s(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def compare(eager_run, compiled_run, params, name: str, tol: float = 1e-4) -> float:
    """Largest scaled difference of outputs and gradients, compiled vs eager."""
    results = []
    for run in (eager_run, compiled_run):
        out = run().detach()
        results.append([out, *(p.grad.clone() for p in params)])
    worst = 0.0
    for a, b in zip(*results, strict=True):
        worst = max(worst, float((a - b).abs().max()) / max(1.0, float(b.abs().max())))
    if worst > tol:
        raise AssertionError(f'{name}: compiled differs from eager (max scaled diff {worst:.2e})')
    return worst


def rgcn_case(case: str, bases: int | None, args) -> dict:
    spec = RGCN_CASES[case]
    edge_index, edge_type, num_nodes, source = make_graph(case)
    channels, relations = spec['channels'], spec['relations']
    torch.manual_seed(0)
    x = torch.randn(num_nodes, channels, requires_grad=True)
    grad_out = torch.randn(num_nodes, channels)
    eager = RGCNConv(channels, channels, relations, num_bases=bases, cached=True)
    planned = RGCNConv(channels, channels, relations, num_bases=bases, cached=True)
    uncached = RGCNConv(channels, channels, relations, num_bases=bases)
    pyg = PyGRGCNConv(channels, channels, relations, num_bases=bases)
    for conv in (planned, uncached, pyg):
        conv.load_state_dict(eager.state_dict())
    diff_pyg = check_agree(eager, pyg, x, edge_index, edge_type, grad_out, f'case {case}')
    planned.prepare(x, edge_index, edge_type)
    inputs = (x, edge_index, edge_type)
    record = {
        'model': 'RGCNConv',
        'case': case,
        'label': f'{case}{"+bases" if bases else ""}',
        'graph': source,
        'nodes': num_nodes,
        'edges': int(edge_index.size(1)),
        'relations': relations,
        'channels': channels,
        'bases': bases,
        'threads': torch.get_num_threads(),
        'max_scaled_diff_vs_pyg': diff_pyg,
        'graph_breaks': graph_breaks(planned, *inputs),
        'graph_breaks_uncached': graph_breaks(uncached, *inputs),
    }
    if not args.no_pyg_compile:
        record['graph_breaks_pyg'] = graph_breaks(pyg, *inputs)
    dynamo.reset()

    def params(conv):
        return [*conv.parameters(), x]

    runs = {
        'eager': fwd_bwd(eager, inputs, grad_out, params(eager)),
        'compiled': fwd_bwd(torch.compile(planned), inputs, grad_out, params(planned)),
        'compiled_uncached': fwd_bwd(torch.compile(uncached), inputs, grad_out, params(uncached)),
        'pyg': fwd_bwd(pyg, inputs, grad_out, params(pyg)),
    }
    if not args.no_pyg_compile:
        runs['pyg_compiled'] = fwd_bwd(torch.compile(pyg), inputs, grad_out, params(pyg))
    for name in [n for n in runs if n.startswith(('compiled', 'pyg_compiled'))]:
        record[f'{name}_compile_s'] = round(first_call_s(runs[name]), 2)
    record['max_scaled_diff_compiled'] = compare(
        runs['eager'], runs['compiled'], params(eager), 'c'
    )
    record['max_scaled_diff_compiled_uncached'] = compare(
        runs['eager'], runs['compiled_uncached'], params(eager), 'compiled uncached'
    )
    timing = time_interleaved(runs, repeat=args.repeat)
    for name, t in timing.items():
        record[f'{name}_s'] = round(t['median_s'], 5)
    record['compiled_vs_eager'] = ratio(timing['eager']['median_s'], timing['compiled']['median_s'])
    record['compiled_uncached_vs_eager'] = ratio(
        timing['eager']['median_s'], timing['compiled_uncached']['median_s']
    )
    record['compiled_vs_pyg'] = ratio(timing['pyg']['median_s'], timing['compiled']['median_s'])
    if 'pyg_compiled' in timing:
        record['compiled_vs_pyg_compiled'] = ratio(
            timing['pyg_compiled']['median_s'], timing['compiled']['median_s']
        )
    return emit(record)


def sign_case(args) -> dict:
    num_nodes, channels, operators = 20_000, 128, 4
    torch.manual_seed(0)
    xs = [torch.randn(num_nodes, channels) for _ in range(operators)]
    grad_out = torch.randn(num_nodes, 47)
    eager = SIGNClassifier(channels, 256, 47, num_operators=operators, dropout=0.0)
    compiled = SIGNClassifier(channels, 256, 47, num_operators=operators, dropout=0.0)
    compiled.load_state_dict(eager.state_dict())
    record = {
        'model': 'SIGNClassifier',
        'nodes': num_nodes,
        'channels': channels,
        'operators': operators,
        'threads': torch.get_num_threads(),
        'graph_breaks': graph_breaks(compiled, xs),
    }
    dynamo.reset()
    runs = {
        'eager': fwd_bwd(eager, (xs,), grad_out, list(eager.parameters())),
        'compiled': fwd_bwd(torch.compile(compiled), (xs,), grad_out, list(compiled.parameters())),
    }
    record['compiled_compile_s'] = round(first_call_s(runs['compiled']), 2)
    record['max_scaled_diff_compiled'] = compare(
        runs['eager'], runs['compiled'], list(eager.parameters()), 'SIGNClassifier'
    )
    timing = time_interleaved(runs, repeat=args.repeat)
    for name, t in timing.items():
        record[f'{name}_s'] = round(t['median_s'], 5)
    record['compiled_vs_eager'] = ratio(timing['eager']['median_s'], timing['compiled']['median_s'])
    return emit(record)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', default='rgcn,sign', help='comma-separated: rgcn, sign')
    parser.add_argument('--graph', default='a', help='benchmarks.rgcn case (a: AIFB-shaped)')
    parser.add_argument('--repeat', type=int, default=5, help='timed rounds (median reported)')
    parser.add_argument('--no-bases', action='store_true', help='skip the basis variant')
    parser.add_argument('--no-pyg-compile', action='store_true', help="skip compiling PyG's")
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    records = []
    cases = [c.strip() for c in args.cases.split(',') if c.strip()]
    for case in cases:
        if case == 'rgcn':
            for bases in [None] if args.no_bases else [None, RGCN_CASES[args.graph]['bases']]:
                records.append(rgcn_case(args.graph, bases, args))
        elif case == 'sign':
            records.append(sign_case(args))
        else:
            parser.error(f'unknown case {case!r}; choose from rgcn, sign')
    return records


if __name__ == '__main__':
    main()
