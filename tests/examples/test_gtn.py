"""Smoke tests of examples/gtn.py's recipes: a few epochs on the shipped HGB data."""

import re

import pytest

pytestmark = pytest.mark.slow


def macro_f1(output: str) -> float:
    return float(re.search(r'test macro-F1 ([\d.]+) ±', output).group(1))


def test_dblp_recipe(run_example):
    out = run_example('gtn.py', '--dataset', 'HGB/DBLP', '--seeds', '0', '--epochs', '8')
    # The DBLP recipe: HGB's 2 layers, term dropped, per-type input weights, one-hot authors,
    # and HGB's model.py GTN (its products and head, no GCN bias), chosen on macro-F1.
    assert "'layers': 2" in out
    assert "'node_types': ('author', 'paper', 'venue')" in out
    assert "'features': 'per-type'" in out
    assert "'product_norm': 'between', 'head': 'mlp', 'bias': False" in out
    assert "'select': 'macro'" in out
    assert re.search(r'seed 0: best val macro-F1 at epoch \d+ \(val macro-F1 0\.\d+', out)
    assert 'train/val/test [974, 243, 2840]' in out
    # Meta-paths are named by their node types (HGB's DBLP relations are all called 'to').
    assert re.search(r'top meta-paths.*(author|paper|venue)-to-', out)
    # HGB's uniform start learns slowly (seed 0: 37.38 after 8 epochs, 93.34 at its best of 40);
    # 4 classes: chance is 25, a constant prediction about 10.
    assert macro_f1(out) > 30.0


def test_acm_recipe(run_example):
    out = run_example('gtn.py', '--dataset', 'HGB/ACM', '--seeds', '0', '--epochs', '8')
    assert "'layers': 1" in out and "'features': 'stack'" in out
    assert "'product_norm': 'each', 'head': 'linear', 'bias': True" in out  # the authors' GTN
    assert macro_f1(out) > 50.0  # 3 classes


def test_hgb_gtn_on_a_dblp_subgraph_matches_hgb_code():
    # The DBLP recipe's model (HGB's products, MLP head, no GCN bias; 2 and 3 layers) against the
    # dense transcription of HGB's model.py, on the typed subgraph around 25 authors (their
    # papers, those papers' venues and co-authors: real structure, ~400 nodes), float64.
    import torch

    from graphops.nn.models.gtn import GTN
    from graphops.testing import tolerance
    from graphops.testing.gtn import dblp_subgraph, dense_edge_type_stack, dense_hgb_gtn

    data = dblp_subgraph()
    n, k = data.num_nodes, data.num_relations
    rows = data.train_mask.nonzero().view(-1)
    assert rows.numel() > 5
    stack = dense_edge_type_stack(data.edge_index, data.edge_type, n, k, None, True)
    for layers in (2, 3):
        torch.manual_seed(layers)
        model = GTN(
            6, 8, 4, k, num_layers=layers, product_norm='between', head='mlp', bias=False
        ).double()
        for p in model.parameters():
            torch.nn.init.normal_(p)
        got = model(data.x, data.edge_index, data.edge_type, node_index=rows)
        first = model.layers[0]
        weights = [[first.conv2.weight, first.conv1.weight]]
        weights += [[layer.conv1.weight] for layer in model.layers[1:]]
        lin_channels = (model.lin_channels.weight, model.lin_channels.bias)
        expected = dense_hgb_gtn(
            data.x,
            stack,
            weights,
            model.weight,
            None,
            lin_channels,
            model.lin.weight,
            model.lin.bias,
            rows,
        )
        torch.testing.assert_close(got, expected, **tolerance(torch.float64))
