"""Stage 1: load ogbn-papers100M through ogb's loader and precompute the SIGN operators.

    graphops-papers100m precompute [--config NAME] [--cfg-options key=value ...]
    graphops-papers100m precompute --dataset ogbn-papers100M --root DIR

With ``--dataset synthetic`` (the default) a :class:`graphops.datasets.synthetic_papers.
SyntheticPapers` graph is generated once and written in ogb's on-disk layout under
``<output>/data/``; from there on both datasets take the same path: ``ogb.nodeproppred.
NodePropPredDataset('ogbn-papers100M', root=...)`` loads it, the operators of the config are
precomputed by graphops' engine (on the configured device, within a column budget, on Ray when
asked) for the labelled rows only (train, valid, test: what the authors kept), and the result is a
FeatureStore in ``<output>/stores/<dataset>-<operators hash>/`` with the labels and split beside
it (``targets.npz``) and the timings in ``precompute.json``.

Re-running is idempotent: a finished store whose operators match is reused, a generated dataset
is not generated again, and an interrupted store is resumed by the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graphops.apps.papers100m.config import (
    dump,
    fingerprint,
    parse_command,
)
from graphops.apps.runtime import process_peak_rss_bytes, threads
from graphops.precompute.dropedge import drop_edges

OGB_NAME = 'ogbn-papers100M'
OGB_DIR = 'ogbn_papers100M'
TARGETS_FILE = 'targets.npz'
PRECOMPUTE_FILE = 'precompute.json'
SYNTHETIC_STAMP = 'graphops_synthetic.json'
SPLITS = ('train', 'valid', 'test')
DEFAULT_OUTPUT = 'outputs/papers100m'


# --- small shared helpers (train.py and run.py use them too) --------------------------------------


def atomic_write_bytes(data: bytes, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(value, path: Path) -> None:
    atomic_write_bytes((json.dumps(value, indent=1) + '\n').encode(), path)


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary name, then a rename: a kill leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    with open(tmp, 'wb') as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_temporaries(folder: Path) -> None:
    """Deletes the half-written ``.NAME.tmp-PID`` files a killed process left behind."""
    if folder.is_dir():
        for tmp in folder.glob('.*.tmp-*'):
            with contextlib.suppress(OSError):
                tmp.unlink()


def resolve_device(name) -> torch.device:
    if name in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} asked for but CUDA is not available; use 'cpu' or 'auto'"
        )
    return device


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# --- where things live ----------------------------------------------------------------------------


def synthetic_params(config: dict) -> dict:
    return dict(config['dataset']['synthetic'])


@dataclass
class Stage:
    """The folders of one config: the ogb root, the store, the training outputs."""

    output: Path
    dataset_name: str
    dataset_root: Path
    dataset_id: str
    store_dir: Path
    runs_dir: Path
    store_fingerprint: str

    @classmethod
    def from_config(cls, config: dict) -> Stage:
        output = Path(config['output'] or DEFAULT_OUTPUT)
        name = config['dataset']['name']
        if name == 'synthetic':
            tag = fingerprint(synthetic_params(config))
            dataset_id = f'synthetic-{tag}'
            root = Path(config['dataset']['root'] or output / 'data' / dataset_id)
        elif name == OGB_NAME:
            if not config['dataset']['root']:
                raise ValueError(
                    '--dataset ogbn-papers100M needs --root DIR, the folder that holds '
                    f'{OGB_DIR}/ (the download: benchmarks/papers100m/README.md in the graphops repository)'
                )
            root = Path(config['dataset']['root'])
            dataset_id = f'{OGB_NAME}-{fingerprint(str(root.resolve()), 6)}'
        else:
            raise ValueError(f"dataset.name must be 'synthetic' or {OGB_NAME!r}, got {name!r}")
        store_tag = fingerprint(
            {
                'operators': config['operators'],
                'storage_dtype': config['precompute']['storage_dtype'],
                'dataset': dataset_id,
                'dropedge': 'keyed-by-edge',  # graphops.precompute.dropedge
            }
        )
        return cls(
            output=output,
            dataset_name=name,
            dataset_root=root,
            dataset_id=dataset_id,
            store_dir=output / 'stores' / f'{dataset_id}-{store_tag}',
            runs_dir=output / 'runs' / (config.get('name') or config['config_name']),
            store_fingerprint=store_tag,
        )

    def is_complete(self) -> bool:
        path = self.store_dir / PRECOMPUTE_FILE
        if not path.is_file() or not (self.store_dir / TARGETS_FILE).is_file():
            return False
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return record.get('fingerprint') == self.store_fingerprint and store_is_complete(
            self.store_dir
        )


# --- the dataset ----------------------------------------------------------------------------------


def ensure_synthetic(stage: Stage, params: dict) -> None:
    """Generates the synthetic dataset in ogb's layout unless an identical one is already there."""
    from graphops.datasets.synthetic_papers import SyntheticPapers

    stamp = stage.dataset_root / SYNTHETIC_STAMP
    release = stage.dataset_root / OGB_DIR / 'RELEASE_v1.txt'
    if stamp.is_file() and release.is_file() and json.loads(stamp.read_text()) == params:
        print(f'synthetic dataset: reusing {stage.dataset_root / OGB_DIR}', flush=True)
        return
    start = time.perf_counter()
    print(f'synthetic dataset: generating SyntheticPapers({params}) ...', flush=True)
    graph = SyntheticPapers(**params)
    print(
        f'synthetic dataset: {graph.num_nodes:,} nodes, {graph.num_edges:,} edges in '
        f'{time.perf_counter() - start:.1f}s; writing the ogb layout',
        flush=True,
    )
    stamp.unlink(missing_ok=True)
    graph.write_ogb(stage.dataset_root)
    del graph
    atomic_write_json(params, stamp)  # written last: its presence means the dataset is whole


@contextlib.contextmanager
def _trusting_ogb_cache():
    """ogb reloads its own processed cache with a bare ``torch.load``, which torch >= 2.6 refuses
    for the numpy arrays inside (``weights_only``). The cache is a file ogb itself wrote from the
    dataset, so allow the full unpickler while ogb loads it."""
    key = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
    old = os.environ.get(key)
    os.environ[key] = '1'
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*')
            yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def load_ogb(root: Path):
    """``(graph, labels, split, num_classes)`` through ``ogb.nodeproppred.NodePropPredDataset``.

    Refuses to start ogb's download (57 GB) and its interactive prompts: the data must be there.
    """
    from ogb.nodeproppred import NodePropPredDataset

    folder = Path(root) / OGB_DIR
    has_raw = (folder / 'raw' / 'data.npz').is_file()
    has_cache = (folder / 'processed' / 'data_processed').is_file()
    if not (has_raw or has_cache) or not (folder / 'RELEASE_v1.txt').is_file():
        raise FileNotFoundError(
            f'no ogbn-papers100M at {folder} (expected raw/data.npz and RELEASE_v1.txt). These '
            'scripts never download; fetch it once (57 GB) with '
            f"python -c \"from ogb.nodeproppred import NodePropPredDataset; NodePropPredDataset('{OGB_NAME}', root='{root}')\""
        )
    with _trusting_ogb_cache():
        dataset = NodePropPredDataset(OGB_NAME, root=str(root))
    graph, labels = dataset[0]
    split = {name: np.asarray(idx, dtype=np.int64) for name, idx in dataset.get_idx_split().items()}
    return graph, labels, split, dataset.num_classes


def labelled_targets(labels: np.ndarray, split: dict, num_classes: int) -> dict:
    """The authors' row order (train, valid, test), labels and the split remapped onto it."""
    rows = np.concatenate([split[name] for name in SPLITS])
    y = labels.reshape(-1)[rows]
    if np.isnan(y).any():
        raise ValueError('some train/valid/test nodes have no label (NaN) in node-label.npz')
    out = {'rows': rows, 'y': y.astype(np.int64), 'num_classes': np.int64(num_classes)}
    start = 0
    for name in SPLITS:
        out[name] = np.arange(start, start + split[name].size, dtype=np.int64)
        start += split[name].size
    return out


# --- operators --------------------------------------------------------------------------------------


def operator_classes() -> dict:
    from graphops.transforms.adjacency import Adjacency
    from graphops.transforms.ppr import PPR
    from graphops.transforms.triangle import Triangle

    return {'Adjacency': Adjacency, 'PPR': PPR, 'Triangle': Triangle}


def build_operators(specs: list[dict]) -> list[tuple[object, float]]:
    """``(operator, dropedge)`` for every config entry ``{type: Adjacency, hops: 3, ...,
    dropedge: 0.4}``; the other keys are the operator's constructor arguments."""
    classes = operator_classes()
    if not specs:
        raise ValueError('the config lists no operators; add at least one under operators:')
    built = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        kind = spec.pop('type', None)
        if kind not in classes:
            raise ValueError(f'operators[{i}].type must be one of {sorted(classes)}, got {kind!r}')
        dropedge = float(spec.pop('dropedge', 0.0))
        if not 0.0 <= dropedge < 1.0:
            raise ValueError(f'operators[{i}].dropedge must lie in [0, 1), got {dropedge}')
        try:
            built.append((classes[kind](**spec), dropedge))
        except TypeError as err:
            raise TypeError(f'operators[{i}] ({kind}): {err}') from err
    return built


def partitions(operators: list[tuple[object, float]]) -> list[tuple[float, list]]:
    """Operators grouped by their DropEdge rate, in order of first appearance: each group runs on
    its own subsampled graph and fills its own part of the store."""
    parts: dict[float, list] = {}
    for op, rate in operators:
        parts.setdefault(rate, []).append(op)
    return list(parts.items())


def part_dirs(store_dir: Path) -> list[Path]:
    return sorted(store_dir.glob('part*'), key=lambda p: int(p.name[4:]))


def store_is_complete(store_dir: Path) -> bool:
    from graphops.precompute.feature_store import MANIFEST

    parts = part_dirs(store_dir)
    if not parts:
        return False
    for part in parts:
        try:
            if not json.loads((part / MANIFEST).read_text()).get('complete'):
                return False
        except (OSError, ValueError):
            return False
    return True


def open_store(store_dir: Path, verify: bool = True) -> list:
    """The FeatureStore of every part (each checks its checksums on open when ``verify``)."""
    from graphops.precompute.feature_store import FeatureStore

    return [FeatureStore(part, verify=verify) for part in part_dirs(store_dir)]


def store_keys(stores: list) -> tuple[list[str], list[int], list[int]]:
    """Keys in order (the input ``x`` first, then each operator's), their hop (0 for the raw
    features) and the part that holds each."""
    keys, hops, where = [], [], []
    for index, store in enumerate(stores):
        for group in store.groups:
            if group['name'] == 'input':
                keys.append('x')
                hops.append(0)
                where.append(index)
                continue
            count = int(group['params']['hops'])
            for position, key in enumerate(group['keys']):
                keys.append(key)
                hops.append(position % count + 1)
                where.append(index)
    return keys, hops, where


# --- the stage ----------------------------------------------------------------------------------------


def precompute_stage(config: dict, progress: bool = True) -> dict:
    """Runs stage 1 for ``config`` unless its store is already complete; returns its record."""
    from graphops.precompute.engine import precompute
    from graphops.precompute.feature_store import FeatureStoreCorruptError

    stage = Stage.from_config(config)
    if stage.is_complete():
        try:
            open_store(stage.store_dir, verify=True)  # every checksum, not just the manifest
        except FeatureStoreCorruptError as err:
            print(f'precompute: {err}\nprecompute: recomputing the store', flush=True)
            shutil.rmtree(stage.store_dir)
        else:
            record = json.loads((stage.store_dir / PRECOMPUTE_FILE).read_text())
            print(f'precompute: reusing the finished FeatureStore {stage.store_dir}', flush=True)
            return record
    operators = build_operators(config['operators'])  # fail fast on a bad config
    pre = config['precompute']
    device = resolve_device(config['device'] if pre['device'] is None else pre['device'])
    storage_dtype = getattr(torch, pre['storage_dtype'])
    record: dict = {'fingerprint': stage.store_fingerprint, 'dataset': stage.dataset_id}

    start = time.perf_counter()
    if stage.dataset_name == 'synthetic':
        ensure_synthetic(stage, synthetic_params(config))
    record['generate_time_s'] = time.perf_counter() - start
    if pre['memory_budget_bytes'] is not None:
        if pre['column_budget_bytes'] is not None:
            raise ValueError(
                'set precompute.memory_budget_bytes (the out-of-core path, one budget for '
                'everything) or precompute.column_budget_bytes (the in-memory path), not both'
            )
        return precompute_out_of_core_stage(
            config, stage, operators, device, storage_dtype, record, progress
        )

    start = time.perf_counter()
    graph, labels, split, num_classes = load_ogb(stage.dataset_root)
    record['load_time_s'] = time.perf_counter() - start
    num_nodes = int(graph['num_nodes'])
    targets = labelled_targets(labels, split, num_classes)
    del labels
    rows = begin_store(
        stage,
        config,
        record,
        targets,
        split,
        device,
        num_nodes=num_nodes,
        num_edges=int(graph['edge_index'].shape[1]),
        num_features=int(graph['node_feat'].shape[1]),
        path=f'device {device}, backend {pre["backend"]}',
    )
    x = graph['node_feat']
    start = time.perf_counter()
    for index, (rate, ops) in enumerate(partitions(operators)):
        edge_index = drop_edges(graph['edge_index'], rate, int(pre['seed']) + index)
        precompute(
            torch.from_numpy(edge_index),
            x,
            ops,
            stage.store_dir / f'part{index}',
            num_nodes=num_nodes,
            rows=rows,
            device=device,
            column_budget_bytes=pre['column_budget_bytes'],
            storage_dtype=storage_dtype,
            include_input=index == 0,
            backend=pre['backend'],
            progress=progress,
        )
        del edge_index
    synchronize(device)
    record['precompute_time_s'] = time.perf_counter() - start
    record['device'] = str(device)
    record['backend'] = pre['backend']
    record['column_budget_bytes'] = pre['column_budget_bytes']
    return finish_stage(stage, targets, record, device)


def load_ogb_targets(root: Path) -> tuple[np.ndarray, dict, int]:
    """``(labels, split, num_classes)`` without loading the graph: the split through ogb's own
    reader (``NodePropPredDataset.get_idx_split``, which only reads ``split/time/*.csv.gz``), the
    labels streamed from ogb's ``raw/node-label.npz``, the class count from ogb's ``master.csv``.
    ``NodePropPredDataset(...)`` itself would materialise every array of ``raw/data.npz``."""
    import pandas as pd
    from ogb import nodeproppred
    from ogb.nodeproppred import NodePropPredDataset

    from graphops.precompute.npy_member import NpyMember

    folder = Path(root) / OGB_DIR
    if not (folder / 'RELEASE_v1.txt').is_file() or not (folder / 'raw' / 'data.npz').is_file():
        raise FileNotFoundError(
            f'no ogbn-papers100M at {folder} (expected raw/data.npz and RELEASE_v1.txt). These '
            'scripts never download; fetch it once (57 GB) with '
            f"python -c \"from ogb.nodeproppred import NodePropPredDataset; NodePropPredDataset('{OGB_NAME}', root='{root}')\""
        )
    master = pd.read_csv(
        Path(nodeproppred.__file__).parent / 'master.csv', index_col=0, keep_default_na=False
    )
    reader = NodePropPredDataset.__new__(NodePropPredDataset)  # the split reader alone
    reader.root, reader.meta_info, reader.is_hetero = str(folder), master[OGB_NAME], False
    split = {name: np.asarray(idx, dtype=np.int64) for name, idx in reader.get_idx_split().items()}
    member = NpyMember(folder / 'raw' / 'node-label.npz', 'node_label')
    labels = member.read(0, member.shape[0])
    return labels, split, int(master[OGB_NAME]['num classes'])


def precompute_out_of_core_stage(
    config: dict, stage: Stage, operators, device, storage_dtype, record: dict, progress: bool
) -> dict:
    """Stage 1 on the out-of-core path: convert ogb's raw files once (streaming, resumable), then
    precompute every partition from the converted arrays within ``precompute.memory_budget_bytes``."""
    from graphops.precompute.converted_dataset import ConvertedDataset, block_nnz_for
    from graphops.precompute.out_of_core import precompute_out_of_core

    pre = config['precompute']
    budget = pre['memory_budget_bytes']
    seed = int(pre['seed'])
    labels, split, num_classes = load_ogb_targets(stage.dataset_root)
    targets = labelled_targets(labels, split, num_classes)
    del labels
    converted_dir = (
        stage.output
        / 'converted'
        / f'{stage.dataset_id}-{pre["feature_dtype"]}-{block_nnz_for(budget)}'
    )
    parts = partitions(operators)
    # every partition's matrices carry their own seed (seed + index, as on the in-memory path)
    start = time.perf_counter()
    dataset = None
    for index, (rate, ops) in enumerate(parts):
        dataset = ConvertedDataset.convert(
            stage.dataset_root / OGB_DIR,
            converted_dir,
            [(op, rate) for op in ops],
            budget,
            seed=seed + index,
            feature_dtype=pre['feature_dtype'],
            log=(lambda message: print(message, flush=True)) if progress else (lambda _: None),
        )
    record['convert_time_s'] = time.perf_counter() - start
    record['load_time_s'] = record['convert_time_s']
    manifest = dataset.manifest
    rows = begin_store(
        stage,
        config,
        record,
        targets,
        split,
        device,
        num_nodes=dataset.num_nodes,
        num_edges=int(manifest['source']['num_edges']),
        num_features=dataset.num_features,
        path=f'out of core, budget {budget / 2**30:.2f} GiB; device {device}',
    )
    start = time.perf_counter()
    bytes_read, slices = 0, []
    for index, (rate, ops) in enumerate(parts):
        stats: dict = {}
        precompute_out_of_core(
            dataset,
            ops,
            stage.store_dir / f'part{index}',
            memory_budget_bytes=budget,
            dropedge=rate,
            seed=seed + index,
            rows=rows,
            storage_dtype=storage_dtype,
            include_input=index == 0,
            device=device,
            progress=progress,
            stats=stats,
        )
        bytes_read += stats['bytes_read_features'] + stats['bytes_read_matrices']
        slices.append(stats['slices'])
    synchronize(device)
    record['precompute_time_s'] = time.perf_counter() - start
    record['device'] = str(device)
    record['backend'] = 'out-of-core'
    record['memory_budget_bytes'] = budget
    record['column_budget_bytes'] = None
    record['bytes_read'] = bytes_read
    record['column_slices'] = slices  # per partition
    record['converted'] = str(converted_dir)
    return finish_stage(stage, targets, record, device)


def finish_stage(stage: Stage, targets: dict, record: dict, device) -> dict:
    """Writes ``targets.npz`` and ``precompute.json`` (last: it marks the stage done)."""
    record['peak_rss_bytes'] = process_peak_rss_bytes()
    record['peak_cuda_bytes'] = (
        torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None
    )
    targets_path = stage.store_dir / TARGETS_FILE
    tmp = stage.store_dir / f'.{TARGETS_FILE}.tmp-{os.getpid()}.npz'
    np.savez(tmp, **targets)
    os.replace(tmp, targets_path)
    record['keys'] = store_keys(open_store(stage.store_dir, verify=False))[0]
    atomic_write_json(record, stage.store_dir / PRECOMPUTE_FILE)
    print(
        f'precompute: {len(record["keys"])} blocks in {record["precompute_time_s"]:.1f}s '
        f'(load {record["load_time_s"]:.1f}s), peak RSS {record["peak_rss_bytes"] / 2**30:.2f} GiB '
        f'-> {stage.store_dir}',
        flush=True,
    )
    return record


def begin_store(
    stage, config, record, targets, split, device, *, num_nodes, num_edges, num_features, path
) -> torch.Tensor:
    """What both precompute paths do before the first product: record the graph's sizes, say
    them, create the store folder with its config, and reset the CUDA peak; returns the kept
    rows."""
    record.update(
        num_nodes=num_nodes,
        num_edges=num_edges,
        num_features=num_features,
        num_rows=int(targets['rows'].size),
        split_sizes={name: int(split[name].size) for name in SPLITS},
    )
    print(
        f'precompute: {num_nodes:,} nodes, {num_edges:,} edges, keeping '
        f'{record["num_rows"]:,} labelled rows; {path}',
        flush=True,
    )
    stage.store_dir.mkdir(parents=True, exist_ok=True)
    dump(config, stage.store_dir / 'config.yaml')
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    return torch.from_numpy(targets['rows'])


def main(argv: list[str] | None = None) -> dict:
    config, args = parse_command(argv, 'precompute', __doc__.split('\n\n')[0])
    with threads(config['threads']):
        return precompute_stage(config, progress=not args.no_progress)


if __name__ == '__main__':
    main(sys.argv[1:])
