"""Dense references for the SIGN operators, written straight from the equations (small graphs).

All take the dense ``adj_t`` matrix (``A[i, j]`` = weight of edge ``j -> i``, as
:func:`graphops.testing.dense_adjacency` builds it) and work in its dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.testing.core import dense_normalize


def dense_orient(adj_t: Tensor, direction: str) -> Tensor:
    """``'directed'``: as is; ``'transposed'``: reversed; ``'symmetric'``: 1[A + A^T > 0]."""
    if direction == 'directed':
        return adj_t
    if direction == 'transposed':
        return adj_t.t()
    if direction == 'symmetric':
        return ((adj_t + adj_t.t()) != 0).to(adj_t.dtype)
    raise ValueError(direction)


def dense_operator_matrix(
    adj_t: Tensor,
    norm: str | None,
    add_self_loops: bool = False,
    direction: str = 'directed',
    remove_self_loops: bool = False,
) -> Tensor:
    """``N(A_dir - diag(A_dir)[remove] + I[add])``."""
    a = dense_orient(adj_t, direction).clone()
    if remove_self_loops:
        a.fill_diagonal_(0)
    if add_self_loops:
        a = a + torch.eye(a.size(0), dtype=a.dtype)
    return dense_normalize(a, norm)


def dense_powers(matrix: Tensor, x: Tensor, hops: int) -> list[Tensor]:
    """``[M X, M^2 X, ..., M^K X]`` by repeated dense products."""
    out, current = [], x
    for _ in range(hops):
        current = matrix @ current
        out.append(current)
    return out


def dense_ppr_matrix(adj_hat: Tensor, alpha: float) -> Tensor:
    """``P = alpha (I - (1 - alpha) A_hat)^{-1}`` by the dense inverse."""
    eye = torch.eye(adj_hat.size(0), dtype=adj_hat.dtype)
    return alpha * torch.linalg.inv(eye - (1.0 - alpha) * adj_hat)


def dense_triangle_adjacency(adj_t: Tensor) -> Tensor:
    """``A o (A A)`` with A the symmetrised, binarised graph without self-loops."""
    a = dense_orient(adj_t, 'symmetric').clone()
    a.fill_diagonal_(0)
    return a * (a @ a)
