"""Layers: ``from graphops.nn import RGCNConv``."""

from graphops.nn import conv, dense, models, pool
from graphops.nn.conv import *  # noqa: F403
from graphops.nn.dense import *  # noqa: F403
from graphops.nn.pool import *  # noqa: F403

__all__ = ['conv', 'dense', 'models', 'pool', *conv.__all__, *dense.__all__, *pool.__all__]
