"""One explicit cache for structures derived from a layer's graph inputs: layers that sort or
group a static graph (:class:`~graphops.nn.RGCNConv` with ``cached=True``,
:class:`~graphops.nn.models.GTN`) keep the result in an :class:`InputCache`."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor


class InputCache:
    r"""Remembers one value built from a sequence of inputs, and gives it back while the very
    same inputs come back: the same tensor objects (compared by identity, held weakly, so the
    cache keeps no graph alive) not modified in place since (same ``Tensor._version``), and equal
    non-tensor entries (sizes, flags, ``None``).

    The identity and version tests are Python-side checks for eager mode. A layer running under
    ``torch.compile`` reads :attr:`value` directly (what the last eager call or an explicit
    ``prepare`` step stored) and never calls :meth:`get`, so no check lands in the compiled graph.

    The cache is not model state: pickling or ``copy.deepcopy`` of an :class:`InputCache` (or of
    a module holding one) gives an empty cache, so a saved model holds its parameters only and
    rebuilds the value on first use.

    Example:
        .. code-block:: python

            cache = InputCache()
            plan = cache.get((edge_index, edge_type, num_nodes), lambda: build(edge_index))
    """

    def __init__(self) -> None:
        self.value: Any = None
        self._key: tuple | None = None

    @staticmethod
    def _key_of(inputs: Sequence) -> tuple:
        return tuple(
            (weakref.ref(t), t._version) if isinstance(t, Tensor) else ('value', t) for t in inputs
        )

    def lookup(self, inputs: Sequence) -> Any:
        """The stored value if ``inputs`` are the ones it was built from, else ``None``."""
        if self._key is None or len(self._key) != len(inputs):
            return None
        for entry, item in zip(self._key, inputs):
            if isinstance(item, Tensor):
                if entry[0] == 'value' or entry[0]() is not item or entry[1] != item._version:
                    return None
            elif entry[0] != 'value' or not _same(entry[1], item):
                return None
        return self.value

    def store(self, inputs: Sequence, value: Any) -> Any:
        """Keeps ``value`` for ``inputs`` (replacing what was kept) and returns it."""
        self._key = self._key_of(inputs)
        self.value = value
        return value

    def get(self, inputs: Sequence, build: Callable[[], Any]) -> Any:
        """The stored value for ``inputs``, or ``build()`` stored for them."""
        found = self.lookup(inputs)
        if found is not None:
            return found
        return self.store(inputs, build())

    def clear(self) -> None:
        """Drops the stored value."""
        self.value = None
        self._key = None

    def __bool__(self) -> bool:
        return self.value is not None

    def __getstate__(self) -> dict:
        return {'value': None, '_key': None}  # a cache is not state

    def __deepcopy__(self, memo) -> InputCache:
        return InputCache()

    def __repr__(self) -> str:
        held = 'empty' if self.value is None else type(self.value).__name__
        return f'InputCache({held})'


def _same(a, b) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, RuntimeError, ValueError):
        return False
