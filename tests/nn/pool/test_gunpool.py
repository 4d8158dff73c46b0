import pytest
import torch

from graphops.nn.pool.gpool import GPool
from graphops.nn.pool.gunpool import GUnpool
from graphops.testing import tolerance
from graphops.testing.gpool import dense_gunpool, make_batch

CASES = [
    (torch.tensor([0, 2, 5]), 6),
    (torch.tensor([4, 1]), 5),  # any order
    (torch.tensor([0]), 1),  # one node
    (torch.arange(7), 7),  # nothing dropped
    (torch.empty(0, dtype=torch.long), 3),  # everything dropped
]


@pytest.mark.parametrize(('perm', 'num_nodes'), CASES)
def test_matches_dense_reference(perm, num_nodes):
    x = torch.randn(perm.numel(), 3, dtype=torch.float64, requires_grad=True)
    out = GUnpool()(x, perm, num_nodes)
    torch.testing.assert_close(out, dense_gunpool(x, perm, num_nodes), **tolerance(torch.float64))
    probe = torch.randn(num_nodes, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * probe).sum(), x)
    torch.testing.assert_close(grad, probe[perm])  # the gradient of distribute is a gather


def test_gradcheck():
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda h: GUnpool()(h, torch.tensor([3, 0, 2]), 5), (x,))


def test_restores_the_positions_gpool_recorded():
    from graphops.testing import awkward_graphs

    graphs = [g for g in awkward_graphs() if g.num_nodes > 0]
    edge_index, _, batch, num_nodes = make_batch(graphs)
    x = torch.randn(num_nodes, 4, dtype=torch.float64)
    pool = GPool(4, ratio=0.5).double()
    pooled, _, _, _, perm, score = pool(x, edge_index, None, batch)
    restored = GUnpool()(pooled, perm, num_nodes)
    torch.testing.assert_close(restored[perm], x[perm] * score.unsqueeze(-1))
    dropped = torch.ones(num_nodes, dtype=torch.bool)
    dropped[perm] = False
    assert bool((restored[dropped] == 0).all())


def test_repr():
    assert repr(GUnpool()) == 'GUnpool()'


BAD = [
    ({'perm': torch.tensor([0, 0])}, ValueError, 'repeats'),
    ({'perm': torch.tensor([0, 9])}, ValueError, 'out of range'),
    ({'perm': torch.tensor([0.0, 1.0])}, TypeError, 'integer'),
    ({'perm': torch.tensor([0, 1, 2])}, ValueError, 'x has 2 entries'),
    ({'num_nodes': -1}, ValueError, 'num_nodes'),
    ({'num_nodes': 2.5}, TypeError, 'num_nodes'),
    ({'x': torch.tensor([[float('inf')], [0.0]])}, ValueError, 'NaN or Inf'),
    ({'x': torch.ones(2)}, ValueError, '2-dimensional'),
    ({'x': torch.ones(2, 1, dtype=torch.long)}, TypeError, 'floating'),
]


@pytest.mark.parametrize(('override', 'error', 'match'), BAD)
def test_bad_input(override, error, match):
    call = {'x': torch.ones(2, 1), 'perm': torch.tensor([0, 3]), 'num_nodes': 4, **override}
    with pytest.raises(error, match=match):
        GUnpool()(**call)


def test_perm_accepts_a_bool_mask():
    x = torch.randn(3, 4)
    mask = torch.tensor([True, False, True, True, False])
    expected = GUnpool()(x, mask.nonzero().view(-1), 5)
    assert torch.equal(GUnpool()(x, mask, 5), expected)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize(('perm', 'num_nodes'), CASES)
def test_device_matches_cpu(matches_cpu, perm, num_nodes):
    x = torch.randn(perm.numel(), 3, dtype=torch.float64, requires_grad=True)
    matches_cpu(GUnpool(), x, perm, num_nodes, grad=perm.numel() > 0)
