"""The SIGN precompute engine: sliced, streamed, resumable operator powers into a FeatureStore."""

from graphops.precompute.engine import LocalBackend, precompute
from graphops.precompute.feature_store import (
    FeatureStore,
    FeatureStoreCorruptError,
    FeatureStoreError,
    FeatureStoreMismatchError,
)
from graphops.precompute.plan import PrecomputePlan
from graphops.precompute.ray_backend import RayBackend

__all__ = [
    'FeatureStore',
    'FeatureStoreCorruptError',
    'FeatureStoreError',
    'FeatureStoreMismatchError',
    'LocalBackend',
    'PrecomputePlan',
    'RayBackend',
    'precompute',
]
