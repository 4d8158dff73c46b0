"""Shared fixtures and the default selection.

The default run (no ``-m``) deselects ``slow`` and ``gpu`` tests here rather than in
``pyproject.toml``'s ``addopts``: a ``-m`` there would override the user's own ``-m``, so
``pytest -m gpu`` could never select the CUDA tests. Any ``-m`` given by the user wins.

``gpu`` tests run on the device named by ``GRAPHOPS_TEST_DEVICE`` (default ``cuda``) and take it
from the ``device`` fixture; ``GRAPHOPS_TEST_DEVICE=cpu pytest -m gpu`` runs the same tests with
the device switched to CPU (each compares the device's output with a CPU run). Without CUDA they
skip.

The ``matches_cpu`` fixture is the one check every public entry point's gpu test runs: the same
call on CPU inputs and on copies moved to the device under test, outputs (and, with ``grad``,
the gradients of parameters and inputs) compared.
"""

import copy
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


def _move(obj, device):
    """Tensors (and graphops CSRs) inside ``obj`` moved to ``device``; leaf tensors that require
    a gradient become new leaves there that require one too."""
    if isinstance(obj, torch.Tensor):
        moved = obj.detach().to(device)
        return moved.requires_grad_() if obj.requires_grad else moved
    if hasattr(obj, 'rowptr') and hasattr(obj, 'to'):  # a graphops CSR
        return obj.to(device)
    if isinstance(obj, list | tuple):
        return type(obj)(_move(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    return obj


def _tensors(obj) -> list:
    """Every tensor in ``obj`` (a CSR gives its rowptr, col and value), in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if hasattr(obj, 'rowptr') and hasattr(obj, 'col'):
        return [t for t in (obj.rowptr, obj.col, obj.value) if t is not None]
    if isinstance(obj, list | tuple):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for k in obj for t in _tensors(obj[k])]
    return []


def _assert_all_close(got, expected, device, what, **tol):
    got, expected = _tensors(got), _tensors(expected)
    assert len(got) == len(expected), f'{what}: {len(got)} tensors on the device, {len(expected)}'
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g.device.type == device.type, f'{what}[{index}] is on {g.device}, not {device}'
        if e.is_floating_point():
            torch.testing.assert_close(g.detach().cpu(), e.detach(), msg=f'{what}[{index}]', **tol)
        else:
            assert torch.equal(g.cpu(), e), f'{what}[{index}] differs'


@pytest.fixture
def matches_cpu(device):
    """``check(fn, *args, grad=False, rtol=None, atol=None, **kwargs)``: runs ``fn(*args,
    **kwargs)`` as given (CPU) and again with ``fn`` (a deep copy, when it is a module) and every
    tensor argument moved to ``device``; asserts the outputs are on the device and close to the
    CPU outputs. With ``grad``, backpropagates the same random probe of every float output
    through both runs and compares the gradients of ``fn``'s parameters and of the arguments that
    require one. Returns the device outputs."""

    def check(fn, *args, grad=False, rtol=None, atol=None, **kwargs):
        tol = {} if rtol is None else {'rtol': rtol, 'atol': atol}
        on_device = fn
        if isinstance(fn, torch.nn.Module):
            on_device = copy.deepcopy(fn).to(device)
        cpu_args, cpu_kwargs = _move(args, torch.device('cpu')), _move(kwargs, torch.device('cpu'))
        dev_args, dev_kwargs = _move(args, device), _move(kwargs, device)
        expected = fn(*cpu_args, **cpu_kwargs)
        got = on_device(*dev_args, **dev_kwargs)
        _assert_all_close(got, expected, device, 'output', **tol)
        if not grad:
            return got
        outputs = [t for t in _tensors(expected) if t.is_floating_point() and t.requires_grad]
        assert outputs, 'grad=True but no output requires a gradient'
        gen = torch.Generator().manual_seed(0)
        probes = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in outputs]
        sum((t * p).sum() for t, p in zip(outputs, probes)).backward()
        dev_outputs = [t for t in _tensors(got) if t.is_floating_point() and t.requires_grad]
        sum((t * p.to(device)).sum() for t, p in zip(dev_outputs, probes)).backward()
        leaves = [(cpu_args, dev_args), (cpu_kwargs, dev_kwargs)]
        if isinstance(fn, torch.nn.Module):
            leaves.append((list(fn.parameters()), list(on_device.parameters())))
        for cpu_side, dev_side in leaves:
            for index, (e, g) in enumerate(zip(_tensors(cpu_side), _tensors(dev_side))):
                if e.requires_grad:
                    assert (e.grad is None) == (g.grad is None), f'gradient {index}'
                    if e.grad is not None:
                        _assert_all_close(g.grad, e.grad, device, f'gradient {index}', **tol)
        return got

    return check
