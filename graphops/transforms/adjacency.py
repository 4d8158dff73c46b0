r"""Powers of the normalised adjacency: SIGN's basic operator."""

from __future__ import annotations

import torch

from graphops.ops import normalize, orient
from graphops.ops.csr import CSR, DIRECTIONS, NORMS
from graphops.transforms.operator import SIGNOperator, check_choice


class Adjacency(SIGNOperator):
    r"""Powers of the normalised adjacency, from the `"SIGN: Scalable Inception Graph Neural
    Networks" <https://arxiv.org/abs/2004.11198>`_ paper:

    .. math::
        \mathbf{X}^{(k)} = \hat{\mathbf{A}}^k \mathbf{X}, \qquad
        \hat{\mathbf{A}} = \mathcal{N}\big(\mathbf{A}_{dir} - \mathrm{diag}(\mathbf{A}_{dir})
        \cdot [\text{remove\_self\_loops}] + \mathbf{I} \cdot [\text{add\_self\_loops}]\big)

    for :math:`k = 1, \ldots, K`, saved as ``data[f'{prefix}{k}']``. :math:`\mathbf{A}` is in
    PyG's ``adj_t`` form (:math:`A_{ij}` = weight of edge :math:`j \to i`, so a product gathers
    from sources into targets), and :math:`\mathbf{A}_{dir}` is

    * ``'directed'``: :math:`\mathbf{A}` (messages follow the edges, ``edge_index[0]`` ->
      ``edge_index[1]``: each node gathers from its in-neighbours);
    * ``'transposed'``: :math:`\mathbf{A}^\top` (messages flow against the edges);
    * ``'symmetric'``: the binarised union :math:`\mathbf{1}[\mathbf{A} + \mathbf{A}^\top > 0]`.

    With :math:`d_i = \sum_j (\cdot)_{ij}` (row sums, in-degrees) and :math:`d'_j` the column
    sums, :math:`\mathcal{N}` is ``'sym'``: :math:`D^{-1/2} \cdot D^{-1/2}`, ``'rw'``:
    :math:`D^{-1} \cdot`, ``'col'``: :math:`\cdot D'^{-1}`, ``None``: unchanged; a zero degree
    gives a zero row or column, never NaN.

    With its defaults it reproduces PyG's :class:`torch_geometric.transforms.SIGN` exactly (keys
    ``x1..xK``, symmetric in-degree normalisation, edges as given, no self-loops). The SIGN
    authors' ogbn-papers100M operators are ``direction='symmetric', norm='sym',
    remove_self_loops=True, add_self_loops=True`` (undirected, diagonal set to one) and
    ``direction='directed'`` / ``'transposed'`` with ``norm='rw', remove_self_loops=True``.

    Args:
        hops (int): number of hops :math:`K`.
        norm (str, optional): ``'sym'`` (default), ``'rw'``, ``'col'`` or ``None``.
        add_self_loops (bool): add :math:`\mathbf{I}` before normalising. (default: ``False``)
        direction (str): ``'directed'`` (default), ``'transposed'`` or ``'symmetric'``.
        remove_self_loops (bool): drop existing self-loops first. (default: ``False``)
        prefix (str): key prefix. (default: ``'x'``)

    Shapes:
        - **input:** ``data.x`` :math:`(N, F)`, ``data.edge_index`` :math:`(2, E)` (optional
          ``data.edge_weight`` :math:`(E)`) or ``data.adj_t``.
        - **output:** ``data[f'{prefix}{k}']`` :math:`(N, F)` for each hop, and the keys appended
          to ``data.sign_keys``.
    """

    def __init__(
        self,
        hops: int,
        norm: str | None = 'sym',
        add_self_loops: bool = False,
        direction: str = 'directed',
        remove_self_loops: bool = False,
        prefix: str = 'x',
    ):
        super().__init__(hops, prefix)
        self.norm = check_choice(norm, 'norm', NORMS)
        self.add_self_loops = bool(add_self_loops)
        self.direction = check_choice(direction, 'direction', DIRECTIONS)
        self.remove_self_loops = bool(remove_self_loops)

    def matrix(self, adj: CSR, dtype: torch.dtype = torch.float32) -> CSR:
        oriented = orient(adj, self.direction)
        if self.remove_self_loops:
            oriented = oriented.remove_self_loops()
        return normalize(oriented, self.norm, add_self_loops=self.add_self_loops, dtype=dtype)

    def params(self) -> dict:
        return {
            'hops': self.hops,
            'norm': self.norm,
            'add_self_loops': self.add_self_loops,
            'direction': self.direction,
            'remove_self_loops': self.remove_self_loops,
            'prefix': self.prefix,
        }
