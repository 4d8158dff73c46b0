"""``load(name)``: a ready dataset by name, through PyG's own loaders, without network access.

PyG's ``Planetoid``, ``TUDataset`` and ``Entities`` skip their download when the raw files are
already in ``raw_dir``; :func:`load` links the shipped raw folder into a cache root so the
processed files land in the cache and the shipped data stays untouched. Any TU dataset is found
by its raw files (``<root>/<name>/raw/<name>_A.txt``), not only the names listed here, so the
examples run on every TU benchmark a paper reports (NCI109, Mutagenicity, REDDIT-MULTI-12K...)
once its files are in place.
"""

from __future__ import annotations

import os
from pathlib import Path

from graphops.datasets.paths import cache_root, data_root

PLANETOID = ('Cora', 'CiteSeer', 'PubMed')
# The TU sets the examples' papers report (DiffPool, Graph U-Nets, EigenPool); others are found
# on disk by their raw files.
TU = (
    'PROTEINS',
    'MUTAG',
    'ENZYMES',
    'DD',
    'COLLAB',
    'IMDB-BINARY',
    'NCI1',
    'NCI109',
    'Mutagenicity',
    'REDDIT-MULTI-12K',
)
ENTITIES = ('AIFB', 'MUTAG', 'BGS', 'AM')
HGB = ('ACM', 'DBLP', 'IMDB')


def available(root: str | os.PathLike | None = None) -> list[str]:
    """Names :func:`load` accepts. ``'MUTAG'`` is the TU graph set; the RDF one is
    ``'Entities/MUTAG'``. HGB sets are ``'HGB/ACM'`` etc. TU datasets found in ``root`` (default:
    the data folder, when there is one) are listed after the known names."""
    known = [
        *PLANETOID,
        *TU,
        *(f'Entities/{n}' for n in ENTITIES),
        'AIFB',
        *(f'HGB/{n}' for n in HGB),
    ]
    try:
        data_dir = Path(root) if root is not None else data_root()
    except FileNotFoundError:  # an installed wheel without $GRAPHOPS_DATA: nothing to discover
        return known
    if not data_dir.is_dir():
        return known
    found = (p.name for p in data_dir.iterdir() if p.name not in known)
    return known + sorted(name for name in found if _is_tu_folder(name, data_dir))


def _is_tu_folder(name: str, data_dir: Path) -> bool:
    """A TU dataset's raw folder holds ``<name>_A.txt`` (TUDataset's naming)."""
    return '/' not in name and (data_dir / name / 'raw' / f'{name}_A.txt').is_file()


def _link_raw(source: Path, target: Path) -> None:
    """Make ``target`` (PyG's raw_dir) point at the shipped ``source`` raw folder."""
    if target.exists() or target.is_symlink():
        if target.resolve() == source.resolve():
            return
        if target.is_symlink():
            target.unlink()
        else:
            return  # a real folder a user filled themselves: respect it
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f'.tmp{os.getpid()}')
    tmp.symlink_to(source.resolve(), target_is_directory=True)
    os.replace(tmp, target)  # atomic: concurrent loaders never see a half-made link


def _raw_folder(name: str, data_dir: Path) -> Path:
    folder = data_dir / name / 'raw'
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no raw files for {name!r} at {folder}; put the dataset's raw files there "
            '(graphops never downloads), or point $GRAPHOPS_DATA at a folder that has them'
        )
    return folder


def load(name: str, root: str | os.PathLike | None = None, **kwargs):
    """Returns a ready PyG dataset by name.

    Args:
        name (str): one of :func:`available`.
        root (path, optional): folder with ``<name>/raw`` (defaults to the shipped ``data/``).
        **kwargs: passed to the PyG dataset (``transform``, ``pre_transform``, ``split``...).
    """
    if not isinstance(name, str):
        raise TypeError(f'name must be a str, got {type(name).__name__}')
    data_dir = Path(root) if root is not None else data_root()
    cache = cache_root() / 'datasets'
    if name.startswith('HGB/'):
        from graphops.datasets.hgb_dataset import HGBDataset

        hgb_name = name.split('/', 1)[1]
        return HGBDataset(str(data_dir / 'HGB'), hgb_name, **kwargs)
    if name in PLANETOID:
        from torch_geometric.datasets import Planetoid

        _link_raw(_raw_folder(name, data_dir), cache / 'Planetoid' / name / 'raw')
        return Planetoid(str(cache / 'Planetoid'), name, **kwargs)
    if name in TU or _is_tu_folder(name, data_dir):
        from torch_geometric.datasets import TUDataset

        _link_raw(_raw_folder(name, data_dir), cache / 'TU' / name / 'raw')
        return TUDataset(str(cache / 'TU'), name, **kwargs)
    entity = name.split('/', 1)[1] if name.startswith('Entities/') else name
    if entity in ENTITIES and (name.startswith('Entities/') or entity != 'MUTAG'):
        from torch_geometric.datasets import Entities

        _link_raw(_raw_folder(entity, data_dir), cache / 'Entities' / entity.lower() / 'raw')
        return Entities(str(cache / 'Entities'), entity, **kwargs)
    raise ValueError(
        f"unknown dataset {name!r}; choose one of {available(data_dir)}, or put a TU dataset's "
        f'raw files at {data_dir / name / "raw"} ({name}_A.txt, {name}_graph_indicator.txt, ...)'
    )
