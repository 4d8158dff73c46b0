"""Issue 20's identity check on the shipped default itself (1M nodes, the authors' nine
operator-hops, DropEdge off): ogb's in-memory path, the out-of-core path with the default budget
(one column slice) and with a small budget (several slices and row blocks) write the same bytes."""

import argparse
import hashlib

import pytest

from graphops.apps.papers100m import precompute as pc
from graphops.apps.papers100m.config import add_config_arguments, config_from_args

DROPEDGE_OFF = ['operators.0.dropedge=0.0', 'operators.1.dropedge=0.0', 'operators.2.dropedge=0.0']


def store_digests(argv: list[str]) -> dict[str, str]:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    parser.add_argument('--no-progress', action='store_true')
    stage = pc.Stage.from_config(config_from_args(parser.parse_args(argv)))
    return {
        f'{store.path.name}/{key}': hashlib.sha256(store.array(key).tobytes()).hexdigest()
        for store in pc.open_store(stage.store_dir)
        for key in store.keys()  # noqa: SIM118 - FeatureStore.keys() is a method
    }


@pytest.mark.slow
def test_default_graph_stores_are_byte_identical_across_paths(tmp_path):
    data = tmp_path / 'data'  # generated once, shared by the three runs
    digests, backends = {}, {}
    for name, budget in (('memory', 'null'), ('ooc', None), ('ooc-256MiB', str(256 << 20))):
        argv = ['--output', str(tmp_path / name), '--no-progress', '--cfg-options']
        argv += [*DROPEDGE_OFF, f'dataset.root={data}', 'threads=2']
        if budget is not None:
            argv.append(f'precompute.memory_budget_bytes={budget}')
        record = pc.main(argv)
        backends[name] = (record['backend'], record.get('column_slices'))
        digests[name] = store_digests(argv)
    assert backends['memory'][0] == 'local' and backends['ooc'][0] == 'out-of-core', backends
    assert backends['ooc'][1] == [1] and backends['ooc-256MiB'][1][0] > 1, backends
    assert len(digests['memory']) == 10  # the input and 3 operators x 3 hops
    assert digests['ooc'] == digests['memory']
    assert digests['ooc-256MiB'] == digests['memory']
