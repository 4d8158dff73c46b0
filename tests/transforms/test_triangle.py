import pytest
import torch
from torch_geometric.data import Data

from graphops.ops import to_csr
from graphops.testing import awkward_graphs, dense_adjacency, random_features
from graphops.testing.core import dense_normalize
from graphops.testing.sign import dense_powers, dense_triangle_adjacency
from graphops.transforms.triangle import Triangle

GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('norm', ['sym', 'rw', 'col', None])
@pytest.mark.parametrize('add_self_loops', [False, True])
def test_triangle_matches_dense(graph, norm, add_self_loops):
    op = Triangle(3, norm=norm, add_self_loops=add_self_loops)
    x = random_features(graph.num_nodes, 4)
    out = op.propagate(to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes), x)
    tri = dense_triangle_adjacency(dense_adjacency(graph.edge_index, graph.num_nodes))
    if add_self_loops:
        tri = tri + torch.eye(graph.num_nodes, dtype=tri.dtype)
    expected = dense_powers(dense_normalize(tri, norm), x, 3)
    assert list(out) == ['tri1', 'tri2', 'tri3']
    for got, want in zip(out.values(), expected):
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


def test_triangle_rows_without_triangles_are_zero():
    # a triangle 0-1-2 and a path 2-3-4: nodes 3 and 4 are on no triangle
    ei = torch.tensor([[0, 1, 2, 2, 3], [1, 2, 0, 3, 4]])
    data = Triangle(2)(Data(x=torch.ones(5, 2), edge_index=ei))
    assert torch.equal(data.tri1[3:], torch.zeros(2, 2))
    assert list(data.sign_keys) == ['tri1', 'tri2']
    torch.testing.assert_close(data.tri1[:3], torch.ones(3, 2))  # a triangle is 2-regular


def test_triangle_repr_and_bad_input():
    assert repr(Triangle(2)) == "Triangle(2, norm='sym', add_self_loops=False, prefix='tri')"
    with pytest.raises(ValueError, match='norm must be one of'):
        Triangle(2, norm='max')
    with pytest.raises(ValueError, match='hops must be >= 1'):
        Triangle(-1)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('norm', ['sym', None])
def test_triangle_device_matches_cpu(device, graph, norm):
    data = Data(x=random_features(graph.num_nodes, 3), edge_index=graph.edge_index)
    data.num_nodes = graph.num_nodes
    op = Triangle(2, norm=norm, add_self_loops=True)
    expected = op(data.clone())
    got = op(data.clone().to(device))
    for key in ('tri1', 'tri2'):
        assert got[key].device.type == device.type
        torch.testing.assert_close(got[key].cpu(), expected[key])
