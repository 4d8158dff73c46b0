r"""Powers of the normalised triangle-motif adjacency: SIGN's triangle operator."""

from __future__ import annotations

import torch

from graphops.ops import normalize
from graphops.ops.csr import CSR, NORMS
from graphops.ops.triangle import triangle_adjacency
from graphops.transforms.operator import SIGNOperator, check_choice


class Triangle(SIGNOperator):
    r"""Powers of the normalised triangle-induced adjacency, from the `"SIGN: Scalable Inception
    Graph Neural Networks" <https://arxiv.org/abs/2004.11198>`_ paper:

    .. math::
        \mathbf{X}^{(k)} = \hat{\mathbf{A}}_{tri}^k \mathbf{X}, \qquad
        \mathbf{A}_{tri} = \mathbf{A} \circ (\mathbf{A} \mathbf{A}), \qquad
        \hat{\mathbf{A}}_{tri} = \mathcal{N}(\mathbf{A}_{tri} + \mathbf{I} \cdot
        [\text{add\_self\_loops}])

    for :math:`k = 1, \ldots, K`, where :math:`\mathbf{A}` is the symmetrised, binarised graph
    without self-loops, so :math:`(\mathbf{A}_{tri})_{ij}` is the number of triangles through edge
    :math:`(i, j)`. :math:`\mathcal{N}` is the normalisation of
    :class:`~graphops.transforms.adjacency.Adjacency` (``'sym'``: :math:`D^{-1/2} \cdot D^{-1/2}`
    with :math:`D` the triangle degrees). A node on no triangle has a zero row: its hops are zero,
    never NaN. :math:`\mathbf{A}_{tri}` comes from :func:`graphops.ops.triangle.triangle_adjacency`,
    a masked product that never forms :math:`\mathbf{A}\mathbf{A}`.

    Args:
        hops (int): number of hops :math:`K`.
        norm (str, optional): ``'sym'`` (default), ``'rw'``, ``'col'`` or ``None`` (raw counts).
        add_self_loops (bool): add :math:`\mathbf{I}` before normalising. (default: ``False``)
        prefix (str): key prefix. (default: ``'tri'``)

    Shapes:
        - **input:** ``data.x`` :math:`(N, F)` and the graph (``edge_index`` or ``adj_t``).
        - **output:** ``data[f'{prefix}{k}']`` :math:`(N, F)` for each hop.
    """

    def __init__(
        self,
        hops: int,
        norm: str | None = 'sym',
        add_self_loops: bool = False,
        prefix: str = 'tri',
    ):
        super().__init__(hops, prefix)
        self.norm = check_choice(norm, 'norm', NORMS)
        self.add_self_loops = bool(add_self_loops)

    def matrix(self, adj: CSR, dtype: torch.dtype = torch.float32) -> CSR:
        return normalize(
            triangle_adjacency(adj), self.norm, add_self_loops=self.add_self_loops, dtype=dtype
        )

    def params(self) -> dict:
        return {
            'hops': self.hops,
            'norm': self.norm,
            'add_self_loops': self.add_self_loops,
            'prefix': self.prefix,
        }
