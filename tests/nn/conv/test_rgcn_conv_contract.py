"""The drop-in contract of RGCNConv against PyG's RGCNConv and FastRGCNConv (issue 19).

Table-driven over PyG's arguments: same names, defaults and positional order; graphops' extras
keyword-only; MessagePassing arguments it does not honour raise a TypeError naming them; repr
and seeded initialisation equal PyG's; the state_dict moves both ways (strict) and the outputs
then agree to 1e-6 on random graphs.
"""

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.nn import FastRGCNConv
from torch_geometric.nn import RGCNConv as PyGRGCNConv

from graphops.nn import RGCNConv
from graphops.testing.contract import (
    assert_raises_type_error_naming,
    assert_repr_equal,
    assert_seeded_init_equal,
    assert_signature_compatible,
    assert_state_dict_exchange,
    keyword_only_extras,
)

NUM_RELATIONS = 4

# (constructor arguments, input kind): the PyG configurations a user may swap in.
CONFIGS = {
    'plain': ((8, 6, NUM_RELATIONS), {}, 'features'),
    'positional': ((8, 6, NUM_RELATIONS, None, None, 'sum', True, False, True), {}, 'features'),
    'bases': ((8, 6, NUM_RELATIONS), {'num_bases': 2}, 'features'),
    'blocks': ((8, 6, NUM_RELATIONS), {'num_blocks': 2}, 'features'),
    'sum': ((8, 6, NUM_RELATIONS), {'aggr': 'sum'}, 'features'),
    'add': ((8, 6, NUM_RELATIONS), {'aggr': 'add'}, 'features'),
    'max': ((8, 6, NUM_RELATIONS), {'aggr': 'max'}, 'features'),
    'no_root_no_bias': ((8, 6, NUM_RELATIONS), {'root_weight': False, 'bias': False}, 'features'),
    'is_sorted': ((8, 6, NUM_RELATIONS), {'is_sorted': True}, 'features'),
    'featureless': ((20, 6, NUM_RELATIONS), {}, 'none'),
    'featureless_bases': ((20, 6, NUM_RELATIONS), {'num_bases': 3}, 'none'),
    'node_ids': ((20, 6, NUM_RELATIONS), {}, 'ids'),
    'bipartite': (((8, 5), 6, NUM_RELATIONS), {}, 'bipartite'),
}
# FastRGCNConv supports only the sum and the mean, and with node ids it reads the edge's source
# index as the weight row, ignoring x (RGCNConv reads row x[j]; graphops follows RGCNConv).
FAST_CONFIGS = [k for k in CONFIGS if k not in ('max', 'node_ids')]


def graph_inputs(kind: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    num_nodes, num_dst, num_edges = 20, 12, 90
    targets = num_dst if kind == 'bipartite' else num_nodes
    edge_index = torch.stack(
        [
            torch.randint(0, num_nodes, (num_edges,), generator=gen),
            torch.randint(0, targets, (num_edges,), generator=gen),
        ]
    )
    edge_type = torch.randint(0, NUM_RELATIONS, (num_edges,), generator=gen)
    if kind == 'none':
        x = None
    elif kind == 'ids':
        x = torch.randperm(num_nodes, generator=gen)
    elif kind == 'bipartite':
        x = (
            torch.randn(num_nodes, 8, generator=gen, dtype=torch.float64),
            torch.randn(num_dst, 5, generator=gen, dtype=torch.float64),
        )
    else:
        x = torch.randn(num_nodes, 8, generator=gen, dtype=torch.float64)
    return x, edge_index, edge_type


@pytest.mark.parametrize('theirs', [PyGRGCNConv, FastRGCNConv])
def test_signature_names_defaults_positional_order_and_keyword_only_extras(theirs):
    assert_signature_compatible(RGCNConv, theirs)
    assert sorted(keyword_only_extras(RGCNConv, theirs)) == ['cached', 'strategy']


@pytest.mark.parametrize(
    'name,value',
    [
        ('flow', 'target_to_source'),
        ('node_dim', 0),
        ('decomposed_layers', 2),
        ('aggr_kwargs', {'semi_grad': True}),
        ('not_an_argument', 1),
    ],
)
def test_unsupported_message_passing_arguments_raise_a_type_error_naming_them(name, value):
    assert_raises_type_error_naming(RGCNConv, name, 8, 6, NUM_RELATIONS, **{name: value})


def test_message_passing_defaults_are_accepted_as_they_are_honoured():
    conv = RGCNConv(
        8, 6, NUM_RELATIONS, flow='source_to_target', decomposed_layers=1, aggr_kwargs=None
    )
    assert conv.flow == 'source_to_target'


@pytest.mark.parametrize('config', list(CONFIGS))
def test_repr_equals_pyg(config):
    args, kwargs, _ = CONFIGS[config]
    assert_repr_equal(RGCNConv(*args, **kwargs), PyGRGCNConv(*args, **kwargs))


@pytest.mark.parametrize('config', list(CONFIGS))
@pytest.mark.parametrize('theirs', [PyGRGCNConv, FastRGCNConv])
def test_seeded_initialisation_equals_pyg(config, theirs):
    args, kwargs, _ = CONFIGS[config]
    assert_seeded_init_equal(lambda: RGCNConv(*args, **kwargs), lambda: theirs(*args, **kwargs))


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('config', list(CONFIGS))
@pytest.mark.parametrize('theirs', [PyGRGCNConv, FastRGCNConv])
def test_state_dict_exchange_gives_pyg_outputs(config, theirs, seed):
    if theirs is FastRGCNConv and config not in FAST_CONFIGS:
        pytest.skip('FastRGCNConv has no max, and ignores node ids (see FAST_CONFIGS)')
    args, kwargs, kind = CONFIGS[config]
    x, edge_index, edge_type = graph_inputs(kind, seed)
    ours = RGCNConv(*args, **kwargs).double()
    pyg = theirs(*args, **kwargs).double()

    def run(module):
        return module(x, edge_index, edge_type)

    assert_state_dict_exchange(ours, pyg, run, atol=1e-6, seed=seed)


@pytest.mark.parametrize('config', ['plain', 'bases', 'blocks', 'featureless'])
def test_gradients_equal_pyg(config):
    args, kwargs, kind = CONFIGS[config]
    x, edge_index, edge_type = graph_inputs(kind)
    ours = RGCNConv(*args, **kwargs).double()
    pyg = PyGRGCNConv(*args, **kwargs).double()
    pyg.load_state_dict(ours.state_dict())
    upstream = torch.randn(20, 6, dtype=torch.float64)
    for module in (ours, pyg):
        (module(x, edge_index, edge_type) * upstream).sum().backward()
    for (name, a), b in zip(ours.named_parameters(), pyg.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-10), name


def test_no_edges_gives_zero_gradients_like_pyg():
    x = torch.randn(5, 8, dtype=torch.float64)
    edge_index = torch.empty(2, 0, dtype=torch.long)
    edge_type = torch.empty(0, dtype=torch.long)
    for kwargs in ({}, {'num_bases': 2}, {'num_blocks': 2}, {'root_weight': False}):
        ours = RGCNConv(8, 6, NUM_RELATIONS, **kwargs).double()
        pyg = PyGRGCNConv(8, 6, NUM_RELATIONS, **kwargs).double()
        pyg.load_state_dict(ours.state_dict())
        for module in (ours, pyg):
            module(x, edge_index, edge_type).sum().backward()
        for (name, a), b in zip(ours.named_parameters(), pyg.parameters()):
            assert a.grad is not None, name
            assert torch.equal(a.grad, b.grad), name


@pytest.mark.parametrize('name', ['RGCN', 'GTN', 'GTConv', 'GTLayer'])
def test_models_without_a_pyg_counterpart_stay_so(name):
    # RGCN, GTN, GTConv and GTLayer have no PyG class of that name, so no contract applies;
    # if PyG adds one, this fails and the pair joins the table above.
    assert not hasattr(pyg_nn, name)
    assert not hasattr(pyg_nn.models, name)
