import importlib.util

import numpy as np
import pytest
import torch

from graphops.precompute import precompute
from graphops.precompute.backends.ray import RayBackend, worker_py_modules
from graphops.testing import random_features, random_graph
from graphops.transforms.adjacency import Adjacency
from graphops.transforms.ppr import PPR
from graphops.transforms.triangle import Triangle

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec('ray') is None, reason='ray is not installed'
)


@pytest.fixture(scope='module')
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


GRAPH = random_graph(400, 3000, seed=12, weighted=True, dtype=torch.float32)
X = random_features(400, 8, dtype=torch.float32)


def run_args(**kwargs):
    return {
        'data_or_adj': GRAPH.edge_index,
        'x': X,
        'operators': [Adjacency(2), PPR(1, alpha=[0.2, 0.4], tol=1e-2), Triangle(1)],
        'num_nodes': 400,
        'edge_weight': GRAPH.edge_weight,
        'progress': False,
        **kwargs,
    }


CASES = {
    # 4 columns of PPR's 2 streams: (3 buffers + previous hop) x 2 + 2 float16 outputs
    'float16 rows, 2 slices': run_args(
        rows=torch.arange(0, 400, 3),
        column_budget_bytes=4 * (400 * 4 * 8 + 134 * 2 * 2),
        storage_dtype=torch.float16,
    ),
    # float64 features are propagated in float64; bfloat16 stored as raw 16-bit patterns
    'float64 features, bfloat16, 3 slices': run_args(
        x=X.double(),
        column_budget_bytes=3 * (400 * 8 * 8 + 400 * 2 * 2),
        storage_dtype=torch.bfloat16,
    ),
}


@needs_ray
@pytest.mark.parametrize('case', CASES, ids=list(CASES))
def test_ray_store_is_byte_identical_to_local(tmp_path, ray_cluster, case):
    args = CASES[case]
    local = precompute(store_path=tmp_path / 'local', **args)
    remote = precompute(store_path=tmp_path / 'ray', backend=RayBackend(), **args)
    assert len(local.slices) > 1 and remote.keys() == local.keys()
    files = sorted(p.name for p in (tmp_path / 'local').iterdir() if p.suffix == '.npy')
    assert files == sorted(p.name for p in (tmp_path / 'ray').iterdir() if p.suffix == '.npy')
    for name in files:
        assert (tmp_path / 'ray' / name).read_bytes() == (tmp_path / 'local' / name).read_bytes()
    assert remote.manifest['checksums'] == local.manifest['checksums']
    assert remote.manifest['done'] == local.manifest['done']


@needs_ray
def test_ray_backend_by_name_and_features_put_once(tmp_path, ray_cluster, monkeypatch):
    args = run_args(column_budget_bytes=3 * (400 * 4 * 8 + 400 * 4 * 2))
    local = precompute(store_path=tmp_path / 'local', **args)
    named = precompute(store_path=tmp_path / 'named', backend='ray', **args)
    assert named.manifest['checksums'] == local.manifest['checksums']
    put = ray_cluster.put
    features_puts = []

    def counting_put(value, **kwargs):
        if isinstance(value, np.ndarray):
            features_puts.append(value.shape)
        return put(value, **kwargs)

    monkeypatch.setattr(ray_cluster, 'put', counting_put)
    again = precompute(store_path=tmp_path / 'again', backend=RayBackend(), **args)
    assert again.manifest['checksums'] == local.manifest['checksums']
    # three operators, one copy of the features in the object store
    assert features_puts == [(400, 8)]


def test_ray_backend_bad_input():
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

    assert worker_py_modules() == []  # installed (here: editable): workers share the environment

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, 'version', not_installed)
    assert worker_py_modules() == [str(Path(graphops.__file__).resolve().parent)]


# --- CUDA (gpu-marked) ---


@needs_ray
@pytest.mark.gpu
def test_ray_backend_on_device_matches_local(tmp_path, ray_cluster, device):
    args = run_args(
        operators=[Adjacency(2), PPR(1, alpha=[0.2, 0.4], tol=1e-2)],
        rows=torch.arange(0, 400, 3),
        column_budget_bytes=4 * (400 * 4 * 8 + 134 * 2 * 2),
        device=device,
    )
    local = precompute(store_path=tmp_path / 'local', **args)
    backend = RayBackend(num_gpus_per_task=0.5 if device.type == 'cuda' else 0)
    remote = precompute(store_path=tmp_path / 'ray', backend=backend, **args)
    assert remote.identity['device'] == local.identity['device'] == device.type
    assert len(remote.slices) > 1 and remote.keys() == local.keys()
    for key in local.keys():  # noqa: SIM118 - FeatureStore.keys() is a method
        torch.testing.assert_close(remote[key], local[key], rtol=1e-5, atol=1e-6)
