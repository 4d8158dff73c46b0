import itertools

import pytest
import torch
from torch_geometric.data import Data

from graphops.ops import has_torch_sparse, to_csr
from graphops.testing import awkward_graphs, dense_adjacency, random_features, random_graph
from graphops.testing.sign import dense_operator_matrix, dense_powers
from graphops.transforms.adjacency import Adjacency

GRAPHS = [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0]
SETTINGS = list(
    itertools.product(
        ['sym', 'rw', 'col', None],
        ['directed', 'transposed', 'symmetric'],
        [(False, False), (True, False), (True, True)],  # (add_self_loops, remove_self_loops)
    )
)


@pytest.mark.parametrize('graph', GRAPHS, ids=[g.name for g in GRAPHS])
@pytest.mark.parametrize('norm,direction,loops', SETTINGS)
def test_adjacency_matches_dense_powers(graph, norm, direction, loops):
    add, remove = loops
    op = Adjacency(3, norm, add_self_loops=add, direction=direction, remove_self_loops=remove)
    x = random_features(graph.num_nodes, 4)
    out = op.propagate(to_csr(graph.edge_index, graph.edge_weight, graph.num_nodes), x)
    adj = dense_adjacency(graph.edge_index, graph.num_nodes, graph.edge_weight)
    if direction == 'symmetric':
        adj = (adj != 0).double()  # the symmetrised graph is binarised
    matrix = dense_operator_matrix(adj, norm, add, direction, remove)
    expected = dense_powers(matrix, x, 3)
    assert list(out) == ['x1', 'x2', 'x3']
    for got, want in zip(out.values(), expected):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


def test_adjacency_transform_writes_keys_and_sign_keys():
    g = random_graph(30, 120, seed=1)
    data = Data(x=random_features(30, 5, dtype=torch.float32), edge_index=g.edge_index)
    data = Adjacency(2, direction='transposed', prefix='t')(data)
    assert list(data.sign_keys) == ['t1', 't2']
    assert data.t1.shape == (30, 5) and data.t2.dtype == torch.float32
    data = Adjacency(1, prefix='s', direction='symmetric')(data)
    assert list(data.sign_keys) == ['t1', 't2', 's1']


def test_adjacency_input_forms_agree():
    g = random_graph(25, 100, seed=2, weighted=True, dtype=torch.float32)
    x = random_features(25, 3, dtype=torch.float32)
    op = Adjacency(2, norm='rw')
    from_index = op(Data(x=x, edge_index=g.edge_index, edge_weight=g.edge_weight))
    adj_t = torch.sparse_coo_tensor(g.edge_index.flip(0), g.edge_weight, (25, 25))
    from_sparse = op(Data(x=x, adj_t=adj_t, num_nodes=25))
    torch.testing.assert_close(from_index.x2, from_sparse.x2)


@pytest.mark.skipif(not has_torch_sparse(), reason='torch_sparse is not installed')
def test_adjacency_sparse_tensor_input():
    from torch_sparse import SparseTensor

    g = random_graph(25, 100, seed=2)
    x = random_features(25, 3, dtype=torch.float32)
    adj_t = SparseTensor(row=g.edge_index[1], col=g.edge_index[0], sparse_sizes=(25, 25))
    a = Adjacency(2)(Data(x=x, edge_index=g.edge_index))
    b = Adjacency(2)(Data(x=x, adj_t=adj_t, num_nodes=25))
    torch.testing.assert_close(a.x2, b.x2)


def test_adjacency_repr():
    assert repr(Adjacency(3)) == (
        "Adjacency(3, norm='sym', add_self_loops=False, direction='directed', "
        "remove_self_loops=False, prefix='x')"
    )


def test_adjacency_bad_input():
    with pytest.raises(TypeError, match='hops must be an int'):
        Adjacency(2.0)
    with pytest.raises(ValueError, match='hops must be >= 1'):
        Adjacency(0)
    with pytest.raises(ValueError, match='norm must be one of'):
        Adjacency(2, norm='row')
    with pytest.raises(ValueError, match='direction must be one of'):
        Adjacency(2, direction='undirected')
    with pytest.raises(TypeError, match='prefix must be a non-empty str'):
        Adjacency(2, prefix='')
    with pytest.raises(ValueError, match='prefix must hold only'):
        Adjacency(2, prefix='a/b')
    op = Adjacency(2)
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match='x has 3 entries'):
        op.propagate(csr, torch.randn(3, 2))
    with pytest.raises(ValueError, match='NaN or Inf'):
        op.propagate(csr, torch.tensor([[0.0], [float('nan')]]))
    with pytest.raises(TypeError, match='floating-point'):
        op.propagate(csr, torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='no nodes'):
        op.propagate(to_csr(torch.empty(2, 0, dtype=torch.long), num_nodes=0), torch.empty(0, 2))
    with pytest.raises(ValueError, match='data.x is missing'):
        op(Data(edge_index=csr.to_edge_index()[0], num_nodes=2))
    with pytest.raises(ValueError, match='neither edge_index nor adj_t'):
        op(Data(x=torch.randn(2, 2)))


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('norm,direction,loops', SETTINGS[::3])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_adjacency_device_matches_cpu(device, norm, direction, loops, dtype):
    add, remove = loops
    op = Adjacency(3, norm, add_self_loops=add, direction=direction, remove_self_loops=remove)
    g = random_graph(60, 400, seed=8, isolated=5, weighted=True, dtype=dtype)
    data = Data(x=random_features(60, 5, dtype=dtype), edge_index=g.edge_index)
    data.edge_weight = g.edge_weight
    expected = op(data.clone())
    got = op(data.clone().to(device))
    assert list(got.sign_keys) == list(expected.sign_keys) == ['x1', 'x2', 'x3']
    for key in expected.sign_keys:
        assert got[key].device.type == device.type and got[key].dtype == dtype
        torch.testing.assert_close(got[key].cpu(), expected[key])
