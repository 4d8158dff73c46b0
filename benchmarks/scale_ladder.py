"""The out-of-core scale ladder: SyntheticPapers at growing N through generate -> convert ->
precompute under one memory budget, each stage in its own process (its peak RSS measured there).

    python -m benchmarks.scale_ladder --nodes 1000000 4000000 --root /work/scratch/ladder
    python -m benchmarks.scale_ladder --plot     # PNG + the README table from the JSON

Each rung: ``SyntheticPapers(N, 128 features, 14.5 references a node, label_fraction 0.014)``
written in ogb's papers100M layout; :meth:`ConvertedDataset.convert` with the SIGN authors' three
operators (undirected DropEdge 0.4, directed and transposed 0.2); the raw ``data.npz`` is then
deleted (the converted arrays replace it); :func:`precompute_out_of_core` of 3 operators x 3 hops
for the labelled rows, budget 4 GiB. The rung's folder is deleted before the next rung starts.
Results are appended to ``benchmarks/papers100m/scale_ladder.json`` (one record per rung).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / 'papers100m' / 'scale_ladder.json'
PNG = HERE / 'papers100m' / 'scale_ladder.png'
GIB = 1 << 30
OPERATORS = [
    (
        {
            'prefix': 'undirected',
            'direction': 'symmetric',
            'norm': 'sym',
            'remove_self_loops': True,
            'add_self_loops': True,
        },
        0.4,
    ),
    (
        {'prefix': 'directed', 'direction': 'transposed', 'norm': 'rw', 'remove_self_loops': True},
        0.2,
    ),
    (
        {'prefix': 'transposed', 'direction': 'directed', 'norm': 'rw', 'remove_self_loops': True},
        0.2,
    ),
]
HOPS = 3
PAPERS = {'num_nodes': 111_059_956, 'num_edges': 1_615_685_872, 'num_features': 128}


def peak_rss() -> dict:
    """This process's peak resident memory: ``ru_maxrss`` and ``VmHWM`` (bytes)."""
    hwm = None
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                hwm = int(line.split()[1]) * 1024
    return {'ru_maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'vm_hwm': hwm}


def storage_io() -> dict:
    """This process's bytes through storage so far (``/proc/self/io``: ``read_bytes`` and
    ``write_bytes`` reached the block device; ``rchar``/``wchar`` include the page cache)."""
    with open('/proc/self/io') as io:
        return {key: int(value) for key, value in (line.split(':') for line in io)}


def thp_counts() -> dict:
    """Transparent huge page faults served and fallen back to 4 KiB pages (``/proc/vmstat``,
    machine-wide): a product gathering from a state that fell back misses the TLB far more."""
    with open('/proc/vmstat') as vmstat:
        pairs = (line.split() for line in vmstat)
        return {k: int(v) for k, v in pairs if k in ('thp_fault_alloc', 'thp_fault_fallback')}


def operators():
    from graphops.transforms.adjacency import Adjacency

    return [(Adjacency(HOPS, **params), rate) for params, rate in OPERATORS]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob('*') if p.is_file())


# --- the stages, each run in a child process -------------------------------------------------------


def stage_generate(rung: Path, num_nodes: int) -> dict:
    from graphops.datasets.synthetic_papers import SyntheticPapers

    start = time.perf_counter()
    graph = SyntheticPapers(num_nodes, num_features=128, label_fraction=0.014, seed=0)
    folder = graph.write_ogb(rung / 'data')
    seconds = time.perf_counter() - start
    return {
        'seconds': seconds,
        'num_edges': graph.num_edges,
        'raw_bytes': dir_bytes(folder / 'raw'),
        **peak_rss(),
    }


def stage_convert(rung: Path, budget: int) -> dict:
    from graphops.precompute.converted_dataset import ConvertedDataset

    start = time.perf_counter()
    ConvertedDataset.convert(
        rung / 'data' / 'ogbn_papers100M', rung / 'converted', operators(), budget, seed=0
    )
    seconds = time.perf_counter() - start
    manifest = json.loads((rung / 'converted' / 'manifest.json').read_text())
    return {
        'seconds': seconds,
        'bytes_read': manifest['bytes_read'],
        'bytes_written': manifest['bytes_written'],
        'timings_s': manifest['timings_s'],
        'converted_bytes': dir_bytes(rung / 'converted'),
        **peak_rss(),
    }


def stage_precompute(rung: Path, budget: int) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from graphops.precompute.converted_dataset import ConvertedDataset
    from graphops.precompute.out_of_core import precompute_out_of_core

    split = rung / 'data' / 'ogbn_papers100M' / 'split' / 'time'
    rows = np.concatenate(
        [
            pd.read_csv(split / f'{name}.csv.gz', header=None).values[:, 0]
            for name in ('train', 'valid', 'test')
        ]
    )
    rows = torch.from_numpy(rows.astype(np.int64))
    dataset = ConvertedDataset(rung / 'converted')
    parts: dict[float, list] = {}
    for op, rate in operators():
        parts.setdefault(rate, []).append(op)
    start = time.perf_counter()
    io_before, thp_before = storage_io(), thp_counts()
    stats = []
    for index, (rate, ops) in enumerate(parts.items()):
        record: dict = {}
        precompute_out_of_core(
            dataset,
            ops,
            rung / 'store' / f'part{index}',
            memory_budget_bytes=budget,
            dropedge=rate,
            seed=0,
            rows=rows,
            include_input=index == 0,
            stats=record,
        )
        stats.append(record)
    seconds = time.perf_counter() - start
    io = {key: value - io_before[key] for key, value in storage_io().items()}
    entries = sum(sum(s['nnz']) for s in stats)
    phases: dict[str, float] = {}
    for s in stats:
        for key, value in s['seconds'].items():
            phases[key] = phases.get(key, 0.0) + value
    return {
        'seconds': seconds,
        'num_rows': int(rows.numel()),
        'matrix_entries': entries,
        'entry_hops_per_s': entries * HOPS / seconds,
        'bytes_read': sum(s['bytes_read_features'] + s['bytes_read_matrices'] for s in stats),
        'bytes_spilled': sum(s['bytes_spilled'] for s in stats),
        'slices': [s['slices'] for s in stats],
        'slice_width': [s['slice_width'] for s in stats],
        'row_blocks': [s['row_blocks'] for s in stats],
        'store_bytes': dir_bytes(rung / 'store'),
        'phase_seconds': phases,
        'storage_read_bytes': io['read_bytes'],
        'storage_write_bytes': io['write_bytes'],
        'thp': {key: value - thp_before[key] for key, value in thp_counts().items()},
        'threads': torch.get_num_threads(),
        **peak_rss(),
    }


def child(stage: str, rung: Path, value: int, out: Path) -> None:
    result = {'generate': stage_generate, 'convert': stage_convert, 'precompute': stage_precompute}[
        stage
    ](rung, value)
    out.write_text(json.dumps(result))


def run_stage(stage: str, rung: Path, value: int) -> dict:
    out = rung / f'.{stage}.json'
    command = [
        sys.executable,
        '-m',
        'benchmarks.scale_ladder',
        '--child',
        stage,
        '--rung',
        str(rung),
        '--value',
        str(value),
        '--child-out',
        str(out),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    result = json.loads(out.read_text())
    result['wall_s'] = time.perf_counter() - started
    print(
        f'  {stage}: {result["seconds"]:.1f}s, peak RSS {result["vm_hwm"] / GIB:.2f} GiB',
        flush=True,
    )
    return result


def converted_complete(rung: Path) -> bool:
    manifest = rung / 'converted' / 'manifest.json'
    return manifest.is_file() and bool(json.loads(manifest.read_text()).get('complete'))


def run_rung(root: Path, num_nodes: int, budget: int, keep: bool = False) -> dict:
    """One rung: generate, convert, precompute. ``keep``: leave the rung's folder in place and
    reuse its finished generate and convert stages (their recorded results), so the precompute
    can be measured again on the same converted arrays."""
    rung = root / f'n{num_nodes}'
    if rung.exists() and not keep:
        shutil.rmtree(rung)
    rung.mkdir(parents=True, exist_ok=True)
    print(f'rung N={num_nodes:,} (budget {budget / GIB:.1f} GiB) in {rung}', flush=True)
    record = {
        'num_nodes': num_nodes,
        'budget_bytes': budget,
        'date': time.strftime('%Y-%m-%d'),
        'cpu_count': os.cpu_count(),
    }
    raw = rung / 'data' / 'ogbn_papers100M' / 'raw' / 'data.npz'
    try:
        for stage, value in (('generate', num_nodes), ('convert', budget)):
            done = rung / f'.{stage}.json'
            if keep and done.is_file() and converted_complete(rung):
                record[stage] = json.loads(done.read_text())
                print(f'  {stage}: reused', flush=True)
            else:
                record[stage] = run_stage(stage, rung, value)
            if stage == 'generate':
                record['num_edges'] = record['generate']['num_edges']
        raw.unlink(missing_ok=True)  # converted: not needed
        shutil.rmtree(rung / 'store', ignore_errors=True)
        record['precompute'] = run_stage('precompute', rung, budget)
        record['disk_peak_bytes'] = (
            record['generate']['raw_bytes'] + record['convert']['converted_bytes']
        )
    finally:
        if not keep:
            shutil.rmtree(rung, ignore_errors=True)  # the next rung starts on a clean disk
    return record


def save(record: dict, path: Path = RESULTS) -> None:
    records = json.loads(path.read_text()) if path.is_file() else []
    records = [r for r in records if r['num_nodes'] != record['num_nodes']] + [record]
    records.sort(key=lambda r: r['num_nodes'])
    path.write_text(json.dumps(records, indent=1) + '\n')


# --- projection, plot and table ------------------------------------------------------------------------


def linear_fit(records: list[dict], stage: str, x_key: str = 'num_nodes') -> tuple[float, float]:
    """``(a, b)`` of ``peak RSS = a + b x`` through the two largest rungs."""
    (r0, r1) = sorted(records, key=lambda r: r[x_key])[-2:]
    b = (r1[stage]['vm_hwm'] - r0[stage]['vm_hwm']) / (r1[x_key] - r0[x_key])
    return r1[stage]['vm_hwm'] - b * r1[x_key], b


def projection(records: list[dict], pcie_gb_s: float = 25.0, disk_gb_s: float = 3.0) -> dict:
    """papers100M (111M nodes, 1.6B edges) from the measured rungs, for a 32 GiB budget.

    * CPU time: the largest rung's seconds per edge (convert, precompute) times 1.6B edges.
    * Host RAM, precompute: the budget plus what the largest rung used above its own budget
      (nothing when it stayed below it) plus 12 bytes a node the app holds beside the stage
      (labels and the kept rows' ids, generously).
    * Host RAM, convert: the line through the two largest rungs' peaks (it holds per-node degree
      counts), at 111M nodes.
    * GPU (assumed, not measured): the matrices streamed over PCIe at ``pcie_gb_s`` once per slice
      and hop, with the slices an 80 GB GPU allows; and the same bytes read from a disk at
      ``disk_gb_s`` when the page cache cannot hold them.
    """
    big = max(records, key=lambda r: r['num_nodes'])
    n, e = PAPERS['num_nodes'], PAPERS['num_edges']
    scale = e / big['num_edges']
    budget = 32 * GIB
    excess = max(0, big['precompute']['vm_hwm'] - big['budget_bytes'])
    host_precompute = budget + excess + 12 * n
    a, b = linear_fit(records, 'convert')
    host_convert = a + b * n
    # the plan out_of_core.plan_budget would make: the row-block buffers take 1/32 of the budget
    from graphops.precompute.converted_dataset import block_nnz_for
    from graphops.precompute.out_of_core import plan_columns, read_chunk_bytes

    labelled = 1_546_782
    block_rows = block_nnz_for(budget) * n // e
    fixed = budget // 32 + 8 * labelled + read_chunk_bytes(budget)
    ops = [op for op, _ in operators()]
    shape = (n, PAPERS['num_features'], block_rows, labelled, 4)
    cpu_slices, _, cpu_spill = plan_columns(ops, *shape, budget - fixed, 'cpu')
    gpu_slices = len(plan_columns(ops, *shape, 70 * GIB, 'cuda')[0])  # an 80 GB GPU's memory
    entries = big['precompute']['matrix_entries'] * scale
    matrix_bytes = entries * 8  # int32 column + float32 value
    pcie_bytes = matrix_bytes * HOPS * gpu_slices + 4 * n * PAPERS['num_features']
    return {
        'from_rung': big['num_nodes'],
        'edge_scale': scale,
        'budget_bytes': budget,
        'precompute_excess_bytes_at_rung': excess,
        'host_ram_precompute_bytes': host_precompute,
        'host_ram_convert_bytes': host_convert,
        'cpu_slices': len(cpu_slices),
        'cpu_spill': cpu_spill,
        'convert_s': big['convert']['seconds'] * scale,
        'precompute_cpu_s': big['precompute']['seconds'] * scale,
        'matrix_bytes': matrix_bytes,
        'gpu_slices': gpu_slices,
        'pcie_gb_s': pcie_gb_s,
        'disk_gb_s': disk_gb_s,
        'gpu_stream_bytes': pcie_bytes,
        'precompute_gpu_pcie_s': pcie_bytes / (pcie_gb_s * 1e9),
        'precompute_gpu_disk_s': pcie_bytes / (disk_gb_s * 1e9),
    }


def plot(records: list[dict], path: Path = PNG) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    edges = [r['num_edges'] / 1e6 for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for stage, marker in (('generate', 's'), ('convert', 'o'), ('precompute', '^')):
        left.plot(edges, [r[stage]['seconds'] for r in records], marker=marker, label=stage)
    left.set_xlabel('edges (millions)')
    left.set_ylabel('seconds')
    left.set_title('time per stage (measured, 2-core CPU)')
    left.legend()
    for stage, marker in (('generate', 's'), ('convert', 'o'), ('precompute', '^')):
        right.plot(
            edges,
            [r[stage]['vm_hwm'] / GIB for r in records],
            marker=marker,
            label=f'{stage} peak RSS',
        )
    right.plot(
        edges, [r['num_nodes'] * 128 * 4 / GIB for r in records], 'k:', label='features (float32)'
    )
    right.axhline(records[0]['budget_bytes'] / GIB, color='grey', ls='--', label='budget')
    right.axhline(
        records[0]['budget_bytes'] / GIB + 1, color='red', ls='--', label='budget + 1 GiB'
    )
    right.set_xlabel('edges (millions)')
    right.set_ylabel('GiB')
    right.set_title('peak resident memory (measured)')
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(records: list[dict]) -> str:
    lines = [
        '| N | E | kind | generate (s) | convert (s) | precompute (s) | precompute s / M edges '
        '| entry-hops/s | precompute peak RSS | convert peak RSS | bytes read (precompute) '
        '| bytes staged on disk | slices x width |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in records:
        p, c = r['precompute'], r['convert']
        lines.append(
            f'| {r["num_nodes"] / 1e6:.0f}M | {r["num_edges"] / 1e6:.0f}M | measured '
            f'| {r["generate"]["seconds"]:.0f} | {c["seconds"]:.0f} | {p["seconds"]:.0f} '
            f'| {p["seconds"] / (r["num_edges"] / 1e6):.3f} | {p["entry_hops_per_s"] / 1e6:.0f}M '
            f'| {p["vm_hwm"] / GIB:.2f} GiB | {c["vm_hwm"] / GIB:.2f} GiB '
            f'| {p["bytes_read"] / 1e9:.1f} GB | {p.get("bytes_spilled", 0) / 1e9:.1f} GB '
            f'| {p["slices"][0]} x {p["slice_width"][0]} |'
        )
    proj = projection(records)
    lines.append(
        f'| 111M | 1616M | **projected**, CPU, 32 GiB budget | – '
        f'| {proj["convert_s"]:.0f} | {proj["precompute_cpu_s"]:.0f} | – | – '
        f'| {proj["host_ram_precompute_bytes"] / GIB:.1f} GiB '
        f'| {proj["host_ram_convert_bytes"] / GIB:.1f} GiB | – | – | {proj["cpu_slices"]} slices |'
    )
    lines.append(
        f'| 111M | 1616M | **projected**, PCIe-fed GPU (assumed {proj["pcie_gb_s"]:.0f} GB/s; '
        f'{proj["disk_gb_s"]:.0f} GB/s disk) | – | – '
        f'| {proj["precompute_gpu_pcie_s"]:.0f} (PCIe-bound) / '
        f'{proj["precompute_gpu_disk_s"]:.0f} (disk-bound) | – | – '
        f'| {proj["host_ram_precompute_bytes"] / GIB:.1f} GiB | – '
        f'| {proj["gpu_stream_bytes"] / 1e9:.0f} GB streamed | – | {proj["gpu_slices"]} slices |'
    )
    return '\n'.join(lines), proj


PHASES = ('read_features', 'wait', 'product', 'stage_write', 'stage_read', 'store_write')


def phases_table(records: list[dict]) -> str:
    """Where each rung's precompute time went (``stats['seconds']``), in ns per edge."""
    lines = [
        '| N | slices x width | '
        + ' | '.join(PHASES)
        + ' | other | total | disk read (GB) | THP faults (fell back) |',
        '|---' * (len(PHASES) + 6) + '|',
    ]
    for r in records:
        p = r['precompute']
        seconds = p.get('phase_seconds')
        if not seconds:
            continue
        per_edge = 1e9 / r['num_edges']
        other = seconds['total'] - sum(seconds[k] for k in PHASES)
        thp = p.get('thp', {})
        lines.append(
            f'| {r["num_nodes"] / 1e6:.0f}M | {p["slices"][0]} x {p["slice_width"][0]} | '
            + ' | '.join(f'{seconds[k] * per_edge:.0f}' for k in PHASES)
            + f' | {other * per_edge:.0f} | {seconds["total"] * per_edge:.0f} '
            f'| {p["storage_read_bytes"] / 1e9:.1f} '
            f'| {thp.get("thp_fault_alloc", 0)} ({thp.get("thp_fault_fallback", 0)}) |'
        )
    return '\n'.join(lines)


def replace_between(doc: str, start: str, end: str, text: str) -> str:
    head, rest = doc.split(start, 1)
    first_line, _ = rest.split('\n', 1)
    _, tail = rest.split(end, 1)
    return f'{head}{start}{first_line}\n{text}\n{end}{tail}'


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--nodes', type=int, nargs='*', default=[])
    parser.add_argument('--root', type=Path, default=Path('/work/scratch/ladder'))
    parser.add_argument('--budget', type=int, default=4 * GIB)
    parser.add_argument('--plot', action='store_true')
    parser.add_argument(
        '--keep', action='store_true', help='keep each rung folder; reuse its generate/convert'
    )
    parser.add_argument('--child')
    parser.add_argument('--rung', type=Path)
    parser.add_argument('--value', type=int)
    parser.add_argument('--child-out', type=Path)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.rung, args.value, args.child_out)
        return
    for num_nodes in args.nodes:
        record = run_rung(args.root, num_nodes, args.budget, args.keep)
        save(record)
        print(json.dumps({k: record[k] for k in ('num_nodes', 'num_edges')}), flush=True)
    if args.plot:
        records = json.loads(RESULTS.read_text())
        plot(records)
        text, proj = table(records)
        print(text)
        phases = phases_table(records)
        print(phases)
        readme = HERE / 'papers100m' / 'README.md'
        doc = replace_between(
            readme.read_text(), '<!-- ladder table', '<!-- /ladder table -->', text
        )
        if '<!-- ladder phases' in doc:
            doc = replace_between(doc, '<!-- ladder phases', '<!-- /ladder phases -->', phases)
        readme.write_text(doc)
        print(json.dumps(proj, indent=1))


if __name__ == '__main__':
    main()
