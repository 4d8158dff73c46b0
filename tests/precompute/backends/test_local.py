import torch

from graphops.ops import to_csr
from graphops.precompute import LocalBackend, SliceJob, precompute
from graphops.testing import random_features, random_graph
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR

GRAPH = random_graph(150, 900, seed=4, weighted=True, dtype=torch.float32)
X = random_features(150, 6, dtype=torch.float32)


def test_local_backend_runs_the_job_in_order():
    op = PPR(2, alpha=[0.1, 0.3], tol=1e-3)
    adj = to_csr(GRAPH.edge_index, GRAPH.edge_weight, 150)
    job = SliceJob(op, op.matrix(adj), [(1, 3, 6), (0, 0, 3)], rows=torch.tensor([5, 1, 149]))
    hops = []
    got = list(LocalBackend().map_slices(job, X, lambda *args: hops.append(args[:2])))
    want = list(job.run(X))
    assert [s for s, _ in got] == [1, 0]
    for (i, a), (j, b) in zip(got, want):
        assert i == j and a.keys() == b.keys()
        assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert hops == [(1, 3), (2, 3)] * 2
    assert list(LocalBackend().map_slices(job, X))[0][0] == 1  # on_hop is optional


def test_local_backend_instance_equals_the_name(tmp_path):
    args = {
        'data_or_adj': GRAPH.edge_index,
        'x': X,
        'operators': [Adjacency(2), PPR(1, tol=1e-3)],
        'num_nodes': 150,
        'edge_weight': GRAPH.edge_weight,
        'column_budget_bytes': 2 * 150 * 4 * 8,
        'storage_dtype': torch.float16,
        'progress': False,
    }
    named = precompute(store_path=tmp_path / 'named', **args)
    given = precompute(store_path=tmp_path / 'given', backend=LocalBackend(), **args)
    assert len(named.slices) > 1 and given.manifest['checksums'] == named.manifest['checksums']
    for key in named.keys():  # noqa: SIM118 - FeatureStore.keys() is a method
        file = f'{key}.npy'
        assert (tmp_path / 'named' / file).read_bytes() == (tmp_path / 'given' / file).read_bytes()
    assert repr(LocalBackend()) == 'LocalBackend()'
