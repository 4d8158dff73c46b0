"""Smoke tests of examples/diff_pool.py's recipes: one fold, a few epochs on the shipped data."""

import re

import pytest

pytestmark = pytest.mark.slow


def accuracies(output: str, model: str) -> tuple[float, float]:
    best_val = re.search(
        rf'\({model}\): test accuracy at the best validation epoch ([\d.]+)', output
    )
    authors = re.search(rf"\({model}\): authors' protocol .*? ([\d.]+) ±", output)
    return float(best_val.group(1)), float(authors.group(1))


@pytest.mark.parametrize('model', ['graphops', 'pyg'])
def test_enzymes_recipe(run_example, model):
    out = run_example(
        'diff_pool.py',
        '--dataset',
        'ENZYMES',
        '--run-folds',
        '0',
        '--epochs',
        '5',
        '--model',
        model,
    )
    assert "'node_attr': True" in out and "'hidden': 30" in out
    assert '600 graphs, 21 features, 6 classes' in out  # 18 attributes + 3 one-hot labels
    honest, authors = accuracies(out, model)
    assert honest > 30.0  # 6 classes: chance is 16.7
    assert authors >= honest  # the authors' protocol picks the best epoch on test


def test_proteins_recipe(run_example):
    out = run_example('diff_pool.py', '--dataset', 'PROTEINS', '--run-folds', '0', '--epochs', '3')
    assert "'node_attr': False" in out and "'hidden': 64" in out
    honest, _ = accuracies(out, 'graphops')
    assert honest > 55.0
