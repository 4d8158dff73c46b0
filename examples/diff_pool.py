"""DiffPool (Ying et al., NeurIPS 2018) graph classification with 10-fold cross-validation.

    python examples/diff_pool.py --dataset PROTEINS --epochs 50 --patience 20

Protocol: stratified 10-fold CV; for test fold k, fold k+1 is the validation fold and the other
eight train. Each fold trains for up to --epochs epochs, stops after --patience epochs without a
better validation accuracy, and reports the test accuracy of the weights with the best validation
accuracy (ties go to the lower validation loss). The paper's settings otherwise: GraphSAGE (mean)
GNNs of 3 layers with l2 normalisation, Adam at lr 1e-3, batch 20, gradient clipping at 2.0, the
link-prediction and entropy losses added to the task loss. By default one DiffPool layer with 10%
clusters, which the paper reports as good as two for PROTEINS, ENZYMES and COLLAB (and the
authors' code's default); --num-pools 2 gives the two-layer, 25% architecture. The paper puts
batch norm after every GNN layer; DiffPoolNet leaves it off unless asked (--batch-norm): on
PROTEINS its eval-mode statistics, dominated by near-empty clusters, gave lower validation
accuracy on folds 0-2, and 71.88 ± 4.68 against 75.65 ± 3.87 over the 10 folds (seed 0).
The paper's PROTEINS figure is 76.25; the authors'
cross-validation script reports the best epoch of the accuracy averaged over the held-out folds
themselves, with no separate validation fold, so expect a lower number from this protocol.

No graph is dropped: the first DiffPool level runs on the sparse batch. Datasets without node
features (COLLAB, IMDB-BINARY) get one-hot degrees when the largest degree is at most 1000 (PyG's
kernel benchmarks do the same) and a constant feature otherwise.
"""

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch_geometric.loader import DataLoader
from torch_geometric.utils import degree

from graphops.datasets import load
from graphops.nn.models.diff_pool_net import DiffPoolNet

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='PROTEINS')
parser.add_argument('--seeds', type=int, nargs='+', default=[0])
parser.add_argument('--epochs', type=int, default=50)
parser.add_argument('--patience', type=int, default=20)
parser.add_argument('--folds', type=int, default=10)
parser.add_argument('--run-folds', type=int, default=None, help='run only the first k folds')
parser.add_argument('--batch-size', type=int, default=20)
parser.add_argument('--hidden', type=int, default=64)
parser.add_argument('--lr', type=float, default=1e-3)
parser.add_argument('--num-pools', type=int, default=1)
parser.add_argument('--pool-ratio', type=float, default=None)
parser.add_argument('--readout', default='mean', choices=['mean', 'max', 'sum'])
parser.add_argument('--dropout', type=float, default=0.0)
parser.add_argument('--batch-norm', action='store_true', help='as in the paper')
parser.add_argument('--link-weight', type=float, default=1.0)
parser.add_argument('--entropy-weight', type=float, default=1.0)
parser.add_argument('--loss-norm', default='paper', choices=['paper', 'pyg'])
parser.add_argument('--threads', type=int, default=None)
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

dataset = load(args.dataset)
if dataset.num_node_features == 0:
    max_degree = max(
        int(degree(d.edge_index[0], d.num_nodes).max()) if d.num_edges else 0 for d in dataset
    )
    transform = T.OneHotDegree(max_degree) if max_degree <= 1000 else T.Constant()
    dataset = load(args.dataset, transform=transform)
max_num_nodes = max(d.num_nodes for d in dataset)
labels = dataset.y.view(-1) if dataset.y is not None else torch.tensor([d.y for d in dataset])
print(
    f'{args.dataset}: {len(dataset)} graphs, {dataset.num_features} features, '
    f'{dataset.num_classes} classes, largest graph {max_num_nodes} nodes (none dropped)'
)


def stratified_folds(seed: int) -> torch.Tensor:
    """Fold id of each graph, classes spread evenly over the folds."""
    gen = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(labels), dtype=torch.long)
    start = 0
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(members.numel(), generator=gen)]
        fold[members] = (torch.arange(members.numel()) + start) % args.folds
        start += members.numel()
    return fold


def run_epoch(model, loader, optimizer=None):
    training = optimizer is not None
    model.train(training)
    total_loss = correct = count = 0
    for data in loader:
        data = data.to(device)
        with torch.set_grad_enabled(training):
            logits, aux_loss = model(data.x, data.edge_index, data.batch)
            loss = F.cross_entropy(logits, data.y.view(-1))
            if training:
                optimizer.zero_grad()
                (loss + aux_loss).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
                optimizer.step()
        total_loss += loss.item() * data.num_graphs
        correct += int((logits.argmax(-1) == data.y.view(-1)).sum())
        count += data.num_graphs
    return total_loss / count, correct / count


def run_fold(seed: int, fold: torch.Tensor, k: int) -> float:
    torch.manual_seed(seed * 100 + k)
    val_k = (k + 1) % args.folds
    test_idx = (fold == k).nonzero().flatten()
    val_idx = (fold == val_k).nonzero().flatten()
    train_idx = ((fold != k) & (fold != val_k)).nonzero().flatten()
    train_loader = DataLoader(dataset[train_idx], batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(dataset[val_idx], batch_size=args.batch_size)
    test_loader = DataLoader(dataset[test_idx], batch_size=args.batch_size)
    model = DiffPoolNet(
        dataset.num_features,
        args.hidden,
        dataset.num_classes,
        max_num_nodes,
        num_pools=args.num_pools,
        pool_ratio=args.pool_ratio,
        readout=args.readout,
        dropout=args.dropout,
        link_loss_weight=args.link_weight,
        entropy_loss_weight=args.entropy_weight,
        loss_norm=args.loss_norm,
        batch_norm=args.batch_norm,
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    best_acc, best_loss, best_state, best_epoch = -1.0, float('inf'), None, 0
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        run_epoch(model, train_loader, optimizer)
        val_loss, val_acc = run_epoch(model, val_loader)
        if (val_acc, -val_loss) > (best_acc, -best_loss):
            best_acc, best_loss, best_epoch = val_acc, val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= args.patience:
            break
    model.load_state_dict(best_state)
    _, test_acc = run_epoch(model, test_loader)
    print(
        f'  seed {seed} fold {k}: test {100 * test_acc:.2f} (val {100 * best_acc:.2f} at epoch '
        f'{best_epoch}/{epoch}, {time.perf_counter() - start:.0f}s)',
        flush=True,
    )
    return test_acc


fold_accs, seed_means = [], []
for seed in args.seeds:
    fold = stratified_folds(seed)
    accs = [run_fold(seed, fold, k) for k in range(args.run_folds or args.folds)]
    fold_accs += accs
    seed_means.append(statistics.fmean(accs))
    print(f'seed {seed}: {100 * seed_means[-1]:.2f} mean over {len(accs)} folds', flush=True)

# DiffPool's Table 1 (Ying et al., 2018).
PAPER = {'ENZYMES': 62.53, 'DD': 80.64, 'COLLAB': 75.48, 'PROTEINS': 76.25}
std = statistics.stdev(fold_accs) if len(fold_accs) > 1 else 0.0
paper = f'; paper {PAPER[args.dataset]}' if args.dataset in PAPER else ''
print(
    f'{args.dataset}: test accuracy {100 * statistics.fmean(fold_accs):.2f} ± {100 * std:.2f} '
    f'(mean ± std over {len(fold_accs)} folds x seeds{paper})'
)
if len(seed_means) > 1:
    print(
        f'over seeds: {100 * statistics.fmean(seed_means):.2f} ± '
        f'{100 * statistics.stdev(seed_means):.2f}'
    )
