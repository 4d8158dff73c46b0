"""Where shipped raw data lives and where processed files go.

Raw files are read from the repository's ``data/`` (or ``$GRAPHOPS_DATA``); PyG writes its
processed files under a writable cache (``$GRAPHOPS_CACHE``, default ``~/.cache/graphops``), never
next to the raw files, which may be read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_DATA = Path(__file__).resolve().parents[2] / 'data'


def data_root() -> Path:
    """The folder holding one sub-folder of raw files per shipped dataset."""
    env = os.environ.get('GRAPHOPS_DATA')
    if env:
        return Path(env)
    if _REPO_DATA.is_dir():
        return _REPO_DATA
    shared = _REPO_DATA.parent.parent / 'shared' / 'data'
    return shared if shared.is_dir() else _REPO_DATA


def cache_root() -> Path:
    env = os.environ.get('GRAPHOPS_CACHE')
    root = Path(env) if env else Path.home() / '.cache' / 'graphops'
    root.mkdir(parents=True, exist_ok=True)
    return root
