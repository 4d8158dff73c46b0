import pytest
import torch

from graphops.testing import DTYPES, devices


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip themselves where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=devices(), ids=str)
def device(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=str)
def dtype(request):
    return request.param
