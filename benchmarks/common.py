"""Benchmark utilities shared by every script in benchmarks/: timing, peak memory, JSON lines, plots.

Scripts import this module (``from common import ...`` when run as ``python benchmarks/x.py``, or
``from benchmarks.common import ...``); nothing here is copied into a script.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

import torch

# Shared with the packaged pipeline, defined once there.
from graphops.apps.runtime import process_peak_rss_bytes, threads  # noqa: F401


def synchronize(device: torch.device | str | None = None) -> None:
    if device is not None and torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], object],
    *,
    repeat: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
    min_time: float = 0.0,
) -> dict:
    """Median/min/mean seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs.

    ``min_time`` keeps repeating (beyond ``repeat``) until that much time has been spent, which
    steadies sub-millisecond cases.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    spent = 0.0
    while len(times) < repeat or spent < min_time:
        start = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return {
        'median_s': statistics.median(times),
        'min_s': min(times),
        'mean_s': statistics.fmean(times),
        'runs': len(times),
    }


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeat: int = 5,
    device: torch.device | str | None = None,
) -> dict[str, dict]:
    """Times several contenders in rounds (each runs once per round, in turn) after one warm-up
    run each, so a burst of load from a neighbour on a shared machine hits all of them rather
    than whichever happened to be running. Per name: ``median_s``, ``min_s``, ``cpu_s`` (median
    process CPU seconds, all threads) and ``peak_bytes`` (peak memory of the warm-up run)."""
    walls: dict[str, list[float]] = {name: [] for name in fns}
    cpus: dict[str, list[float]] = {name: [] for name in fns}
    peaks: dict[str, int] = {}
    for name, fn in fns.items():
        gc.collect()
        with PeakMemory(device or 'cpu') as meter:
            fn()
            synchronize(device)
        peaks[name] = meter.peak_bytes
    for _ in range(repeat):
        for name, fn in fns.items():
            cpu_start, start = time.process_time(), time.perf_counter()
            fn()
            synchronize(device)
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(time.process_time() - cpu_start)
    return {
        name: {
            'median_s': statistics.median(walls[name]),
            'min_s': min(walls[name]),
            'cpu_s': statistics.median(cpus[name]),
            'peak_bytes': peaks[name],
        }
        for name in fns
    }


def _release_free_heap() -> None:
    """Hands memory the allocator holds but does not use back to the OS (glibc ``malloc_trim``).

    Without it, a block that reuses memory freed by an earlier run (a warm-up call, another
    contender) shows almost no RSS growth: the same work measured 4 KiB after a warm-up.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS growth is then a lower bound
        pass


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakMemory:
    """Peak memory of a block above its starting point.

    On CUDA: ``torch.cuda.max_memory_allocated``. On CPU: resident set size sampled by a thread
    every ``interval`` seconds, above a baseline taken after the allocator's free memory went back
    to the OS (the allocator's peak between samples can be missed, so blocks
    should run at least tens of milliseconds; ``run`` repeats short ones).
    """

    def __init__(self, device: torch.device | str = 'cpu', interval: float = 0.0005):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_heap()
        self._base = _rss_bytes()
        self._peak = self._base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, _rss_bytes())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.peak_bytes = self._peak - self._base


def peak_memory(fn: Callable[[], object], device: torch.device | str = 'cpu') -> int:
    """Peak bytes above baseline while running ``fn()`` once (after a warm-up call)."""
    fn()
    with PeakMemory(device) as meter:
        fn()
    return meter.peak_bytes


def emit(record: dict, file=None) -> dict:
    """Prints one JSON line (the benchmarks' output format) and returns the record."""
    print(json.dumps(record, sort_keys=False), file=file or sys.stdout, flush=True)
    return record


def ratio(baseline_s: float, ours_s: float) -> float:
    """Speed-up of ours over the baseline (> 1 means ours is faster)."""
    return round(baseline_s / ours_s, 3) if ours_s > 0 else float('inf')


def plot_bars(
    records: list[dict],
    path: str,
    *,
    label_key: str,
    value_keys: list[str],
    title: str,
    ylabel: str = 'seconds (median)',
    log: bool = False,
) -> None:
    """A grouped bar chart: one group per record (``label_key``), one bar per ``value_keys``."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels = [str(r[label_key]) for r in records]
    width = 0.8 / max(len(value_keys), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(labels) + 2), 4))
    for k, key in enumerate(value_keys):
        xs = [i + k * width for i in range(len(labels))]
        ys = [r.get(key) or 0.0 for r in records]
        ax.bar(xs, ys, width=width, label=key)
    ax.set_xticks([i + width * (len(value_keys) - 1) / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=20, ha='right')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale('log')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
