r"""Node features from degrees, for graph datasets that ship none (COLLAB, IMDB, REDDIT)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from graphops.ops.validate import (
    check_edge_index,
    check_index,
    check_num_nodes,
    check_positive_int,
)


def _degrees(data: Data) -> Tensor:
    """Out-degree of every node (entries of ``edge_index[0]``), ``int64``, as PyG's
    ``OneHotDegree`` counts them; isolated nodes, also the last ones, count 0."""
    if not isinstance(data, Data):
        raise TypeError(f'DegreeFeatures expects torch_geometric Data, got {type(data).__name__}')
    edge_index = data.edge_index
    num_nodes = data.num_nodes
    if edge_index is None or num_nodes is None:
        raise ValueError('DegreeFeatures needs data.edge_index and data.num_nodes')
    check_edge_index(edge_index, 'data.edge_index')
    num_nodes = check_num_nodes(num_nodes, 'data.num_nodes')
    row = check_index(edge_index[0], 'data.edge_index[0]', upper=num_nodes, upper_name='num_nodes')
    return torch.bincount(row.long(), minlength=num_nodes)


class DegreeFeatures(BaseTransform):
    r"""Node features from node degrees :math:`d_i`, by the rule of PyG's graph-classification
    benchmarks (``benchmark/kernel/datasets.py``) for datasets without node features:

    .. math::
        \mathbf{x}_i = \begin{cases}
            \mathrm{onehot}(d_i) \in \{0, 1\}^{D + 1} & D = \max_i d_i < \text{max\_one\_hot}
            \\ \big((d_i - \mu) / \sigma\big) \in \mathbb{R}^{1} & \text{otherwise,}
        \end{cases}

    with :math:`D`, :math:`\mu` and :math:`\sigma` (mean and sample standard deviation of the
    degrees) taken over every node of the dataset by :meth:`fit`. The one-hot branch equals
    :class:`torch_geometric.transforms.OneHotDegree` with ``max_degree = D``; the other is PyG's
    ``NormalizedDegree``, for degrees too large to one-hot (REDDIT). Where a graph already has
    ``x``, the degree features are appended to it (``OneHotDegree``'s ``cat=True``).

    Args:
        max_degree (int): :math:`D`, the width of the one-hot code minus one.
        one_hot (bool, optional): one-hot degrees, else standardised ones. (default: ``True``)
        mean (float, optional): :math:`\mu`. (default: ``0.0``)
        std (float, optional): :math:`\sigma`; zero is read as one. (default: ``1.0``)

    Shapes:
        - **input:** ``data.edge_index`` :math:`(2, E)`, optional ``data.x`` :math:`(N, F)`.
        - **output:** ``data.x`` :math:`(N, F + D + 1)` one-hot or :math:`(N, F + 1)`.
    """

    def __init__(
        self, max_degree: int, one_hot: bool = True, mean: float = 0.0, std: float = 1.0
    ) -> None:
        if isinstance(max_degree, bool) or not isinstance(max_degree, int) or max_degree < 0:
            raise ValueError(f'max_degree must be an int >= 0, got {max_degree!r}')
        for name, value in (('mean', mean), ('std', std)):
            if not isinstance(value, int | float) or not torch.isfinite(torch.tensor(value)):
                raise ValueError(f'{name} must be a finite number, got {value!r}')
        if std < 0:
            raise ValueError(f'std must be >= 0, got {std}')
        self.max_degree = max_degree
        self.one_hot = bool(one_hot)
        self.mean = float(mean)
        self.std = float(std) if std > 0 else 1.0

    @classmethod
    def fit(cls, graphs: Iterable[Data], max_one_hot: int = 1000) -> DegreeFeatures:
        """The transform for these graphs (a dataset or a list): one-hot when the largest degree
        is below ``max_one_hot``, else standardised by the degrees' mean and std."""
        check_positive_int(max_one_hot, 'max_one_hot')
        degrees = [_degrees(data) for data in graphs]
        if not degrees:
            raise ValueError('graphs is empty: DegreeFeatures.fit needs at least one graph')
        every = torch.cat(degrees)
        max_degree = int(every.max()) if every.numel() else 0
        if max_degree < max_one_hot:
            return cls(max_degree)
        every = every.double()
        std = float(every.std()) if every.numel() > 1 else 1.0
        return cls(max_degree, one_hot=False, mean=float(every.mean()), std=std)

    @property
    def num_features(self) -> int:
        """Columns this transform adds."""
        return self.max_degree + 1 if self.one_hot else 1

    def forward(self, data: Data) -> Data:
        deg = _degrees(data)
        if self.one_hot:
            if deg.numel() and int(deg.max()) > self.max_degree:
                raise ValueError(
                    f'a node has degree {int(deg.max())}, above max_degree = {self.max_degree}; '
                    'fit the transform on every graph it will see (DegreeFeatures.fit)'
                )
            feature = F.one_hot(deg, self.max_degree + 1).to(torch.float)
        else:
            feature = ((deg.double() - self.mean) / self.std).to(torch.float).view(-1, 1)
        x = data.x
        if x is not None:
            x = x.view(-1, 1) if x.dim() == 1 else x
            feature = torch.cat([x, feature.to(x.dtype)], dim=-1)
        data.x = feature
        return data

    def __repr__(self) -> str:
        if self.one_hot:
            return f'{self.__class__.__name__}({self.max_degree})'
        return (
            f'{self.__class__.__name__}({self.max_degree}, one_hot=False, mean={self.mean:.4g}, '
            f'std={self.std:.4g})'
        )
