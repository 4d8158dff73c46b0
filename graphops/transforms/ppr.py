r"""Personalised-PageRank diffusion: SIGN's PPR operator."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from graphops.ops import normalize, orient
from graphops.ops import spmm as _spmm
from graphops.ops.csr import CSR, DIRECTIONS
from graphops.ops.spmm import host_empty
from graphops.transforms.operator import SIGNOperator, SpMM, check_choice

PPR_NORMS = ('sym', 'rw', 'col')


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        raise TypeError(f'alpha must be a float in (0, 1), got {type(alpha).__name__}')
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f'alpha must lie in (0, 1) (the teleport probability), got {alpha}')
    return float(alpha)


def empty_like_features(like: Tensor) -> Tensor:
    if like.device.type == 'cpu':
        return host_empty(*like.shape, like.dtype)
    return torch.empty_like(like)


class PPR(SIGNOperator):
    r"""Powers of the personalised-PageRank matrix, from the `"SIGN: Scalable Inception Graph
    Neural Networks" <https://arxiv.org/abs/2004.11198>`_ paper (the diffusion of `APPNP
    <https://arxiv.org/abs/1810.05997>`_):

    .. math::
        \mathbf{X}^{(s)} = \mathbf{P}^s \mathbf{X}, \qquad
        \mathbf{P} = \alpha \big(\mathbf{I} - (1 - \alpha) \hat{\mathbf{A}}\big)^{-1}
        = \alpha \sum_{t \ge 0} (1 - \alpha)^t \hat{\mathbf{A}}^t

    for :math:`s = 1, \ldots, K`, with :math:`\hat{\mathbf{A}}` the adjacency built exactly as in
    :class:`~graphops.transforms.adjacency.Adjacency` (here with self-loops by default:
    :math:`\mathcal{N}(\mathbf{A}_{dir} + \mathbf{I})`).

    :math:`\mathbf{P}` is never formed. Each hop runs the APPNP iteration
    :math:`\mathbf{Z}_0 = \alpha \mathbf{X}`, :math:`\mathbf{Z}_{t+1} = (1 - \alpha)
    \hat{\mathbf{A}} \mathbf{Z}_t + \alpha \mathbf{X}` for a fixed
    :math:`T = \lceil \log(\text{tol}) / \log(1 - \alpha) \rceil - 1` steps, so that
    :math:`\mathbf{Z}_T = \alpha \sum_{t \le T} (1 - \alpha)^t \hat{\mathbf{A}}^t \mathbf{X}` and the
    truncation error is at most :math:`(1 - \alpha)^{T+1} \lVert \mathbf{X} \rVert \le
    \text{tol} \cdot \lVert \mathbf{X} \rVert` in any norm where
    :math:`\lVert \hat{\mathbf{A}} \rVert \le 1` (the max-row norm for ``'rw'``, the max-column
    norm for ``'col'``, the spectral norm for ``'sym'`` on a symmetric graph; for every norm here
    the spectral radius is at most 1, so the series converges). The step count does not depend on
    the data, so column slices and resumed runs give the same bytes.

    Several ``alpha`` share one matrix and one product per step (their columns are multiplied
    together); each writes keys ``f'{prefix}_a{alpha:g}_{s}'``, a single one ``f'{prefix}{s}'``.

    Args:
        hops (int): number of hops :math:`K` (powers of :math:`\mathbf{P}`).
        alpha (float or sequence of float): teleport probability :math:`\alpha`.
            (default: ``0.15``)
        norm (str): ``'sym'`` (default), ``'rw'`` or ``'col'``.
        add_self_loops (bool): add :math:`\mathbf{I}` before normalising. (default: ``True``)
        direction (str): ``'directed'`` (default), ``'transposed'`` or ``'symmetric'``.
        tol (float): truncation tolerance of the series. (default: ``1e-4``)
        prefix (str): key prefix. (default: ``'ppr'``)

    Shapes:
        - **input:** ``data.x`` :math:`(N, F)` and the graph (``edge_index`` or ``adj_t``).
        - **output:** ``data[key]`` :math:`(N, F)` for each key of :meth:`keys`.
    """

    buffers_per_stream = 3  # alpha * X, Z_t and Z_{t+1}

    def __init__(
        self,
        hops: int,
        alpha: float | Sequence[float] = 0.15,
        norm: str = 'sym',
        add_self_loops: bool = True,
        direction: str = 'directed',
        tol: float = 1e-4,
        prefix: str = 'ppr',
    ):
        super().__init__(hops, prefix)
        alphas = alpha if isinstance(alpha, Sequence) and not isinstance(alpha, str) else [alpha]
        self.alphas = tuple(_check_alpha(a) for a in alphas)
        if not self.alphas:
            raise ValueError('alpha must hold at least one value')
        if len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f'alpha values must be distinct, got {list(self.alphas)}')
        if norm not in PPR_NORMS:
            raise ValueError(
                f'norm must be one of {PPR_NORMS} for PPR (the series needs a normalised '
                f'adjacency to converge), got {norm!r}'
            )
        self.norm = norm
        self.add_self_loops = bool(add_self_loops)
        self.direction = check_choice(direction, 'direction', DIRECTIONS)
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0.0 < tol < 1.0:
            raise ValueError(f'tol must be a float in (0, 1), got {tol!r}')
        self.tol = float(tol)

    @property
    def alpha(self) -> float | tuple[float, ...]:
        return self.alphas[0] if len(self.alphas) == 1 else self.alphas

    def num_iterations(self, alpha: float) -> int:
        """:math:`T`, the products per hop for teleport probability ``alpha``."""
        return max(0, math.ceil(math.log(self.tol) / math.log(1.0 - alpha)) - 1)

    @property
    def products_per_hop(self) -> int:
        return max(self.num_iterations(a) for a in self.alphas)

    def stream_tags(self) -> list[str]:
        if len(self.alphas) == 1:
            return ['']
        return [f'_a{a:g}_' for a in self.alphas]

    def matrix(self, adj: CSR, dtype: torch.dtype = torch.float32) -> CSR:
        oriented = orient(adj, self.direction)
        return normalize(oriented, self.norm, add_self_loops=self.add_self_loops, dtype=dtype)

    def step(self, matrix: CSR, xs: list[Tensor], spmm: SpMM = _spmm) -> list[Tensor]:
        out: list[Tensor | None] = [None] * len(xs)
        # streams with the same step count are multiplied together, one wide product per step;
        # columns never mix, so each stream gets the bytes it would get alone
        by_steps: dict[int, list[int]] = {}
        for stream, alpha in enumerate(self.alphas):
            by_steps.setdefault(self.num_iterations(alpha), []).append(stream)
        for steps, streams in by_steps.items():
            width = [xs[s].size(1) for s in streams]
            teleport = torch.cat([self.alphas[s] * xs[s] for s in streams], dim=1)
            # made on the device: a host tensor copied over would wait on the device
            keep = torch.cat(
                [
                    torch.full(
                        (w,), 1.0 - self.alphas[s], dtype=teleport.dtype, device=teleport.device
                    )
                    for s, w in zip(streams, width)
                ]
            )
            z, spare = empty_like_features(teleport), empty_like_features(teleport)
            z.copy_(teleport)  # ping-pong buffers: no allocation per product
            for _ in range(steps):
                product = spmm(matrix, z, out=spare).mul_(keep).add_(teleport)
                spare, z = z, product
            # the split copies each stream: free the two other [N, w] buffers first
            del spare, teleport
            for s, part in zip(streams, torch.split(z, width, dim=1)):
                out[s] = part.contiguous() if len(streams) > 1 else part
        return out

    def params(self) -> dict:
        return {
            'hops': self.hops,
            'alpha': list(self.alphas) if len(self.alphas) > 1 else self.alphas[0],
            'norm': self.norm,
            'add_self_loops': self.add_self_loops,
            'direction': self.direction,
            'tol': self.tol,
            'prefix': self.prefix,
        }
