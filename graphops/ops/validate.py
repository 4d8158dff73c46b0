"""Input checks shared by every public entry point.

Each check raises ``TypeError`` (wrong type / dtype) or ``ValueError`` (wrong value / shape /
device) with a message that names the argument and says how to fix it. Checks on values cost one
reduction over the tensor; they never copy it.

Checks of values (index ranges, NaN/Inf) read a number back from the tensor. That is free on CPU
in eager mode, where they run as written. Where reading it back would cost a host-device sync (a
CUDA tensor) or a graph break (inside ``torch.compile``), they become ``torch._assert_async``
instead: the same condition, checked by the device without stopping the host, failing with a
``RuntimeError`` that names the argument. :func:`debug` turns the exact checks on everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

INDEX_DTYPES = (torch.int32, torch.int64)

_DEBUG = False


def is_debug_enabled() -> bool:
    """Whether :func:`debug` mode is on (full, exact value checks on every call)."""
    return _DEBUG


def set_debug(mode: bool) -> None:
    """Turns :func:`debug` mode on or off for the rest of the process."""
    global _DEBUG
    if not isinstance(mode, bool):
        raise TypeError(f'mode must be a bool, got {type(mode).__name__}')
    _DEBUG = mode


class debug:  # noqa: N801 (a context manager named like torch_geometric.debug)
    r"""Context manager (and decorator-free switch, like :class:`torch_geometric.debug`) that
    turns on the full per-call value checks of every public entry point:

    .. code-block:: python

        with graphops.debug():
            out = conv(x, edge_index, edge_type)

    Inside it, index ranges and NaN/Inf are checked exactly, with the messages of eager CPU mode,
    on every device and also inside ``torch.compile`` (where each check then costs a graph
    break), and layers with a cached graph plan compare the graph they are given with the one
    the plan was built from.

    Args:
        mode (bool, optional): the mode inside the block. (default: :obj:`True`)
    """

    def __init__(self, mode: bool = True) -> None:
        if not isinstance(mode, bool):
            raise TypeError(f'mode must be a bool, got {type(mode).__name__}')
        self.mode = mode
        self.previous = _DEBUG

    def __enter__(self) -> debug:
        self.previous = _DEBUG
        set_debug(self.mode)
        return self

    def __exit__(self, *args) -> None:
        set_debug(self.previous)


def check_condition(ok: Tensor, message: str) -> None:
    """Raises ``ValueError(message)`` unless the bool tensor ``ok`` is true; where a read-back
    would break a compiled graph or wait on the device (:func:`defers_value_checks`), the check
    is ``torch._assert_async(ok, message)`` instead."""
    if defers_value_checks(ok):
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise ValueError(message)


def defers_value_checks(tensor: Tensor) -> bool:
    """Whether a value check on ``tensor`` is an asynchronous assertion rather than a read-back:
    inside ``torch.compile`` (a read-back is a graph break) or off the CPU (a host-device sync),
    unless in :func:`debug` mode."""
    if _DEBUG:
        return False
    return torch.compiler.is_compiling() or tensor.device.type != 'cpu'


def named_size(name: str, value) -> str:
    """``'name = value'`` for an error message; only ``name`` under ``torch.compile``, where the
    size may be symbolic and formatting it would specialise the graph to it (a recompile for
    every other size)."""
    return name if torch.compiler.is_compiling() else f'{name} = {value}'


def check_tensor(value, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(value).__name__}')
    return value


def check_index(
    index,
    name: str,
    *,
    upper: int | None = None,
    dim: int | None = 1,
    upper_name: str | None = None,
) -> Tensor:
    """An integer index tensor with entries in ``[0, upper)``."""
    check_tensor(index, name)
    if index.dtype == torch.bool:
        raise TypeError(
            f'{name} must hold integer indices (torch.long or torch.int32), got a bool mask; '
            f'convert the mask with {name}.nonzero().view(-1) (not .long(), which gives 0/1)'
        )
    if index.dtype not in INDEX_DTYPES:
        raise TypeError(
            f'{name} must hold integer indices (torch.long or torch.int32), got {index.dtype}; '
            f'convert it with {name}.long()'
        )
    if dim is not None and index.dim() != dim:
        raise ValueError(f'{name} must be {dim}-dimensional, got shape {tuple(index.shape)}')
    if index.numel() == 0:
        return index
    if defers_value_checks(index):
        bound = '' if upper is None else f' and < {named_size(upper_name or "the size", upper)}'
        ok = (index >= 0).all()
        if upper is not None:
            ok = ok & (index < upper).all()
        torch._assert_async(ok, f'{name} must hold indices >= 0{bound}')
        return index
    if upper is None:
        low = int(index.min())
    else:  # one pass for both bounds
        low, high = (int(v) for v in torch.aminmax(index))
    if low < 0:
        raise ValueError(f'{name} contains a negative index ({low}); indices must be >= 0')
    if upper is not None and high >= upper:
        bound = upper_name or str(upper)
        raise ValueError(
            f'{name} contains index {high}, out of range for {bound} = {upper}; '
            f'indices must lie in [0, {upper})'
        )
    return index


def check_batch(batch, num_nodes: int, name: str = 'batch') -> Tensor:
    """A ``[num_nodes]`` integer graph-assignment vector, sorted (non-decreasing), as PyG's
    :class:`~torch_geometric.data.Batch` makes it (graph ids may be skipped)."""
    check_index(batch, name)
    check_length(batch, num_nodes, name, 'the number of nodes (x.size(0))')
    check_condition(
        (batch[1:] >= batch[:-1]).all(),
        f'{name} must be sorted (non-decreasing), as torch_geometric.data.Batch makes it: the '
        f'nodes of each graph must be contiguous; sort them by graph first (e.g. perm = '
        f'{name}.argsort(stable=True))',
    )
    return batch


def check_index_or_mask(index, name: str, *, size: int, size_name: str = 'num_nodes') -> Tensor:
    """Node ids in ``[0, size)`` or, as PyG accepts, a bool mask of length ``size``; returns the
    ids as ``torch.long`` (a mask becomes ``mask.nonzero().view(-1)``, in increasing order)."""
    check_tensor(index, name)
    if index.dtype == torch.bool:
        if index.dim() != 1 or index.numel() != size:
            raise ValueError(
                f'{name} is a bool mask of shape {tuple(index.shape)}; a mask must be 1-D with '
                f'one entry per node ({size_name} = {size}), or pass node ids instead'
            )
        return index.nonzero().view(-1)
    return check_index(index, name, upper=size, upper_name=size_name).long()


def check_edge_index(edge_index, name: str = 'edge_index') -> Tensor:
    """A ``[2, E]`` integer tensor (range is checked once the node counts are known)."""
    check_tensor(edge_index, name)
    if edge_index.dtype not in INDEX_DTYPES:
        raise TypeError(
            f'{name} must be torch.long (or torch.int32), got {edge_index.dtype}; '
            f'convert it with {name}.long()'
        )
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f'{name} must have shape [2, num_edges] (row 0 = source, row 1 = target), '
            f'got {tuple(edge_index.shape)}; transpose it if it is [num_edges, 2]'
        )
    return edge_index


def check_finite(value: Tensor, name: str) -> Tensor:
    if not (value.is_floating_point() or value.is_complex()):
        return value
    if defers_value_checks(value):
        # No early return on an empty tensor here: its size may be data-dependent under compile
        # (a guard on it cannot be traced), and all() of an empty tensor is true anyway.
        with torch.no_grad():
            finite = torch.isfinite(value).all()
        torch._assert_async(finite, f'{name} contains NaN or Inf; clean it (e.g. torch.nan_to_num)')
        return value
    if value.numel() == 0:
        return value
    # Any NaN/Inf makes the sum non-finite, so a finite sum clears the tensor in one reduction
    # without a bool tensor; a non-finite sum (or a finite tensor whose sum overflows) gets the
    # exact element-wise check.
    with torch.no_grad():
        if bool(torch.isfinite(value.sum())):
            return value
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f'{name} contains NaN or Inf; clean it (e.g. torch.nan_to_num) first')
    return value


def check_float(value, name: str, *, finite: bool = True) -> Tensor:
    check_tensor(value, name)
    if not value.is_floating_point():
        raise TypeError(
            f'{name} must be a floating-point tensor, got {value.dtype}; convert it with {name}.float()'
        )
    if finite:
        check_finite(value, name)
    return value


def check_length(value: Tensor, expected: int, name: str, expected_name: str) -> Tensor:
    if value.size(0) != expected:
        raise ValueError(
            f'{name} has {value.size(0)} entries along dim 0 but {expected_name} = {expected}; '
            'they must match'
        )
    return value


def check_edge_weight(edge_weight, num_edges: int, name: str = 'edge_weight') -> Tensor | None:
    if edge_weight is None:
        return None
    check_float(edge_weight, name)
    if edge_weight.dim() != 1:
        raise ValueError(
            f'{name} must be 1-dimensional [num_edges], got {tuple(edge_weight.shape)}'
        )
    return check_length(edge_weight, num_edges, name, 'the number of edges')


def check_same_device(tensors: Sequence[tuple[str, Tensor | None]]) -> torch.device | None:
    """All named tensors live on one device; returns it."""
    device = None
    first = None
    for name, tensor in tensors:
        if not isinstance(tensor, Tensor):
            continue  # None or a wrong type, which the type checks report
        if device is None:
            device, first = tensor.device, name
        elif tensor.device != device:
            raise ValueError(
                f'{name} is on {tensor.device} but {first} is on {device}; move them to one device '
                f'(e.g. {name}.to({first}.device))'
            )
    return device


def check_num_nodes(num_nodes, name: str = 'num_nodes') -> int:
    if isinstance(num_nodes, Tensor) and num_nodes.numel() == 1:
        num_nodes = int(num_nodes)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        raise TypeError(f'{name} must be an int, got {type(num_nodes).__name__}')
    if num_nodes < 0:
        raise ValueError(f'{name} must be >= 0, got {num_nodes}')
    return num_nodes


def check_positive_int(value, name: str) -> int:
    """An ``int >= 1`` (bools refused): sizes, counts, budgets."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'{name} must be an int, got {type(value).__name__}')
    if value < 1:
        raise ValueError(f'{name} must be >= 1, got {value}')
    return value


def check_node_features(x, num_nodes: int, name: str = 'x') -> Tensor:
    """A ``[num_nodes, F]`` float feature matrix with no NaN/Inf."""
    check_float(x, name)
    if x.dim() != 2:
        raise ValueError(
            f'{name} must be 2-dimensional [num_nodes, num_features], got {tuple(x.shape)}'
        )
    return check_length(x, num_nodes, name, 'num_nodes')


def check_nonempty_graph(num_nodes: int, name: str = 'the graph') -> None:
    if num_nodes == 0:
        raise ValueError(f'{name} has no nodes; pass a graph with at least one node')
