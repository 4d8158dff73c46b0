import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData

from graphops.datasets.hgb_dataset import HGBDataset
from graphops.transforms.to_edge_type_stack import ToEdgeTypeStack

HGB_ROOT = Path(__file__).resolve().parents[2] / 'data' / 'HGB'
ACM_NODES = {'paper': 3025, 'author': 5959, 'subject': 56, 'term': 1902}
# PyG's names: the meaning's second part, or 'to' where it names the target type.
ACM_RELATIONS = [
    ('paper', 'cite', 'paper'),
    ('paper', 'ref', 'paper'),
    ('paper', 'to', 'author'),
    ('author', 'to', 'paper'),
    ('paper', 'to', 'subject'),
    ('subject', 'to', 'paper'),
    ('paper', 'to', 'term'),
    ('term', 'to', 'paper'),
]


# --- a tiny HGB-format dataset, written in memory ---------------------------------------------
def tiny_files(multi_label: bool = False) -> dict[str, str]:
    """3 movies (ids 0-2, 3 float features), 3 persons (3-5, 2 digit features), 2 tags (6-7)."""
    info = {
        'node.dat': {'node type': {'0': 'movie', '1': 'person', '2': 'tag'}},
        'link.dat': {
            'link type': {
                '0': {'start': 0, 'end': 1, 'meaning': 'movie-person'},
                '1': {'start': 1, 'end': 0, 'meaning': 'person-movie'},
                '2': {'start': 0, 'end': 2, 'meaning': 'movie-tag'},
            }
        },
        'label.dat': {'node type': {'0': {'0': 'drama', '1': 'comedy', '2': 'horror'}}},
    }
    # File order deliberately not id order: local ids must follow the ids, not the lines.
    nodes = [
        '2\tM2\t0\t0.5,-1e-1,3',
        '0\tM0\t0\t1,0,0',
        '1\tM1\t0\t0,2.25,0',
        '3\tAda\t1\t1,0',
        '5\tCy\t1\t0,1',
        '4\tBo\t1\t1,1',
        '6\tnoir\t2',
        '7\tretro\t2',
    ]
    links = [
        '0\t3\t0\t1.0',
        '1\t4\t0\t1.0',
        '2\t5\t0\t1.0',
        '3\t0\t1\t1.0',
        '4\t1\t1\t1.0',
        '5\t2\t1\t1.0',
        '0\t6\t2\t2.5',
        '2\t7\t2\t1.0',
    ]
    if multi_label:
        train = ['0\t\t0\t0,2', '1\t\t0\t1']
        test = ['2\t\t0\t1,2']
    else:
        train = ['0\t\t0\t2', '1\t\t0\t0']
        test = ['2\t\t0\t1']
    return {
        'info.dat': json.dumps(info, indent=4),
        'node.dat': '\n'.join(nodes) + '\n',
        'link.dat': '\n'.join(links) + '\n',
        'label.dat': '\n'.join(train) + '\n',
        'label.dat.test': '\n'.join(test) + '\n',
    }


def write_zip(root: Path, name: str, files: dict[str, str], folder: str = '') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f'{name}.zip'

    # A fixed timestamp per entry: writestr would stamp the current time, and two writes of the
    # same files on either side of a 2-second tick would differ in bytes (and in cache key).
    def write(archive, name, text):
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, text)

    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for file, text in files.items():
            write(archive, folder + file, text)
        if folder:  # what macOS zips carry along
            write(archive, f'__MACOSX/{folder}._node.dat', 'junk')
            write(archive, f'{folder}.DS_Store', 'junk')
    return path


def load_tiny(tmp_path: Path, files: dict[str, str] | None = None, **kwargs) -> HGBDataset:
    write_zip(tmp_path / 'raw', 'Tiny', tiny_files() if files is None else files)
    return HGBDataset(
        str(tmp_path / 'raw'), 'Tiny', processed_dir=str(tmp_path / 'cache'), **kwargs
    )


# --- ACM, the shipped dataset ------------------------------------------------------------------
@pytest.fixture(scope='module')
def acm_cache(tmp_path_factory):
    # One cache per test session (shared with the transform tests): ACM is parsed once.
    return tmp_path_factory.getbasetemp() / 'hgb_cache'


@pytest.fixture(scope='module')
def acm(acm_cache):
    # With HGB's validation split (opt-in): the plain PyG layout is checked in test_pyg_contract.
    return HGBDataset(str(HGB_ROOT), 'ACM', processed_dir=str(acm_cache), val_ratio=0.2)


def test_acm_counts(acm):
    assert len(acm) == 1
    assert acm.num_classes == 3
    data = acm[0]
    assert isinstance(data, HeteroData)
    assert data.node_types == list(ACM_NODES)
    assert {nt: data[nt].num_nodes for nt in data.node_types} == ACM_NODES
    assert data.num_nodes == 10942
    assert data.edge_types == ACM_RELATIONS
    assert sum(data[et].num_edges for et in data.edge_types) == 547872
    assert data.node_offsets == {'paper': 0, 'author': 3025, 'subject': 8984, 'term': 9040}
    # PyG's layout: no graph-level attributes; num_nodes stored only where no x tells it.
    keys = {'x', 'num_nodes', 'y', 'train_mask', 'val_mask', 'test_mask', 'edge_index'}
    assert set(data.keys()) == keys
    assert 'num_nodes' not in data['paper'] and data['term'].num_nodes == 1902
    for et in data.edge_types:
        assert data[et].edge_index.dtype == torch.long
        assert 'edge_weight' not in data[et]  # every ACM weight is 1.0

    paper = data['paper']
    assert paper.y.dtype == torch.long and paper.y.shape == (3025,)
    assert int(paper.y.min()) >= 0 and int(paper.y.max()) == 2  # ACM labels every paper
    train, val, test = paper.train_mask, paper.val_mask, paper.test_mask
    assert int(train.sum()) + int(val.sum()) == 907
    assert int(val.sum()) == int(907 * 0.2) == 181
    assert int(test.sum()) == 2118
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    for nt in ('author', 'subject', 'term'):
        assert 'y' not in data[nt] and 'train_mask' not in data[nt]


def test_acm_features(acm):
    data = acm[0]
    for nt in ('paper', 'author', 'subject'):
        assert data[nt].x.shape == (ACM_NODES[nt], 1902)
        assert data[nt].x.dtype == torch.float32
    assert 'x' not in data['term']  # term has no features in node.dat
    with zipfile.ZipFile(HGB_ROOT / 'ACM.zip') as archive:
        line = archive.read('node.dat').decode().split('\n')[9000]
    node_id, name, node_type, feats = line.split('\t')
    assert (node_id, name, node_type) == ('9000', 'D.4', '2')
    expected = torch.tensor([float(v) for v in feats.split(',')])
    torch.testing.assert_close(data['subject'].x[9000 - 8984], expected)


def test_acm_known_edge(acm):
    data = acm[0]
    with zipfile.ZipFile(HGB_ROOT / 'ACM.zip') as archive:
        lines = archive.read('link.dat').decode().split('\n')
    # Line 21136 is the 501st link of type 3 (author -> paper) in the file.
    assert lines[21135] == '3132\t2665\t3\t1.0'
    edge_index = data['author', 'to', 'paper'].edge_index
    assert edge_index[:, 500].tolist() == [3132 - 3025, 2665]
    # Line 300001: term 9046 -> paper 2535.
    assert lines[300000] == '9046\t2535\t7\t1.0'
    edge_index = data['term', 'to', 'paper'].edge_index
    assert ((edge_index[0] == 9046 - 9040) & (edge_index[1] == 2535)).any()


def test_acm_split_rule(acm):
    paper = acm[0]['paper']
    with zipfile.ZipFile(HGB_ROOT / 'ACM.zip') as archive:
        train = archive.read('label.dat').decode().split()
        test = archive.read('label.dat.test').decode().split()
    # label.dat lines are "id <empty name> type label": whitespace-split gives 3 tokens a line.
    labelled = np.sort(np.array(train[0::3], dtype=np.int64))
    perm = np.random.RandomState(0).permutation(labelled.size)
    assert paper.val_mask.nonzero().view(-1).tolist() == sorted(labelled[perm[:181]].tolist())
    assert paper.train_mask.nonzero().view(-1).tolist() == sorted(labelled[perm[181:]].tolist())
    assert paper.test_mask.nonzero().view(-1).tolist() == sorted(map(int, test[0::3]))
    assert paper.y[int(test[0])] == int(test[2])


def test_acm_second_load_is_cached_and_identical(acm, acm_cache):
    files = os.listdir(acm_cache / 'ACM')
    assert len(files) == 1 and files[0].startswith('data_') and files[0].endswith('.pt')
    again = HGBDataset(str(HGB_ROOT), 'ACM', processed_dir=str(acm_cache), val_ratio=0.2)[0]
    first = acm[0]
    for key in ('train_mask', 'val_mask', 'test_mask', 'y', 'x'):
        assert torch.equal(first['paper'][key], again['paper'][key])
    for et in first.edge_types:
        assert torch.equal(first[et].edge_index, again[et].edge_index)
    assert again.node_types == first.node_types and again.edge_types == first.edge_types
    assert os.listdir(acm_cache / 'ACM') == files  # no temporary files left behind
    # The read-only root is never written: only the shipped zips and their provenance.
    assert all(n.endswith('.zip') or n == 'PROVENANCE.txt' for n in os.listdir(HGB_ROOT))


def test_repr(acm):
    assert repr(acm) == 'ACM()'  # PyG's repr


# --- parsing rules on tiny synthetic zips ------------------------------------------------------
@pytest.mark.parametrize('folder', ['', 'Tiny/'])
def test_tiny_layout(tmp_path, folder):
    write_zip(tmp_path / 'raw', 'Tiny', tiny_files(), folder=folder)
    dataset = HGBDataset(str(tmp_path / 'raw'), 'Tiny', processed_dir=str(tmp_path / 'cache'))
    data = dataset[0]
    assert data.node_types == ['movie', 'person', 'tag']
    assert data.node_offsets == {'movie': 0, 'person': 3, 'tag': 6}
    # Rows follow the node ids, whatever the line order.
    expected = torch.tensor([[1, 0, 0], [0, 2.25, 0], [0.5, -0.1, 3]])
    torch.testing.assert_close(data['movie'].x, expected)
    torch.testing.assert_close(data['person'].x, torch.tensor([[1.0, 0], [1, 1], [0, 1]]))
    assert 'x' not in data['tag'] and data['tag'].num_nodes == 2
    assert data.edge_types == [
        ('movie', 'to', 'person'),
        ('person', 'to', 'movie'),
        ('movie', 'to', 'tag'),
    ]
    assert data['movie', 'to', 'person'].edge_index.tolist() == [[0, 1, 2], [0, 1, 2]]
    assert data['person', 'to', 'movie'].edge_index.tolist() == [[0, 1, 2], [0, 1, 2]]
    tags = data['movie', 'to', 'tag']
    assert tags.edge_index.tolist() == [[0, 2], [0, 1]]
    torch.testing.assert_close(tags.edge_weight, torch.tensor([2.5, 1.0]))
    assert 'edge_weight' not in data['movie', 'to', 'person']
    assert data['movie'].y.tolist() == [2, 0, 1]
    assert data['movie'].test_mask.tolist() == [False, False, True]
    # PyG's layout: every label.dat node trains, no val_mask unless val_ratio asks for one.
    assert data['movie'].train_mask.tolist() == [True, True, False]
    assert 'val_mask' not in data['movie']
    assert dataset.num_classes == 3


def test_multi_label(tmp_path):
    data = load_tiny(tmp_path, tiny_files(multi_label=True))[0]
    y = data['movie'].y
    assert y.dtype == torch.float32 and y.shape == (3, 3)
    assert y.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 1]]


def test_multi_label_unlabelled_rows_are_zero(tmp_path):
    files = tiny_files(multi_label=True)
    files['label.dat'] = '0\t\t0\t0,2\n'
    data = load_tiny(tmp_path, files)[0]
    assert data['movie'].y[1].tolist() == [0, 0, 0]
    assert data['movie'].train_mask.tolist() == [True, False, False]


def test_single_label_unlabelled_is_minus_one(tmp_path):
    files = tiny_files()
    files['label.dat'] = '0\t\t0\t2\n'
    data = load_tiny(tmp_path, files)[0]
    assert data['movie'].y.tolist() == [2, -1, 1]


def test_digit_fast_path_matches_general_parser(tmp_path):
    digits = tiny_files()
    decimals = tiny_files()
    decimals['node.dat'] = digits['node.dat'].replace('\t1,0\n', '\t1.0,0.0\n')
    decimals['node.dat'] = decimals['node.dat'].replace('\t0,1\n', '\t0.0,1e0\n')
    fast = load_tiny(tmp_path / 'a', digits)[0]['person'].x
    slow = load_tiny(tmp_path / 'b', decimals)[0]['person'].x
    assert torch.equal(fast, slow)


def test_val_split_rule(tmp_path):
    files = tiny_files()
    movies = [f'{i}\tM{i}\t0\t1,0,0' for i in range(40)]
    persons = [f'{40 + i}\tP{i}\t1\t1,0' for i in range(3)]
    files['node.dat'] = '\n'.join(movies + persons + ['43\tt\t2', '44\tu\t2']) + '\n'
    files['link.dat'] = '0\t40\t0\t1.0\n'
    files['label.dat'] = ''.join(f'{i}\t\t0\t{i % 3}\n' for i in range(30))
    files['label.dat.test'] = ''.join(f'{i}\t\t0\t{i % 3}\n' for i in range(30, 40))
    masks = {}
    for seed in (0, 0, 1):
        data = load_tiny(
            tmp_path / f'seed{seed}', files, val_ratio=0.2, seed=seed, force_reload=True
        )[0]
        masks.setdefault(seed, []).append(data['movie'].val_mask)
    val = masks[0][0]
    assert int(val.sum()) == 6  # floor(0.2 * 30)
    assert torch.equal(masks[0][0], masks[0][1])
    assert not torch.equal(masks[0][0], masks[1][0])
    perm = np.random.RandomState(0).permutation(30)
    assert val.nonzero().view(-1).tolist() == sorted(perm[:6].tolist())
    data = load_tiny(tmp_path / 'ratio', files, val_ratio=0.5)[0]
    assert int(data['movie'].val_mask.sum()) == 15


def test_pyg_name_and_keyword_only_extras(tmp_path):
    write_zip(tmp_path / 'raw', 'ACM', tiny_files())
    cache = str(tmp_path / 'cache')
    dataset = HGBDataset(str(tmp_path / 'raw'), 'acm', processed_dir=cache)  # PyG's spelling
    assert dataset.name == 'ACM' and repr(dataset) == 'ACM()'
    with pytest.raises(TypeError, match='positional'):
        HGBDataset(str(tmp_path / 'raw'), 'ACM', None, None, False, cache)


def test_relation_names_that_collide_under_pyg_naming(tmp_path):
    files = tiny_files()
    info = json.loads(files['info.dat'])
    info['link.dat']['link type']['2'] = {'start': 0, 'end': 1, 'meaning': 'movie->person'}
    files['info.dat'] = json.dumps(info)
    files['link.dat'] = (
        files['link.dat'].replace('\t6\t2\t', '\t3\t2\t').replace('\t7\t2\t', '\t4\t2\t')
    )
    with pytest.raises(
        ValueError, match=r"link types 0 and 2 both become edge type \('movie', 'to', 'person'\)"
    ):
        load_tiny(tmp_path, files)


def test_cache_key_follows_zip_content(tmp_path):
    first = load_tiny(tmp_path)[0]
    files = tiny_files()
    files['label.dat'] = '0\t\t0\t1\n1\t\t0\t1\n'
    second = load_tiny(tmp_path, files)[0]  # same name and cache folder, new content
    assert first['movie'].y.tolist() == [2, 0, 1]
    assert second['movie'].y.tolist() == [1, 1, 1]
    assert len(os.listdir(tmp_path / 'cache' / 'Tiny')) == 2


def test_transform_and_pre_transform(tmp_path):
    def mark(data):
        data.marked = True
        return data

    dataset = load_tiny(tmp_path, pre_transform=mark, transform=mark)
    assert dataset[0].marked


def test_stack_as_pre_transform(tmp_path):
    for _ in range(2):  # parsed, then read back from the cache
        dataset = load_tiny(tmp_path, pre_transform=ToEdgeTypeStack())
        stack = dataset[0]
        assert isinstance(stack, Data) and stack.num_relations == 3
        assert dataset.num_classes == 3 and stack.y.tolist()[:3] == [2, 0, 1]
    assert len(os.listdir(tmp_path / 'cache' / 'Tiny')) == 1


def test_default_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('GRAPHOPS_CACHE', str(tmp_path / 'home_cache'))
    write_zip(tmp_path / 'raw', 'Tiny', tiny_files())
    dataset = HGBDataset(str(tmp_path / 'raw'), 'Tiny')
    assert dataset.processed_dir == str(tmp_path / 'home_cache' / 'datasets' / 'HGB' / 'Tiny')
    assert len(os.listdir(dataset.processed_dir)) == 1


def test_unwritable_cache_still_loads(tmp_path):
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('')
    write_zip(tmp_path / 'raw', 'Tiny', tiny_files())
    with pytest.warns(UserWarning, match='could not cache Tiny'):
        dataset = HGBDataset(str(tmp_path / 'raw'), 'Tiny', processed_dir=str(blocker))
    assert dataset[0]['movie'].y.tolist() == [2, 0, 1]


def test_meta_dat_mismatch_warns(tmp_path):
    files = tiny_files()
    files['meta.dat'] = 'Node Total: Count 8\nNode Type_0: Count 3\nEdge Total: Count 9\n'
    with pytest.warns(UserWarning, match=r'meta.dat line 3: states 9 for edge Total'):
        load_tiny(tmp_path, files)


# --- bad inputs ---------------------------------------------------------------------------------
def test_missing_zip(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'Nope\.zip.*node\.dat.*label\.dat\.test'):
        HGBDataset(str(tmp_path), 'Nope', processed_dir=str(tmp_path / 'cache'))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='name'):
        HGBDataset(str(tmp_path), '../ACM')
    with pytest.raises(ValueError, match='val_ratio'):
        HGBDataset(str(HGB_ROOT), 'ACM', val_ratio=1.0)
    with pytest.raises(TypeError, match='seed'):
        HGBDataset(str(HGB_ROOT), 'ACM', seed=0.5)
    with pytest.raises(ValueError, match='seed'):
        HGBDataset(str(HGB_ROOT), 'ACM', seed=-1)


def test_zip_lacking_a_file(tmp_path):
    files = tiny_files()
    del files['label.dat']
    with pytest.raises(ValueError, match=r'lacks label\.dat'):
        load_tiny(tmp_path, files)


def test_not_a_zip(tmp_path):
    (tmp_path / 'raw').mkdir()
    (tmp_path / 'raw' / 'Tiny.zip').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='not a readable zip'):
        HGBDataset(str(tmp_path / 'raw'), 'Tiny', processed_dir=str(tmp_path / 'cache'))


def replace_line(text: str, line: int, new: str) -> str:
    lines = text.split('\n')
    lines[line - 1] = new
    return '\n'.join(lines)


BAD_CASES = [
    # (file, line, replacement, message)
    ('label.dat', 2, '4\t\t1\t0', r'label\.dat line 2: node 4 is of type 1'),
    ('label.dat', 2, '4\t\t0\t0', r'label\.dat line 2: node 4 has type 1'),
    ('label.dat', 2, '99\t\t0\t0', r'label\.dat line 2: node id 99 does not exist'),
    ('label.dat', 2, '1\t\t7\t0', r'label\.dat line 2: unknown node type 7'),
    ('label.dat', 2, '1\t\t0\t3', r'label\.dat line 2: class 3 out of range'),
    ('label.dat', 2, '0\t\t0\t1', r'label\.dat line 2: node 0 is labelled twice'),
    ('label.dat', 2, '1\t0\t0', r'label\.dat line 2: expected 4 tab-separated fields'),
    ('label.dat.test', 1, '0\t\t0\t1', r'label\.dat\.test line 1: node 0 is also labelled'),
    ('node.dat', 4, '3\tAda\t9\t1,0', r'node\.dat line 4: unknown node type 9'),
    ('node.dat', 4, '3\tAda', r'node\.dat line 4: expected 3 or 4 tab-separated fields'),
    ('node.dat', 4, 'x\tAda\t1\t1,0', r'node\.dat line 4: node id and type must be integers'),
    ('node.dat', 4, '3\tAda\t1\t1,0,1', r'node\.dat line 4: 3 features, but line 6'),
    ('node.dat', 4, '3\tAda\t1\t1,zz', r"node\.dat line 4: feature 'zz' is not a number"),
    ('node.dat', 4, '3\tAda\t1\t1,nan', r'node\.dat line 4: features contain NaN'),
    ('node.dat', 4, '3\tAda\t1', r'node\.dat line 4: node type 1 mixes nodes with and without'),
    ('node.dat', 4, '0\tAda\t1\t1,0', r'node\.dat line 4: node id 0 appears twice'),
    ('node.dat', 4, '8\tAda\t1\t1,0', r'node\.dat line 4: node id 8 out of range'),
    ('node.dat', 7, '6\tnoir\t0\t1,1,1', r'node\.dat line 4: node 3 has type 1 but lies inside'),
    ('link.dat', 3, '2\t5\t0', r'link\.dat line 3: expected 4 tab-separated fields'),
    ('link.dat', 3, '2\t5\t0\t1.0\t7', r'link\.dat line 3: expected 4 tab-separated fields'),
    ('link.dat', 3, '2\tfive\t0\t1.0', r"link\.dat line 3: tail id 'five' is not an integer"),
    ('link.dat', 3, '2\t5\t0\theavy', r"link\.dat line 3: weight 'heavy' is not a number"),
    ('link.dat', 3, '2\t50\t0\t1.0', r'link\.dat line 3: node id 50 does not exist'),
    ('link.dat', 3, '2\t5\t9\t1.0', r'link\.dat line 3: unknown link type 9'),
    ('link.dat', 3, '2\t5\t0\tinf', r'link\.dat line 3: weight is NaN or Inf'),
    ('link.dat', 3, '2\t7\t0\t1.0', r'link\.dat line 3: link type 0 must end at a node of type 1'),
    (
        'link.dat',
        3,
        '5\t2\t0\t1.0',
        r'link\.dat line 3: link type 0 must start at a node of type 0',
    ),
    ('info.dat', 2, '"node.dat" {', r'info\.dat line 2: not valid JSON'),
]


@pytest.mark.parametrize(('file', 'line', 'new', 'message'), BAD_CASES)
def test_malformed_content(tmp_path, file, line, new, message):
    files = tiny_files()
    files[file] = replace_line(files[file], line, new)
    with pytest.raises(ValueError, match=message):
        load_tiny(tmp_path, files)


def test_malformed_info(tmp_path):
    files = tiny_files()
    info = json.loads(files['info.dat'])
    info['link.dat']['link type']['2']['end'] = 5
    files['info.dat'] = json.dumps(info)
    with pytest.raises(ValueError, match=r'info\.dat: link type 2 uses undeclared node type 5'):
        load_tiny(tmp_path, files)
    info['link.dat']['link type']['2']['end'] = -1
    files['info.dat'] = json.dumps(info)
    with pytest.raises(ValueError, match=r'info\.dat: the end of link type 2 must be >= 0'):
        load_tiny(tmp_path, files)
    files['info.dat'] = json.dumps({'node.dat': {}})
    with pytest.raises(ValueError, match=r"info\.dat: expected JSON with 'node.dat'"):
        load_tiny(tmp_path, files)


def test_error_line_counts_blank_lines(tmp_path):
    files = tiny_files()
    files['link.dat'] = '\n' + replace_line(files['link.dat'], 3, '2\t50\t0\t1.0')
    with pytest.raises(ValueError, match=r'link\.dat line 4: node id 50'):
        load_tiny(tmp_path, files)


def test_in_memory_zip_bytes_are_not_extracted(tmp_path):
    load_tiny(tmp_path)
    assert sorted(p.name for p in (tmp_path / 'raw').iterdir()) == ['Tiny.zip']
    with zipfile.ZipFile(io.BytesIO((tmp_path / 'raw' / 'Tiny.zip').read_bytes())) as archive:
        assert 'node.dat' in archive.namelist()
