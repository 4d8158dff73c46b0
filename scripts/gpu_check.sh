#!/usr/bin/env bash
# The CUDA path, checked in one command:  bash scripts/gpu_check.sh
#
# Meant for a machine with a CUDA GPU and torch + PyG preinstalled (the device image: torch 2.11,
# PyG 2.8, no torch_sparse; torch 2.13 works too). It installs nothing. Within about 8 minutes
# (GPU_CHECK_BUDGET_S, default 460 s; every step has its own time cap inside it) it:
#   1. runs every gpu-marked test (pytest -m gpu): each public entry point's CUDA output (and
#      gradients) against CPU, the precompute engine on the device;
#   2. precomputes a 10M-node SyntheticPapers on the GPU (benchmarks.sign_precompute case b:
#      symmetrised, Adjacency(3), labelled rows, float16, 8 GiB column budget);
#   3. runs the SIGN benchmark's CUDA case (a): SIGN per hop against PyG's T.SIGN on CUDA and one
#      hop against torch.sparse.mm, after checking they agree;
#   4. runs the RGCNConv benchmark on CUDA against PyG's RGCNConv and FastRGCNConv;
# and writes a JSON summary to $OUT/gpu_check.json (./gpu_check_out/ without $OUT), with each
# step's log beside it. Exit status 0 when no step that ran failed or timed out.
#
# Without CUDA the CUDA parts are skipped (recorded with the reason) and step 1 runs the same
# tests with the device switched to CPU (GRAPHOPS_TEST_DEVICE=cpu). GPU_CHECK_CPU_SMOKE=1 also
# runs steps 2-4 in their --quick sizes on the CPU, to check this script's plumbing; their
# figures are then CPU figures (marked "smoke": true) and say nothing about a GPU.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${OUT:-$repo/gpu_check_out}"
mkdir -p "$out"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" - "$out" <<'PY'
import contextlib
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

out = Path(sys.argv[1])
started = time.monotonic()
budget = float(os.environ.get('GPU_CHECK_BUDGET_S', '460'))
smoke = os.environ.get('GPU_CHECK_CPU_SMOKE') == '1'
python = sys.executable


def environment() -> dict:
    import importlib.util

    import torch

    info = {
        'python': sys.version.split()[0],
        'torch': torch.__version__,
        'torch_cuda': torch.version.cuda,
        'cuda_available': torch.cuda.is_available(),
    }
    for name in ('torch_geometric', 'numba', 'torch_sparse', 'torch_scatter', 'pytest', 'scipy'):
        spec = importlib.util.find_spec(name)
        if spec is None:
            info[name] = None
            continue
        try:
            module = __import__(name)
            info[name] = getattr(module, '__version__', 'installed')
        except Exception as err:  # noqa: BLE001 - a broken optional package is worth reporting
            info[name] = f'import failed: {err}'
    if info['cuda_available']:
        props = torch.cuda.get_device_properties(0)
        info['gpu'] = props.name
        info['gpu_memory_bytes'] = props.total_memory
        info['gpu_capability'] = f'{props.major}.{props.minor}'
        info['gpu_count'] = torch.cuda.device_count()
    return info


def remaining() -> float:
    return budget - (time.monotonic() - started)


def run_step(name: str, cmd: list[str], cap: float, env: dict | None = None) -> dict:
    """Runs ``cmd`` with a timeout of ``cap`` seconds (less when the budget runs out); its output
    goes to ``<out>/<name>.log``; JSON lines on its stdout are collected as records."""
    limit = min(cap, remaining() - 5)
    log = out / f'{name}.log'
    step = {'command': ' '.join(cmd), 'log': log.name, 'cap_s': cap}
    if limit < 10:
        return {**step, 'status': 'timeout', 'reason': 'no time left in the budget'}
    print(f'gpu_check: {name} (at most {limit:.0f} s): {step["command"]}', flush=True)
    begin = time.monotonic()
    with open(log, 'w') as handle:
        try:
            proc = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=limit,
                env={**os.environ, **(env or {})},
            )
            output, code, status = proc.stdout, proc.returncode, None
        except subprocess.TimeoutExpired as err:
            output = err.stdout if isinstance(err.stdout, str) else (err.stdout or b'').decode()
            code, status = None, 'timeout'
        handle.write(output)
    step['seconds'] = round(time.monotonic() - begin, 1)
    step['returncode'] = code
    step['status'] = status or ('passed' if code == 0 else 'failed')
    records = []
    for line in output.splitlines():
        if line.startswith('{'):
            with contextlib.suppress(json.JSONDecodeError):  # a line that only looks like JSON
                records.append(json.loads(line))
    if records:
        step['records'] = records
    if step['status'] != 'passed':
        step['tail'] = output.splitlines()[-15:]
    print(f'gpu_check: {name}: {step["status"]} in {step["seconds"]} s', flush=True)
    return step


def junit_counts(path: Path) -> dict:
    if not path.is_file():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else list(root.iter('testsuite'))
    counts = dict.fromkeys(('tests', 'failures', 'errors', 'skipped'), 0)
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    counts['passed'] = counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped']
    counts['not_passed'] = [
        f'{case.get("classname")}::{case.get("name")}'
        for case in root.iter('testcase')
        if case.find('failure') is not None or case.find('error') is not None
    ]
    return counts


def figures(steps: dict) -> dict:
    """The measured numbers worth quoting, by step (each straight from a record)."""
    picked: dict = {}
    for record in steps.get('papers_10m', {}).get('records', []):
        picked['papers_10m'] = {
            key: record.get(key)
            for key in (
                'device',
                'nodes',
                'nnz',
                'labelled_rows',
                'generate_s',
                'precompute_s',
                'per_hop_s',
                'slices',
                'slice_width',
                'matrix_bytes',
                'cuda_slice_working_bytes',
                'cuda_working_under_budget',
                'column_budget_bytes',
            )
        }
    for record in steps.get('sign_bench', {}).get('records', []):
        op = record.get('op') or record.get('check')
        picked.setdefault('sign_bench', {})[op] = {
            key: value
            for key, value in record.items()
            if key.endswith('_s') or key.startswith('ratio_vs') or key.startswith('max_abs')
        }
    for record in steps.get('rgcn_bench', {}).get('records', []):
        picked.setdefault('rgcn_bench', {})[record.get('label')] = {
            key: record.get(key)
            for key in (
                'device',
                'nodes',
                'edges',
                'relations',
                'graphops_s',
                'pyg_s',
                'pyg_fast_s',
                'speedup_vs_pyg',
                'speedup_vs_pyg_fast',
                'max_scaled_diff',
                'graphops_peak_mb',
                'pyg_peak_mb',
            )
        }
    return picked


env_info = environment()
cuda = bool(env_info['cuda_available'])
summary = {
    'check': 'scripts/gpu_check.sh (issue 18: the CUDA path)',
    'started_utc': datetime.now(timezone.utc).isoformat(timespec='seconds'),
    'budget_s': budget,
    'environment': env_info,
    'cuda': cuda,
    'smoke_on_cpu': smoke and not cuda,
    'steps': {},
}
steps = summary['steps']

# 1. every gpu-marked test (on CUDA; without it the same tests on the CPU)
device = 'cuda' if cuda else 'cpu'
xml = out / 'pytest_gpu.xml'
if env_info['pytest'] is None:
    steps['pytest_gpu'] = {'status': 'failed', 'reason': 'pytest is not installed'}
else:
    steps['pytest_gpu'] = run_step(
        'pytest_gpu',
        [
            python,
            '-m',
            'pytest',
            '-m',
            'gpu',
            '-q',
            '-p',
            'no:cacheprovider',
            '-rfEs',
            '--continue-on-collection-errors',
            f'--junitxml={xml}',
            'tests',
        ],
        cap=140,
        env={'GRAPHOPS_TEST_DEVICE': device},
    )
    steps['pytest_gpu']['device'] = device
    steps['pytest_gpu'].update(junit_counts(xml))

# 2-4. the benchmarks' CUDA cases
if cuda:
    bench_device, quick = ['--device', 'cuda'], []
elif smoke:
    bench_device, quick = ['--device', 'cpu'], ['--quick']
else:
    bench_device = None
reason = 'no CUDA device (GPU_CHECK_CPU_SMOKE=1 runs a CPU smoke of this step)'
plan = [
    (
        'papers_10m',
        [
            '-m',
            'benchmarks.sign_precompute',
            '--cases',
            'b',
            '--papers-nodes',
            '10000000',
            '--budget-mb',
            '8192',
            '--no-progress',
        ],
        180,
    ),
    (
        'sign_bench',
        [
            '-m',
            'benchmarks.sign_precompute',
            '--cases',
            'a',
            '--nodes',
            '1000000',
            '--edges',
            '10000000',
            '--features',
            '128',
            '--repeat',
            '3',
            '--no-progress',
        ],
        75,
    ),
    ('rgcn_bench', ['-m', 'benchmarks.rgcn', '--cases', 'a,b,c', '--repeat', '3'], 55),
]
for name, args, cap in plan:
    if bench_device is None:
        steps[name] = {'status': 'skipped', 'reason': reason}
        continue
    steps[name] = run_step(name, [python, *args, *bench_device, *quick], cap)
    steps[name]['smoke'] = not cuda

summary['figures'] = figures(steps)
summary['wall_s'] = round(time.monotonic() - started, 1)
ran = [step for step in steps.values() if step['status'] != 'skipped']
summary['ok'] = all(step['status'] == 'passed' for step in ran)
(out / 'gpu_check.json').write_text(json.dumps(summary, indent=1, default=str) + '\n')
states = ', '.join(f'{name} {step["status"]}' for name, step in steps.items())
print(f'gpu_check: {states}; summary in {out / "gpu_check.json"}', flush=True)
sys.exit(0 if summary['ok'] else 1)
PY
