"""Applications built on graphops' public API, shipped with the package.

:mod:`graphops.apps.papers100m` is the ogbn-papers100M SIGN pipeline (precompute, then train), run
as ``graphops-papers100m precompute|train|run``. Nothing here is imported by ``import graphops``.
"""

__all__ = ['papers100m', 'runtime']
