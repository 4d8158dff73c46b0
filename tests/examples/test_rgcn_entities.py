"""Smoke tests of examples/rgcn_entities.py: the AIFB recipe, and the L2 penalty taken as the
first layer's Adam weight decay (MUTAG, BGS and AM use it)."""

import re

import pytest

pytestmark = pytest.mark.slow


def mean_accuracy(output: str) -> float:
    found = re.search(r'test accuracy over \d+ seeds: ([\d.]+)', output)
    assert found, output[-2000:]
    return float(found.group(1))


def test_aifb_recipe(run_example):
    out = run_example('rgcn_entities.py', '--dataset', 'AIFB', '--seeds', '0', '--epochs', '20')
    assert 'bases=None, hidden=16, l2=0.0, epochs=20' in out
    assert mean_accuracy(out) > 80.0  # 4 classes


def test_l2_penalty_runs_with_bases(run_example):
    args = ('--dataset', 'AIFB', '--seeds', '0', '--epochs', '20', '--bases', '10')
    out = run_example('rgcn_entities.py', *args, '--l2norm', '5e-4')
    assert 'bases=10, hidden=16, l2=0.0005' in out
    assert mean_accuracy(out) > 80.0
