"""The out-of-core precompute: byte-identical to the in-memory engine, whatever the budget."""

import os

import numpy as np
import pytest
import torch

from graphops.datasets.synthetic_papers import SyntheticPapers
from graphops.precompute import ConvertedDataset, precompute, precompute_out_of_core
from graphops.precompute.dropedge import drop_edges
from graphops.precompute.out_of_core import SCRATCH_PREFIX, column_slices, plan_columns
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
        else:
            assert stats['slices'] == 1
        assert stats['bytes_spilled'] == 0  # 16 columns fit twice: nothing staged on disk
        got = arrays(store)
        assert got.keys() == reference.keys()
        for key in reference:
            np.testing.assert_array_equal(got[key], reference[key], err_msg=key)


def test_hops_staged_on_disk_give_the_same_bytes(tmp_path):
    """A graph where 5 MiB fits fewer than 16 columns twice: hops keep one [N, w] buffer and
    stage product rows on disk (DiskCSR.spmm_spill), and the store keeps the engine's bytes."""
    papers = SyntheticPapers(40_000, num_features=32, label_fraction=0.02, seed=4)
    graph = {'papers': papers, 'folder': papers.write_ogb(tmp_path / 'data'), 'root': tmp_path}
    graph['rows'] = torch.from_numpy(np.concatenate(list(papers._split().values())))
    reference = arrays(in_memory(graph, 0.0, 0, tmp_path / 'memory'))
    stats = {}
    store = precompute_out_of_core(
        convert(graph, 'converted', 0.0, 5 * MIB),
        authors_operators(),
        tmp_path / 'ooc',
        memory_budget_bytes=5 * MIB,
        rows=graph['rows'],
        stats=stats,
    )
    assert stats['bytes_spilled'] > 0 and stats['slices'] > 1, stats
    got = arrays(store)
    assert got.keys() == reference.keys()
    for key in reference:
        np.testing.assert_array_equal(got[key], reference[key], err_msg=key)
    assert not list((tmp_path / 'ooc').glob(f'{SCRATCH_PREFIX}*'))


@pytest.mark.skipif(not hasattr(os, 'posix_fadvise'), reason='no posix_fadvise here')
def test_features_past_the_budget_leave_the_page_cache_slice_by_slice(graph, tmp_path, monkeypatch):
    # 6000 x 64 float32 features are 1.5 MB: past a 1 MiB budget each slice's columns are dropped
    # from the page cache once its operators are done (the byte-identical test above covers the
    # output); under a 64 MiB budget they stay cached.
    dataset = convert(graph, 'converted-cache', 0.0, MIB)
    advised = []
    real = os.posix_fadvise

    def record(fd, offset, length, advice):
        advised.append((offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, 'posix_fadvise', record)
    for budget in (MIB, 64 * MIB):
        advised.clear()
        stats = {}
        precompute_out_of_core(
            dataset,
            authors_operators(),
            tmp_path / f'ooc-{budget}',
            memory_budget_bytes=budget,
            rows=graph['rows'],
            stats=stats,
        )
        dropped = [(o, n) for o, n, advice in advised if advice == os.POSIX_FADV_DONTNEED]
        if budget == MIB:
            column = 6000 * 4
            assert len(dropped) == stats['slices'] > 1
            assert sum(n for _, n in dropped) == 64 * column  # every column once
        else:
            assert dropped == []


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


@pytest.mark.parametrize(
    ('widest', 'features', 'widths'),
    [
        (121, 128, [64, 64]),  # balanced, whole lines
        (29, 128, [16] * 8),  # 26 balanced would straddle lines: 16 instead
        (45, 128, [32] * 4),
        (60, 100, [48, 48, 4]),
        (15, 128, [15] * 8 + [8]),  # narrower than a line: balanced as is
        (20, 24, [12, 12]),
        (500, 128, [128]),
    ],
)
def test_column_slices_are_few_balanced_and_line_wide(widest, features, widths):
    slices = column_slices(widest, features)
    assert [end - start for start, end in slices] == widths
    assert slices[0][0] == 0 and slices[-1][1] == features
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))


def test_hops_stage_rows_on_disk_only_to_reach_a_cache_line():
    ops = [Adjacency(3)]
    n, features, block_rows, rows = 1000, 128, 100, 50
    two_buffers = 8 * n + 4 * rows * 3  # bytes a column
    one_buffer = 4 * (n + block_rows) + 4 * rows * 3

    def plan(room, device='cpu'):
        return plan_columns(ops, n, features, block_rows, rows, 4, room, device)

    slices, per_column, spill = plan(two_buffers * 20)  # 20 columns fit twice: no disk
    assert (len(slices), per_column, spill) == (8, two_buffers, False)
    slices, per_column, spill = plan(two_buffers * 10)  # 10 < 16: one buffer fits 17
    assert (len(slices), per_column, spill) == (8, one_buffer, True)
    assert plan(two_buffers * 10, 'cuda')[2] is False  # the device path never stages
    slices, per_column, spill = plan(one_buffer - 1)  # nothing fits: the smaller need
    assert (slices, per_column) == ([], one_buffer)
    ppr = PPR(3, alpha=0.5, tol=0.4)  # one product a hop, but not a plain one: never staged
    assert ppr.products_per_hop == 1
    assert plan_columns([ppr], n, features, block_rows, rows, 4, two_buffers * 10)[2] is False
