"""DiffPool: the dense and sparse-first-level pooling functions and the DiffPool module."""

from graphops.nn.dense.diff_pool import dense_diff_pool, sparse_diff_pool
from graphops.nn.dense.diff_pool_block import DiffPool

__all__ = ['DiffPool', 'dense_diff_pool', 'sparse_diff_pool']
