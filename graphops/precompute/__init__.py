"""The SIGN precompute engine: sliced, streamed, resumable operator powers into a FeatureStore.

Modules, each importing only those above it (and :mod:`graphops.ops`, :mod:`graphops.transforms`):
``feature_store`` and ``plan`` (leaves), ``slices`` (a slice job and how it runs),
``backends`` (where slices run: ``base``, ``local``, ``ray``), ``engine`` (:func:`precompute`).
The out-of-core path: ``dropedge`` and ``npy_member`` (leaves), ``disk_csr`` (a matrix in row
blocks on disk), ``converted_dataset`` (the one-time streaming conversion), ``out_of_core``
(:func:`precompute_out_of_core`, one memory budget).
"""

from graphops.precompute.backends import LocalBackend, PrecomputeBackend, RayBackend
from graphops.precompute.converted_dataset import ConvertedDataset
from graphops.precompute.disk_csr import DiskCSR, DiskCSRCorruptError
from graphops.precompute.engine import precompute
from graphops.precompute.feature_store import (
    FeatureStore,
    FeatureStoreCorruptError,
    FeatureStoreError,
    FeatureStoreMismatchError,
)
from graphops.precompute.npy_member import NpyMember
from graphops.precompute.out_of_core import precompute_out_of_core
from graphops.precompute.plan import PrecomputePlan
from graphops.precompute.slices import SliceJob

__all__ = [
    'ConvertedDataset',
    'DiskCSR',
    'DiskCSRCorruptError',
    'FeatureStore',
    'FeatureStoreCorruptError',
    'FeatureStoreError',
    'FeatureStoreMismatchError',
    'LocalBackend',
    'NpyMember',
    'PrecomputeBackend',
    'PrecomputePlan',
    'RayBackend',
    'SliceJob',
    'precompute',
    'precompute_out_of_core',
]
