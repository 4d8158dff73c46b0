r"""Where the precompute engine's column slices run.

* :class:`~graphops.precompute.PrecomputeBackend`: the interface (one method,
  ``map_slices(job, x, on_hop)``);
* :class:`~graphops.precompute.LocalBackend`: this process;
* :class:`~graphops.precompute.RayBackend`: Ray tasks, on this machine or a cluster.

:func:`resolve_backend` turns what a user passes as ``precompute(..., backend=...)`` into one of
them. Backends import :mod:`graphops.precompute.slices` and never the engine.
"""

from __future__ import annotations

import inspect

from graphops.precompute.backends.base import PrecomputeBackend
from graphops.precompute.backends.local import LocalBackend
from graphops.precompute.backends.ray import RayBackend

_NAMED = {'local': LocalBackend, 'ray': RayBackend}

__all__ = ['LocalBackend', 'PrecomputeBackend', 'RayBackend', 'resolve_backend']


def resolve_backend(spec: str | PrecomputeBackend) -> PrecomputeBackend:
    """The backend ``spec`` names: ``'local'`` (:class:`LocalBackend`), ``'ray'``
    (:class:`RayBackend` with its defaults: ``ray.init()`` on this machine, or the cluster Ray is
    already connected to), or ``spec`` itself when it is a :class:`PrecomputeBackend`: an object
    whose ``map_slices`` takes ``(job, x, on_hop)``.

    Raises:
        ValueError: ``spec`` is a string other than ``'local'`` or ``'ray'``.
        TypeError: ``spec`` is neither a name nor a backend.
    """
    if isinstance(spec, str):
        if spec not in _NAMED:
            raise ValueError(
                f"backend must be 'local', 'ray' or a PrecomputeBackend (e.g. RayBackend(...)), "
                f'got {spec!r}'
            )
        return _NAMED[spec]()
    if isinstance(spec, type):
        raise TypeError(
            f'backend must be a backend instance, got the class {spec.__name__}; '
            f'pass {spec.__name__}()'
        )
    fix = (
        'pass a PrecomputeBackend: an object with a method map_slices(job, x, on_hop) yielding '
        "(slice_index, arrays) (see graphops.precompute.backends), or 'local' / 'ray'"
    )
    if not isinstance(spec, PrecomputeBackend) or not callable(spec.map_slices):
        raise TypeError(f'backend {spec!r} has no map_slices method; {fix}')
    try:
        inspect.signature(spec.map_slices).bind(None, None, None)
    except TypeError as err:
        raise TypeError(
            f'backend {spec!r}: map_slices{inspect.signature(spec.map_slices)} cannot be called '
            f'as map_slices(job, x, on_hop); {fix}'
        ) from err
    except ValueError:  # no signature to read (a builtin): trust it
        pass
    return spec
