"""Runs an example script as a user would (a subprocess from the repository root, this checkout
first on ``PYTHONPATH``) and hands back its output."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_example():
    def run(script: str, *arguments: str, timeout: int = 600, env: dict | None = None) -> str:
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', **(env or {}))
        done = subprocess.run(
            [sys.executable, str(ROOT / 'examples' / script), *arguments],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        return done.stdout

    return run
