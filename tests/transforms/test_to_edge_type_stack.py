import copy
from itertools import product
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data, HeteroData

from graphops.datasets.hgb_dataset import HGBDataset
from graphops.transforms.to_edge_type_stack import ToEdgeTypeStack, to_edge_type_stack

HGB_ROOT = Path(__file__).resolve().parents[2] / 'data' / 'HGB'


def toy(multi_label: bool = False, weights: bool = False) -> HeteroData:
    """movie (3 nodes, 4 features), person (4 nodes, 2 features), tag (2 nodes, featureless)."""
    data = HeteroData()
    data['movie'].x = torch.arange(12, dtype=torch.float).view(3, 4)
    data['person'].x = -torch.arange(1, 9, dtype=torch.float).view(4, 2)
    data['tag'].num_nodes = 2
    acts = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 2]])  # person -> movie
    data['person', 'acts', 'movie'].edge_index = acts
    data['movie', 'cast', 'person'].edge_index = acts.flip(0)[:, [2, 0, 3, 1]]  # same set
    data['movie', 'tagged', 'tag'].edge_index = torch.tensor([[0, 2], [1, 1]])
    data['movie', 'similar', 'movie'].edge_index = torch.tensor([[0, 1], [1, 0]])  # symmetric
    data['person', 'knows', 'person'].edge_index = torch.tensor([[0], [3]])  # one-way
    if weights:
        data['movie', 'tagged', 'tag'].edge_weight = torch.tensor([0.5, 2.0])
    if multi_label:
        data['movie'].y = torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0]])
    else:
        data['movie'].y = torch.tensor([2, -1, 0])
    data['movie'].train_mask = torch.tensor([True, False, False])
    data['movie'].val_mask = torch.tensor([False, False, True])
    data['movie'].test_mask = torch.tensor([False, True, False])
    return data


def check_round_trip(data: HeteroData, stack: Data) -> None:
    """Each edge type's stacked edges are its hetero edges shifted by the type offsets."""
    offsets = dict(zip(stack.node_type_names, stack.node_type_offsets))
    assert offsets == data.node_offsets
    assert stack.edge_type.dtype == torch.long
    assert int(stack.edge_type.min()) >= 0 and int(stack.edge_type.max()) < stack.num_relations
    for r, (src, rel, dst) in enumerate(data.edge_types):
        assert stack.edge_type_names[r] == rel
        shift = torch.tensor([[offsets[src]], [offsets[dst]]])
        expected = data[src, rel, dst].edge_index + shift
        assert torch.equal(stack.edge_index[:, stack.edge_type == r], expected)
        assert bool((stack.node_type[expected[0]] == stack.node_type_names.index(src)).all())
        assert bool((stack.node_type[expected[1]] == stack.node_type_names.index(dst)).all())


@pytest.mark.parametrize(('multi_label', 'weights'), list(product([False, True], [False, True])))
def test_toy_stack(multi_label, weights):
    data = toy(multi_label, weights)
    stack = to_edge_type_stack(data)
    check_round_trip(data, stack)
    assert stack.num_nodes == 9 and stack.num_relations == 5
    assert stack.edge_index.shape == (2, 4 + 4 + 2 + 2 + 1)
    assert stack.node_type.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert stack.node_type_names == ['movie', 'person', 'tag']
    assert stack.node_type_offsets == [0, 3, 7]
    # Zero-padded to the widest type; featureless types are zero rows.
    assert stack.x.shape == (9, 4)
    assert torch.equal(stack.x[0:3], data['movie'].x)
    assert torch.equal(stack.x[3:7, :2], data['person'].x)
    assert not stack.x[3:7, 2:].any() and not stack.x[7:].any()
    # y and masks live on the target type only.
    assert stack.target_node_type == 'movie'
    assert torch.equal(stack.y[:3], data['movie'].y)
    if multi_label:
        assert stack.y.shape == (9, 3) and not stack.y[3:].any()
    else:
        assert stack.y[3:].tolist() == [-1] * 6
    for key in ('train_mask', 'val_mask', 'test_mask'):
        assert torch.equal(stack[key][:3], data['movie'][key])
        assert not stack[key][3:].any()
    if weights:
        tagged = stack.edge_type == 2
        assert stack.edge_weight[tagged].tolist() == [0.5, 2.0]
        assert stack.edge_weight[~tagged].tolist() == [1.0] * 11
    else:
        assert 'edge_weight' not in stack


def test_to_heterogeneous_inverts_the_stack():
    data = toy(weights=True)
    back = to_edge_type_stack(data).to_heterogeneous()
    assert back.node_types == data.node_types and back.edge_types == data.edge_types
    for et in data.edge_types:
        assert torch.equal(back[et].edge_index, data[et].edge_index)
    assert torch.equal(back['movie'].x, data['movie'].x)
    assert torch.equal(back['movie'].y, data['movie'].y)


def test_add_reverse():
    data = toy(weights=True)
    stack = to_edge_type_stack(data, add_reverse=True)
    # acts/cast are each other's reverse and similar is symmetric: only two reverses are new.
    assert stack.edge_type_names == [
        'acts',
        'cast',
        'tagged',
        'similar',
        'knows',
        'rev_tagged',
        'rev_knows',
    ]
    assert stack.num_relations == 7
    assert stack._edge_type_names[5] == ('tag', 'rev_tagged', 'movie')
    tagged = stack.edge_index[:, stack.edge_type == 2]
    assert torch.equal(stack.edge_index[:, stack.edge_type == 5], tagged.flip(0))
    assert stack.edge_weight[stack.edge_type == 5].tolist() == [0.5, 2.0]
    knows = stack.edge_index[:, stack.edge_type == 4]
    assert torch.equal(stack.edge_index[:, stack.edge_type == 6], knows.flip(0))


def test_add_reverse_name_clash():
    data = toy()
    data['tag', 'rev_tagged', 'movie'].edge_index = torch.tensor([[0], [0]])
    with pytest.raises(ValueError, match='rev_tagged'):
        to_edge_type_stack(data, add_reverse=True)


def test_transform_class():
    data = toy()
    transform = ToEdgeTypeStack(add_reverse=True, target_node_type='movie')
    assert repr(transform) == "ToEdgeTypeStack(add_reverse=True, target_node_type='movie')"
    assert repr(ToEdgeTypeStack()) == 'ToEdgeTypeStack(add_reverse=False)'
    stack = transform(data)
    expected = to_edge_type_stack(data, add_reverse=True)
    assert torch.equal(stack.edge_index, expected.edge_index)
    assert torch.equal(stack.edge_type, expected.edge_type)
    assert isinstance(data, HeteroData) and 'x' in data['movie']  # input left intact


def test_edge_cases():
    data = HeteroData()
    data['a'].num_nodes = 2
    data['empty'].num_nodes = 0
    data['b'].x = torch.ones(1, 3, dtype=torch.float64)
    data['a', 'to', 'b'].edge_index = torch.empty(2, 0, dtype=torch.long)
    data['b', 'self', 'b'].edge_index = torch.tensor([[0], [0]], dtype=torch.int32)
    stack = to_edge_type_stack(data, add_reverse=True)
    assert stack.node_type_offsets == [0, 2, 2]
    assert stack.x.dtype == torch.float64 and stack.x.shape == (3, 3)
    # The empty a->b relation gets an (empty) reverse; the self-loop is its own reverse.
    assert stack.edge_type_names == ['to', 'self', 'rev_to']
    assert stack.edge_index.tolist() == [[2], [2]] and stack.edge_type.tolist() == [1]
    assert 'y' not in stack and 'target_node_type' not in stack


def test_bad_inputs():
    with pytest.raises(TypeError, match='HeteroData'):
        to_edge_type_stack(Data(num_nodes=3))
    with pytest.raises(ValueError, match="not a node type.*'movie'"):
        to_edge_type_stack(toy(), target_node_type='actor')
    data = toy()
    data['person'].y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match='pass target_node_type'):
        to_edge_type_stack(data)
    assert to_edge_type_stack(data, target_node_type='person').y[3:7].tolist() == [0] * 4
    data = toy()
    data['movie', 'tagged', 'tag'].edge_index = torch.tensor([[0], [2]])
    with pytest.raises(ValueError, match=r"tagged.*contains index 2.*'tag' nodes = 2"):
        to_edge_type_stack(data)
    data = toy()
    data['movie'].num_nodes = 3
    data['movie'].x = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"data\['movie'\]\.x has 2 entries"):
        to_edge_type_stack(data)
    with pytest.raises(TypeError, match='add_reverse'):
        ToEdgeTypeStack(add_reverse='yes')


# --- ACM ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def acm(tmp_path_factory):
    # The dataset tests fill the same session cache: in a full run ACM is parsed once.
    cache = tmp_path_factory.getbasetemp() / 'hgb_cache'
    return HGBDataset(str(HGB_ROOT), 'ACM', processed_dir=str(cache), val_ratio=0.2)[0]


def test_acm_stack(acm):
    stack = to_edge_type_stack(acm)
    check_round_trip(acm, stack)
    assert stack.num_nodes == 10942
    assert stack.edge_index.shape == (2, 547872)
    assert stack.num_relations == 8 and stack.edge_type.unique().tolist() == list(range(8))
    assert stack.x.shape == (10942, 1902)
    assert not stack.x[9040:].any()  # term is featureless
    assert int(stack.y.max()) + 1 == 3 and stack.target_node_type == 'paper'
    paper = stack.node_type == 0
    for key in ('train_mask', 'val_mask', 'test_mask'):
        assert torch.equal(stack[key][paper], acm['paper'][key])
        assert not stack[key][~paper].any()
    assert int(stack.train_mask.sum() + stack.val_mask.sum()) == 907
    assert int(stack.test_mask.sum()) == 2118
    assert bool((stack.y[~paper] == -1).all())


def test_acm_already_holds_every_reverse(acm):
    data = copy.copy(acm)
    for nt in data.node_types:  # features play no part here; skip stacking them
        if 'x' in data[nt]:
            data[nt].num_nodes = data[nt].num_nodes  # PyG's layout infers it from x
            del data[nt].x
    plain, stack = to_edge_type_stack(data), to_edge_type_stack(data, add_reverse=True)
    assert stack.num_relations == 8
    assert torch.equal(stack.edge_index, plain.edge_index)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize(('multi_label', 'weights'), list(product([False, True], [False, True])))
def test_stack_on_device_matches_cpu(device, multi_label, weights):
    expected = to_edge_type_stack(toy(multi_label, weights))
    got = ToEdgeTypeStack()(toy(multi_label, weights).to(device))
    assert sorted(got.keys()) == sorted(expected.keys())
    for key in expected.keys():  # noqa: SIM118 - Data.keys() is a method
        want = expected[key]
        if isinstance(want, torch.Tensor):
            assert got[key].device.type == device.type, key
            assert torch.equal(got[key].cpu(), want), key
        else:
            assert got[key] == want, key
