"""graphops: relational layers, faithful pooling and an out-of-core SIGN pipeline for PyG.

Importing graphops never imports torch_sparse or torch_scatter: they are optional and looked up
lazily (see :mod:`graphops.ops.optional`).
"""

__version__ = '0.1.0'

from graphops import datasets, nn, ops, precompute, transforms  # noqa: E402
from graphops.ops.validate import debug, is_debug_enabled, set_debug  # noqa: E402

__all__ = [
    '__version__',
    'datasets',
    'debug',
    'is_debug_enabled',
    'nn',
    'ops',
    'precompute',
    'set_debug',
    'transforms',
]
