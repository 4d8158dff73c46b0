"""Compiled once, run on every batch: a mini-batch training loop feeds graphs of a new size at each
step, so a layer compiled with ``torch.compile(fullgraph=True, dynamic=True)`` must trace one
graph for all of them. A check that formats or branches on a size (an error message built on the
happy path, an early return on an empty tensor) specialises the graph to that size; after eight
sizes ``fullgraph=True`` then fails outright (the recompile limit).

Each case compiles with a counting backend (``CompileCounter``: the captured graph runs eagerly,
so the test stays quick), feeds five batches of different sizes, and asserts one compiled frame
and the eager outputs."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch_geometric.data import Batch, Data

from graphops.nn import GPool, RGCNConv, dense_diff_pool
from graphops.nn.models import DiffPoolNet, EigenGCN, GraphUNet, GraphUNetClassifier
from graphops.nn.models.sign_classifier import SIGNClassifier
from graphops.testing import random_features, random_graph
from graphops.transforms import EigenPooling

# Five batches, each a list of graph sizes; every batch has a different total node count.
BATCH_SIZES = [[12, 15, 9], [20, 7], [11, 13, 17, 8], [30, 14, 6], [25, 24]]
IN = 5


def _graph(num_nodes: int, seed: int) -> Data:
    graph = random_graph(num_nodes, 3 * num_nodes, seed=seed)
    x = random_features(num_nodes, IN, seed=seed, dtype=torch.float32)
    return Data(x=x, edge_index=graph.edge_index, y=torch.tensor([seed % 2]), num_nodes=num_nodes)


def _batches(transform=None) -> list[Batch]:
    out = []
    for b, sizes in enumerate(BATCH_SIZES):
        graphs = [_graph(n, seed=10 * b + i) for i, n in enumerate(sizes)]
        out.append(Batch.from_data_list([transform(g) if transform else g for g in graphs]))
    return out


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _compiled_once(model, calls: list[tuple]) -> None:
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    for args in calls:
        torch.testing.assert_close(_first(compiled(*args)), _first(model(*args)))
    assert counter.frame_count == 1, f'{counter.frame_count} graphs traced for {len(calls)} sizes'


def _eigen_gcn_calls():
    transform = EigenPooling(4, num_modes=2, final_modes=1)
    calls = []
    for batch in _batches(transform):
        levels = range(transform.num_levels)
        clusters, thetas, batches = (
            [batch[transform.keys(level)[i]] for level in levels] for i in range(3)
        )
        calls.append((batch.x, batch.edge_index, batch.batch, clusters, thetas, batches))
    return calls


def _relational_calls():
    calls = []
    for batch in _batches():
        edge_type = torch.arange(batch.edge_index.size(1)) % 3
        calls.append((batch.x, batch.edge_index, edge_type))
    return calls


def _dense_diff_pool_calls():
    gen = torch.Generator().manual_seed(0)
    calls = []
    for batch_size, num_nodes in [(2, 7), (3, 9), (4, 5), (2, 11), (5, 6)]:
        x = torch.randn(batch_size, num_nodes, 4, generator=gen)
        adj = torch.rand(batch_size, num_nodes, num_nodes, generator=gen)
        s = torch.randn(batch_size, num_nodes, 3, generator=gen)
        mask = torch.ones(batch_size, num_nodes, dtype=torch.bool)
        mask[0, -2:] = False
        calls.append((x, adj, s, mask))
    return calls


CASES = {
    'EigenGCN': lambda: (
        EigenGCN(IN, 8, 2, num_pools=1, num_modes=2, final_modes=1, num_layers=3, mlp_channels=8),
        _eigen_gcn_calls(),
    ),
    'RGCNConv': lambda: (RGCNConv(IN, 4, 3, cached=False), _relational_calls()),
    'RGCNConv-bases': lambda: (RGCNConv(IN, 4, 3, num_bases=2, cached=False), _relational_calls()),
    'RGCNConv-blocks': lambda: (
        RGCNConv(IN + 1, 4, 3, num_blocks=2, cached=False),
        [(torch.cat([x, x[:, :1]], 1), e, t) for x, e, t in _relational_calls()],
    ),
    'DiffPoolNet': lambda: (
        DiffPoolNet(IN, 8, 2, max_num_nodes=40),
        [(b.x, b.edge_index, b.batch) for b in _batches()],
    ),
    'dense_diff_pool': lambda: (dense_diff_pool, _dense_diff_pool_calls()),
    'SIGNClassifier': lambda: (
        SIGNClassifier(IN, 8, 2, 3),
        [
            ([random_features(n, IN, seed=k, dtype=torch.float32)] * 3,)
            for k, n in enumerate([10, 17, 23, 31, 8])
        ],
    ),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_compiles_once_for_every_batch_size(name):
    torch.manual_seed(0)
    model, calls = CASES[name]()
    if isinstance(model, torch.nn.Module):
        model.eval()  # dropout off: compiled and eager outputs compare exactly
    _compiled_once(model, calls)


@pytest.mark.parametrize('name', ['GPool', 'GraphUNet', 'GraphUNetClassifier'])
def test_score_dependent_pooling_compiles_with_graph_breaks(name):
    """gPool keeps the top-k nodes by a learned score, so the pooled edge count depends on the
    values (as in PyG's TopKPooling): ``fullgraph=True`` cannot trace it, ``torch.compile`` with
    graph breaks runs it and gives the eager outputs on every batch."""
    torch.manual_seed(0)
    batches = _batches()
    model, calls = {
        'GPool': (GPool(IN, 0.5), [(b.x, b.edge_index, None, b.batch) for b in batches]),
        'GraphUNet': (
            GraphUNet(IN, 8, 2, depth=2, pool_ratios=0.5),
            [(b.x, b.edge_index) for b in batches],
        ),
        'GraphUNetClassifier': (
            GraphUNetClassifier(IN, 8, 2),
            [(b.x, b.edge_index, b.batch) for b in batches],
        ),
    }[name]
    model.eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='eager')
    for args in calls:
        torch.testing.assert_close(_first(compiled(*args)), _first(model(*args)))


def test_default_compile_settles_after_one_recompile():
    """``torch.compile(fullgraph=True)`` with the default ``dynamic=None``, as most loops call it:
    the first size is traced static, the second marks the sizes dynamic, and no later batch
    recompiles; ten sizes pass the recompile limit (eight) that failed the loop before."""
    torch.manual_seed(0)
    conv = RGCNConv(IN, 4, 3, cached=False)
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(conv, backend=counter, fullgraph=True)
    for seed, num_nodes in enumerate(range(10, 30, 2)):
        graph = _graph(num_nodes, seed)
        edge_type = torch.arange(graph.edge_index.size(1)) % 3
        args = (graph.x, graph.edge_index, edge_type)
        torch.testing.assert_close(compiled(*args), conv(*args))
    assert counter.frame_count == 2
