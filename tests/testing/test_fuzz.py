"""Fuzz the entry points that reach the raw-memory kernels, each in a subprocess: a segfault or a
hang shows as the process dying or timing out, not as this test process dying."""

import os
import subprocess
import sys

import pytest
import torch

from graphops.testing import fuzz

ENTRIES = sorted(fuzz.ENTRY_POINTS)


def run_fuzz(entry: str, examples: int, seed: int, timeout: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != 'GRAPHOPS_DISABLE_NUMBA'}
    command = [sys.executable, '-m', 'graphops.testing.fuzz', entry, '--examples', str(examples)]
    done = subprocess.run(
        [*command, '--seed', str(seed)], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, (
        f'{entry}: exit {done.returncode} (a negative code is a signal: a crash)\n'
        f'{done.stdout[-4000:]}\n{done.stderr[-4000:]}'
    )
    assert 'no crash, no wrong number' in done.stdout


@pytest.mark.parametrize('entry', ENTRIES)
def test_fuzz_small_budget(entry):
    run_fuzz(entry, examples=25, seed=0, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize('entry', ENTRIES)
def test_fuzz_large_budget(entry):
    run_fuzz(entry, examples=400, seed=1, timeout=1800)


def test_the_harness_catches_a_wrong_number(monkeypatch):
    import graphops.ops

    def wrong(csr, x, reduce='sum', **kwargs):
        return torch.zeros(csr.num_rows, x.size(1), dtype=x.dtype) + 1

    monkeypatch.setattr(graphops.ops, 'spmm', wrong)
    with pytest.raises(AssertionError):
        fuzz.run('spmm', examples=30, seed=0)


def test_the_harness_catches_an_unclean_error(monkeypatch):
    import graphops.ops

    def crash(*args, **kwargs):
        raise IndexError('index 7 is out of bounds')

    monkeypatch.setattr(graphops.ops, 'sddmm', crash)
    with pytest.raises(IndexError):
        fuzz.run('sddmm', examples=5, seed=0)
