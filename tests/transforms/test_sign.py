import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data

from graphops.datasets import load
from graphops.testing import random_features, random_graph
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR
from graphops.transforms.sign import SIGN
from graphops.transforms.triangle import Triangle


def test_sign_equals_pyg_on_cora():
    data = load('Cora')[0]
    ours = SIGN(3)(data.clone())
    theirs = T.SIGN(3)(data.clone())
    for key in ('x1', 'x2', 'x3'):
        assert ours[key].dtype == theirs[key].dtype
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=1e-5)
    # PyG's keys and nothing more: the key list is opt-in.
    assert set(ours.keys()) == set(theirs.keys()) and len(ours) == len(theirs)
    assert 'sign_keys' not in ours


@pytest.mark.parametrize('weighted', [False, True])
def test_sign_equals_pyg_on_directed_multigraph(weighted):
    g = random_graph(60, 400, seed=8, isolated=5, weighted=weighted, dtype=torch.float32)
    data = Data(x=random_features(60, 7, dtype=torch.float32), edge_index=g.edge_index)
    if weighted:
        data.edge_weight = g.edge_weight
    ours = SIGN(2)(data.clone())
    theirs = T.SIGN(2)(data.clone())
    for key in ('x1', 'x2'):
        torch.testing.assert_close(ours[key], theirs[key])


def test_sign_operators_keys_compose_and_pre_transform():
    g = random_graph(40, 200, seed=9)
    data = Data(x=random_features(40, 3, dtype=torch.float32), edge_index=g.edge_index)
    ops = [Adjacency(2), PPR(1, alpha=[0.1, 0.2]), Triangle(1)]
    transform = T.Compose([T.ToUndirected(), SIGN(operators=ops, sign_keys=True)])
    out = transform(data.clone())
    expected = ['x1', 'x2', 'ppr_a0.1_1', 'ppr_a0.2_1', 'tri1']
    assert list(out.sign_keys) == expected == SIGN(operators=ops).keys()
    for key in out.sign_keys:
        assert out[key].shape == (40, 3)
    undirected = T.ToUndirected()(data.clone())
    torch.testing.assert_close(out.x2, Adjacency(2)(undirected).x2)
    # as a pre_transform it is a plain callable on Data
    assert list(SIGN(1, sign_keys=True)(data.clone()).sign_keys) == ['x1']
    assert 'sign_keys' not in SIGN(operators=ops)(data.clone())


@pytest.mark.parametrize('loader', ['from_data_list', 'DataLoader'])
def test_sign_keys_survive_collation(loader):
    """Issue 22: the documented idiom works on a batch as on one graph."""
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader

    transform = SIGN(operators=[Adjacency(2), Triangle(1)], sign_keys=True)
    graphs = []
    for seed, n in enumerate((9, 14, 6)):
        g = random_graph(n, 3 * n, seed=seed)
        graphs.append(transform(Data(x=random_features(n, 3, seed=seed), edge_index=g.edge_index)))
    if loader == 'from_data_list':
        batch = Batch.from_data_list(graphs)
    else:
        batch = next(iter(DataLoader(graphs, batch_size=3)))
    xs = [batch.x] + [batch[k] for k in batch.sign_keys]
    assert list(batch.sign_keys) == ['x1', 'x2', 'tri1']
    for key, x in zip(['x', 'x1', 'x2', 'tri1'], xs):
        torch.testing.assert_close(x, torch.cat([g[key] for g in graphs]))
    # and back: each graph of the batch reads its own keys again
    assert list(batch.get_example(1).sign_keys) == ['x1', 'x2', 'tri1']


def test_sign_repr_and_bad_input():
    assert repr(SIGN(3)) == 'SIGN(K=3)'
    assert repr(SIGN(3, sign_keys=True)) == 'SIGN(K=3, sign_keys=True)'
    with pytest.raises(TypeError, match='sign_keys must be a bool'):
        SIGN(3, sign_keys='yes')
    with pytest.raises(TypeError, match='positional'):
        SIGN(None, [Adjacency(1)])  # operators is keyword-only
    assert repr(SIGN(operators=[Adjacency(1)])).startswith('SIGN(operators=[Adjacency(1, ')
    with pytest.raises(ValueError, match='exactly one of K'):
        SIGN()
    with pytest.raises(ValueError, match='exactly one of K'):
        SIGN(2, operators=[Adjacency(2)])
    with pytest.raises(ValueError, match='at least one'):
        SIGN(operators=[])
    with pytest.raises(TypeError, match='SIGN operators'):
        SIGN(operators=[T.ToUndirected()])
    with pytest.raises(ValueError, match='another prefix'):
        SIGN(operators=[Adjacency(2), Adjacency(3, direction='transposed')])
    with pytest.raises(TypeError, match='K must be an int'):
        SIGN(2.5)
    with pytest.raises(ValueError, match='data.x is missing'):
        SIGN(1)(Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2))


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('weighted', [False, True])
def test_sign_device_equals_pyg_and_cpu(device, weighted):
    g = random_graph(60, 400, seed=8, isolated=5, weighted=weighted, dtype=torch.float32)
    data = Data(x=random_features(60, 7, dtype=torch.float32), edge_index=g.edge_index)
    if weighted:
        data.edge_weight = g.edge_weight
    ops = [Adjacency(2), PPR(1, alpha=[0.1, 0.2]), Triangle(1)]
    on_cpu = SIGN(operators=ops, sign_keys=True)(data.clone())
    ours = SIGN(operators=ops, sign_keys=True)(data.clone().to(device))
    theirs = T.SIGN(2)(data.clone().to(device))  # PyG's, on the same device
    assert ours.sign_keys == on_cpu.sign_keys
    for key in ours.sign_keys:
        assert ours[key].device.type == device.type
        torch.testing.assert_close(ours[key].cpu(), on_cpu[key])
    for key in ('x1', 'x2'):
        torch.testing.assert_close(ours[key], theirs[key])
