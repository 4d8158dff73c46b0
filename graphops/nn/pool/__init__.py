"""Pooling layers."""

from graphops.nn.pool.eigen_pool import EigenPool
from graphops.nn.pool.gpool import GPool
from graphops.nn.pool.gunpool import GUnpool

__all__ = ['EigenPool', 'GPool', 'GUnpool']
