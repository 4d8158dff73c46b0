"""Memory budgets for products whose output size depends on the data (sparse x sparse).

Before a product allocates, its caller estimates the bytes it needs and asks :func:`check_fits`.
Past the budget the call raises :class:`ProductTooLargeError` (a ``MemoryError``) that names the
estimate and the fixes, instead of growing until the kernel's OOM killer ends the process.

The budget is, in order: the value given to :func:`set_memory_budget`, the environment variable
``GRAPHOPS_MEMORY_BUDGET`` (bytes, or with a ``K``/``M``/``G`` suffix), else half of the memory
available when the product starts (``MemAvailable`` on Linux; free device memory on CUDA), so
that a chain of products adapts to what earlier ones took.
"""

from __future__ import annotations

import os

import torch

__all__ = [
    'ProductTooLargeError',
    'available_bytes',
    'check_fits',
    'memory_budget',
    'set_memory_budget',
]

#: share of the available memory a single product may take by default
DEFAULT_SHARE = 0.5
_SUFFIXES = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
_budget: int | None = None


class ProductTooLargeError(MemoryError):
    """A product's estimated memory exceeds the budget (see :func:`memory_budget`)."""


def set_memory_budget(num_bytes: int | None) -> None:
    """Sets the budget of one product in bytes for the rest of the process (``None``: back to the
    environment variable or the default)."""
    global _budget
    if num_bytes is not None and (
        isinstance(num_bytes, bool) or not isinstance(num_bytes, int) or num_bytes < 1
    ):
        raise ValueError(f'num_bytes must be a positive int or None, got {num_bytes!r}')
    _budget = num_bytes


def available_bytes(device: torch.device | str = 'cpu') -> int:
    """Bytes that can be allocated now: free memory on a CUDA device, else the host's
    ``MemAvailable`` (or free pages where ``/proc/meminfo`` is missing)."""
    device = torch.device(device)
    if device.type == 'cuda':
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open('/proc/meminfo') as meminfo:
            for line in meminfo:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def memory_budget(device: torch.device | str = 'cpu') -> int:
    """The most bytes one product may take now (see the module docstring)."""
    if _budget is not None:
        return _budget
    text = os.environ.get('GRAPHOPS_MEMORY_BUDGET', '').strip()
    if text:
        scale = _SUFFIXES.get(text[-1].upper(), 1)
        digits = text[:-1] if text[-1].upper() in _SUFFIXES else text
        try:
            return max(1, int(float(digits) * scale))
        except ValueError as err:
            raise ValueError(
                f'GRAPHOPS_MEMORY_BUDGET must be a byte count such as 8G or 500000000, got {text!r}'
            ) from err
    return int(DEFAULT_SHARE * available_bytes(device))


def human_bytes(num_bytes: int) -> str:
    """``num_bytes`` as GiB, MiB or KiB, whichever reads best."""
    for unit, scale in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
        if num_bytes >= scale:
            return f'{num_bytes / scale:.2f} {unit}'
    return f'{num_bytes} bytes'


def check_fits(estimate: int, what: str, fixes: str, device: torch.device | str = 'cpu') -> None:
    """Raises :class:`ProductTooLargeError` when ``estimate`` bytes exceed :func:`memory_budget`.

    Args:
        estimate (int): bytes the operation will allocate.
        what (str): the operation, for the message (e.g. ``'spgemm of 26128 x 26128 matrices'``).
        fixes (str): what the caller can change, for the message.
        device: where the memory would be allocated.
    """
    budget = memory_budget(device)
    if estimate > budget:
        raise ProductTooLargeError(
            f'{what} needs about {human_bytes(estimate)}, over the budget of '
            f'{human_bytes(budget)}; {fixes}. The budget is half the available memory by '
            'default; set GRAPHOPS_MEMORY_BUDGET or graphops.ops.memory.set_memory_budget to '
            'change it'
        )
