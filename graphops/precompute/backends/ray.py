r"""``RayBackend``: the precompute engine's column slices as Ray tasks.

The operator's matrix (CSR arrays) and the features are put in Ray's object store once; every
column slice becomes a task that reads them without copying (numpy arrays in the object store
are shared memory on a node), runs every hop of the operator on its slice with the same kernels
as the local engine, and returns the kept rows. The driver writes the results into the
:class:`~graphops.precompute.feature_store.FeatureStore` as they arrive, so the store, its resume
points and its bytes are the same as with ``backend='local'``.

Use it through the engine::

    precompute(data, operators=[...], store_path='store', backend='ray')   # local ray.init()
    precompute(..., backend=RayBackend(address='auto', num_gpus_per_task=1), device='cuda')

Needs the ``ray`` extra (``pip install ray``). Workers import graphops from their installed
environment, or, when this graphops is a source checkout, from its folder shipped as
``runtime_env`` ``py_modules`` (:func:`worker_py_modules`); never from ``PYTHONPATH``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import graphops
from graphops.precompute.slices import HopCallback, SliceJob


def _ray():
    try:
        import ray
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "backend='ray' needs Ray: pip install ray (graphops' 'ray' extra)"
        ) from err
    return ray


def _slice_task(job: SliceJob, x: np.ndarray, column_slice: tuple[int, int, int]):
    """One column slice on a worker (``job`` and ``x`` come from the object store): every hop of
    the job's operator, as :class:`~graphops.precompute.LocalBackend` runs it; returns
    ``(blocks, seconds per hop)``."""
    seconds: list[float] = []
    ((_, blocks),) = job.run(x, [column_slice], lambda hop, columns, spent: seconds.append(spent))
    return blocks, seconds


def worker_py_modules() -> list[str]:
    """What Ray's ``runtime_env`` must ship for workers to import this graphops: nothing when it
    is an installed distribution (workers run the same environment), else this package's folder
    (a checkout on ``sys.path`` only), which Ray uploads to every worker as ``py_modules``."""
    try:
        installed = metadata.version('graphops') == graphops.__version__
    except metadata.PackageNotFoundError:
        installed = False
    return [] if installed else [str(Path(graphops.__file__).resolve().parent)]


class RayBackend:
    r"""Runs the precompute engine's column slices as Ray tasks.

    Args:
        address (str, optional): a running cluster (``'auto'`` or ``'ray://host:port'``); ``None``
            starts a local one with ``ray.init()`` unless Ray is already initialised.
        num_cpus (int, optional): CPUs of the local cluster (default: all of this machine's).
        num_cpus_per_task (float): CPUs each task reserves. (default: ``1``)
        num_gpus_per_task (float): GPUs each task reserves (set it with ``device='cuda'``).
            (default: ``0``)
        max_in_flight (int, optional): most tasks submitted at once, bounding the results
            waiting in the object store (default: twice the cluster's task slots).
        init_kwargs (dict, optional): more arguments for ``ray.init``.

    Shapes:
        Each task returns ``{key: [R, w]}`` arrays for its slice of width :math:`w`.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        num_cpus_per_task: float = 1,
        num_gpus_per_task: float = 0,
        max_in_flight: int | None = None,
        init_kwargs: dict | None = None,
    ):
        if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < 1):
            raise ValueError(f'num_cpus must be a positive int, got {num_cpus!r}')
        for name, value in (
            ('num_cpus_per_task', num_cpus_per_task),
            ('num_gpus_per_task', num_gpus_per_task),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f'{name} must be a number >= 0, got {value!r}')
        if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
            raise ValueError(f'max_in_flight must be a positive int, got {max_in_flight!r}')
        self.address = address
        self.num_cpus = num_cpus
        self.num_cpus_per_task = num_cpus_per_task
        self.num_gpus_per_task = num_gpus_per_task
        self.max_in_flight = max_in_flight
        self.init_kwargs = dict(init_kwargs or {})
        self._features = None  # (id of the features, their object ref), put once per run

    def _connect(self):
        ray = _ray()
        if not ray.is_initialized():
            kwargs = dict(self.init_kwargs)
            if self.address is None:
                kwargs.setdefault('num_cpus', self.num_cpus or os.cpu_count())
            modules = worker_py_modules()
            if modules:
                env = kwargs.setdefault('runtime_env', {})
                env.setdefault('py_modules', modules)
            ray.init(address=self.address, **kwargs)
        return ray

    def map_slices(
        self, job: SliceJob, x: Tensor | np.ndarray, on_hop: HopCallback | None = None
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Submits each of ``job``'s slices as a Ray task and yields ``(slice_index, {key: [R, w]
        array})`` as the tasks finish (in any order)."""
        ray = self._connect()
        if isinstance(x, torch.Tensor):
            x_np = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
        else:
            x_np = x
        # the features are the same for every operator of a run: put once
        if self._features is None or self._features[0] is not x:
            self._features = (x, ray.put(x_np))
        x_ref = self._features[1]
        job_ref = ray.put(job)  # the matrix as numpy arrays (SliceJob pickles them so): shared
        task = ray.remote(num_cpus=self.num_cpus_per_task, num_gpus=self.num_gpus_per_task)(
            _slice_task
        )
        limit = self.max_in_flight or max(
            2, 2 * int(ray.cluster_resources().get('CPU', 1) // max(self.num_cpus_per_task, 1))
        )
        queue = list(job.slices)
        running: dict = {}
        while queue or running:
            while queue and len(running) < limit:
                column_slice = queue.pop(0)
                ref = task.remote(job_ref, x_ref, column_slice)
                running[ref] = (column_slice[0], column_slice[2] - column_slice[1])
            done, _ = ray.wait(list(running), num_returns=1)
            slice_index, width = running.pop(done[0])
            blocks, seconds = ray.get(done[0])
            if on_hop is not None:
                for hop, spent in enumerate(seconds, start=1):
                    on_hop(hop, width, spent)
            yield slice_index, blocks

    def __repr__(self) -> str:
        return (
            f'RayBackend(address={self.address!r}, num_cpus={self.num_cpus}, '
            f'num_cpus_per_task={self.num_cpus_per_task}, '
            f'num_gpus_per_task={self.num_gpus_per_task})'
        )
