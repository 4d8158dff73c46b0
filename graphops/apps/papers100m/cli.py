"""``graphops-papers100m precompute|train|run [options]``: the pipeline's console entry point.

Each command takes the same options (``--config``, ``--cfg-options``/``--set``, ``--dataset``,
``--root``, ``--output``, ...); ``graphops-papers100m COMMAND --help`` lists them.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    'precompute': 'load the dataset through ogb and precompute the SIGN operators',
    'train': 'train MLP-only and SIGN on the precomputed FeatureStore',
    'run': 'both stages, each in its own process, then the results table',
}


def usage() -> str:
    lines = ['usage: graphops-papers100m {precompute,train,run} [options]', '']
    lines += [f'  {name:<11} {text}' for name, text in COMMANDS.items()]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (the stages' results are in their files)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(
            f'graphops-papers100m: unknown command {command!r}; use one of {list(COMMANDS)}',
            file=sys.stderr,
        )
        return 2
    importlib.import_module(f'graphops.apps.papers100m.{command}').main(rest)
    return 0


if __name__ == '__main__':
    sys.exit(main())
