"""The drop-in contract: every graphops name with a PyG counterpart, checked against it.

Table-driven over the pairs below, with the helpers of :mod:`graphops.testing.contract`: PyG's
arguments (names, defaults, positional order), graphops' extras keyword-only, an unknown argument
a TypeError naming it, ``repr``, seeded initialisation, ``state_dict`` both ways with the same
outputs, and the keys a transform adds. Paper-faithful behaviour is reached only through the
keyword-only arguments named in the table (``PAPER_ARGUMENTS``), which the examples pass.
"""

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.datasets import HGBDataset as PyGHGBDataset
from torch_geometric.nn import TopKPooling
from torch_geometric.nn import dense_diff_pool as pyg_dense_diff_pool
from torch_geometric.nn.models import GraphUNet as PyGGraphUNet

from graphops.datasets import HGBDataset
from graphops.nn.dense import dense_diff_pool
from graphops.nn.models import GraphUNet
from graphops.nn.pool import GPool
from graphops.testing import random_features, random_graph
from graphops.testing.contract import (
    assert_outputs_close,
    assert_raises_type_error_naming,
    assert_repr_equal,
    assert_seeded_init_equal,
    assert_signature_compatible,
    assert_state_dict_exchange,
    assert_transform_keys_equal,
)
from graphops.transforms import SIGN

HGB_ROOT = Path(__file__).resolve().parents[1] / 'data' / 'HGB'


@dataclass(frozen=True)
class Pair:
    name: str
    ours: object
    theirs: object
    may_default: tuple = ()  # PyG-required arguments graphops may default


PAIRS = [
    Pair('GraphUNet', GraphUNet, PyGGraphUNet),
    Pair('dense_diff_pool', dense_diff_pool, pyg_dense_diff_pool),
    Pair('SIGN', SIGN, T.SIGN, may_default=('K',)),  # optional: operators= can replace K
    Pair('HGBDataset', HGBDataset, PyGHGBDataset),
]

# PyG name -> (graphops name, the keyword-only argument that gives the paper's version)
PAPER_ARGUMENTS = {
    'GraphUNet': ('nonlinearity', 'sigmoid'),
    'dense_diff_pool': ('loss_norm', 'paper'),
}


@pytest.mark.parametrize('pair', PAIRS, ids=lambda p: p.name)
def test_signature(pair):
    assert_signature_compatible(pair.ours, pair.theirs, may_default=pair.may_default)


@pytest.mark.parametrize('name', sorted(PAPER_ARGUMENTS))
def test_paper_behaviour_is_an_explicit_keyword_only_argument(name):
    import inspect

    ours = {p.name: p for p in PAIRS}[name].ours
    argument, paper_value = PAPER_ARGUMENTS[name]
    params = inspect.signature(ours).parameters
    assert params[argument].kind == inspect.Parameter.KEYWORD_ONLY
    assert params[argument].default != paper_value  # PyG's behaviour is the default


def graph_batch(seed=0, num_nodes=40, channels=8):
    graph = random_graph(num_nodes, 4 * num_nodes, seed=seed, weighted=True)
    x = torch.randn(num_nodes, channels, generator=torch.Generator().manual_seed(seed))
    batch = torch.tensor([0] * (num_nodes // 3) + [1] * (num_nodes - num_nodes // 3))
    return x.double(), graph.edge_index, graph.edge_weight.double(), batch


UNKNOWN = 'not_a_pyg_argument'


def make_hgb_raw(tmp_path):
    """A small HGB set in PyG's raw layout (``<root>/acm/raw/ACM/*.dat``) and as our zip."""
    info = {
        'node.dat': {'node type': {'0': 'paper', '1': 'author', '2': 'term'}},
        'link.dat': {
            'link type': {
                '0': {'start': 0, 'end': 0, 'meaning': 'paper-cite-paper'},
                '1': {'start': 0, 'end': 1, 'meaning': 'paper-author'},
                '2': {'start': 1, 'end': 0, 'meaning': 'author-paper'},
                '3': {'start': 0, 'end': 2, 'meaning': 'paper-term'},
            }
        },
        'label.dat': {'node type': {'0': {'0': 'a', '1': 'b', '2': 'c'}}},
    }
    gen = torch.Generator().manual_seed(0)
    nodes = [
        f'{i}\tp{i}\t0\t' + ','.join(f'{v:.3f}' for v in torch.rand(4, generator=gen).tolist())
        for i in range(12)
    ]
    nodes += [
        f'{12 + i}\ta{i}\t1\t' + ','.join(f'{v:.2f}' for v in torch.rand(3, generator=gen).tolist())
        for i in range(5)
    ]
    nodes += [f'{17 + i}\tt{i}\t2' for i in range(3)]
    links = [f'{i}\t{(i * 5 + 1) % 12}\t0\t1.0' for i in range(12)]
    links += [f'{i}\t{12 + i % 5}\t1\t1.0' for i in range(12)]
    links += [f'{12 + i % 5}\t{i}\t2\t1.0' for i in range(12)]
    links += [f'{i}\t{17 + i % 3}\t3\t{1.0 + (i % 2)}' for i in range(0, 12, 2)]
    files = {
        'info.dat': json.dumps(info),
        'node.dat': '\n'.join(nodes) + '\n',
        'link.dat': '\n'.join(links) + '\n',
        'label.dat': ''.join(f'{i}\t\t0\t{i % 3}\n' for i in range(0, 8)),
        'label.dat.test': ''.join(f'{i}\t\t0\t{(i + 1) % 3}\n' for i in range(8, 12)),
    }
    raw = tmp_path / 'pyg' / 'acm' / 'raw' / 'ACM'
    raw.mkdir(parents=True)
    for file, text in files.items():
        (raw / file).write_text(text)
    (tmp_path / 'ours').mkdir()
    with zipfile.ZipFile(tmp_path / 'ours' / 'ACM.zip', 'w') as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return tmp_path / 'pyg', tmp_path / 'ours'


UNKNOWN_CALLS = {
    'GraphUNet': lambda **kw: GraphUNet(3, 4, 5, 2, **kw),
    'GPool': lambda **kw: GPool(4, **kw),
    'dense_diff_pool': lambda **kw: dense_diff_pool(
        torch.randn(5, 2), torch.rand(5, 5), torch.randn(5, 3), **kw
    ),
    'SIGN': lambda **kw: SIGN(2, **kw),
    'HGBDataset': lambda **kw: HGBDataset(str(HGB_ROOT), 'ACM', **kw),
}


@pytest.mark.parametrize('name', sorted(UNKNOWN_CALLS))
def test_unknown_argument_is_a_type_error_naming_it(name):
    assert_raises_type_error_naming(UNKNOWN_CALLS[name], UNKNOWN, **{UNKNOWN: 1})


# --- GraphUNet ---------------------------------------------------------------------------------
def test_graph_unet_repr_and_seeded_init():
    assert_repr_equal(GraphUNet(16, 32, 7, 3), PyGGraphUNet(16, 32, 7, 3))
    assert_repr_equal(
        GraphUNet(16, 32, 7, 2, pool_ratios=[0.8, 0.5]), PyGGraphUNet(16, 32, 7, 2, [0.8, 0.5])
    )
    assert_seeded_init_equal(lambda: GraphUNet(8, 16, 4, 3), lambda: PyGGraphUNet(8, 16, 4, 3))


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('sum_res', [True, False])
def test_graph_unet_state_dict_exchange_gives_pyg_outputs(seed, weighted, sum_res):
    # Random graphs with self-loops and duplicate edges, two graphs per batch.
    x, edge_index, edge_weight, batch = graph_batch(seed)
    weight = edge_weight if weighted else None
    ours = GraphUNet(8, 16, 4, 3, [0.7, 0.5], sum_res).double()
    theirs = PyGGraphUNet(8, 16, 4, 3, [0.7, 0.5], sum_res).double()
    assert_state_dict_exchange(
        ours, theirs, lambda m: m(x, edge_index, batch, weight), atol=1e-6, seed=seed
    )


# --- GPool vs TopKPooling, where GPool claims parity (tanh gate, no augmentation) ---------------
def canonical_pool_output(out):
    """TopKPooling lists kept nodes by score, GPool by index: compare in index order."""
    x, edge_index, edge_attr, batch, perm, score = out
    order = torch.argsort(perm)
    rename = torch.empty_like(order)
    rename[order] = torch.arange(order.numel())
    edges = rename[edge_index]
    key = edges[0] * perm.numel() + edges[1]
    edge_order = torch.argsort(key, stable=True)
    attr = None if edge_attr is None else edge_attr[edge_order]
    return x[order], edges[:, edge_order], attr, batch[order], perm[order], score[order]


@pytest.mark.parametrize('ratio', [0.5, 3])
def test_gpool_tanh_is_topk_pooling(ratio):
    x, edge_index, edge_weight, batch = graph_batch(5, channels=4)
    ours = GPool(4, ratio, nonlinearity='tanh').double()
    theirs = TopKPooling(4, ratio).double()
    assert_seeded_init_equal(lambda: GPool(4, ratio, 'tanh'), lambda: TopKPooling(4, ratio))
    assert_state_dict_exchange(
        ours,
        theirs,
        lambda m: canonical_pool_output(m(x, edge_index, edge_weight, batch)),
        atol=1e-6,
    )


def test_gpool_forward_is_topk_poolings():
    import inspect

    assert list(inspect.signature(GPool.forward).parameters) == list(
        inspect.signature(TopKPooling.forward).parameters
    )


# --- dense_diff_pool -----------------------------------------------------------------------------
@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('masked', [False, True])
@pytest.mark.parametrize('normalize', [None, True, False])
def test_dense_diff_pool_gives_pyg_numbers(seed, masked, normalize):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 9, 5, generator=gen, dtype=torch.float64)
    adj = torch.rand(3, 9, 9, generator=gen, dtype=torch.float64)
    s = torch.randn(3, 9, 4, generator=gen, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.arange(9).expand(3, 9) < torch.tensor([[9], [6], [2]])
        adj = adj * (mask.unsqueeze(1) & mask.unsqueeze(2))  # zero-padded, as to_dense_adj pads
    args = (x, adj, s, mask) if normalize is None else (x, adj, s, mask, normalize)
    assert_outputs_close(dense_diff_pool(*args), pyg_dense_diff_pool(*args), atol=1e-6)


# --- SIGN ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('K', [1, 3])
@pytest.mark.parametrize('weighted', [False, True])
def test_sign_adds_pyg_keys_only(K, weighted):
    graph = random_graph(50, 300, seed=K, isolated=3, weighted=weighted, dtype=torch.float32)
    data = Data(x=random_features(50, 6, seed=K, dtype=torch.float32), edge_index=graph.edge_index)
    if weighted:
        data.edge_weight = graph.edge_weight
    assert_transform_keys_equal(SIGN(K), T.SIGN(K), data, atol=1e-6, rtol=1e-5)
    assert_repr_equal(SIGN(K), T.SIGN(K))


# --- HGBDataset ----------------------------------------------------------------------------------
def assert_same_hetero(ours, theirs):
    assert ours.node_types == theirs.node_types
    assert ours.edge_types == theirs.edge_types
    assert set(ours.keys()) == set(theirs.keys())
    for ours_store, their_store in zip(ours.stores, theirs.stores, strict=True):
        assert set(ours_store.keys()) == set(their_store.keys()), ours_store
        for key, b in their_store.items():
            a = ours_store[key]
            if isinstance(b, torch.Tensor):
                assert a.dtype == b.dtype, key
                assert torch.equal(a, b), key
            else:
                assert a == b, key


def test_hgb_dataset_has_pyg_layout(tmp_path):
    pyg_root, our_root = make_hgb_raw(tmp_path)
    theirs = PyGHGBDataset(str(pyg_root), 'acm')  # processes the raw files; nothing downloaded
    ours = HGBDataset(str(our_root), 'acm', processed_dir=str(tmp_path / 'cache'))
    assert_same_hetero(ours[0], theirs[0])
    assert_repr_equal(ours, theirs)
    assert ours.num_classes == 3  # read from y (PyG's raises for a HeteroData)


@pytest.mark.slow
def test_hgb_acm_has_pyg_layout(tmp_path):
    """The shipped ACM, parsed by PyG's own HGBDataset from the same files."""
    raw = tmp_path / 'pyg' / 'acm' / 'raw' / 'ACM'
    raw.mkdir(parents=True)
    with zipfile.ZipFile(HGB_ROOT / 'ACM.zip') as archive:
        for file in ('info.dat', 'node.dat', 'link.dat', 'label.dat', 'label.dat.test'):
            (raw / file).write_bytes(archive.read(file))
    theirs = PyGHGBDataset(str(tmp_path / 'pyg'), 'ACM')
    ours = HGBDataset(str(HGB_ROOT), 'ACM', processed_dir=str(tmp_path / 'cache'))
    assert_same_hetero(ours[0], theirs[0])
