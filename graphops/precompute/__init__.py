"""The SIGN precompute engine: sliced, streamed, resumable operator powers into a FeatureStore.

Modules, each importing only those above it (and :mod:`graphops.ops`, :mod:`graphops.transforms`):
``feature_store`` and ``plan`` (leaves), ``slices`` (a slice job and how it runs),
``backends`` (where slices run: ``base``, ``local``, ``ray``), ``engine`` (:func:`precompute`).
"""

from graphops.precompute.backends import LocalBackend, PrecomputeBackend, RayBackend
from graphops.precompute.engine import precompute
from graphops.precompute.feature_store import (
    FeatureStore,
    FeatureStoreCorruptError,
    FeatureStoreError,
    FeatureStoreMismatchError,
)
from graphops.precompute.plan import PrecomputePlan
from graphops.precompute.slices import SliceJob

__all__ = [
    'FeatureStore',
    'FeatureStoreCorruptError',
    'FeatureStoreError',
    'FeatureStoreMismatchError',
    'LocalBackend',
    'PrecomputeBackend',
    'PrecomputePlan',
    'RayBackend',
    'SliceJob',
    'precompute',
]
