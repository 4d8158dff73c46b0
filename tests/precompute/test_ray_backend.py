import importlib.util

import numpy as np
import pytest
import torch

from graphops.precompute.engine import precompute
from graphops.testing import random_features, random_graph
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec('ray') is None, reason='ray is not installed'
)


@pytest.fixture(scope='module')
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_backend_gives_identical_arrays(tmp_path, ray_cluster):
    from graphops.precompute.ray_backend import RayBackend

    graph = random_graph(400, 3000, seed=12, weighted=True, dtype=torch.float32)
    x = random_features(400, 8, dtype=torch.float32)
    args = {
        'data_or_adj': graph.edge_index,
        'x': x,
        'operators': [Adjacency(2), PPR(1, alpha=[0.2, 0.4], tol=1e-2)],
        'num_nodes': 400,
        'edge_weight': graph.edge_weight,
        'rows': torch.arange(0, 400, 3),
        # 4 columns of PPR's 2 streams: (3 buffers + previous hop) x 2 + 2 float16 outputs
        'column_budget_bytes': 4 * (400 * 4 * 8 + 134 * 2 * 2),
        'storage_dtype': torch.float16,
        'progress': False,
    }
    local = precompute(store_path=tmp_path / 'local', **args)
    remote = precompute(store_path=tmp_path / 'ray', backend=RayBackend(), **args)
    assert len(local.slices) == 2
    assert remote.keys() == local.keys()
    for key in local.keys():  # noqa: SIM118
        assert np.array_equal(np.asarray(remote.array(key)), np.asarray(local.array(key))), key
    assert remote.manifest['checksums'] == local.manifest['checksums']


def test_ray_backend_bad_input():
    from graphops.precompute.ray_backend import RayBackend

    with pytest.raises(ValueError, match='num_cpus must be a positive int'):
        RayBackend(num_cpus=0)
    with pytest.raises(ValueError, match='num_gpus_per_task must be a number'):
        RayBackend(num_gpus_per_task=-1)
    with pytest.raises(ValueError, match='max_in_flight'):
        RayBackend(max_in_flight=0)
    assert repr(RayBackend(num_cpus=2)).startswith('RayBackend(address=None, num_cpus=2')


def test_workers_get_graphops_from_the_install_or_py_modules(monkeypatch):
    from importlib import metadata
    from pathlib import Path

    import graphops
    from graphops.precompute.ray_backend import worker_py_modules

    assert worker_py_modules() == []  # installed (here: editable): workers share the environment

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, 'version', not_installed)
    assert worker_py_modules() == [str(Path(graphops.__file__).resolve().parent)]


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
def test_ray_backend_on_device_matches_local(tmp_path, ray_cluster, device):
    from graphops.precompute.ray_backend import RayBackend

    graph = random_graph(400, 3000, seed=12, weighted=True, dtype=torch.float32)
    args = {
        'data_or_adj': graph.edge_index,
        'x': random_features(400, 8, dtype=torch.float32),
        'operators': [Adjacency(2), PPR(1, alpha=[0.2, 0.4], tol=1e-2)],
        'num_nodes': 400,
        'edge_weight': graph.edge_weight,
        'rows': torch.arange(0, 400, 3),
        'column_budget_bytes': 4 * (400 * 4 * 8 + 134 * 2 * 2),
        'progress': False,
        'device': device,
    }
    local = precompute(store_path=tmp_path / 'local', **args)
    backend = RayBackend(num_gpus_per_task=0.5 if device.type == 'cuda' else 0)
    remote = precompute(store_path=tmp_path / 'ray', backend=backend, **args)
    assert remote.identity['device'] == local.identity['device'] == device.type
    assert len(remote.slices) > 1 and remote.keys() == local.keys()
    for key in local.keys():  # noqa: SIM118 - FeatureStore.keys() is a method
        torch.testing.assert_close(remote[key], local[key], rtol=1e-5, atol=1e-6)
