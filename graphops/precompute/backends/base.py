r"""``PrecomputeBackend``: what the precompute engine asks of a backend.

A backend runs a :class:`~graphops.precompute.SliceJob`'s column slices somewhere (this
process, a Ray cluster, ...) and gives back each slice's outputs. The engine calls nothing else,
so any object with this one method is a backend
(:func:`graphops.precompute.backends.resolve_backend` checks it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np
from torch import Tensor

from graphops.precompute.slices import HopCallback, SliceJob


@runtime_checkable
class PrecomputeBackend(Protocol):
    r"""The interface of a precompute backend: one method, :meth:`map_slices`.

    Write one by running each slice with :meth:`SliceJob.run
    <graphops.precompute.SliceJob.run>` wherever it should run (a worker process, another
    machine) and yielding its result; :class:`~graphops.precompute.LocalBackend` runs them in
    this process, :class:`~graphops.precompute.RayBackend` as Ray tasks. The engine writes each
    result into the store as it arrives, in any order, so that an interrupted run resumes from
    the slices already written.

    Shapes:
        - **x:** :math:`[N, F]` features on the host.
        - **output:** per slice ``(slice_index, {key: [R, w]})``, :math:`w` its width.
    """

    def map_slices(
        self, job: SliceJob, x: Tensor | np.ndarray, on_hop: HopCallback | None = None
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Runs every slice of ``job`` on the features ``x`` and yields ``(slice_index,
        {key: [R, w] array in job.storage_dtype})`` for each, in any order, calling
        ``on_hop(hop, columns, seconds)`` for each hop of each slice."""
        ...
