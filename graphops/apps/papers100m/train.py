"""Stage 2: train the SIGN classifier on a precomputed FeatureStore.

    graphops-papers100m train [--config NAME] [--cfg-options key=value ...] [--runs R]

Reads the store :mod:`graphops.apps.papers100m.precompute` wrote for the same config (labelled rows
only), trains :class:`graphops.nn.models.sign_classifier.SIGNClassifier` with minibatches over
``--runs`` seeds, evaluates every epoch with ``ogb.nodeproppred.Evaluator('ogbn-papers100M')`` and
reports the test accuracy at the best validation epoch (the authors' protocol). Writes
``results.json`` and ``curves.png`` into ``<output>/runs/<config>/<variant>/``; the variant is
``mlp`` when ``train.max_hops=0`` (raw features only) and ``sign`` otherwise.

Every epoch ends with an atomic checkpoint (``checkpoints/run<r>_last.pt``: model, optimizer,
history) and the best epoch's model is kept in ``checkpoints/run<r>_best.pt``. A killed run picks
up after its last finished epoch; finished runs are not trained again. Each epoch draws its shuffle
and dropout from ``(seed, epoch)`` alone, so a resumed run ends in the same state as one that never
stopped (on the same device and thread count).
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from graphops.apps.papers100m import precompute as pc
from graphops.apps.papers100m.config import (
    dump,
    fingerprint,
    parse_command,
)
from graphops.apps.runtime import process_peak_rss_bytes, threads
from graphops.nn.models.sign_classifier import SIGNClassifier


@dataclass
class TrainingData:
    """The labelled rows: one ``[rows, F]`` block per operator output, labels, the split."""

    xs: list[torch.Tensor]
    y: torch.Tensor
    split: dict[str, torch.Tensor]
    keys: list[str]
    num_classes: int


def select_keys(keys: list[str], hops: list[int], max_hops: int | None) -> list[int]:
    """Positions of the blocks with hop <= ``max_hops`` (all when None); hop 0 is the raw
    features."""
    if max_hops is None:
        return list(range(len(keys)))
    if isinstance(max_hops, bool) or not isinstance(max_hops, int) or max_hops < 0:
        raise ValueError(f'train.max_hops must be an int >= 0 or null, got {max_hops!r}')
    return [i for i, h in enumerate(hops) if h <= max_hops]


def load_training_data(
    stage: pc.Stage, max_hops: int | None, in_memory: bool, progress: bool = True
) -> TrainingData:
    """The store's blocks (read into memory, or left as memory maps) with labels and split."""
    stores = pc.open_store(stage.store_dir)  # verifies every checksum
    keys, hops, where = pc.store_keys(stores)
    chosen = select_keys(keys, hops, max_hops)
    xs = []
    for i in tqdm(chosen, desc='load features', unit='block', leave=False, disable=not progress):
        block = stores[where[i]][keys[i]]
        xs.append(block.clone() if in_memory else block)
    targets = np.load(stage.store_dir / pc.TARGETS_FILE)
    y = torch.from_numpy(targets['y'].astype(np.int64))
    split = {name: torch.from_numpy(targets[name].astype(np.int64)) for name in pc.SPLITS}
    return TrainingData(xs, y, split, [keys[i] for i in chosen], int(targets['num_classes']))


def build_model(model_cfg: dict, data: TrainingData) -> SIGNClassifier:
    head_layers = model_cfg.get('head_layers')
    return SIGNClassifier(
        [x.size(1) for x in data.xs],
        model_cfg['hidden_channels'],
        data.num_classes,
        len(data.xs),
        mode=model_cfg['mode'],
        branch_layers=model_cfg.get('branch_layers', 1),
        head_layers=head_layers,
        dropout=model_cfg['dropout'],
        input_dropout=model_cfg.get('input_dropout', 0.0),
        batch_norm=model_cfg.get('batch_norm', True),
    )


def gather(data: TrainingData, rows: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """The rows ``rows`` of every block as float32 on ``device`` (the store may hold float16)."""
    return [x[rows].to(device=device, dtype=torch.float32, non_blocking=True) for x in data.xs]


def train_epoch(model, optimizer, data, train_rows, batch_size, device, progress) -> dict:
    model.train()
    total_loss, total_correct, seen = 0.0, 0, 0
    batches = range(0, train_rows.numel(), batch_size)
    bar = tqdm(batches, desc='  batches', unit='batch', leave=False, disable=not progress)
    for start in bar:
        rows = train_rows[start : start + batch_size]
        if rows.numel() < 2:  # BatchNorm cannot normalise a single row
            continue
        xs = gather(data, rows, device)
        y = data.y[rows].to(device)
        optimizer.zero_grad(set_to_none=True)
        out = model(xs)
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * rows.numel()
        total_correct += int((out.argmax(-1) == y).sum())
        seen += rows.numel()
    return {'loss': total_loss / max(seen, 1), 'train_acc_running': total_correct / max(seen, 1)}


@torch.no_grad()
def evaluate(model, data, rows, batch_size, device, evaluator) -> float:
    model.eval()
    preds = []
    for start in range(0, rows.numel(), batch_size):
        chunk = rows[start : start + batch_size]
        preds.append(model(gather(data, chunk, device)).argmax(-1).cpu())
    y_pred = torch.cat(preds).view(-1, 1)
    return float(evaluator.eval({'y_true': data.y[rows].view(-1, 1), 'y_pred': y_pred})['acc'])


def train_fingerprint(config: dict, data: TrainingData) -> str:
    """What a checkpoint must match to be resumed: model, optimiser and data, not runs/epochs."""
    ignored = ('runs', 'epochs', 'in_memory', 'eval_batch_size', 'eval_train_rows', 'compare_mlp')
    train_cfg = {k: v for k, v in config['train'].items() if k not in ignored}
    return fingerprint({'model': config['model'], 'train': train_cfg, 'keys': data.keys})


def run_one(config, data, run, out_dir, device, evaluator, progress) -> dict:
    train_cfg = config['train']
    epochs = int(train_cfg['epochs'])
    seed = int(train_cfg['seed']) + run
    last_path = out_dir / 'checkpoints' / f'run{run}_last.pt'
    best_path = out_dir / 'checkpoints' / f'run{run}_best.pt'
    pc.remove_stale_temporaries(last_path.parent)
    tag = train_fingerprint(config, data)

    torch.manual_seed(seed)
    model = build_model(config['model'], data).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=float(train_cfg['lr']), weight_decay=float(train_cfg['weight_decay'])
    )
    state = {'epoch': 0, 'history': [], 'best': None, 'resumed_from_epoch': None}
    if last_path.exists():
        checkpoint = torch.load(last_path, map_location=device, weights_only=False)
        if checkpoint['fingerprint'] != tag:
            raise RuntimeError(
                f'{last_path} was written by another model/train config; delete '
                f'{out_dir} or pick another --output to start over'
            )
        model.load_state_dict(checkpoint['model'])
        optimizer.load_state_dict(checkpoint['optimizer'])
        state = checkpoint['state']
        if state['epoch'] < epochs:
            state['resumed_from_epoch'] = state['epoch']
            tqdm.write(f'run {run}: resuming from the checkpoint after epoch {state["epoch"]}')

    train_rows = data.split['train']
    eval_train = train_rows[:: max(1, math.ceil(train_rows.numel() / train_cfg['eval_train_rows']))]
    bar = tqdm(
        range(state['epoch'] + 1, epochs + 1),
        initial=state['epoch'],
        total=epochs,
        desc=f'run {run}',
        unit='epoch',
        disable=not progress,
    )
    for epoch in bar:
        # Shuffle and dropout depend on (seed, epoch) only: resuming replays them exactly.
        order = torch.randperm(
            train_rows.numel(), generator=torch.Generator().manual_seed(seed * 100_003 + epoch)
        )
        torch.manual_seed(seed * 100_003 + epoch)
        start = time.perf_counter()
        stats = train_epoch(
            model,
            optimizer,
            data,
            train_rows[order],
            int(train_cfg['batch_size']),
            device,
            progress,
        )
        pc.synchronize(device)
        epoch_time = time.perf_counter() - start
        eval_batch = int(train_cfg['eval_batch_size'])
        record = {
            'epoch': epoch,
            'loss': stats['loss'],
            'epoch_time_s': epoch_time,
            'train_acc': evaluate(model, data, eval_train, eval_batch, device, evaluator),
            'valid_acc': evaluate(model, data, data.split['valid'], eval_batch, device, evaluator),
            'test_acc': evaluate(model, data, data.split['test'], eval_batch, device, evaluator),
        }
        state['history'].append(record)
        state['epoch'] = epoch
        if state['best'] is None or record['valid_acc'] > state['best']['valid_acc']:
            state['best'] = dict(record)
            pc.atomic_torch_save(
                {'model': model.state_dict(), 'epoch': epoch, 'fingerprint': tag}, best_path
            )
        pc.atomic_torch_save(
            {
                'model': model.state_dict(),
                'optimizer': optimizer.state_dict(),
                'state': state,
                'fingerprint': tag,
            },
            last_path,
        )
        bar.set_postfix(loss=f'{record["loss"]:.3f}', valid=f'{record["valid_acc"]:.4f}')
    bar.close()
    best = state['best']
    return {
        'run': run,
        'seed': seed,
        'best_epoch': best['epoch'],
        'valid_acc': best['valid_acc'],
        'test_acc': best['test_acc'],
        'epochs_done': state['epoch'],
        'resumed_from_epoch': state['resumed_from_epoch'],
        'epoch_time_s': statistics.fmean(r['epoch_time_s'] for r in state['history']),
        'history': state['history'],
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), as the authors' logger reports."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def variant_name(max_hops) -> str:
    return 'mlp' if max_hops == 0 else 'sign'


def train_variant(config: dict, stage: pc.Stage, progress: bool = True) -> dict:
    """Trains ``train.runs`` seeds of one variant; returns (and writes) its results."""
    from ogb.nodeproppred import Evaluator

    device = pc.resolve_device(config['device'])
    train_cfg = config['train']
    max_hops = train_cfg.get('max_hops')
    variant = variant_name(max_hops)
    out_dir = stage.runs_dir / variant
    out_dir.mkdir(parents=True, exist_ok=True)
    dump(config, out_dir / 'config.yaml')

    data = load_training_data(stage, max_hops, bool(train_cfg['in_memory']), progress)
    num_in = sum(x.size(1) for x in data.xs)
    tqdm.write(
        f'[{variant}] {len(data.keys)} blocks ({num_in} features) x {data.y.numel():,} labelled '
        f'rows, {data.num_classes} classes, device {device}'
    )
    evaluator = Evaluator('ogbn-papers100M')
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for run in range(int(train_cfg['runs'])):
        runs.append(run_one(config, data, run, out_dir, device, evaluator, progress))
        tqdm.write(
            f'[{variant}] run {run}: best valid {runs[-1]["valid_acc"]:.4f} at epoch '
            f'{runs[-1]["best_epoch"]}, test {runs[-1]["test_acc"]:.4f}'
        )
    test_mean, test_std = mean_std([r['test_acc'] for r in runs])
    valid_mean, valid_std = mean_std([r['valid_acc'] for r in runs])
    precompute = json.loads((stage.store_dir / pc.PRECOMPUTE_FILE).read_text())
    results = {
        'config': config['config_name'],
        'name': stage.runs_dir.name,
        'variant': variant,
        'dataset': stage.dataset_id,
        'model': repr(build_model(config['model'], data)),
        'blocks': data.keys,
        'num_input_features': num_in,
        'num_rows': data.y.numel(),
        'split_sizes': {k: int(v.numel()) for k, v in data.split.items()},
        'device': str(device),
        'runs': len(runs),
        'test_acc_mean': test_mean,
        'test_acc_std': test_std,
        'valid_acc_mean': valid_mean,
        'valid_acc_std': valid_std,
        'epoch_time_s': statistics.fmean(r['epoch_time_s'] for r in runs),
        'precompute_time_s': precompute['precompute_time_s'],
        'precompute_peak_rss_bytes': precompute['peak_rss_bytes'],
        'peak_rss_bytes': process_peak_rss_bytes(),
        'peak_cuda_bytes': torch.cuda.max_memory_allocated(device)
        if device.type == 'cuda'
        else None,
        'per_run': runs,
    }
    pc.atomic_write_json(results, out_dir / 'results.json')
    plot_curves({variant: results}, out_dir / 'curves.png', stage.dataset_id)
    tqdm.write(
        f'[{variant}] test accuracy {100 * test_mean:.2f} ± {100 * test_std:.2f} '
        f'(valid {100 * valid_mean:.2f} ± {100 * valid_std:.2f}) over {len(runs)} runs -> {out_dir}'
    )
    return results


def train(config: dict, progress: bool = True) -> dict:
    """Stage 2: the config's model and, with ``train.compare_mlp``, the same model on the raw
    features alone (``max_hops=0``) first. Writes ``summary.json`` and ``curves.png`` for both."""
    stage = pc.Stage.from_config(config)
    if not stage.is_complete():
        raise FileNotFoundError(
            f'no finished FeatureStore at {stage.store_dir}; run the precompute stage first with '
            'the same options: graphops-papers100m precompute ... (or use '
            'graphops-papers100m run, which runs both stages)'
        )
    configs = [config]
    if config['train'].get('compare_mlp') and config['train'].get('max_hops') != 0:
        mlp = copy.deepcopy(config)
        mlp['train']['max_hops'] = 0
        configs.insert(0, mlp)
    results = {}
    for variant_config in configs:
        outcome = train_variant(variant_config, stage, progress)
        results[outcome['variant']] = outcome
    summary = {
        'config': config['config_name'],
        'name': stage.runs_dir.name,
        'dataset': stage.dataset_id,
        'variants': {
            name: {k: v for k, v in r.items() if k != 'per_run'} for name, r in results.items()
        },
    }
    dump(config, stage.runs_dir / 'config.yaml')  # beside summary.json: what made it
    pc.atomic_write_json(summary, stage.runs_dir / 'summary.json')
    plot_curves(results, stage.runs_dir / 'curves.png', stage.dataset_id)
    print_table(summary)
    return summary


def print_table(summary: dict) -> None:
    rows = [('variant', 'blocks', 'test acc (%)', 'valid acc (%)', 'epoch (s)', 'runs')]
    for name, r in summary['variants'].items():
        rows.append(
            (
                name,
                str(len(r['blocks'])),
                f'{100 * r["test_acc_mean"]:.2f} ± {100 * r["test_acc_std"]:.2f}',
                f'{100 * r["valid_acc_mean"]:.2f} ± {100 * r["valid_acc_std"]:.2f}',
                f'{r["epoch_time_s"]:.2f}',
                str(r['runs']),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f'\n{summary["name"]} ({summary["config"]}) on {summary["dataset"]}:', flush=True)
    for row in rows:
        print('  ' + '  '.join(cell.ljust(w) for cell, w in zip(row, widths)), flush=True)


def plot_curves(results_by_variant: dict, path: Path, dataset: str) -> None:
    """Validation accuracy and training loss per epoch: mean over runs, min-max band."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for variant, results in results_by_variant.items():
        epochs = min(len(r['history']) for r in results['per_run'])
        for ax, key in ((ax_acc, 'valid_acc'), (ax_loss, 'loss')):
            values = np.array([[h[key] for h in r['history'][:epochs]] for r in results['per_run']])
            xs = np.arange(1, epochs + 1)
            ax.plot(xs, values.mean(0), label=f'{variant} ({len(values)} runs)')
            ax.fill_between(xs, values.min(0), values.max(0), alpha=0.25)
    ax_acc.set(xlabel='epoch', ylabel='validation accuracy', title=f'{dataset}: validation')
    ax_loss.set(xlabel='epoch', ylabel='training loss', title=f'{dataset}: training loss')
    ax_acc.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f'.{path.stem}.tmp-{os.getpid()}{path.suffix}')
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    config, args = parse_command(argv, 'train', __doc__.split('\n\n')[0])
    with threads(config['threads']):
        return train(config, progress=not args.no_progress)


if __name__ == '__main__':
    main(sys.argv[1:])
