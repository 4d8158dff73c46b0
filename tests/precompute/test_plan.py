import pytest
import torch

from graphops.precompute.plan import PrecomputePlan
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR


def test_plan_slices_fit_budget():
    ops = [Adjacency(3), PPR(2, alpha=[0.1, 0.2])]
    per_column = max(PrecomputePlan.operator_bytes_per_column(1000, 100, op) for op in ops)
    # PPR: 2 streams x (3 buffers + the stream's previous hop) = 8 float32 columns of 1000 rows,
    # + 100 x 2 x 2 outputs
    assert per_column == 4 * 1000 * 8 + 4 * 100 * 2 * 2
    plan = PrecomputePlan.build(1000, 50, ops, num_rows=100, column_budget_bytes=5 * per_column)
    assert plan.slice_width == 5 and len(plan.slices) == 10
    assert plan.peak_bytes() <= 5 * per_column
    assert plan.slices[0] == (0, 5) and plan.slices[-1] == (45, 50)


def test_plan_uneven_last_slice_and_no_budget():
    plan = PrecomputePlan.build(10, 7, [Adjacency(1)], column_budget_bytes=3 * 4 * 10 * 4)
    assert plan.slices == [(0, 3), (3, 6), (6, 7)]
    plan = PrecomputePlan.build(10, 7, [Adjacency(1)])
    assert plan.slices == [(0, 7)]
    assert repr(plan).startswith('PrecomputePlan(num_nodes=10, num_features=7')


def test_plan_bad_input():
    with pytest.raises(ValueError, match='cannot hold one feature column'):
        PrecomputePlan.build(1000, 8, [Adjacency(2)], column_budget_bytes=100)
    with pytest.raises(TypeError, match='column_budget_bytes must be an int'):
        PrecomputePlan.build(10, 8, [Adjacency(2)], column_budget_bytes=1e6)
    with pytest.raises(ValueError, match='at least one'):
        PrecomputePlan.build(10, 8, [])


@pytest.mark.parametrize(
    ('compute', 'storage', 'expected'),
    [
        (torch.float32, torch.float32, 4 * 1000 * 3 + 4 * 100 * 2),
        (torch.float64, torch.float32, 8 * 1000 * 3 + 4 * 100 * 2),
        (torch.float64, torch.float64, 8 * 1000 * 3 + 8 * 100 * 2),
        (torch.float32, torch.float16, 4 * 1000 * 3 + 2 * 100 * 2),
        (torch.float32, torch.bfloat16, 4 * 1000 * 3 + 2 * 100 * 2),
    ],
)
def test_plan_counts_bytes_of_the_compute_and_storage_dtypes(compute, storage, expected):
    # Adjacency(2): the input and 2 buffers of [N, w] in the compute dtype, 2 outputs of [R, w]
    got = PrecomputePlan.operator_bytes_per_column(1000, 100, Adjacency(2), compute, storage)
    assert got == expected
    plan = PrecomputePlan.build(
        1000,
        10,
        [Adjacency(2)],
        100,
        column_budget_bytes=3 * expected,
        compute_dtype=compute,
        storage_dtype=storage,
    )
    assert plan.slice_width == 3 and plan.bytes_per_column == expected
    with pytest.raises(TypeError, match='compute_dtype must be a floating'):
        PrecomputePlan.build(10, 8, [Adjacency(2)], compute_dtype=torch.int64)
