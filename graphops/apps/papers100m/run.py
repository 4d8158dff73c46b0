"""The ogbn-papers100M pipeline end to end: precompute, then train (MLP-only vs SIGN).

    graphops-papers100m run                      # synthetic default, minutes on a CPU
    graphops-papers100m run --dataset ogbn-papers100M --root DIR   # the real data
    graphops-papers100m run --config sign_xl --cfg-options train.runs=3

Runs each stage in its own process (``graphops.apps.papers100m.precompute``, then
``graphops.apps.papers100m.train``) with the same options, so each reports its own peak memory and a
crash in one leaves the other's outputs intact. Both stages are idempotent and resume after a
kill, so re-running this command finishes an interrupted pipeline and otherwise only reprints the
results. At the end it prints the MLP-only vs SIGN table, the wall time of the whole pipeline, and
where ``summary.json`` and ``curves.png`` are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from graphops.apps.papers100m import precompute as pc
from graphops.apps.papers100m.config import parse_command


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    config, _ = parse_command(argv, 'run', __doc__.split('\n\n')[0])
    stage = pc.Stage.from_config(config)

    precompute_reused = stage.is_complete()
    start = time.perf_counter()
    for module in ('precompute', 'train'):
        command = [
            sys.executable,
            '-m',
            f'graphops.apps.papers100m.{module}',
            *argv,
        ]  # same options

        print(f'\n=== {module}: {" ".join(command[1:])}', flush=True)
        completed = subprocess.run(command, check=False)
        if completed.returncode != 0:
            raise SystemExit(
                f'the {module} stage failed (exit code {completed.returncode}); fix the cause '
                'above and run the same command again: finished work is reused'
            )
    wall = time.perf_counter() - start

    summary_path = stage.runs_dir / 'summary.json'
    summary = json.loads(summary_path.read_text())
    precompute = json.loads((stage.store_dir / pc.PRECOMPUTE_FILE).read_text())
    summary['pipeline'] = {
        'wall_time_s': wall,
        'generate_time_s': precompute.get('generate_time_s'),
        'load_time_s': precompute.get('load_time_s'),
        'precompute_time_s': precompute['precompute_time_s'],
        'precompute_peak_rss_bytes': precompute['peak_rss_bytes'],
        'precompute_reused': precompute_reused,
        'note': 'wall_time_s is this invocation; finished stages and runs are reused, not redone',
    }
    pc.atomic_write_json(summary, summary_path)
    variants = summary['variants']
    if 'mlp' in variants and 'sign' in variants:
        gain = 100 * (variants['sign']['test_acc_mean'] - variants['mlp']['test_acc_mean'])
        print(f'\nSIGN operators vs MLP on the raw features: {gain:+.2f} test accuracy points')
    reused = ' (FeatureStore reused)' if precompute_reused else ''
    print(
        f'this invocation took {wall / 60:.1f} min{reused}; precompute stage '
        f'{precompute["precompute_time_s"]:.0f} s, dataset load {precompute["load_time_s"]:.0f} s'
        f'\nresults: {summary_path}\nlearning curves: {stage.runs_dir / "curves.png"}',
        flush=True,
    )
    return summary


if __name__ == '__main__':
    main()
