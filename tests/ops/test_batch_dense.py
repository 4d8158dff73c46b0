import pytest
import torch

from graphops.ops.batch_dense import (
    graph_ptr,
    graph_sizes,
    per_graph_transpose_matmul,
    position_in_graph,
    segment_sum,
    to_padded,
)
from graphops.testing import DTYPES, random_batch_vector, random_features, tolerance

SIZES = [[4], [3, 3, 3], [5, 1, 7, 2], [1], [1, 1, 1], [2, 30, 1, 1, 1, 1]]


def reference_products(a, b, sizes):
    out, start = [], 0
    for n in sizes:
        out.append(a[start : start + n].t() @ b[start : start + n])
        start += n
    return torch.stack(out)


@pytest.mark.parametrize('sizes', SIZES, ids=str)
def test_sizes_ptr_and_positions(sizes):
    batch = random_batch_vector(sizes)
    got = graph_sizes(batch, batch.numel())
    assert got.tolist() == sizes
    assert graph_ptr(got).tolist() == [0, *torch.tensor(sizes).cumsum(0).tolist()]
    expected = torch.cat([torch.arange(n) for n in sizes])
    assert torch.equal(position_in_graph(batch, got), expected)
    assert graph_sizes(None, 6).tolist() == [6]
    assert graph_sizes(batch.int(), batch.numel()).tolist() == sizes


@pytest.mark.parametrize('sizes', SIZES, ids=str)
@pytest.mark.parametrize('dtype', DTYPES)
def test_to_padded_and_segment_sum(sizes, dtype):
    batch = random_batch_vector(sizes)
    x = random_features(batch.numel(), 3, dtype=dtype)
    padded, mask = to_padded(x, batch, torch.tensor(sizes))
    assert padded.shape == (len(sizes), max(sizes), 3)
    start = 0
    for g, n in enumerate(sizes):
        assert torch.equal(padded[g, :n], x[start : start + n])
        assert not padded[g, n:].any()
        assert mask[g].tolist() == [True] * n + [False] * (max(sizes) - n)
        start += n
    assert torch.equal(padded[mask], x)
    wide, _ = to_padded(x, batch, torch.tensor(sizes), max_num_nodes=max(sizes) + 2)
    assert wide.shape[1] == max(sizes) + 2
    sums = segment_sum(x, batch, len(sizes))
    torch.testing.assert_close(sums, padded.sum(1), **tolerance(dtype))


@pytest.mark.parametrize('sizes', SIZES, ids=str)
@pytest.mark.parametrize(
    'ratio, elements',
    [(0.0, 0), (float('inf'), 0), (0.0, 1 << 30)],
    ids=['loop_or_reshape', 'padded_by_ratio', 'padded_by_size'],
)
def test_per_graph_transpose_matmul_paths_agree(sizes, ratio, elements):
    batch = random_batch_vector(sizes)
    n = batch.numel()
    a = random_features(n, 4, seed=1).requires_grad_()
    b = random_features(n, 2, seed=2).requires_grad_()
    got = per_graph_transpose_matmul(
        a, b, batch, torch.tensor(sizes), max_padding_ratio=ratio, max_padded_elements=elements
    )
    expected = reference_products(a, b, sizes)
    torch.testing.assert_close(got, expected, **tolerance(torch.float64))
    weight = torch.randn_like(expected)
    grads = torch.autograd.grad((got * weight).sum(), (a, b))
    expected_grads = torch.autograd.grad((expected * weight).sum(), (a, b))
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, **tolerance(torch.float64))


def test_per_graph_transpose_matmul_gradcheck():
    sizes = [3, 1, 5]
    batch = random_batch_vector(sizes)
    a = random_features(9, 2, seed=3).requires_grad_()
    b = random_features(9, 3, seed=4).requires_grad_()
    for ratio in (0.0, float('inf')):
        assert torch.autograd.gradcheck(
            lambda a, b, r=ratio: per_graph_transpose_matmul(
                a, b, batch, torch.tensor(sizes), max_padding_ratio=r, max_padded_elements=0
            ),
            (a, b),
        )


@pytest.mark.parametrize(
    'batch, num_nodes, error, match',
    [
        (torch.tensor([0, 0, 1]), 4, ValueError, 'batch has 3 entries'),
        (torch.tensor([0.0, 1.0]), 2, TypeError, 'integer indices'),
        (torch.tensor([1, 0, 0]), 3, ValueError, 'sorted'),
        (torch.tensor([0, 0, 2]), 3, ValueError, 'skips graph id 1'),
        (torch.tensor([-1, 0]), 2, ValueError, 'negative'),
        (torch.tensor([[0, 1]]), 2, ValueError, '1-dimensional'),
        (torch.empty(0, dtype=torch.long), 0, ValueError, 'no nodes'),
        (None, 0, ValueError, 'no nodes'),
    ],
    ids=['length', 'dtype', 'unsorted', 'empty_graph', 'negative', 'dims', 'empty', 'none_empty'],
)
def test_graph_sizes_bad_input(batch, num_nodes, error, match):
    with pytest.raises(error, match=match):
        graph_sizes(batch, num_nodes)


def test_bad_shapes():
    batch = random_batch_vector([2, 3])
    sizes = torch.tensor([2, 3])
    with pytest.raises(ValueError, match='same N'):
        per_graph_transpose_matmul(torch.randn(5, 2), torch.randn(4, 2), batch, sizes)
    with pytest.raises(ValueError, match='batch has 5 entries'):
        per_graph_transpose_matmul(torch.randn(4, 2), torch.randn(4, 2), batch, sizes)
    with pytest.raises(ValueError, match='max_num_nodes = 2'):
        to_padded(torch.randn(5, 2), batch, sizes, max_num_nodes=2)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('sizes', SIZES, ids=str)
@pytest.mark.parametrize('ratio', [0.0, float('inf')], ids=['loop_or_reshape', 'padded'])
def test_batch_dense_device_matches_cpu(matches_cpu, sizes, ratio):
    batch = random_batch_vector(sizes)
    n = batch.numel()
    a = random_features(n, 4, seed=1).requires_grad_()
    b = random_features(n, 2, seed=2).requires_grad_()
    counts = torch.tensor(sizes)
    matches_cpu(per_graph_transpose_matmul, a, b, batch, counts, max_padding_ratio=ratio, grad=True)
    matches_cpu(to_padded, a, batch, counts, grad=True)
    matches_cpu(segment_sum, a, batch, len(sizes), grad=True)
