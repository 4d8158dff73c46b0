from itertools import product

import pytest
import torch

from graphops.ops import dispatch
from graphops.ops.optional import has_numba
from graphops.ops.topk import keep_counts, topk
from graphops.testing import random_batch_vector
from graphops.testing.gpool import dense_topk

numba_only = pytest.mark.skipif(not has_numba(), reason='numba is not installed')


@pytest.fixture(autouse=True, params=['torch', pytest.param('numba', marks=numba_only)])
def path(request, monkeypatch):
    """Every test runs on the torch path and, with numba installed, on the numba kernel."""
    if request.param == 'torch':
        monkeypatch.setenv('GRAPHOPS_DISABLE_NUMBA', '1')
    else:
        monkeypatch.setattr(dispatch, 'POOL_NUMBA_MIN_ENTRIES', 0)
    return request.param


SIZES = [[7], [1, 5, 3], [4, 1, 1, 9, 2], [10, 10]]
RATIOS = [0.5, 0.01, 1.0, 0.75, 1, 3, 100]


@pytest.mark.parametrize(('sizes', 'ratio'), list(product(SIZES, RATIOS)))
def test_matches_dense_reference(sizes, ratio):
    batch = random_batch_vector(sizes)
    gen = torch.Generator().manual_seed(len(sizes))
    score = torch.randn(batch.numel(), generator=gen, dtype=torch.float64)
    perm = topk(score, ratio, batch)
    assert perm.dtype == torch.long
    assert torch.equal(perm, dense_topk(score, ratio, batch))
    kept_per_graph = torch.bincount(batch[perm], minlength=len(sizes))
    assert torch.equal(kept_per_graph, keep_counts(torch.tensor(sizes), ratio))


@pytest.mark.parametrize('sizes', SIZES)
def test_ties_keep_lower_index(sizes):
    batch = random_batch_vector(sizes)
    score = torch.zeros(batch.numel())  # every node ties
    score[::3] = 1.0
    for ratio in (0.5, 2, 1):
        perm = topk(score, ratio, batch)
        assert torch.equal(perm, dense_topk(score, ratio, batch))
        assert torch.equal(perm, topk(score.clone(), ratio, batch))  # deterministic


def test_edge_cases_of_k():
    batch = random_batch_vector([3, 1, 6])
    score = torch.arange(10.0)
    assert torch.equal(topk(score, 10, batch), torch.arange(10))  # k >= every graph: keep all
    assert torch.equal(topk(score, 1.0, batch), torch.arange(10))
    assert torch.equal(topk(score, 1, batch), torch.tensor([2, 3, 9]))  # k = 1: the maximum
    assert torch.equal(topk(score, 1e-9, batch), torch.tensor([2, 3, 9]))  # never 0 nodes
    assert torch.equal(topk(-score, 2), torch.tensor([0, 1]))  # no batch: one graph
    # A fraction such as 2000 / 2708 keeps exactly 2000 nodes, not 2001.
    assert topk(torch.randn(2708), 2000 / 2708).numel() == 2000


def test_graph_without_nodes_in_the_middle():
    batch = torch.tensor([0, 0, 2, 2, 2])  # graph 1 is empty
    perm = topk(torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0]), 0.5, batch, num_graphs=3)
    assert torch.equal(perm, torch.tensor([1, 2, 3]))


def test_empty_score():
    assert topk(torch.empty(0), 0.5).numel() == 0


BAD_RATIOS = [
    (0.0, ValueError, r'\(0, 1\]'),
    (-0.5, ValueError, r'\(0, 1\]'),
    (1.5, ValueError, r'\(0, 1\]'),
    (float('nan'), ValueError, r'\(0, 1\]'),
    (0, ValueError, 'k'),
    (-3, ValueError, 'k'),
    (True, TypeError, 'ratio'),
    ('half', TypeError, 'ratio'),
]


@pytest.mark.parametrize(('ratio', 'error', 'match'), BAD_RATIOS)
def test_bad_ratio(ratio, error, match):
    with pytest.raises(error, match=match):
        topk(torch.randn(4), ratio)


def test_unsorted_batch():
    with pytest.raises(ValueError, match='sorted'):
        topk(torch.randn(4), 0.5, torch.tensor([0, 1, 0, 1]))


def test_batch_of_wrong_length():
    with pytest.raises(ValueError, match='batch has 3 entries'):
        topk(torch.randn(4), 0.5, torch.tensor([0, 0, 1]))


def test_batch_of_wrong_dtype():
    with pytest.raises(TypeError, match='batch'):
        topk(torch.randn(4), 0.5, torch.zeros(4))


def test_negative_batch():
    with pytest.raises(ValueError, match='negative'):
        topk(torch.randn(2), 0.5, torch.tensor([-1, 0]))


def test_nan_score():
    with pytest.raises(ValueError, match='NaN'):
        topk(torch.tensor([0.0, float('nan')]), 0.5)


def test_score_not_1d():
    with pytest.raises(ValueError, match='1-dimensional'):
        topk(torch.randn(4, 1), 0.5)


def test_num_graphs_too_small():
    with pytest.raises(ValueError, match='num_graphs'):
        topk(torch.randn(3), 0.5, torch.tensor([0, 1, 2]), num_graphs=2)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('sizes', SIZES)
@pytest.mark.parametrize('ratio', [0.5, 0.01, 1.0, 3])
def test_topk_device_matches_cpu(matches_cpu, sizes, ratio):
    batch = random_batch_vector(sizes)
    score = torch.randn(batch.numel(), generator=torch.Generator().manual_seed(len(sizes)))
    matches_cpu(topk, score, ratio, batch)
