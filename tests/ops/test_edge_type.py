import pytest
import torch

from graphops.ops import edge_type_norm
from graphops.testing import awkward_graphs, dense_adjacency, dense_normalize

NUM_TYPES = 3


def typed(graph, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, NUM_TYPES, (graph.edge_index.size(1),), generator=gen)


def dense_per_type(edge_index, edge_type, num_nodes, weight):
    """Per-type ``D_r^-1 A_r`` (adj_t), summed over types: the reference of the whole stack."""
    return sum(
        dense_normalize(
            dense_adjacency(
                edge_index[:, edge_type == r],
                num_nodes,
                None if weight is None else weight[edge_type == r],
            ),
            'rw',
        )
        for r in range(NUM_TYPES)
    )


@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('graph', list(awkward_graphs()), ids=lambda g: g.name)
def test_matches_dense_per_type_row_normalisation(graph, weighted):
    weight = None
    if weighted and graph.edge_index.size(1):
        weight = torch.rand(graph.edge_index.size(1), dtype=torch.float64) + 0.1
    edge_type = typed(graph)
    out = edge_type_norm(graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES, weight)
    assert out.shape == (graph.edge_index.size(1),)
    assert out.dtype == (torch.float64 if weight is not None else torch.get_default_dtype())
    expected = dense_per_type(graph.edge_index, edge_type, graph.num_nodes, weight)
    got = dense_adjacency(graph.edge_index, graph.num_nodes, out.double())
    torch.testing.assert_close(got, expected)


def test_each_type_sums_to_one_per_target_and_infers_the_type_count():
    edge_index = torch.tensor([[0, 1, 2, 0, 3], [4, 4, 4, 4, 4]])
    edge_type = torch.tensor([0, 0, 0, 1, 1])
    out = edge_type_norm(edge_index, edge_type, 5, dtype=torch.float64)
    torch.testing.assert_close(out, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.5, 0.5]).double())


def test_zero_weight_sums_stay_finite():
    edge_index = torch.tensor([[0, 1], [2, 2]])
    out = edge_type_norm(edge_index, torch.zeros(2, dtype=torch.long), 3, 1, torch.zeros(2))
    assert torch.isfinite(out).all() and (out == 0).all()


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        ({'edge_type': torch.tensor([0, 3])}, ValueError, 'num_edge_types'),
        ({'edge_type': torch.tensor([0])}, ValueError, 'edge_type has 1 entries'),
        ({'edge_type': torch.tensor([0.0, 1.0])}, TypeError, 'integer indices'),
        ({'edge_type': torch.tensor([0, -1])}, ValueError, 'negative'),
        ({'num_nodes': 2}, ValueError, 'num_nodes'),
        ({'edge_weight': torch.tensor([1.0, float('nan')])}, ValueError, 'edge_weight'),
        ({'edge_weight': torch.ones(3)}, ValueError, 'edge_weight'),
        ({'num_edge_types': 0}, ValueError, 'num_edge_types'),
        ({'dtype': torch.long}, TypeError, 'floating'),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    args = {
        'edge_index': torch.tensor([[0, 1], [1, 2]]),
        'edge_type': torch.tensor([0, 1]),
        'num_nodes': 3,
        'num_edge_types': 2,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        edge_type_norm(**args)


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('graph', [g for g in awkward_graphs(weighted=True) if g.num_nodes > 0])
def test_edge_type_norm_device_matches_cpu(matches_cpu, graph):
    edge_type = typed(graph)
    matches_cpu(edge_type_norm, graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES)
    weight = graph.edge_weight
    matches_cpu(edge_type_norm, graph.edge_index, edge_type, graph.num_nodes, NUM_TYPES, weight)
