r"""``PrecomputePlan``: which column slices the precompute engine runs, sized to a memory budget.

Every SIGN operator acts on each feature column independently, so the engine computes all hops
of one operator for one *column slice* ``X[:, a:b]`` at a time. A slice of width :math:`w` needs,
on the device that runs it,

.. math::
    \text{bytes}(w) = w \cdot \big( c N S (1 + B) + s R \cdot S \cdot K \big)

for :math:`N` nodes, :math:`R` kept rows, an operator with :math:`S` streams of :math:`K` hops
whose step keeps :math:`B` ``[N, w]`` buffers per stream (``buffers_per_stream``), plus each
stream's previous hop (alive while the step runs: the input slice at the first hop, one state per
stream after it), all in the compute dtype of :math:`c` bytes a value (4 for float32, 8 when the
features are float64); the last term holds one slice of every output (what a worker returns) in the
storage dtype of :math:`s` bytes a value. The plan takes the widest :math:`w` (at most ``F``)
whose bytes fit ``column_budget_bytes`` for the most demanding operator. The sparse matrix itself
is not part of this budget: it stays on the host, is moved to the device when it fits, or is
streamed by row blocks (:mod:`graphops.ops.streaming`) when it does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def _itemsize(dtype: torch.dtype, name: str) -> int:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f'{name} must be a floating torch.dtype, got {dtype!r}')
    return dtype.itemsize


@dataclass(frozen=True)
class PrecomputePlan:
    r"""The column slices and their memory cost (build it with :meth:`build`).

    Args:
        num_nodes (int): :math:`N`.
        num_features (int): :math:`F`.
        num_rows (int): :math:`R`, rows kept in the outputs.
        slices (list of (int, int)): column ranges ``[start, end)`` covering ``0..F``.
        bytes_per_column (int): the most demanding operator's bytes per column.
        column_budget_bytes (int, optional): the budget the slices were sized for.

    Shapes:
        ``slices``: one ``(start, end)`` pair per column slice, ``end - start <= slice_width``.
    """

    num_nodes: int
    num_features: int
    num_rows: int
    slices: list[tuple[int, int]] = field(default_factory=list)
    bytes_per_column: int = 0
    column_budget_bytes: int | None = None

    @staticmethod
    def operator_bytes_per_column(
        num_nodes: int,
        num_rows: int,
        operator,
        compute_dtype: torch.dtype = torch.float32,
        storage_dtype: torch.dtype = torch.float32,
    ) -> int:
        """Bytes one feature column of ``operator`` takes (the formula in the module docstring)."""
        compute = _itemsize(compute_dtype, 'compute_dtype')
        storage = _itemsize(storage_dtype, 'storage_dtype')
        streams, hops = operator.num_streams, operator.hops
        working = compute * num_nodes * streams * (1 + operator.buffers_per_stream)
        return working + storage * num_rows * streams * hops

    @classmethod
    def build(
        cls,
        num_nodes: int,
        num_features: int,
        operators: list,
        num_rows: int | None = None,
        column_budget_bytes: int | None = None,
        *,
        compute_dtype: torch.dtype = torch.float32,
        storage_dtype: torch.dtype = torch.float32,
    ) -> PrecomputePlan:
        """Slices of equal width (the last may be narrower) fitting ``column_budget_bytes``;
        ``None`` means one slice of all ``F`` columns. ``compute_dtype`` is the dtype the hops
        are computed in (float32, or float64 for float64 features), ``storage_dtype`` the dtype
        the outputs are returned in.

        Raises:
            ValueError: the budget cannot hold even one column.
        """
        num_rows = num_nodes if num_rows is None else num_rows
        if not operators:
            raise ValueError('operators must name at least one SIGN operator')
        per_column = max(
            cls.operator_bytes_per_column(num_nodes, num_rows, op, compute_dtype, storage_dtype)
            for op in operators
        )
        if column_budget_bytes is None:
            width = num_features
        else:
            if isinstance(column_budget_bytes, bool) or not isinstance(column_budget_bytes, int):
                raise TypeError(
                    'column_budget_bytes must be an int (bytes), got '
                    f'{type(column_budget_bytes).__name__}'
                )
            width = column_budget_bytes // per_column
            if width < 1:
                raise ValueError(
                    f'column_budget_bytes={column_budget_bytes} cannot hold one feature column: '
                    f'one column of these operators needs {per_column} bytes '
                    f'({per_column / 2**20:.1f} MiB); raise the budget'
                )
            width = min(width, num_features)
        width = max(width, 1)
        count = max(1, math.ceil(num_features / width))
        slices = [(i * width, min((i + 1) * width, num_features)) for i in range(count)]
        return cls(num_nodes, num_features, num_rows, slices, per_column, column_budget_bytes)

    @property
    def slice_width(self) -> int:
        return self.slices[0][1] - self.slices[0][0] if self.slices else 0

    def peak_bytes(self) -> int:
        """Working bytes of the widest slice (what the budget bounds)."""
        return self.slice_width * self.bytes_per_column

    def __repr__(self) -> str:
        return (
            f'PrecomputePlan(num_nodes={self.num_nodes}, num_features={self.num_features}, '
            f'num_rows={self.num_rows}, slices={len(self.slices)} x {self.slice_width} columns, '
            f'peak_bytes={self.peak_bytes()})'
        )
