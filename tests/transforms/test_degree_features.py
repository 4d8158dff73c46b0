import pickle

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import OneHotDegree
from torch_geometric.utils import degree

from graphops.transforms import DegreeFeatures


def _graphs():
    gen = torch.Generator().manual_seed(0)
    graphs = []
    for n in (5, 9, 14):
        edge_index = torch.randint(0, n - 1, (2, 3 * n), generator=gen)  # node n - 1 isolated
        graphs.append(Data(edge_index=edge_index, num_nodes=n))
    return graphs


def test_one_hot_equals_pyg_one_hot_degree():
    graphs = _graphs()
    transform = DegreeFeatures.fit(graphs)
    max_degree = max(int(degree(g.edge_index[0], g.num_nodes).max()) for g in graphs)
    assert transform.one_hot and transform.max_degree == max_degree
    assert transform.num_features == max_degree + 1
    for g in graphs:
        ours = transform(g.clone()).x
        theirs = OneHotDegree(max_degree)(g.clone()).x
        assert ours.shape == (g.num_nodes, max_degree + 1)
        assert torch.equal(ours, theirs)
        assert ours[-1, 0] == 1  # the trailing isolated node has degree 0


def test_standardised_above_the_one_hot_limit():
    graphs = _graphs()
    transform = DegreeFeatures.fit(graphs, max_one_hot=3)
    every = torch.cat([degree(g.edge_index[0], g.num_nodes, dtype=torch.float64) for g in graphs])
    assert not transform.one_hot and transform.num_features == 1
    assert transform.mean == pytest.approx(float(every.mean()))
    assert transform.std == pytest.approx(float(every.std()))
    out = torch.cat([transform(g.clone()).x for g in graphs]).double().view(-1)
    expected = (every - every.mean()) / every.std()
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert 'one_hot=False' in repr(transform)


def test_appends_to_existing_features_and_pickles():
    g = _graphs()[0]
    g.x = torch.randn(g.num_nodes, 3)
    transform = DegreeFeatures.fit([g])
    out = pickle.loads(pickle.dumps(transform))(g.clone())
    assert out.x.shape == (g.num_nodes, 3 + transform.num_features)
    assert torch.equal(out.x[:, :3], g.x)


def test_zero_std_and_edgeless_graphs():
    g = Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=4)
    transform = DegreeFeatures.fit([g])
    assert transform.max_degree == 0
    assert torch.equal(transform(g.clone()).x, torch.ones(4, 1))
    flat = DegreeFeatures(0, one_hot=False, mean=0.0, std=0.0)
    assert torch.equal(flat(g.clone()).x, torch.zeros(4, 1))


def test_bad_input():
    graphs = _graphs()
    with pytest.raises(ValueError, match='graphs is empty'):
        DegreeFeatures.fit([])
    with pytest.raises(ValueError, match='max_one_hot'):
        DegreeFeatures.fit(graphs, max_one_hot=0)
    with pytest.raises(ValueError, match='max_degree'):
        DegreeFeatures(-1)
    with pytest.raises(ValueError, match='std'):
        DegreeFeatures(3, one_hot=False, std=float('nan'))
    with pytest.raises(ValueError, match='above max_degree'):
        path = Data(edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=3)
        star = Data(edge_index=torch.tensor([[0, 0, 0], [1, 2, 3]]), num_nodes=4)
        DegreeFeatures.fit([path])(star)
    bad = Data(edge_index=torch.tensor([[0, 7], [1, 0]]), num_nodes=3)
    with pytest.raises(ValueError, match=r'data.edge_index\[0\]'):
        DegreeFeatures.fit([bad])
    with pytest.raises(TypeError, match='Data'):
        DegreeFeatures.fit([torch.zeros(2, 2)])
