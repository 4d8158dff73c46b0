"""The out-of-core precompute: byte-identical to the in-memory engine, whatever the budget."""

import numpy as np
import pytest
import torch

from graphops.datasets.synthetic_papers import SyntheticPapers
from graphops.precompute import ConvertedDataset, precompute, precompute_out_of_core
from graphops.precompute.dropedge import drop_edges
from graphops.precompute.out_of_core import SCRATCH_PREFIX
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR

MIB = 1 << 20


def authors_operators():
    """The SIGN authors' three operators (2 hops each to keep the test short)."""
    return [
        Adjacency(
            2,
            prefix='u',
            direction='symmetric',
            norm='sym',
            remove_self_loops=True,
            add_self_loops=True,
        ),
        Adjacency(2, prefix='d', direction='transposed', norm='rw', remove_self_loops=True),
        Adjacency(2, prefix='t', direction='directed', norm='rw', remove_self_loops=True),
    ]


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    root = tmp_path_factory.mktemp('ooc')
    papers = SyntheticPapers(6000, num_features=64, label_fraction=0.1, seed=3)
    folder = papers.write_ogb(root / 'data')
    rows = torch.from_numpy(np.concatenate(list(papers._split().values())))
    return {'papers': papers, 'folder': folder, 'root': root, 'rows': rows}


def convert(graph, name, rate, budget, seed=0):
    ops = authors_operators()
    return ConvertedDataset.convert(
        graph['folder'],
        graph['root'] / name,
        [(op, rate) for op in ops],
        budget,
        seed=seed,
        log=lambda _: None,
    )


def arrays(store):
    return {key: store.array(key).view(np.uint32).copy() for key in store.keys()}  # noqa: SIM118 (a FeatureStore)


def in_memory(graph, rate, seed, path):
    papers = graph['papers']
    edges = drop_edges(papers.edge_index.numpy(), rate, seed)
    return precompute(
        torch.from_numpy(edges),
        papers.x,
        authors_operators(),
        path,
        num_nodes=papers.num_nodes,
        rows=graph['rows'],
        progress=False,
    )


@pytest.mark.parametrize('rate', [0.0, 0.4])
def test_out_of_core_store_is_byte_identical_to_the_in_memory_engine(graph, tmp_path, rate):
    reference = arrays(in_memory(graph, rate, 5, tmp_path / 'memory'))
    # a budget with one slice and one block, and one with several of each
    for budget in (64 * MIB, MIB):
        dataset = convert(graph, f'converted-{rate}-{budget}', rate, budget, seed=5)
        stats = {}
        store = precompute_out_of_core(
            dataset,
            authors_operators(),
            tmp_path / f'ooc-{budget}',
            memory_budget_bytes=budget,
            dropedge=rate,
            seed=5,
            rows=graph['rows'],
            stats=stats,
        )
        if budget == MIB:
            assert stats['slices'] > 1 and max(stats['row_blocks']) > 1
            assert stats['bytes_spilled'] > 0  # some product rows went through the disk
        else:
            assert stats['slices'] == 1 and stats['bytes_spilled'] == 0
        got = arrays(store)
        assert got.keys() == reference.keys()
        for key in reference:
            np.testing.assert_array_equal(got[key], reference[key], err_msg=key)


def test_dropedge_is_keyed_by_edge_not_by_order():
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 1000, size=(2, 20000))
    kept = drop_edges(edges, 0.3, 7)
    assert 0.65 < kept.shape[1] / edges.shape[1] < 0.75
    order = rng.permutation(edges.shape[1])
    shuffled = drop_edges(edges[:, order], 0.3, 7)
    key = lambda e: np.sort(e[0] * 1000 + e[1])  # noqa: E731
    np.testing.assert_array_equal(key(shuffled), key(kept))
    assert not np.array_equal(key(drop_edges(edges, 0.3, 8)), key(kept))
    assert drop_edges(edges, 0.0, 7) is edges


def test_a_budget_too_small_names_memory_budget_bytes_and_the_minimum(graph):
    dataset = convert(graph, 'converted-small', 0.0, 64 * MIB)
    with pytest.raises(ValueError, match=r'memory_budget_bytes=.*minimum of \d+ bytes'):
        precompute_out_of_core(
            dataset, authors_operators(), graph['root'] / 'never', memory_budget_bytes=MIB + 1
        )
    with pytest.raises(ValueError, match='memory_budget_bytes'):
        convert(graph, 'converted-tiny', 0.0, MIB // 2)
    with pytest.raises(TypeError, match='memory_budget_bytes must be an int'):
        convert(graph, 'converted-float', 0.0, 1.5e9)


def test_only_adjacency_operators_are_converted(graph):
    with pytest.raises(ValueError, match='Adjacency operators only'):
        ConvertedDataset.convert(
            graph['folder'], graph['root'] / 'ppr', [(PPR(2), 0.0)], 64 * MIB, log=lambda _: None
        )


def test_an_unconverted_matrix_is_a_clear_error(graph, tmp_path):
    dataset = convert(graph, 'converted-other', 0.0, 64 * MIB)
    with pytest.raises(KeyError, match='convert with its operator'):
        precompute_out_of_core(
            dataset,
            authors_operators(),
            tmp_path / 'x',
            memory_budget_bytes=64 * MIB,
            dropedge=0.4,  # converted at 0.0
        )


def test_killed_precompute_resumes_with_the_same_bytes(graph, tmp_path):
    dataset = convert(graph, 'converted-resume', 0.0, MIB)
    kwargs = {'memory_budget_bytes': MIB, 'rows': graph['rows']}
    straight = arrays(
        precompute_out_of_core(dataset, authors_operators(), tmp_path / 'a', **kwargs)
    )

    class Killed(Exception):
        pass

    def die(group, index):
        if group == 'Adjacency' and index == 1:
            raise Killed

    with pytest.raises(Killed):
        precompute_out_of_core(dataset, authors_operators(), tmp_path / 'b', on_slice=die, **kwargs)
    # a run killed inside a hop leaves its scratch file: the resumed run must not read it as is
    (tmp_path / 'b' / f'{SCRATCH_PREFIX}1-2.f32').write_bytes(b'\xff' * 50_000)
    resumed = arrays(precompute_out_of_core(dataset, authors_operators(), tmp_path / 'b', **kwargs))
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    assert not list((tmp_path / 'b').glob(f'{SCRATCH_PREFIX}*'))
