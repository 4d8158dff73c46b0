"""EigenGCN (Ma et al., KDD 2019, "Graph Convolutional Networks with EigenPooling") graph
classification on the TU benchmarks (the paper: ENZYMES, PROTEINS, D&D, NCI1, NCI109,
Mutagenicity; any TU dataset whose raw files are in the data folder runs).

    python examples/eigen_pool.py --dataset ENZYMES
    python examples/eigen_pool.py --dataset PROTEINS --splits 3 --epochs 300
    python examples/eigen_pool.py --dataset NCI109     # the default recipe below

Protocol (the authors' train.py): for split i the graphs are shuffled with seed i and cut 80/10/10
into train/validation/test; after every epoch the validation accuracy is measured and the test
accuracy is read at the epoch of the best validation accuracy (ties go to the later epoch, as
their ``>= best - 1e-7``). The mean and sample std over the splits are printed. The shuffle is
``torch.randperm`` seeded with i (``--split-order torch``, the default, which the 10-split rows of
examples/README.md ran), or train.py's own ``random.Random(i).shuffle`` of the graphs in file order
(``--split-order authors``): then split i holds the graphs of their shuffle i, for a comparison
with their code paired by split (``scripts/authors_eigenpooling.sh``).

Recipes (one per dataset the authors released settings for, each with its source; ``RECIPES``
below holds them). The authors' run_example.sh is their one released script (ENZYMES); their
reply in alge24/eigenpooling issue #2 ("Parameters to reproduce the result", 2021-04-19) gives
the commands for D&D and NCI1 (the stored copy of that reply is cut after NCI1's
``--pool_sizes 8``, so NCI1's epochs and features are train.py's defaults):

| setting | ENZYMES | DD | NCI1 | source (train.py flag) |
|---|---|---|---|---|
| pool size | 10 | 10 | 8 | ``--pool_sizes`` |
| modes H per subgraph | 1 | 3 | 3 | ``--num_pool_matrix`` |
| final whole-graph modes | 1 | 2 | 1 | ``--num_pool_final_matrix`` |
| GCN layers per stage | 5 | 3 | 5 | ``--num-gc-layers`` |
| hidden = stage output | 128 | 128 | 40 | ``--hidden-dim``, ``--output-dim`` |
| MLP hidden | 256 | 128 | 256 | ``--pred_hidden`` |
| dropout | 0.5 | 0.2 | 0.2 | ``--dropout`` |
| Adam learning rate | 1e-3 | 1e-4 | 1e-2 | ``--lr`` (no weight decay, clip 2.0: train.py) |
| epochs | 900 | 10 | 1000 | ``--epochs`` (NCI1: train.py's default) |
| node features | the 18 attributes | one-hot labels | one-hot labels | ``--feat``: see below |

Common to all: Laplacian D - A (train.py ``--normalize`` default 0), batch size 30.
Features follow train.py's rule for the flag each command passes: ``--feat node-feat`` takes the
continuous attributes and falls back to 10 constant ones (``ConstFeatureGen``, ``input_dim`` 10)
when the dataset has none; ``node-label`` (train.py's default, so NCI1's) takes the one-hot node
labels. Constants are where we depart, on validation: the authors' GCN sums over the raw adjacency,
which turns constants into degrees; ours is the paper's normalised GCN with self-loops and each
layer's output l2-normalised, and on constants it computes nearly the same vector at every node.
D&D's released command passes ``node-feat``, and D&D has no attributes, so train.py feeds it
constants; on a stand-in with PROTEINS' graphs and node labels but no attributes, named DD (the D&D
recipe, 10 splits), constants gave a mean best validation accuracy of 44.95 (below the majority
class) and the one-hot labels 76.58, so D&D takes its node labels. Datasets with neither attributes
nor labels (COLLAB, IMDB, REDDIT) take one-hot degrees (standardised degrees past 999:
:class:`graphops.transforms.DegreeFeatures`, the rule of PyG's kernel benchmarks and of
``examples/diff_pool.py``) instead of train.py's constants: on two featureless stand-ins (PROTEINS'
and ENZYMES' graphs, their node features set aside; ENZYMES' settings, 3 splits of 60 epochs) the
mean best validation accuracy was 74.17 against 56.46 (PROTEINS' graphs) and 42.22 against 27.78
(ENZYMES', 6 classes), with constants at chance on test. PROTEINS has no released settings: it runs
ENZYMES', with its one attribute and its one-hot labels together (the attribute alone is too thin).
D&D's released settings, the other candidate (D&D's graphs are proteins too), were weighed on
validation: over the 10 splits their mean best validation accuracy on PROTEINS is 76.58, against
80.54 for ENZYMES' (10 epochs against 900), so PROTEINS keeps ENZYMES'. Any other dataset (NCI109,
Mutagenicity, ...) also runs ENZYMES' settings, the one released script, with features by the
authors' rule: attributes where present, else one-hot labels, else (above) one-hot degrees. Unlike
train.py (``--max-nodes``: D&D 910), no graph is dropped for its size: the model is sparse.

The paper's accuracy table could not be read from the stored pages here; examples/README.md says
what was found and what was run. Differences from the authors' code, kept on purpose: GCN layers
are PyG's GCNConv (the normalised adjacency with self-loops, as the paper's GCN) where the authors
multiply by the raw adjacency; batch norm is a learned BatchNorm1d over nodes where the authors
build a fresh, untrained BatchNorm1d over node positions at every call (``--no-batch-norm`` drops
ours, as their ``--nobn`` drops theirs); the max readouts run over each graph's own nodes where
the authors' readouts also run over the zero rows padding every graph to ``--max-nodes``, which
clips each readout feature at 0 from below.
"""

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch_geometric.loader import DataLoader

from graphops.datasets import load
from graphops.nn.models import EigenGCN
from graphops.transforms import DegreeFeatures, EigenPooling

# Settings per dataset (the table above); any other dataset: ENZYMES' with features 'auto'.
# ENZYMES: the authors' run_example.sh.
ENZYMES = {
    'pool_size': 10,
    'modes': 1,
    'final_modes': 1,
    'layers': 5,
    'hidden': 128,
    'mlp': 256,
    'dropout': 0.5,
    'lr': 0.001,
    'epochs': 900,
    'features': 'attr',
}
RECIPES = {
    'ENZYMES': ENZYMES,
    # No released settings: ENZYMES', attribute and labels together (see above).
    'PROTEINS': {**ENZYMES, 'features': 'both'},
    # alge24/eigenpooling issue #2, the authors' D&D command; features: one-hot labels, chosen
    # on validation (see above).
    'DD': {
        'pool_size': 10,
        'modes': 3,
        'final_modes': 2,
        'layers': 3,
        'hidden': 128,
        'mlp': 128,
        'dropout': 0.2,
        'lr': 0.0001,
        'epochs': 10,
        'features': 'label',
    },
    # The same reply's NCI1 command; epochs and features: train.py's defaults (the stored reply
    # is cut before them).
    'NCI1': {
        'pool_size': 8,
        'modes': 3,
        'final_modes': 1,
        'layers': 5,
        'hidden': 40,
        'mlp': 256,
        'dropout': 0.2,
        'lr': 0.01,
        'epochs': 1000,
        'features': 'label',
    },
}
DEFAULT_RECIPE = {**ENZYMES, 'features': 'auto'}
CONSTANT_WIDTH = 10  # train.py's input_dim default, the width of its constant features

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='ENZYMES', help='a TU dataset name (default recipe: any)')
parser.add_argument('--splits', type=int, default=10)
parser.add_argument('--first-split', type=int, default=0)
parser.add_argument('--epochs', type=int, default=None, help='default: the recipe')
parser.add_argument('--batch-size', type=int, default=30)
parser.add_argument('--hidden', type=int, default=None, help='default: the recipe')
parser.add_argument('--mlp', type=int, default=None, help='default: the recipe')
parser.add_argument('--layers', type=int, default=None, help='default: the recipe')
parser.add_argument('--lr', type=float, default=None, help='default: the recipe')
parser.add_argument('--dropout', type=float, default=None, help='default: the recipe')
parser.add_argument('--clip', type=float, default=2.0)
parser.add_argument('--pool-size', type=int, default=None, help='default: the recipe')
parser.add_argument('--modes', type=int, default=None, help='default: the recipe')
parser.add_argument('--final-modes', type=int, default=None, help='default: the recipe')
parser.add_argument('--normalized', action='store_true', help='normalised subgraph Laplacian')
parser.add_argument(
    '--propagation',
    default='gcn',
    choices=['gcn', 'sum'],
    help="'gcn': the paper's normalised GCN (default); 'sum': the authors' code, raw adjacency",
)
parser.add_argument(
    '--batch-norm',
    action=argparse.BooleanOptionalAction,
    default=True,
    help="a learned BatchNorm1d after every GCN layer but a stage's last (default); "
    "--no-batch-norm for none, as the authors' --nobn",
)
parser.add_argument(
    '--features', default=None, choices=['attr', 'label', 'both', 'const', 'degree', 'auto']
)
parser.add_argument(
    '--split-order',
    default='torch',
    choices=['torch', 'authors'],
    help="'torch': torch.randperm seeded with the split (default); 'authors': train.py's "
    'random.Random(split).shuffle, their shuffle i',
)
parser.add_argument('--threads', type=int, default=None)
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
recipe = RECIPES.get(args.dataset, DEFAULT_RECIPE)
for key, value in recipe.items():  # a flag given on the command line overrides its recipe entry
    if getattr(args, key) is None:
        setattr(args, key, value)
features = args.features
print(
    f'recipe: {args.dataset if args.dataset in RECIPES else "default (ENZYMES settings)"}, '
    + ', '.join(f'{key} {getattr(args, key)}' for key in recipe),
    flush=True,
)

dataset = load(args.dataset, use_node_attr=True)
num_attr, num_labels = dataset.num_node_attributes, dataset.num_node_labels
if features == 'auto':
    features = 'attr' if num_attr else 'label' if num_labels else 'degree'
missing = {'attr': not num_attr, 'label': not num_labels, 'both': not (num_attr and num_labels)}
if missing.get(features):
    parser.error(
        f'--features {features}: {args.dataset} has {num_attr} node attributes and {num_labels} '
        "node labels; pick another, or 'auto' for the authors' rule"
    )
start = time.perf_counter()
transform = EigenPooling(
    args.pool_size,
    num_modes=args.modes,
    final_modes=args.final_modes,
    normalized=args.normalized,
)
degree_features = DegreeFeatures.fit(dataset) if features == 'degree' else None
graphs = []
for data in dataset:
    if features == 'attr':
        data.x = data.x[:, :num_attr]
    elif features == 'label':
        data.x = data.x[:, num_attr:]
    elif features == 'degree':
        data.x = None
        data = degree_features(data)
    elif features == 'const':
        data.x = torch.ones(data.num_nodes, CONSTANT_WIDTH)
    graphs.append(transform(data))
print(
    f'{args.dataset}: {len(graphs)} graphs, {graphs[0].x.size(1)} features ({features}), '
    f'{dataset.num_classes} classes; EigenPooling precompute {time.perf_counter() - start:.1f} s'
)


def inputs(batch):
    levels = range(transform.num_levels)
    return [[batch[transform.keys(level)[i]] for level in levels] for i in range(3)]


@torch.no_grad()
def accuracy(model, loader) -> float:
    model.eval()
    correct = 0
    for batch in loader:
        out = model(batch.x, batch.edge_index, batch.batch, *inputs(batch))
        correct += int((out.argmax(-1) == batch.y).sum())
    return correct / len(loader.dataset)


def run_split(split: int) -> tuple[float, float, int]:
    if args.split_order == 'authors':
        # train.py shuffles its list of graphs (file order) in place; the permutation depends on
        # the seed and the length only.
        order = list(range(len(graphs)))
        random.Random(split).shuffle(order)
    else:
        gen = torch.Generator().manual_seed(split)
        order = torch.randperm(len(graphs), generator=gen).tolist()
    n_train, n_test = int(0.8 * len(graphs)), int(0.9 * len(graphs))
    print(
        f'  split {split} ({args.split_order} order): {n_train}/{n_test - n_train}/'
        f'{len(graphs) - n_test} graphs, test starts {order[n_test : n_test + 5]}',
        flush=True,
    )
    train = [graphs[i] for i in order[:n_train]]
    val = [graphs[i] for i in order[n_train:n_test]]
    test = [graphs[i] for i in order[n_test:]]
    torch.manual_seed(split)
    model = EigenGCN(
        graphs[0].x.size(1),
        args.hidden,
        dataset.num_classes,
        num_pools=1,
        num_modes=args.modes,
        final_modes=args.final_modes,
        num_layers=args.layers,
        mlp_channels=args.mlp,
        dropout=args.dropout,
        batch_norm=args.batch_norm,
        propagation=args.propagation,
    )
    if split == args.first_split:
        print(f'model: {model}', flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(val, batch_size=args.batch_size)
    test_loader = DataLoader(test, batch_size=args.batch_size)
    best_val, best_test, best_epoch = -1.0, 0.0, 0
    for epoch in range(args.epochs):
        model.train()
        for batch in train_loader:
            opt.zero_grad()
            out = model(batch.x, batch.edge_index, batch.batch, *inputs(batch))
            loss = F.cross_entropy(out, batch.y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
        val_acc = accuracy(model, val_loader)
        if val_acc >= best_val - 1e-7:
            best_val, best_epoch = val_acc, epoch
            best_test = accuracy(model, test_loader)
        if epoch % 50 == 0:
            print(
                f'  split {split} epoch {epoch}: val {val_acc:.4f} best val {best_val:.4f} '
                f'(epoch {best_epoch}) test there {best_test:.4f}',
                flush=True,
            )
    return best_val, best_test, best_epoch


results = []
start = time.perf_counter()
for split in range(args.first_split, args.first_split + args.splits):
    t0 = time.perf_counter()
    val_acc, test_acc, epoch = run_split(split)
    results.append(test_acc)
    print(
        f'split {split}: best val {val_acc:.4f} at epoch {epoch}, test {test_acc:.4f} '
        f'({time.perf_counter() - t0:.0f} s)',
        flush=True,
    )
mean = 100 * statistics.fmean(results)
std = 100 * statistics.stdev(results) if len(results) > 1 else 0.0
print(
    f'{args.dataset}: test accuracy {mean:.2f} ± {std:.2f} over {len(results)} splits, '
    f'{args.epochs} epochs ({(time.perf_counter() - start) / 60:.1f} min)'
)
