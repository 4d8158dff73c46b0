"""EigenPool: precompute time and partition quality against the authors' pipeline, pooling-step
time against torch-geometric-pool (tgp), correctness checked first.

    OMP_NUM_THREADS=1 python benchmarks/eigen_pool.py --datasets PROTEINS ENZYMES --plot eigen_pool.png

1. Correctness: on a sample of graphs, the transform's Theta equals the dense reference
   (graphops.testing.eigen_pool) on its own partition, the layer's output equals the reference
   pooling, and -- when tgp imports -- tgp's EigenPooling reduce on the *same* partition gives the
   same pooled features up to each eigenvector's sign (subgraphs with a repeated eigenvalue, whose
   eigenvectors are not unique, and one-node subgraphs, where tgp writes the self-loop weight
   instead of 1, are counted apart).
2. Precompute over every graph of each dataset: graphops.transforms.EigenPooling against the
   authors' approach (scikit-learn SpectralClustering on the dense adjacency with n_init=10, for
   every graph as their coarsening code does, then numpy eigh per subgraph, one at a time, and
   the dense coarsened adjacency). Same pool size, H, final level; both single-threaded when run
   with OMP_NUM_THREADS=1. Partition quality: mean normalised cut of the two partitions over the
   graphs with K > 1.
3. Pooling step over one epoch of mini-batches (batch 30, forward + backward, 128 features):
   graphops.nn.EigenPool on the collated batch against tgp's EigenPooling reduce + connect on the
   same partition (a SelectOutput built from our clusters, as its precoarsening would store).
4. The whole EigenGCN training epoch (forward, backward, Adam step; fixed batches of 30): ours
   against a twin that shares our model's GCN stages, readout and head and pools with tgp's
   reduce + connect on the same partitions, in tgp's padded layout.

Output: JSON lines with ratios (> 1: ours faster); --plot writes a PNG.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import emit, plot_bars, ratio, time_interleaved  # noqa: E402
from graphops.datasets import load  # noqa: E402
from graphops.nn import EigenPool  # noqa: E402
from graphops.nn.models import EigenGCN  # noqa: E402
from graphops.testing.eigen_pool import dense_eigen_pool, dense_theta, normalized_cut  # noqa: E402
from graphops.transforms import EigenPooling  # noqa: E402


def dense_adjacency(data) -> np.ndarray:
    adj = np.zeros((data.num_nodes, data.num_nodes))
    row, col = data.edge_index.numpy()
    np.add.at(adj, (row, col), 1.0)
    return (adj + adj.T) / 2


def authors_precompute(adj: np.ndarray, pool_size: int, modes: int, final_modes: int, seed: int):
    """The authors' per-graph pipeline: SpectralClustering(K = max(1, int(N / pool size)),
    affinity='precomputed', n_init=10) on the dense adjacency, then one numpy eigh per subgraph
    (D - A), first-entry sign, padding by the last eigenvector, Omega^T A_ext Omega, and the
    final level's eigh of the coarsened Laplacian."""
    from sklearn.cluster import SpectralClustering

    n = adj.shape[0]
    k = max(1, int(n / pool_size))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        labels = (
            SpectralClustering(n_clusters=k, affinity='precomputed', n_init=10, random_state=seed)
            .fit(adj)
            .labels_
        )
    clusters = np.unique(labels)
    theta = np.zeros((n, modes))
    for c in clusters:
        nodes = np.nonzero(labels == c)[0]
        if nodes.size == 1:
            theta[nodes] = 1.0
            continue
        sub = adj[np.ix_(nodes, nodes)]
        _, vecs = np.linalg.eigh(np.diag(sub.sum(0)) - sub)
        for h in range(modes):
            v = vecs[:, min(h, nodes.size - 1)]
            theta[nodes, h] = -v if v[0] < 0 else v
    index = np.searchsorted(clusters, labels)
    omega = np.eye(clusters.size)[index]
    coarse = omega.T @ (adj * (index[:, None] != index[None, :])) @ omega
    if final_modes and coarse.shape[0] > 1:
        np.linalg.eigh(np.diag(coarse.sum(0)) - coarse)
    return index


def check_correctness(graphs, transform, modes) -> dict:
    pool = EigenPool(modes)
    worst = 0.0
    for data in graphs:
        (level, *_) = transform.levels(data.edge_index, data.num_nodes)
        adj = torch.from_numpy(dense_adjacency(data))
        cluster = torch.from_numpy(level.cluster)
        omega = torch.nn.functional.one_hot(cluster).double()
        ours = [omega * torch.from_numpy(level.theta[:, h : h + 1]) for h in range(modes)]
        ref = dense_theta(adj, cluster, modes)
        lap_ok = True
        for mine, r in zip(ours, ref):  # eigenvectors with the reference's eigenvalues
            same = cluster[:, None] == cluster[None, :]
            sub = adj * same
            lap = torch.diag(sub.sum(1)) - sub
            vals = (r * (lap @ r)).sum(0)
            lap_ok &= bool(torch.allclose(lap @ mine, mine * vals, atol=1e-7))
        if not lap_ok:
            raise AssertionError('Theta columns are not eigenvectors of their subgraph Laplacian')
        x = torch.randn(data.num_nodes, 5, dtype=torch.float64)
        out, _, _ = pool(x, data.edge_index, cluster, torch.from_numpy(level.theta))
        ref_x, _ = dense_eigen_pool(x, adj, cluster, ours)
        worst = max(worst, float((out - ref_x).abs().max()))
    if worst > 1e-8:
        raise AssertionError(f'EigenPool differs from the dense reference by {worst}')
    return {'graphs_checked': len(graphs), 'max_abs_diff_vs_reference': worst}


def tgp_parity(graphs, transform, modes) -> dict:
    """tgp's reduce on our partition, per graph, against our layer, up to each column's sign."""
    from tgp.reduce import EigenPoolReduce
    from tgp.select import SelectOutput
    from tgp.select.eigenpool_select import build_pooling_matrix

    pool = EigenPool(modes)
    reduce = EigenPoolReduce(num_modes=modes)
    matched = degenerate = singleton = 0
    worst = 0.0
    for data in graphs:
        (level, *_) = transform.levels(data.edge_index, data.num_nodes)
        adj = dense_adjacency(data)
        k = level.num_clusters
        theta_tgp = build_pooling_matrix(adj, level.cluster, modes, normalized=False)
        x = torch.randn(data.num_nodes, 4, dtype=torch.float64)
        so = SelectOutput(
            s=torch.nn.functional.one_hot(torch.from_numpy(level.cluster), k).double(),
            theta=torch.from_numpy(theta_tgp),
        )
        theirs, _ = reduce(x, so=so)
        ours, _, _ = pool(
            x, data.edge_index, torch.from_numpy(level.cluster), torch.from_numpy(level.theta)
        )
        sizes = np.bincount(level.cluster, minlength=k)
        ok = True
        for c in range(k):
            nodes = level.cluster == c
            if sizes[c] == 1:
                singleton += 1
                continue
            sub = adj[np.ix_(nodes, nodes)]
            vals = np.linalg.eigvalsh(np.diag(sub.sum(0)) - sub)
            used = vals[: min(modes + 1, vals.size)]
            if np.any(np.diff(used) < 1e-8):
                degenerate += 1
                continue
            for h in range(min(modes, int(sizes[c]))):
                a = ours[c, h * 4 : (h + 1) * 4]
                b = theirs[c, h * 4 : (h + 1) * 4]
                sign = 1.0 if float((a * b).sum()) >= 0 else -1.0
                diff = float((a - sign * b).abs().max())
                worst = max(worst, diff)
                ok &= diff < 1e-8
        matched += ok
    return {
        'graphs': len(graphs),
        'graphs_matching_up_to_sign': matched,
        'max_abs_diff_up_to_sign': worst,
        'subgraphs_skipped_repeated_eigenvalue': degenerate,
        'subgraphs_skipped_singleton': singleton,
    }


def pooling_epoch(batches, modes, features, use_tgp):
    pool = EigenPool(modes)
    if use_tgp:
        from tgp.connect import EigenPoolConnect
        from tgp.reduce import EigenPoolReduce
        from tgp.select import SelectOutput
        from tgp.select.eigenpool_select import build_pooling_matrix

        reduce = EigenPoolReduce(num_modes=modes)
        connect = EigenPoolConnect(remove_self_loops=True, degree_norm=False, sparse_output=True)
    prepared = []
    for batch, levels in batches:
        x = torch.randn(batch.num_nodes, features, requires_grad=True)
        if not use_tgp:
            prepared.append((batch, x, None))
            continue
        kmax = max(lv.num_clusters for lv in levels)
        thetas, s = [], []
        for data, lv in zip(batch.to_data_list(), levels):
            adj = dense_adjacency(data)
            thetas.append(
                torch.from_numpy(
                    build_pooling_matrix(adj, lv.cluster, modes, False, expected_num_clusters=kmax)
                ).float()
            )
            s.append(torch.nn.functional.one_hot(torch.from_numpy(lv.cluster), kmax).float())
        so = SelectOutput(s=torch.cat(s), theta=thetas, batch=batch.batch)
        prepared.append((batch, x, so))

    def ours():
        for batch, x, _ in prepared:
            out, _, w = pool(
                x,
                batch.edge_index,
                batch.eigen0_cluster_batch,
                batch.eigen0_theta,
                num_clusters=batch.eigen0_batch.numel(),
            )
            (out.sum() + w.sum()).backward()

    def theirs():
        for batch, x, so in prepared:
            out, pooled_batch = reduce(x, so=so, batch=batch.batch)
            connect(
                edge_index=batch.edge_index, so=so, batch=batch.batch, batch_pooled=pooled_batch
            )
            out.sum().backward()

    return theirs if use_tgp else ours


def model_epochs(batches, transform, modes, in_channels, num_classes, use_tgp):
    """One EigenGCN training epoch (the authors' ENZYMES settings, one pooling level and the final
    whole-graph level) over fixed batches: ours, and -- with ``use_tgp`` -- a twin that shares
    the same GCN stages, readout and head (the same module, the same weights) and pools with
    tgp's EigenPoolReduce + EigenPoolConnect on the same partitions, in tgp's layout (every
    graph padded to the batch's largest cluster count)."""
    torch.manual_seed(0)
    model = EigenGCN(
        in_channels,
        128,
        num_classes,
        num_pools=1,
        num_modes=modes,
        final_modes=1,
        num_layers=5,
        mlp_channels=256,
        dropout=0.5,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    levels = range(transform.num_levels)
    fns = {}

    def ours():
        model.train()
        for batch, _ in batches:
            opt.zero_grad()
            ins = [[batch[transform.keys(level)[i]] for level in levels] for i in range(3)]
            loss = torch.nn.functional.cross_entropy(
                model(batch.x, batch.edge_index, batch.batch, *ins), batch.y
            )
            loss.backward()
            opt.step()

    fns['ours'] = ours
    if not use_tgp:
        return fns
    from tgp.connect import EigenPoolConnect
    from tgp.reduce import EigenPoolReduce
    from tgp.select import SelectOutput
    from tgp.select.eigenpool_select import build_pooling_matrix

    reduce, final_reduce = EigenPoolReduce(num_modes=modes), EigenPoolReduce(num_modes=1)
    connect = EigenPoolConnect(remove_self_loops=True, degree_norm=False, sparse_output=True)
    prepared = []
    for batch, graph_levels in batches:
        kmax = max(lv[0].num_clusters for lv in graph_levels)
        thetas, s, final_thetas = [], [], []
        for data, (lv, _) in zip(batch.to_data_list(), graph_levels):
            theta = build_pooling_matrix(
                dense_adjacency(data), lv.cluster, modes, False, expected_num_clusters=kmax
            )
            thetas.append(torch.from_numpy(theta).float())
            s.append(torch.nn.functional.one_hot(torch.from_numpy(lv.cluster), kmax).float())
            coarse = np.zeros((kmax, kmax))  # the pooled graph in tgp's padded layout
            coarse[: lv.num_clusters, : lv.num_clusters] = lv.coarse
            final_theta = build_pooling_matrix(
                coarse, np.zeros(kmax, dtype=np.int64), 1, False, expected_num_clusters=1
            )
            final_thetas.append(torch.from_numpy(final_theta).float())
        so = SelectOutput(s=torch.cat(s), theta=thetas, batch=batch.batch)
        pooled_batch = torch.arange(batch.num_graphs).repeat_interleave(kmax)
        final_so = SelectOutput(
            s=torch.ones(pooled_batch.numel(), 1), theta=final_thetas, batch=pooled_batch
        )
        prepared.append((batch, so, final_so))

    def tgp_twin():
        model.train()
        for batch, so, final_so in prepared:
            opt.zero_grad()
            weight = torch.ones(batch.edge_index.size(1))
            h = model._stage(0, batch.x, batch.edge_index, weight)
            readouts = [max_readout(h, batch.batch, batch.num_graphs)]
            x, pooled_batch = reduce(h, so=so, batch=batch.batch)
            edge_index, weight = connect(
                edge_index=batch.edge_index, so=so, batch=batch.batch, batch_pooled=pooled_batch
            )
            h = model._stage(1, x, edge_index, weight)
            readouts.append(max_readout(h, pooled_batch, batch.num_graphs))
            readouts.append(final_reduce(h, so=final_so, batch=pooled_batch)[0])
            logits = model._head(torch.cat(readouts, dim=-1))
            torch.nn.functional.cross_entropy(logits, batch.y).backward()
            opt.step()

    fns['tgp'] = tgp_twin
    return fns


def max_readout(h, batch, num_graphs):
    out = h.new_full((num_graphs, h.size(1)), float('-inf'))
    return out.scatter_reduce(0, batch.unsqueeze(-1).expand_as(h), h, 'amax', include_self=True)


def run_dataset(name: str, args, tgp_reason: str | None, records: list) -> None:
    dataset = load(name)
    graphs = [dataset[i] for i in range(min(len(dataset), args.limit or len(dataset)))]
    transform = EigenPooling(args.pool_size, num_modes=args.modes, final_modes=1, seed=args.seed)
    step = max(1, len(graphs) // args.check_graphs)
    sample = graphs[::step]
    emit(
        {
            'bench': 'eigen_pool',
            'dataset': name,
            'check': 'dense_reference',
            **check_correctness(sample, transform, args.modes),
        }
    )
    if tgp_reason is None:
        emit(
            {
                'bench': 'eigen_pool',
                'dataset': name,
                'check': 'tgp_parity_same_partition',
                **tgp_parity(sample, transform, args.modes),
            }
        )

    adjs = [dense_adjacency(g) for g in graphs]
    results = {}

    def ours_transform():
        results['ours'] = [transform(g).eigen0_cluster_batch.numpy() for g in graphs]

    def authors():
        results['authors'] = [
            authors_precompute(a, args.pool_size, args.modes, 1, args.seed) for a in adjs
        ]

    timing = time_interleaved({'ours': ours_transform, 'authors': authors}, repeat=args.repeat)
    both = [
        (a, o, s)
        for a, o, s in zip(adjs, results['ours'], results['authors'])
        if s.max() > 0 or o.max() > 0
    ]
    cut_ours = float(
        np.mean([normalized_cut(torch.from_numpy(a), torch.from_numpy(o)) for a, o, _ in both])
    )
    cut_sk = float(
        np.mean([normalized_cut(torch.from_numpy(a), torch.from_numpy(s)) for a, _, s in both])
    )
    rec = emit(
        {
            'bench': 'eigen_pool',
            'dataset': name,
            'case': 'precompute_all_graphs',
            'graphs': len(graphs),
            'pool_size': args.pool_size,
            'num_modes': args.modes,
            'ours_s': round(timing['ours']['median_s'], 3),
            'authors_s': round(timing['authors']['median_s'], 3),
            'ours_cpu_s': round(timing['ours']['cpu_s'], 3),
            'authors_cpu_s': round(timing['authors']['cpu_s'], 3),
            'ratio': ratio(timing['authors']['median_s'], timing['ours']['median_s']),
            'graphs_with_k_gt_1': len(both),
            'mean_ncut_ours': round(cut_ours, 4),
            'mean_ncut_sklearn': round(cut_sk, 4),
            'ncut_ratio_ours_over_sklearn': round(cut_ours / cut_sk, 4),
        }
    )
    records.append(
        {
            'label': f'{name} precompute',
            'ours': rec['ours_s'],
            'authors / tgp': rec['authors_s'],
        }
    )

    from torch_geometric.data import Batch

    data_list = [transform(g.clone()) for g in graphs]
    batches = []
    for i in range(0, len(data_list), 30):
        chunk = data_list[i : i + 30]
        levels = [transform.levels(g.edge_index, g.num_nodes)[0] for g in graphs[i : i + 30]]
        batches.append((Batch.from_data_list(chunk), levels))
    fns = {'ours': pooling_epoch(batches, args.modes, 128, False)}
    if tgp_reason is None:
        fns['tgp'] = pooling_epoch(batches, args.modes, 128, True)
    timing = time_interleaved(fns, repeat=max(3, args.repeat))
    fields = {'case': 'pooling_step_epoch_fwd_bwd', 'batches': len(batches)}
    emit_vs_tgp(name, fields, timing, tgp_reason, records, 'pooling epoch', digits=4)
    # The whole training epoch, over the same fixed batches for both (shuffling would pair
    # tgp's prepared selections with the wrong batches).
    model_batches = []
    for i in range(0, len(data_list), 30):
        chunk = data_list[i : i + 30]
        graph_levels = [transform.levels(g.edge_index, g.num_nodes) for g in graphs[i : i + 30]]
        model_batches.append((Batch.from_data_list(chunk), graph_levels))
    fns = model_epochs(
        model_batches,
        transform,
        args.modes,
        dataset.num_features,
        dataset.num_classes,
        tgp_reason is None,
    )
    timing = time_interleaved(fns, repeat=max(3, args.repeat))
    fields = {
        'case': 'eigengcn_training_epoch',
        'config': 'authors ENZYMES settings: 5 GCN layers, 128 hidden, batch 30',
    }
    emit_vs_tgp(name, fields, timing, tgp_reason, records, 'EigenGCN epoch', digits=3)


def emit_vs_tgp(name, fields, timing, tgp_reason, records, label, digits) -> None:
    """One JSON line for an ours-vs-tgp timing (the ratio when tgp ran, else why not) and its bar
    in the plot."""
    rec = {'bench': 'eigen_pool', 'dataset': name, **fields}
    rec['ours_s'] = round(timing['ours']['median_s'], digits)
    if 'tgp' in timing:
        rec['tgp_s'] = round(timing['tgp']['median_s'], digits)
        rec['ratio'] = ratio(timing['tgp']['median_s'], timing['ours']['median_s'])
    else:
        rec['tgp'] = tgp_reason
    emit(rec)
    records.append(
        {'label': f'{name} {label}', 'ours': rec['ours_s'], 'authors / tgp': rec.get('tgp_s')}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--datasets', nargs='+', default=['PROTEINS', 'ENZYMES'])
    parser.add_argument('--pool-size', type=int, default=10)
    parser.add_argument('--modes', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--check-graphs', type=int, default=60)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--limit', type=int, default=None, help='first N graphs only (smoke runs)')
    parser.add_argument('--plot', default=None)
    args = parser.parse_args()
    try:
        import tgp  # noqa: F401

        tgp_reason = None
    except ImportError as exc:  # e.g. torch_scatter cannot be built for the pinned torch
        tgp_reason = f'torch-geometric-pool not importable: {exc}'
    emit(
        {
            'bench': 'eigen_pool',
            'event': 'setup',
            'threads': torch.get_num_threads(),
            'torch': torch.__version__,
            'tgp': tgp_reason or 'available',
        }
    )
    records = []
    for name in args.datasets:
        run_dataset(name, args, tgp_reason, records)
    if args.plot:
        plot_bars(
            records,
            args.plot,
            label_key='label',
            value_keys=['ours', 'authors / tgp'],
            title='EigenPool: precompute vs authors, pooling epoch vs tgp',
            log=True,
        )
        emit({'bench': 'eigen_pool', 'plot': args.plot})


if __name__ == '__main__':
    main()
