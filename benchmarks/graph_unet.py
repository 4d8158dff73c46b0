"""graphops GraphUNet / GPool vs PyG GraphUNet / TopKPooling: forward + backward time and peak memory.

Both sides get the same data and the same weights; graphops runs with PyG's tanh gate so the
outputs must agree, and they are checked (outputs and input gradients) before anything is timed.
PyG's GraphUNet always augments (it squares the whole adjacency at every level); graphops computes
only the kept block of the square. One JSON line per case:

    python -m benchmarks.graph_unet [--quick] [--device cpu|cuda] [--threads N] [--plot PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import warnings

import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GraphUNet as PyGGraphUNet
from torch_geometric.nn import TopKPooling

from benchmarks.common import emit, peak_memory, plot_bars, ratio, threads, time_fn
from graphops.datasets import load
from graphops.nn.models.graph_unet import GraphUNet
from graphops.nn.pool.gpool import GPool

warnings.filterwarnings('ignore', message='Sparse')  # torch's beta-state notice for sparse CSR


def mmap_threshold(nbytes: int) -> None:
    """glibc's malloc keeps freed buffers below this size in the heap. A small threshold while
    memory is measured makes every tensor buffer an mmap returned on free, so the sampled RSS
    follows live memory instead of the heap's high-water mark (CPU only; no-op elsewhere)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL('libc.so.6').mallopt(-3, nbytes)  # M_MMAP_THRESHOLD


def copy_weights(ours: GraphUNet, theirs: PyGGraphUNet) -> None:
    with torch.no_grad():
        convs = zip([*ours.down_convs, *ours.up_convs], [*theirs.down_convs, *theirs.up_convs])
        for mine, ref in convs:
            mine.weight.copy_(ref.lin.weight)
            mine.bias.copy_(ref.bias)
        for mine, ref in zip(ours.pools, theirs.pools):
            mine.weight.copy_(ref.select.weight)


def models(case: dict, device: torch.device):
    torch.manual_seed(0)
    if case['component'] == 'GraphUNet':
        kwargs = {'depth': case['depth'], 'pool_ratios': case['pool_ratios']}
        args = (case['in_channels'], case['hidden'], case['out_channels'])
        theirs = PyGGraphUNet(*args, **kwargs)
        ours = GraphUNet(*args, **kwargs, nonlinearity='tanh', augment=True)
        copy_weights(ours, theirs)
    else:
        theirs = TopKPooling(case['in_channels'], ratio=case['pool_ratios'])
        ours = GPool(case['in_channels'], ratio=case['pool_ratios'], nonlinearity='tanh')
        ours.weight.data.copy_(theirs.select.weight.data)
    return ours.to(device), theirs.to(device)


def step_fn(model, data, component: str, x: torch.Tensor):
    """One forward + backward; returns the output and the input gradient."""

    def step():
        x.grad = None
        if component == 'GraphUNet':
            out = model(x, data.edge_index, data.batch)
        else:
            out = model(x, data.edge_index, None, data.batch)[0]
        out.sum().backward()
        return out

    return step


def check(ours_step, theirs_step, ours_x, theirs_x, component: str) -> float:
    out, ref = ours_step(), theirs_step()
    if component == 'TopKPooling':  # PyG orders kept nodes by score, graphops by index
        out = out.sum(0)
        ref = ref.sum(0)
    scale = ref.abs().max().clamp(min=1.0)
    torch.testing.assert_close(out / scale, ref / scale, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours_x.grad, theirs_x.grad, atol=1e-4, rtol=1e-3)
    return float((out - ref).detach().abs().max())


def cases(quick: bool) -> list[dict]:
    cora = load('Cora')[0]
    proteins = load('PROTEINS')
    graphs = proteins[:64] if quick else proteins
    batch = Batch.from_data_list(list(graphs))
    out = []
    for name, data, ratios in (
        ('Cora', cora, [2000 / cora.num_nodes, 0.5]),
        (f'PROTEINS x{len(graphs)} batched', batch, 0.5),
    ):
        base = {'dataset': name, 'num_nodes': data.num_nodes, 'num_edges': data.num_edges}
        out.append(
            {
                **base,
                'component': 'GraphUNet',
                'depth': 2 if quick else 3,
                'hidden': 32,
                'in_channels': data.num_features,
                'out_channels': 7,
                'pool_ratios': ratios,
                'data': data,
            }
        )
        out.append(
            {
                **base,
                'component': 'TopKPooling',
                'in_channels': data.num_features,
                'pool_ratios': 0.5,
                'data': data,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='tiny smoke run')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    parser.add_argument('--repeat', type=int, default=None)
    parser.add_argument('--plot', default=None, help='write a PNG bar chart here')
    args = parser.parse_args()
    device = torch.device(args.device)
    repeat = args.repeat or (2 if args.quick else 7)
    records, measured = [], []
    with threads(args.threads):
        # Every case is checked and timed before any memory is measured: the memory phase changes
        # malloc's mmap threshold for good, which would slow the timings of later cases.
        for case in cases(args.quick):
            if args.threads:  # dataset processing may reset the thread count
                torch.set_num_threads(args.threads)
            data = case.pop('data').to(device)
            if data.batch is None:
                data.batch = torch.zeros(data.num_nodes, dtype=torch.long, device=device)
            ours, theirs = models(case, device)
            # Jitter the features so that no two scores tie: PyG breaks ties arbitrarily (its sort
            # is unstable), graphops by index, and a tie would make the output check meaningless.
            gen = torch.Generator().manual_seed(0)
            noise = 1e-3 * torch.randn(data.x.shape, generator=gen).to(device)
            ours_x = (data.x + noise).requires_grad_()
            theirs_x = (data.x + noise).requires_grad_()
            ours_step = step_fn(ours, data, case['component'], ours_x)
            theirs_step = step_fn(theirs, data, case['component'], theirs_x)
            max_diff = check(ours_step, theirs_step, ours_x, theirs_x, case['component'])
            timings = {}
            # Interleave the two sides so that load from other processes hits both alike.
            for name, step in (('pyg', theirs_step), ('graphops', ours_step)) * 2:
                t = time_fn(step, repeat=repeat // 2 + 1, warmup=1, device=device)
                timings.setdefault(name, []).append(t['median_s'])
            measured.append((case, ours_step, theirs_step, max_diff, timings))
        mmap_threshold(64 * 1024)
        for case, ours_step, theirs_step, max_diff, timings in measured:
            pyg_peak = peak_memory(theirs_step, device)
            ours_peak = peak_memory(ours_step, device)
            pyg_s, ours_s = min(timings['pyg']), min(timings['graphops'])
            record = {
                'case': f'{case["component"]} {case["dataset"]}',
                **{k: v for k, v in case.items() if k != 'dataset'},
                'dataset': case['dataset'],
                'device': str(device),
                'threads': torch.get_num_threads(),
                'check_max_abs_diff': max_diff,
                'pyg_fwd_bwd_s': round(pyg_s, 5),
                'graphops_fwd_bwd_s': round(ours_s, 5),
                'speedup': ratio(pyg_s, ours_s),
                'pyg_peak_bytes': pyg_peak,
                'graphops_peak_bytes': ours_peak,
                'memory_ratio': round(pyg_peak / ours_peak, 3) if ours_peak > 0 else None,
            }
            records.append(emit(record))
        mmap_threshold(128 * 1024)  # glibc's default
    if args.plot:
        plot_bars(
            records,
            args.plot,
            label_key='case',
            value_keys=['pyg_fwd_bwd_s', 'graphops_fwd_bwd_s'],
            title=f'Graph U-Net forward + backward ({args.device})',
            log=True,
        )


if __name__ == '__main__':
    main()
