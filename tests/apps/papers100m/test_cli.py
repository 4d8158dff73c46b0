"""``graphops-papers100m precompute|train|run``: the console entry point."""

import subprocess
import sys
from pathlib import Path

import pytest

from graphops.apps.papers100m import cli


def test_usage_and_unknown_command(capsys):
    assert cli.main([]) == 2
    assert 'precompute,train,run' in capsys.readouterr().out
    assert cli.main(['--help']) == 0
    assert cli.main(['pre']) == 2
    assert "unknown command 'pre'" in capsys.readouterr().err


@pytest.mark.parametrize('command', sorted(cli.COMMANDS))
def test_each_command_parses_the_shared_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, '--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert '--cfg-options' in out and '--config' in out


def test_a_mistyped_override_fails_before_any_work(tmp_path, capsys):
    with pytest.raises(KeyError, match=r"no key 'lrr'.*train has the keys"):
        cli.main(['precompute', '--output', str(tmp_path), '--cfg-options', 'train.lrr=1'])
    assert not any(tmp_path.iterdir())


def test_installed_console_script_and_module_run(tmp_path):
    # Both forms run from a folder outside the repository.
    script = Path(sys.executable).parent / 'graphops-papers100m'  # pip puts it beside python
    assert script.is_file(), 'reinstall graphops (pip install -e .) to get the console script'
    commands = [
        [sys.executable, '-m', 'graphops.apps.papers100m', 'train', '--help'],
        [str(script), 'train', '--help'],
    ]
    for command in commands:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert '--cfg-options' in done.stdout
