"""The built wheel, installed into a fresh venv outside the repository, passes the smoke script.

Slow (a venv, torch from the local wheel cache, the registry's dependencies): deselected by default
and run explicitly by ``scripts/test.sh`` (so by ``.ci/run``).
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE = Path(__file__).with_name('smoke_installed.py')
TORCH = 'torch==2.13.0'  # the CPU build the project pins (any other resolves to a CUDA build)


def run(command, cwd, timeout=900):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env['PIP_DISABLE_PIP_VERSION_CHECK'] = '1'
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f'{command}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}'
    return done


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """``pip wheel . --no-deps`` on a copy of the checkout's files (tracked and new, not ignored),
    so no stale build/ folder of the repository can leak into the wheel."""
    src = tmp_path_factory.mktemp('src')
    listed = run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=REPO).stdout
    for name in filter(None, listed.split('\0')):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp('wheel')
    # --no-build-isolation: the build backend (setuptools) of this environment, no download.
    run(
        [sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps', '--no-build-isolation', '-w', out],
        cwd=src,
    )
    wheels = list(out.glob('graphops-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert 'graphops/py.typed' in names
    assert 'graphops/apps/papers100m/configs/synthetic_default.yaml' in names
    assert not [n for n in names if n.startswith(('tests/', 'benchmarks/', 'examples/', 'data/'))]
    metadata = next(n for n in names if n.endswith('.dist-info/METADATA'))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    for requirement in ('torch>=2.11', 'torch_geometric>=2.8', 'numba', 'omegaconf', 'scipy'):
        assert f'Requires-Dist: {requirement}' in text, requirement
    entry_points = next(n for n in names if n.endswith('.dist-info/entry_points.txt'))
    assert 'graphops-papers100m = graphops.apps.papers100m.cli:main' in (
        zipfile.ZipFile(wheel).read(entry_points).decode()
    )


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / 'venv'
    run([sys.executable, '-m', 'venv', venv], cwd=tmp_path)
    python = venv / 'bin' / 'python'
    constraint = tmp_path / 'constraint.txt'
    constraint.write_text(f'{TORCH}\n')
    pip = [python, '-m', 'pip', 'install', '-q', '-c', constraint]
    run([*pip, TORCH], cwd=tmp_path)
    run([*pip, f'{wheel}[ogb,bench]'], cwd=tmp_path)
    work = tmp_path / 'work'
    work.mkdir()
    script = work / SMOKE.name
    script.write_text(SMOKE.read_text())
    done = run([python, script, work / 'out'], cwd=work, timeout=900)
    assert '"pipeline_variants": ["mlp", "sign"]' in done.stdout, done.stdout[-2000:]
