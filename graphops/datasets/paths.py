"""Where shipped raw data lives and where processed files go.

Raw files are looked up in ``$GRAPHOPS_DATA``, then, when graphops runs from a source checkout
(an editable install or the repository on ``sys.path``), in the checkout's ``data/``; an installed
wheel has no data folder of its own, so without ``$GRAPHOPS_DATA`` :func:`data_root` raises an
error that says where to put the files. PyG writes its processed files under a writable cache
(``$GRAPHOPS_CACHE``, default ``~/.cache/graphops``), never next to the raw files, which may be
read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ['cache_root', 'data_root', 'source_checkout']


def source_checkout() -> Path | None:
    """The repository root when this graphops is imported from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    is_checkout = (root / 'pyproject.toml').is_file() and (root / 'graphops').is_dir()
    return root if is_checkout else None


def data_root() -> Path:
    """The folder holding one sub-folder of raw files per dataset (``<root>/Cora/raw/...``)."""
    env = os.environ.get('GRAPHOPS_DATA')
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f'GRAPHOPS_DATA={env!r} is not a folder; point it at a folder holding one '
                'sub-folder per dataset with its raw files (e.g. $GRAPHOPS_DATA/Cora/raw/)'
            )
        return root
    checkout = source_checkout()
    if checkout is not None and (checkout / 'data').is_dir():
        return checkout / 'data'
    raise FileNotFoundError(
        'graphops has no data folder: set $GRAPHOPS_DATA to a folder holding one sub-folder of '
        "raw files per dataset (e.g. $GRAPHOPS_DATA/Cora/raw/ with Planetoid's ind.cora.* files; "
        "the repository's data/ holds the shipped ones), or pass root= to load(). graphops never "
        'downloads.'
    )


def cache_root() -> Path:
    """The writable folder for processed files (``$GRAPHOPS_CACHE``, default ``~/.cache/graphops``)."""
    env = os.environ.get('GRAPHOPS_CACHE')
    root = Path(env).expanduser() if env else Path.home() / '.cache' / 'graphops'
    root.mkdir(parents=True, exist_ok=True)
    return root
