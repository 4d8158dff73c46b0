r"""``LocalBackend``: the precompute engine's column slices in this process."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch import Tensor

from graphops.precompute.slices import HopCallback, SliceJob


class LocalBackend:
    r"""Runs a :class:`~graphops.precompute.SliceJob`'s column slices one after the other
    in this process (the products themselves are multi-threaded, or run on the job's device).

    The default backend of :func:`graphops.precompute.precompute` (``backend='local'``).

    Shapes:
        ``(slice_index, {key: [R, w]})`` for each slice of width :math:`w`, in the job's order;
        its working memory on the device is what :class:`~graphops.precompute.PrecomputePlan`
        budgets.
    """

    def map_slices(
        self, job: SliceJob, x: Tensor | np.ndarray, on_hop: HopCallback | None = None
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yields ``(slice_index, {key: [R, w] array})`` for each of ``job``'s slices in order
        (:meth:`SliceJob.run <graphops.precompute.SliceJob.run>`)."""
        return job.run(x, on_hop=on_hop)

    def __repr__(self) -> str:
        return 'LocalBackend()'
