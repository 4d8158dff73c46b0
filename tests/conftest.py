"""Shared fixtures and the default selection.

The default run (no ``-m``) deselects ``slow`` and ``gpu`` tests here rather than in
``pyproject.toml``'s ``addopts``: a ``-m`` there would override the user's own ``-m``, so
``pytest -m gpu`` could never select the CUDA tests. Any ``-m`` given by the user wins.

``gpu`` tests run on the device named by ``GRAPHOPS_TEST_DEVICE`` (default ``cuda``) and take it
from the ``device`` fixture; ``GRAPHOPS_TEST_DEVICE=cpu pytest -m gpu`` runs the same tests with
the device switched to CPU (each compares the device's output with a CPU run). Without CUDA they
skip.
"""

import os

import pytest
import torch

from graphops.testing import DTYPES

DEFAULT_DESELECT = ('slow', 'gpu')


def gpu_test_device() -> torch.device:
    """Where ``gpu``-marked tests run: ``$GRAPHOPS_TEST_DEVICE``, else CUDA."""
    name = os.environ.get('GRAPHOPS_TEST_DEVICE', 'cuda')
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(
            f'GRAPHOPS_TEST_DEVICE={name!r} is not a torch device; use cuda or cpu'
        ) from err


def pytest_collection_modifyitems(config, items):
    if not config.option.markexpr:
        kept = [i for i in items if not any(m in i.keywords for m in DEFAULT_DESELECT)]
        deselected = [i for i in items if any(m in i.keywords for m in DEFAULT_DESELECT)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept
    if gpu_test_device().type != 'cuda' or torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device (GRAPHOPS_TEST_DEVICE=cpu runs it on CPU)')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device(request) -> torch.device:
    """The device under test: :func:`gpu_test_device` in a ``gpu`` test, else CPU."""
    if request.node.get_closest_marker('gpu') is not None:
        return gpu_test_device()
    return torch.device('cpu')


@pytest.fixture(params=DTYPES, ids=str)
def dtype(request):
    return request.param
