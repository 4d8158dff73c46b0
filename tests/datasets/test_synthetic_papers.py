import os

import numpy as np
import pytest
import torch

from graphops.datasets.synthetic_papers import SyntheticPapers

N = 20_000


@pytest.fixture(scope='module')
def graph():
    return SyntheticPapers(N, seed=0)


def _split_arrays(split):
    return {k: np.asarray(v) for k, v in split.items()}


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(graph):
    again = SyntheticPapers(N, seed=0, num_threads=1)  # thread count must not matter either
    assert graph.x.numpy().tobytes() == again.x.numpy().tobytes()
    assert graph.edge_index.numpy().tobytes() == again.edge_index.numpy().tobytes()
    assert torch.equal(graph.y, again.y)
    assert torch.equal(graph.node_year, again.node_year)
    for name, idx in graph.get_idx_split().items():
        assert torch.equal(idx, again.get_idx_split()[name])


def test_other_seed_differs(graph):
    other = SyntheticPapers(N, seed=1)
    assert not torch.equal(graph.x, other.x)
    assert not torch.equal(graph.y, other.y)
    assert other.num_edges != graph.num_edges or not torch.equal(graph.edge_index, other.edge_index)


# --- shapes and statistics --------------------------------------------------------------------


def test_shapes_and_dtypes(graph):
    e = graph.num_edges
    assert graph.x.shape == (N, 128) and graph.x.dtype == torch.float32
    assert graph.edge_index.shape == (2, e) and graph.edge_index.dtype == torch.int64
    assert graph.y.shape == (N,) and graph.y.dtype == torch.int64
    assert graph.node_year.shape == (N, 1) and graph.node_year.dtype == torch.int64
    assert graph.community.shape == (N,)
    assert bool(torch.isfinite(graph.x).all())
    split = graph.get_idx_split()
    assert set(split) == {'train', 'valid', 'test'}
    assert all(v.dtype == torch.int64 for v in split.values())


def test_mean_out_degree(graph):
    assert graph.num_edges / N == pytest.approx(14.5, rel=0.03)


@pytest.mark.parametrize('avg_out_degree', [0.5, 3.0, 40.0])
def test_other_mean_out_degrees(avg_out_degree):
    g = SyntheticPapers(N, avg_out_degree=avg_out_degree, num_features=4)
    assert g.num_edges / N == pytest.approx(avg_out_degree, rel=0.03)
    assert bool((g.edge_index[0] > g.edge_index[1]).all())


def test_edges_point_back_in_time_without_duplicates(graph):
    src, dst = graph.edge_index
    assert bool((src > dst).all())  # citing (newer) -> cited (older); so no self-loops either
    year = graph.node_year.squeeze(1)
    assert bool((year[src] >= year[dst]).all())
    assert bool((year[1:] >= year[:-1]).all())
    key = src * N + dst
    assert bool((key[1:] > key[:-1]).all())  # sorted by (source, target), strictly: no duplicates


def test_in_degree_is_heavy_tailed(graph):
    in_degree = torch.bincount(graph.edge_index[1], minlength=N).double()
    assert in_degree.max() > 30 * in_degree.mean()
    # Hill estimator of the tail index over the top 1%: ~2 for P(k) ~ k^-3; light tails give >> 3.
    top = in_degree.sort().values[-N // 100 :]
    alpha = 1.0 / torch.log(top / top[0]).mean()
    assert 1.0 < alpha < 3.0


def test_citations_are_homophilous(graph):
    src, dst = graph.edge_index
    community = graph.community
    homophily = (community[src] == community[dst]).double().mean()
    chance = (torch.bincount(community).double() / N).pow(2).sum()
    assert homophily > 0.5 > 5 * chance


def test_class_distribution_is_skewed(graph):
    counts = torch.bincount(graph.community, minlength=172)
    assert counts.numel() == 172 and int(graph.community.max()) < 172
    assert counts.max() > 20 * counts.float().median()


# --- labels and split -------------------------------------------------------------------------


def test_label_fraction(graph):
    y = graph.y
    labelled = y >= 0
    assert int(labelled.sum()) == round(0.014 * N)
    assert bool((y[~labelled] == -1).all())
    assert int(y.max()) < 172
    # label_noise=0.3 of the labels are redrawn from the prior (a redraw may hit the same class).
    agree = (y[labelled] == graph.community[labelled]).double().mean()
    assert 0.6 < agree < 0.8
    # The "arXiv papers": none before 1991.
    assert int(graph.node_year[labelled].min()) >= 1991


def test_noise_free_labels_are_the_latent_classes():
    g = SyntheticPapers(5_000, num_features=2, label_noise=0.0, label_fraction=0.5)
    labelled = g.y >= 0
    assert torch.equal(g.y[labelled], g.community[labelled])


def test_time_split(graph):
    split = _split_arrays(graph.get_idx_split())
    year = graph.node_year.squeeze(1).numpy()
    labelled = np.flatnonzero(graph.y.numpy() >= 0)
    everything = np.concatenate(list(split.values()))
    np.testing.assert_array_equal(np.sort(everything), labelled)  # disjoint and complete
    assert all((np.diff(v) > 0).all() for v in split.values())
    assert year[split['train']].max() < SyntheticPapers.VALID_YEAR
    assert (year[split['valid']] == SyntheticPapers.VALID_YEAR).all()
    assert year[split['test']].min() > SyntheticPapers.VALID_YEAR
    share = {k: len(v) / len(labelled) for k, v in split.items()}
    # papers100M: 78 / 8 / 14 %. Small graphs are noisy; the slow test checks it tightly.
    assert share['train'] == pytest.approx(0.78, abs=0.06)
    assert share['valid'] == pytest.approx(0.08, abs=0.04)
    assert share['test'] == pytest.approx(0.14, abs=0.05)


# --- features ---------------------------------------------------------------------------------


def test_features_carry_the_class_through_the_graph(graph):
    """Nearest class mean: weak on one node's features, strong after averaging neighbours."""
    x, community = graph.x.double(), graph.community
    src, dst = graph.edge_index
    means = torch.zeros(172, x.size(1), dtype=x.dtype).index_add_(0, community, x)
    means /= torch.bincount(community, minlength=172).clamp(min=1).unsqueeze(1).to(x.dtype)

    def accuracy(features):
        return float((torch.cdist(features, means).argmin(1) == community).double().mean())

    both = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    total = x.clone().index_add_(0, both[1], x[both[0]])
    count = torch.bincount(both[1], minlength=N).to(x.dtype).add_(1).unsqueeze(1)
    alone, averaged = accuracy(x), accuracy(total / count)
    assert alone < 0.75  # about 0.65 at feature_signal=3
    assert averaged > alone + 0.2


# --- PyG ------------------------------------------------------------------------------------


def test_to_data(graph):
    data = graph.to_data()
    assert data.num_nodes == N
    assert data.x.data_ptr() == graph.x.data_ptr()  # no copy of the big arrays
    assert data.edge_index.data_ptr() == graph.edge_index.data_ptr()
    assert torch.equal(data.y, graph.y)
    assert torch.equal(data.node_year, graph.node_year)
    data.validate()


def test_repr(graph):
    assert repr(graph) == (
        'SyntheticPapers(20000, num_features=128, num_classes=172, avg_out_degree=14.5, '
        'label_fraction=0.014, homophily=0.85, feature_signal=3.0, label_noise=0.3, seed=0)'
    )


def test_small_graphs():
    g = SyntheticPapers(2, num_features=3, num_classes=2, label_fraction=1.0)
    assert g.num_edges <= 1
    assert g.x.shape == (2, 3)
    assert int((g.y >= 0).sum()) == 2
    g = SyntheticPapers(300, avg_out_degree=200.0, num_features=2)  # more than most can cite
    src, dst = g.edge_index
    assert bool((src > dst).all())
    assert bool(((src * 300 + dst).diff() > 0).all())


# --- ogb layout -------------------------------------------------------------------------------


@pytest.fixture
def no_download(monkeypatch):
    """A tripwire, not a mock: ogb must find everything on disk and never reach for the network."""
    ogb_dataset = pytest.importorskip('ogb.nodeproppred.dataset')

    def refuse(*args, **kwargs):
        raise AssertionError('ogb tried to download: the written layout is incomplete')

    monkeypatch.setattr(ogb_dataset, 'download_url', refuse)
    monkeypatch.setattr(ogb_dataset, 'decide_download', refuse)
    monkeypatch.setattr('builtins.input', refuse)  # ogb's "dataset updated, re-download?" prompt


def _check_against_ogb(graph, root):
    from ogb.nodeproppred import NodePropPredDataset

    dataset = NodePropPredDataset(name='ogbn-papers100M', root=str(root))
    ogb_graph, label = dataset[0]
    assert dataset.num_classes == 172
    assert ogb_graph['num_nodes'] == graph.num_nodes
    np.testing.assert_array_equal(ogb_graph['edge_index'], graph.edge_index.numpy())
    assert ogb_graph['edge_index'].dtype == np.int64
    np.testing.assert_array_equal(ogb_graph['node_feat'], graph.x.numpy())
    assert ogb_graph['node_feat'].dtype == np.float32
    np.testing.assert_array_equal(ogb_graph['node_year'], graph.node_year.numpy())
    assert label.shape == (graph.num_nodes, 1)
    y = graph.y.numpy()
    np.testing.assert_array_equal(np.isnan(label[:, 0]), y < 0)
    np.testing.assert_array_equal(label[y >= 0, 0].astype(np.int64), y[y >= 0])
    split = dataset.get_idx_split()
    for name, idx in graph.get_idx_split().items():
        np.testing.assert_array_equal(split[name], idx.numpy())


def test_write_ogb_round_trip(graph, tmp_path, no_download):
    folder = graph.write_ogb(tmp_path)
    assert folder == tmp_path / 'ogbn_papers100M'
    assert sorted(os.listdir(folder)) == ['RELEASE_v1.txt', 'processed', 'raw', 'split']
    assert sorted(os.listdir(folder / 'raw')) == ['data.npz', 'node-label.npz']
    assert sorted(os.listdir(folder / 'split' / 'time')) == [
        'test.csv.gz',
        'train.csv.gz',
        'valid.csv.gz',
    ]
    assert os.listdir(tmp_path) == ['ogbn_papers100M']  # no temporary left behind
    (tmp_path / 'plain').mkdir()
    assert folder.stat().st_mode == (tmp_path / 'plain').stat().st_mode  # the umask's, not 0700
    (tmp_path / 'plain').rmdir()
    _check_against_ogb(graph, tmp_path)


def test_write_ogb_compressed_reads_the_same(tmp_path, no_download):
    g = SyntheticPapers(5_000, seed=3, num_features=8)
    g.write_ogb(tmp_path, compress=True)
    _check_against_ogb(g, tmp_path)


def test_pyg_loader_reads_it(graph, tmp_path, no_download):
    from ogb.nodeproppred import PygNodePropPredDataset
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    graph.write_ogb(tmp_path)
    # ogb 1.3.6 reads back its own processed file with torch.load's default weights_only=True
    # (torch >= 2.6), which refuses what ogb pickled until it is allow-listed. Not a layout issue:
    # the real papers100M needs the same list.
    allowed = [DataEdgeAttr, DataTensorAttr, GlobalStorage, np.dtype, type(np.dtype(np.int64))]
    allowed.append(np._core.multiarray.scalar)
    with torch.serialization.safe_globals(allowed):
        dataset = PygNodePropPredDataset(name='ogbn-papers100M', root=str(tmp_path))
    data = dataset[0]
    assert torch.equal(data.x, graph.x)
    assert torch.equal(data.edge_index, graph.edge_index)
    assert torch.equal(data.node_year, graph.node_year)
    labelled = graph.y >= 0
    assert torch.equal(torch.isnan(data.y.squeeze(1)), ~labelled)
    assert torch.equal(data.y.squeeze(1)[labelled].long(), graph.y[labelled])
    for name, idx in dataset.get_idx_split().items():
        assert torch.equal(idx, graph.get_idx_split()[name])


def test_rewrite_replaces_the_dataset_and_ogb_cache(tmp_path, no_download):
    first = SyntheticPapers(5_000, seed=1, num_features=8)
    first.write_ogb(tmp_path)
    _check_against_ogb(first, tmp_path)  # leaves ogb's processed/data_processed cache behind
    assert (tmp_path / 'ogbn_papers100M' / 'processed' / 'data_processed').exists()
    second = SyntheticPapers(6_000, seed=2, num_features=8)
    second.write_ogb(tmp_path)
    _check_against_ogb(second, tmp_path)  # a stale cache would give the first graph
    assert os.listdir(tmp_path) == ['ogbn_papers100M']


def test_failed_write_leaves_previous_dataset_intact(tmp_path, monkeypatch, no_download):
    first = SyntheticPapers(5_000, seed=1, num_features=8)
    first.write_ogb(tmp_path)
    before = (tmp_path / 'ogbn_papers100M' / 'raw' / 'data.npz').read_bytes()

    def crash(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(np, 'savez', crash)
    with pytest.raises(OSError, match='disk full'):
        SyntheticPapers(6_000, seed=2, num_features=8).write_ogb(tmp_path)
    assert os.listdir(tmp_path) == ['ogbn_papers100M']
    assert (tmp_path / 'ogbn_papers100M' / 'raw' / 'data.npz').read_bytes() == before
    monkeypatch.undo()
    _check_against_ogb(first, tmp_path)


def test_write_ogb_refuses_an_empty_split(tmp_path):
    g = SyntheticPapers(40, num_features=2)
    with pytest.raises(ValueError, match='split is empty'):
        g.write_ogb(tmp_path)
    assert not (tmp_path / 'ogbn_papers100M').exists()


# --- argument checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    'kwargs, name',
    [
        ({'num_nodes': 1}, 'num_nodes'),
        ({'num_nodes': 0}, 'num_nodes'),
        ({'num_nodes': -3}, 'num_nodes'),
        ({'label_fraction': 0.0}, 'label_fraction'),
        ({'label_fraction': 1.5}, 'label_fraction'),
        ({'label_fraction': -0.1}, 'label_fraction'),
        ({'label_fraction': float('nan')}, 'label_fraction'),
        ({'num_classes': 1}, 'num_classes'),
        ({'avg_out_degree': 0.0}, 'avg_out_degree'),
        ({'avg_out_degree': -2.0}, 'avg_out_degree'),
        ({'avg_out_degree': float('inf')}, 'avg_out_degree'),
        ({'num_features': 0}, 'num_features'),
        ({'homophily': 1.5}, 'homophily'),
        ({'feature_signal': -1.0}, 'feature_signal'),
        ({'seed': -1}, 'seed'),
    ],
)
def test_bad_values(kwargs, name):
    args = {'num_nodes': 100, **kwargs}
    with pytest.raises(ValueError, match=name):
        SyntheticPapers(args.pop('num_nodes'), **args)


@pytest.mark.parametrize(
    'kwargs, name',
    [
        ({'num_nodes': 10.0}, 'num_nodes'),
        ({'num_nodes': True}, 'num_nodes'),
        ({'num_classes': '172'}, 'num_classes'),
        ({'label_fraction': '0.1'}, 'label_fraction'),
    ],
)
def test_bad_types(kwargs, name):
    args = {'num_nodes': 100, **kwargs}
    with pytest.raises(TypeError, match=name):
        SyntheticPapers(args.pop('num_nodes'), **args)


# --- papers100M scale -------------------------------------------------------------------------


@pytest.mark.slow
def test_split_shares_at_scale():
    g = SyntheticPapers(1_000_000, num_features=1)
    split = g.get_idx_split()
    total = sum(v.numel() for v in split.values())
    assert total == 14_000
    assert split['train'].numel() / total == pytest.approx(0.78, abs=0.015)
    assert split['valid'].numel() / total == pytest.approx(0.08, abs=0.01)
    assert split['test'].numel() / total == pytest.approx(0.14, abs=0.01)
    assert g.num_edges / g.num_nodes == pytest.approx(14.5, rel=0.01)


def test_write_ogb_streams_the_features_it_would_hold(tmp_path):
    # x is generated on first access; write_ogb before it streams the same bytes block by block
    streamed = SyntheticPapers(40_000, seed=4, num_features=8)
    assert streamed._x is None
    streamed.write_ogb(tmp_path / 'streamed')
    assert streamed._x is None  # never materialised
    held = SyntheticPapers(40_000, seed=4, num_features=8)
    held.write_ogb(tmp_path / 'held')  # after .x below: the same file from memory
    raw = np.load(tmp_path / 'streamed' / 'ogbn_papers100M' / 'raw' / 'data.npz')
    assert np.array_equal(raw['node_feat'], held.x.numpy())
    assert np.array_equal(raw['node_feat'], streamed.x.numpy())
