"""The streaming conversion: layout, checksums, resume, ogb's stored and deflated npz alike."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from graphops.datasets.synthetic_papers import SyntheticPapers
from graphops.ops import spmm, to_csr
from graphops.precompute import ConvertedDataset, DiskCSR, DiskCSRCorruptError, NpyMember
from graphops.precompute import converted_dataset as cd
from graphops.precompute.converted_dataset import matrix_name
from graphops.transforms.adjacency import Adjacency

MIB = 1 << 20


def operators():
    return [
        (Adjacency(1, direction='symmetric', norm='sym', add_self_loops=True), 0.3),
        (Adjacency(1, direction='transposed', norm='rw', remove_self_loops=True), 0.0),
    ]


@pytest.fixture(scope='module')
def papers(tmp_path_factory):
    root = tmp_path_factory.mktemp('conv')
    graph = SyntheticPapers(5000, num_features=12, label_fraction=0.1, seed=1)
    return {
        'graph': graph,
        'stored': graph.write_ogb(root / 'stored'),
        'deflated': graph.write_ogb(root / 'deflated', compress=True),
        'root': root,
    }


def tree_bytes(path):
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob('*'))
        if p.is_file() and p.name != 'manifest.json'
    }


def test_features_are_fortran_ordered_npy_equal_to_x(papers, tmp_path):
    dataset = ConvertedDataset.convert(
        papers['stored'], tmp_path / 'c', operators(), 8 * MIB, log=lambda _: None
    )
    x = papers['graph'].x.numpy()
    mapped = np.load(dataset.path / 'features.npy', mmap_mode='r')
    assert mapped.shape == x.shape and mapped.flags.f_contiguous
    np.testing.assert_array_equal(mapped, x)
    np.testing.assert_array_equal(dataset.read_columns(3, 9).numpy(), x[:, 3:9])


def test_matrices_equal_the_in_memory_operator_matrix(papers, tmp_path):
    dataset = ConvertedDataset.convert(
        papers['stored'], tmp_path / 'c', operators(), 5 * MIB, log=lambda _: None
    )
    from graphops.precompute.dropedge import drop_edges

    edges = papers['graph'].edge_index.numpy()
    x = papers['graph'].x
    for op, rate in operators():
        adj = to_csr(
            torch.from_numpy(drop_edges(edges, rate, 0)), num_nodes=papers['graph'].num_nodes
        )
        expected = op.matrix(adj)
        disk = dataset.matrix(matrix_name(op, rate, 0))
        assert disk.nnz == expected.nnz
        got = disk.spmm(x)
        assert torch.equal(got.view(torch.int32), spmm(expected, x).view(torch.int32))


def test_deflated_npz_converts_to_the_same_bytes(papers, tmp_path):
    stored = ConvertedDataset.convert(
        papers['stored'], tmp_path / 'a', operators(), 5 * MIB, log=lambda _: None
    )
    deflated = ConvertedDataset.convert(
        papers['deflated'], tmp_path / 'b', operators(), 5 * MIB, log=lambda _: None
    )
    member = NpyMember(papers['deflated'] / 'raw' / 'data.npz', 'node_feat')
    assert member.compressed
    assert tree_bytes(stored.path) == tree_bytes(deflated.path)


def test_npy_member_reads_row_ranges_without_loading(papers):
    raw = papers['stored'] / 'raw' / 'data.npz'
    member = NpyMember(raw, 'node_feat')
    x = papers['graph'].x.numpy()
    assert not member.compressed and member.shape == x.shape
    np.testing.assert_array_equal(member.read(100, 250), x[100:250])
    assert member.bytes_read == 150 * x.shape[1] * 4
    edges = NpyMember(raw, 'edge_index')
    chunks = list(edges.edge_chunks(999))
    got = np.concatenate([np.stack([s, d]) for _, s, d in chunks], axis=1)
    np.testing.assert_array_equal(got, papers['graph'].edge_index.numpy())
    with pytest.raises(ValueError, match="has no array 'nope'"):
        NpyMember(raw, 'nope')


def test_a_corrupt_block_or_column_is_refused_on_read(papers, tmp_path):
    dataset = ConvertedDataset.convert(
        papers['stored'], tmp_path / 'c', operators(), 5 * MIB, log=lambda _: None
    )
    op, rate = operators()[0]
    folder = dataset.path / 'matrices' / matrix_name(op, rate, 0)
    target = DiskCSR.block_files(folder, 0)['value']
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(DiskCSRCorruptError, match='does not match its checksum'):
        dataset.matrix(matrix_name(op, rate, 0)).spmm(papers['graph'].x)
    features = dataset.path / 'features.npy'
    data = bytearray(features.read_bytes())
    data[-1] ^= 0x01
    features.write_bytes(bytes(data))
    with pytest.raises(DiskCSRCorruptError, match='column 11'):
        ConvertedDataset(dataset.path).read_columns(0, 12)


def test_nan_features_are_refused(tmp_path):
    graph = SyntheticPapers(500, num_features=4, label_fraction=0.2)
    graph.x[7, 2] = float('nan')  # x is generated on access: this write reaches write_ogb
    folder = graph.write_ogb(tmp_path / 'nan')
    with pytest.raises(ValueError, match='NaN or Inf'):
        ConvertedDataset.convert(folder, tmp_path / 'c', operators(), 8 * MIB, log=lambda _: None)


def test_an_interrupted_conversion_resumes_to_identical_bytes(papers, tmp_path, monkeypatch):
    straight = ConvertedDataset.convert(
        papers['stored'], tmp_path / 'straight', operators(), 5 * MIB, log=lambda _: None
    )
    real = cd._build_matrix
    calls = []

    def crash_in_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a crash half-way through the second matrix's buckets
        return real(*args, **kwargs)

    monkeypatch.setattr(cd, '_build_matrix', crash_in_second)
    with pytest.raises(KeyboardInterrupt):
        ConvertedDataset.convert(
            papers['stored'], tmp_path / 'resumed', operators(), 5 * MIB, log=lambda _: None
        )
    manifest = json.loads((tmp_path / 'resumed' / 'manifest.json').read_text())
    assert 'features' in manifest['steps'] and len(manifest['steps']['matrices']) == 1
    monkeypatch.setattr(cd, '_build_matrix', real)
    resumed = ConvertedDataset.convert(
        papers['stored'], tmp_path / 'resumed', operators(), 5 * MIB, log=lambda _: None
    )
    assert tree_bytes(resumed.path) == tree_bytes(straight.path)
    assert resumed.fingerprint() == straight.fingerprint()


def test_sigkilled_conversion_resumes_to_identical_bytes(tmp_path):
    graph = SyntheticPapers(60000, num_features=16, label_fraction=0.05, seed=2)
    folder = graph.write_ogb(tmp_path / 'data')
    script = (
        'import sys; from graphops.precompute import ConvertedDataset;'
        'from graphops.transforms.adjacency import Adjacency;'
        "ops = [(Adjacency(1, direction='symmetric', norm='sym', add_self_loops=True), 0.4),"
        "(Adjacency(1, direction='directed', norm='rw'), 0.2),"
        "(Adjacency(1, direction='transposed', norm='rw'), 0.2)];"
        'ConvertedDataset.convert(sys.argv[1], sys.argv[2], ops, 8 << 20)'
    )
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)}
    target = tmp_path / 'killed'
    process = subprocess.Popen([sys.executable, '-c', script, str(folder), str(target)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if any(target.glob('matrices/*/b*.col.npy')):  # half-way through the first matrix
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()
    subprocess.run([sys.executable, '-c', script, str(folder), str(target)], env=env, check=True)
    subprocess.run(
        [sys.executable, '-c', script, str(folder), str(tmp_path / 'straight')], env=env, check=True
    )
    assert tree_bytes(target) == tree_bytes(tmp_path / 'straight')
    assert not list(target.rglob('.*tmp*')) and not list(target.rglob('.bucket*'))


@pytest.mark.gpu
def test_disk_csr_on_cuda_matches_the_cpu(papers, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip('needs CUDA')
    dataset = ConvertedDataset.convert(
        papers['stored'], tmp_path / 'c', operators(), 5 * MIB, log=lambda _: None
    )
    op, rate = operators()[0]
    name = matrix_name(op, rate, 0)
    x = papers['graph'].x
    cpu = dataset.matrix(name).spmm(x)
    disk = dataset.matrix(name, 'cuda')
    assert len(disk.blocks) > 1  # double buffering is exercised
    gpu = disk.spmm(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-6)
