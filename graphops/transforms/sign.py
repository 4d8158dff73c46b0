r"""``SIGN``: PyG's :class:`torch_geometric.transforms.SIGN`, extended to several operators."""

from __future__ import annotations

from torch_geometric.transforms import BaseTransform

from graphops.transforms.adjacency import Adjacency
from graphops.transforms.operator import (
    SIGNOperator,
    check_hops,
    graph_adjacency,
    record_sign_keys,
)


class SIGN(BaseTransform):
    r"""The Scalable Inception Graph Neural Network precomputation from the `"SIGN: Scalable
    Inception Graph Neural Networks" <https://arxiv.org/abs/2004.11198>`_ paper:

    .. math::
        \mathbf{X}^{(r, k)} = \hat{\mathbf{A}}_r^{\,k} \mathbf{X}

    for every operator :math:`r` and hop :math:`k`. ``SIGN(K)`` is a drop-in for PyG's
    ``SIGN(K)``: it stores :math:`(\mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2})^k \mathbf{X}` in
    ``data.x1 .. data.xK`` and adds nothing else, so the keys of ``data`` and ``len(data)`` are
    PyG's (it is ``SIGN(operators=[Adjacency(K)])``). With ``operators``, each operator
    (:class:`~graphops.transforms.adjacency.Adjacency`, :class:`~graphops.transforms.ppr.PPR`,
    :class:`~graphops.transforms.triangle.Triangle`) writes the keys of its own prefix.

    A model reads the outputs as ``[data.x] + [data[k] for k in transform.keys()]`` (PyG's
    ``[data.x] + [data[f'x{i}'] for i in range(1, K + 1)]`` for ``SIGN(K)``). With
    ``sign_keys=True`` the ordered keys are also recorded in ``data.sign_keys``, so
    ``[data.x] + [data[k] for k in data.sign_keys]`` works without the transform at hand, on a
    ``Data`` and on a :class:`~torch_geometric.data.Batch` made by
    :meth:`~torch_geometric.data.Batch.from_data_list` or a
    :class:`~torch_geometric.loader.DataLoader` (see
    :func:`~graphops.transforms.operator.record_sign_keys`).

    For graphs that do not fit in memory, :func:`graphops.precompute.engine.precompute` runs the
    same operators out of core, on GPU or on a Ray cluster.

    Args:
        K (int, optional): hops of the symmetric-normalised adjacency (PyG's argument).
        operators (list of SIGNOperator, optional, keyword-only): the operators, instead of ``K``.
        sign_keys (bool, keyword-only): also record the ordered keys in ``data.sign_keys``.
            (default: ``False``, as PyG)

    Shapes:
        - **input:** ``data.x`` :math:`(N, F)`, ``data.edge_index`` :math:`(2, E)` (optional
          ``data.edge_weight``) or ``data.adj_t``.
        - **output:** one :math:`(N, F)` attribute per key (and ``data.sign_keys`` when asked).
    """

    def __init__(
        self,
        K: int | None = None,
        *,
        operators: list[SIGNOperator] | None = None,
        sign_keys: bool = False,
    ):
        if (K is None) == (operators is None):
            raise ValueError(
                'pass exactly one of K (hops of the normalised adjacency, as in PyG) or '
                'operators=[...]'
            )
        if not isinstance(sign_keys, bool):
            raise TypeError(f'sign_keys must be a bool, got {type(sign_keys).__name__}')
        self.sign_keys = sign_keys
        self.K = None if K is None else check_hops(K, 'K')
        if operators is None:
            operators = [Adjacency(self.K)]
        operators = list(operators)
        if not operators:
            raise ValueError('operators must list at least one SIGN operator')
        keys: list[str] = []
        for op in operators:
            if not isinstance(op, SIGNOperator):
                raise TypeError(
                    f'operators must be SIGN operators (Adjacency, PPR, Triangle), got '
                    f'{type(op).__name__}'
                )
            clash = set(op.keys()) & set(keys)
            if clash:
                raise ValueError(
                    f'{op!r} writes keys {sorted(clash)} that an earlier operator writes; '
                    'give it another prefix=...'
                )
            keys += op.keys()
        self.operators = operators

    def keys(self) -> list[str]:
        """The keys this transform writes, in order."""
        return [key for op in self.operators for key in op.keys()]  # noqa: SIM118

    def forward(self, data):
        if getattr(data, 'x', None) is None:
            raise ValueError('data.x is missing; SIGN propagates node features')
        adj = graph_adjacency(data)  # built once, shared by every operator
        for op in self.operators:
            for key, value in op.propagate(adj, data.x).items():
                data[key] = value
        return record_sign_keys(data, self.keys()) if self.sign_keys else data

    def __repr__(self) -> str:
        extra = ', sign_keys=True' if self.sign_keys else ''
        if self.K is not None:
            return f'{self.__class__.__name__}(K={self.K}{extra})'
        return f'{self.__class__.__name__}(operators={self.operators!r}{extra})'
