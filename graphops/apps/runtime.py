"""Process-level helpers the packaged applications (and the benchmarks) share."""

from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ['process_peak_rss_bytes', 'threads']


def process_peak_rss_bytes() -> int:
    """This process's peak RSS so far (``ru_maxrss``), in bytes."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def threads(num: int | None):
    """Temporarily set torch's intra-op thread count (``None`` or 0 keeps it)."""
    old = torch.get_num_threads()
    if num:
        torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(old)
