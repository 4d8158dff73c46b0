"""Dataset loaders: PyG's own through :func:`load`, plus formats PyG lacks."""

from graphops.datasets.hgb_dataset import HGBDataset
from graphops.datasets.load import available, load
from graphops.datasets.paths import cache_root, data_root
from graphops.datasets.synthetic_papers import SyntheticPapers

__all__ = ['HGBDataset', 'SyntheticPapers', 'available', 'cache_root', 'data_root', 'load']
