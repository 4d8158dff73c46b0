"""examples/eigen_pool.py draws split i as the authors' train.py does when asked (their shuffle i)
and passes the ablation flags on to the model."""

import random
import re

import pytest


@pytest.mark.parametrize('order', ['torch', 'authors'])
def test_split_order(run_example, order):
    # The authors' order runs with their ablation flags too: no batch norm, their propagation.
    flags = ['--no-batch-norm', '--propagation', 'sum'] if order == 'authors' else []
    out = run_example(
        'eigen_pool.py', '--dataset', 'MUTAG', '--splits', '1', '--first-split', '3',
        '--epochs', '1', '--split-order', order, *flags,
    )  # fmt: skip
    ablation = "batch_norm=False, propagation='sum')" in out
    assert ablation == (order == 'authors'), out[-2000:]
    found = re.search(r'split 3 \((\w+) order\): 150/19/19 graphs, test starts \[([\d, ]+)\]', out)
    assert found, out[-2000:]
    assert found.group(1) == order
    starts = [int(i) for i in found.group(2).split(', ')]
    # train.py: random.Random(seed).shuffle of its list of graphs, then the last 10% are the test
    # set (int(0.9 * 188) = 169).
    theirs = list(range(188))
    random.Random(3).shuffle(theirs)
    assert (starts == theirs[169:174]) == (order == 'authors')
