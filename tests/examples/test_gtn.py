"""Smoke tests of examples/gtn.py's recipes: a few epochs on the shipped HGB data."""

import re

import pytest

pytestmark = pytest.mark.slow


def macro_f1(output: str) -> float:
    return float(re.search(r'test macro-F1 ([\d.]+) ±', output).group(1))


def test_dblp_recipe(run_example):
    out = run_example('gtn.py', '--dataset', 'HGB/DBLP', '--seeds', '0', '--epochs', '8')
    # The DBLP recipe: HGB's 2 layers, term dropped, per-type input weights, one-hot authors.
    assert "'layers': 2" in out
    assert "'node_types': ('author', 'paper', 'venue')" in out
    assert "'features': 'per-type'" in out
    assert 'train/val/test [974, 243, 2840]' in out
    # Meta-paths are named by their node types (HGB's DBLP relations are all called 'to').
    assert re.search(r'top meta-paths.*(author|paper|venue)-to-', out)
    assert macro_f1(out) > 40.0  # 4 classes: chance is 25


def test_acm_recipe(run_example):
    out = run_example('gtn.py', '--dataset', 'HGB/ACM', '--seeds', '0', '--epochs', '8')
    assert "'layers': 1" in out and "'features': 'stack'" in out
    assert macro_f1(out) > 50.0  # 3 classes
