"""The backend interface (PrecomputeBackend) and resolve_backend's explicit check of it."""

import pytest
import torch

from graphops.precompute import LocalBackend, PrecomputeBackend, RayBackend, precompute
from graphops.precompute.backends import resolve_backend
from graphops.testing import random_features, random_graph
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.triangle import Triangle

GRAPH = random_graph(150, 900, seed=8, weighted=True, dtype=torch.float32)
X = random_features(150, 6, dtype=torch.float32)


class LastFirst:
    """A backend of one's own: the slices in reverse order, each through SliceJob.run."""

    def __init__(self):
        self.jobs = []

    def map_slices(self, job, x, on_hop=None):
        self.jobs.append(job)
        for column_slice in reversed(job.slices):
            yield from job.run(x, [column_slice], on_hop)


class NineArguments:
    """The interface before slice jobs: map_slices took nine positional arguments."""

    def map_slices(self, operator, matrix, x, rows, slices, storage_dtype, device, nnz, on_hop):
        raise AssertionError('never called')


def test_resolve_backend_names_and_instances():
    assert isinstance(resolve_backend('local'), LocalBackend)
    assert isinstance(resolve_backend('ray'), RayBackend)  # Ray starts on the first job only
    own = LastFirst()
    assert resolve_backend(own) is own
    assert isinstance(own, PrecomputeBackend)
    for backend in (LocalBackend(), RayBackend()):
        assert resolve_backend(backend) is backend and isinstance(backend, PrecomputeBackend)


@pytest.mark.parametrize(
    'spec, error, match',
    [
        ('dask', ValueError, "backend must be 'local', 'ray' or a PrecomputeBackend"),
        (LocalBackend, TypeError, r'got the class LocalBackend; pass LocalBackend\(\)'),
        (object(), TypeError, r'has no map_slices method; pass a PrecomputeBackend'),
        (NineArguments(), TypeError, r'cannot be called as map_slices\(job, x, on_hop\)'),
        (None, TypeError, 'has no map_slices method'),
    ],
    ids=['unknown name', 'a class', 'no method', 'old signature', 'None'],
)
def test_resolve_backend_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        resolve_backend(spec)


def test_a_custom_backend_writes_the_same_store(tmp_path):
    args = {
        'data_or_adj': GRAPH.edge_index,
        'x': X,
        'operators': [Adjacency(2), Triangle(1)],
        'num_nodes': 150,
        'edge_weight': GRAPH.edge_weight,
        'rows': torch.arange(0, 150, 4),
        'column_budget_bytes': 2 * (150 * 4 * 3 + 38 * 4 * 2),
        'progress': False,
    }
    local = precompute(store_path=tmp_path / 'local', **args)
    backend = LastFirst()
    own = precompute(store_path=tmp_path / 'own', backend=backend, **args)
    assert [type(job.operator) for job in backend.jobs] == [Adjacency, Triangle]
    assert [len(job.slices) for job in backend.jobs] == [3, 3]
    assert own.manifest['checksums'] == local.manifest['checksums']
    for key in local.keys():  # noqa: SIM118 - FeatureStore.keys() is a method
        file = f'{key}.npy'
        assert (tmp_path / 'own' / file).read_bytes() == (tmp_path / 'local' / file).read_bytes()
