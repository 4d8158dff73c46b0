r"""DropEdge keyed by the edge itself: the same edges are dropped whatever the order, chunking,
row-block size or memory budget that streams them.

Edge :math:`(s, t)` is kept when

.. math::
    u(s, t) = \mathrm{splitmix64}\big(\mathrm{splitmix64}(\text{seed}) \oplus
    (s \cdot 2^{32} + t)\big) / 2^{64} \;\ge\; \text{rate},

a counter-based hash, so no random stream has to be consumed in a fixed order (a stream drawn
edge after edge would tie the mask to the order the edges are read in).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def keep_mask(src: np.ndarray, dst: np.ndarray, rate: float, seed: int) -> np.ndarray | None:
    """``[E]`` bool: which edges ``(src[e], dst[e])`` DropEdge keeps at ``rate`` (``None`` when
    ``rate`` is 0: every edge is kept). Node ids must be below :math:`2^{32}`.

    Shapes:
        ``src``, ``dst``: :math:`(E,)` integer arrays -> :math:`(E,)` bool.
    """
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f'the DropEdge rate must lie in [0, 1), got {rate}')
    if rate == 0.0:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f'the DropEdge seed must be a non-negative int, got {seed!r}')
    with np.errstate(over='ignore'):
        salt = _splitmix64(np.array([seed], dtype=np.uint64))[0]
        key = (src.astype(np.uint64) << np.uint64(32)) | dst.astype(np.uint64)
        draw = _splitmix64(key ^ salt) >> np.uint64(11)  # 53 random bits
    return draw >= np.uint64(int(rate * float(1 << 53)))


def drop_edges(edge_index: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """``edge_index`` ``[2, E]`` without the edges DropEdge removes at ``rate`` (the authors'
    subsampling of the operators), keyed by edge (:func:`keep_mask`), in chunks of 4M edges."""
    if float(rate) == 0.0:
        return edge_index
    step = 1 << 22
    keep = np.empty(edge_index.shape[1], dtype=bool)
    for start in range(0, keep.size, step):
        stop = start + step
        keep[start:stop] = keep_mask(
            edge_index[0, start:stop], edge_index[1, start:stop], rate, seed
        )
    return edge_index[:, keep]
