"""The numba gPool kernels against the torch paths they replace, on larger random batches."""

import pytest
import torch

from graphops.ops import dispatch
from graphops.ops.induced import induced_edge_index
from graphops.ops.optional import has_numba
from graphops.ops.topk import topk
from graphops.testing import random_batch_vector, random_graph

pytestmark = pytest.mark.skipif(not has_numba(), reason='numba is not installed')


def torch_path(monkeypatch, fn):
    with monkeypatch.context() as patch:
        patch.setenv('GRAPHOPS_DISABLE_NUMBA', '1')
        return fn()


def random_sizes(num_graphs: int, seed: int) -> list[int]:
    """Mostly small graphs, a few large ones (beyond any small-graph shortcut), some empty."""
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(0, 60, (num_graphs,), generator=gen)
    sizes[torch.randint(0, num_graphs, (3,), generator=gen)] = 700
    sizes[torch.randint(0, num_graphs, (5,), generator=gen)] = 0
    return sizes.tolist()


@pytest.mark.parametrize('ratio', [0.5, 0.1, 0.9, 1.0, 1, 7, 1000])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('ties', [False, True])
def test_topk_equals_torch_path(ratio, dtype, ties, monkeypatch):
    sizes = random_sizes(300, seed=int(ratio * 10))
    batch = random_batch_vector(sizes)
    gen = torch.Generator().manual_seed(1)
    score = torch.randn(batch.numel(), generator=gen, dtype=torch.float64)
    if ties:  # few distinct values: most scores tie, and -0.0 meets 0.0
        score = score.round()
        score[score == 0] *= torch.where(torch.rand(int((score == 0).sum())) < 0.5, -1.0, 1.0)
    score = score.to(dtype)
    assert dispatch.numba_kernel_applies([score], dispatch.POOL_NUMBA_MIN_ENTRIES)
    fast = topk(score, ratio, batch, num_graphs=len(sizes))
    reference = torch_path(monkeypatch, lambda: topk(score, ratio, batch, num_graphs=len(sizes)))
    assert torch.equal(fast, reference)


def test_topk_keeps_scores_differentiable():
    score = torch.randn(dispatch.POOL_NUMBA_MIN_ENTRIES, requires_grad=True)
    perm = topk(score, 0.5)
    score[perm].sum().backward()
    assert int(score.grad.sum()) == perm.numel()


@pytest.mark.parametrize('index_dtype', [torch.int64, torch.int32])
@pytest.mark.parametrize('keep', [0.0, 0.3, 1.0])
def test_filter_edges_equals_torch_path(index_dtype, keep, monkeypatch):
    graph = random_graph(3000, 20000, seed=5)
    edge_index = graph.edge_index.to(index_dtype)
    gen = torch.Generator().manual_seed(2)
    index = torch.randperm(graph.num_nodes, generator=gen)[: int(keep * graph.num_nodes)]
    fast = induced_edge_index(edge_index, index, graph.num_nodes)
    reference = torch_path(
        monkeypatch, lambda: induced_edge_index(edge_index, index, graph.num_nodes)
    )
    assert fast[0].dtype == reference[0].dtype == torch.long
    assert torch.equal(fast[0], reference[0]) and torch.equal(fast[1], reference[1])
