"""What a cached R-GCN keeps between epochs on an AM-shaped graph, and its peak RSS.

    python scripts/rgcn_cache_bytes.py [--scale 0.1] [--epochs 3]

PyG's Entities AM has 1,885,136 nodes and 5,668,682 triples of 133 relations (266 edge types
with the inverses); the paper's model has 10 hidden units, 40 bases and 11 classes. The graph
here is random with that shape, scaled by ``--scale``. Prints each epoch's time and loss, the
bytes held by both layers' sorted graphs (unique storages, the edge inputs left out) as ``RGCN``
shares them and as they were with one copy per layer, and the peak RSS over the epochs.
"""

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from graphops.nn.models.rgcn import RGCN


def storages(obj, seen: set, found: dict) -> None:
    """Every tensor storage reachable from ``obj`` (modules excluded), by address."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        found[storage.data_ptr()] = storage.nbytes()
    elif isinstance(obj, dict):
        for value in obj.values():
            storages(value, seen, found)
    elif isinstance(obj, list | tuple):
        for value in obj:
            storages(value, seen, found)
    elif hasattr(obj, '__dict__') and not isinstance(obj, torch.nn.Module):
        storages(vars(obj), seen, found)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--scale', type=float, default=0.1)
    parser.add_argument('--epochs', type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    n, t, r, c = int(1_885_136 * args.scale), int(5_668_682 * args.scale), 133, 11
    src, dst = torch.randint(0, n, (t,)), torch.randint(0, n, (t,))
    rel = torch.randint(0, r, (t,))
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
    edge_type = torch.cat([2 * rel, 2 * rel + 1])
    train_idx, y = torch.randperm(n)[:802], torch.randint(0, c, (802,))
    model = RGCN(n, 2 * r, c, hidden_channels=10, num_bases=40)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        started = time.perf_counter()
        opt.zero_grad()
        out = model(None, edge_index, edge_type)
        loss = F.cross_entropy(out[train_idx], y) + 5e-4 * model.l2_penalty()
        loss.backward()
        opt.step()
        print(
            f'epoch {epoch}: {time.perf_counter() - started:.1f} s, loss {float(loss.detach()):.6f}'
        )
    hidden = torch.zeros(n, 10)  # the second layer's input: only its size keys the cache

    def held() -> float:
        found: dict = {}
        seen: set = set()
        for conv, x in ((model.conv1, None), (model.conv2, hidden)):
            storages(conv.prepared_graph(x, edge_index, edge_type), seen, found)
        for tensor in (edge_index, edge_type):
            found.pop(tensor.untyped_storage().data_ptr(), None)
        return sum(found.values()) / 2**30

    print(f'{n} nodes, {edge_index.size(1)} edges')
    print(f'sorted graphs held, shared by both layers: {held():.3f} GiB')
    shared_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    model.conv2.prepare(hidden, edge_index, edge_type)  # a second layer that sorts its own copy
    print(f'sorted graphs held, one copy per layer: {held():.3f} GiB')
    print(f'peak RSS over the epochs {shared_rss:.2f} GiB')


if __name__ == '__main__':
    main()
