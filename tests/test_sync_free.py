"""No forward forces a host-device sync on CUDA (issue 19): each layer runs under
``torch.cuda.set_sync_debug_mode('error')``, which raises on any synchronising call, once its
static structure is prepared (``cached=True`` plans, ``GTN.prepare``), as a training loop would.

gpu-marked: it runs on CUDA (``pytest -m gpu``); ``GRAPHOPS_TEST_DEVICE=cpu`` runs the same code
on CPU, where there is no sync to catch."""

import contextlib

import pytest
import torch
from torch_geometric.data import Data

from graphops.nn import EigenPool, dense_diff_pool
from graphops.nn.conv.rgcn_conv import RGCNConv
from graphops.nn.models.gtn import GTN
from graphops.nn.models.sign_classifier import SIGNClassifier
from graphops.ops import spmm, to_csr
from graphops.testing import random_features, random_graph
from graphops.transforms import EigenPooling


@contextlib.contextmanager
def no_sync(device: torch.device):
    if device.type != 'cuda':
        yield
        return
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode('error')
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode('default')


def _graph(device, num_nodes=60, num_edges=400, num_types=4, seed=0):
    graph = random_graph(num_nodes, num_edges, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    edge_type = torch.randint(0, num_types, (graph.edge_index.size(1),), generator=gen)
    x = random_features(num_nodes, 8, seed=seed, dtype=torch.float32)
    return x.to(device), graph.edge_index.to(device), edge_type.to(device)


@pytest.mark.gpu
def test_forwards_never_sync_the_device(device):
    x, edge_index, edge_type = _graph(device)
    # RGCNConv with a cached plan, with and without bases
    for bases in (None, 2):
        conv = RGCNConv(8, 6, 4, num_bases=bases, cached=True).to(device)
        conv.prepare(x, edge_index, edge_type)
        expected = conv(x, edge_index, edge_type)
        with no_sync(device):
            out = conv(x, edge_index, edge_type)
        torch.testing.assert_close(out, expected)
    # GTN after prepare(): the meta-path structure is built eagerly, the forward has static shapes
    edge_weight = torch.rand(edge_index.size(1), device=device)
    gtn = GTN(8, 6, 3, 4, num_layers=2).to(device)
    gtn.prepare(x, edge_index, edge_type, edge_weight)
    compiled = torch.compile(gtn, backend='aot_eager', fullgraph=True)
    expected = compiled(x, edge_index, edge_type, edge_weight)
    with no_sync(device):
        out = compiled(x, edge_index, edge_type, edge_weight)
    torch.testing.assert_close(out, expected)
    # SIGNClassifier on precomputed operator outputs
    model = SIGNClassifier([8, 8, 8], 16, 3, 3).to(device).eval()
    xs = [x, x * 2, x * 3]
    expected = model(xs)
    with no_sync(device):
        out = model(xs)
    torch.testing.assert_close(out, expected)
    # spmm forward on a validated CSR
    csr = to_csr(edge_index, None, x.size(0))
    expected = spmm(csr, x)
    with no_sync(device):
        out = spmm(csr, x)
        mean = spmm(csr, x, 'mean')
    torch.testing.assert_close(out, expected)
    assert mean.shape == out.shape


@pytest.mark.gpu
def test_pooling_forwards_never_sync_the_device(device):
    x, edge_index, _ = _graph(device)
    # dense_diff_pool: value checks become device-side asserts off the CPU
    gen = torch.Generator().manual_seed(1)
    adj = (torch.rand(2, 30, 30, generator=gen) < 0.2).float().to(device)
    s = torch.randn(2, 30, 5, generator=gen).to(device)
    xb = torch.randn(2, 30, 8, generator=gen).to(device)
    mask = torch.ones(2, 30, dtype=torch.bool, device=device)
    expected = dense_diff_pool(xb, adj, s, mask)
    with no_sync(device):
        out = dense_diff_pool(xb, adj, s, mask)
    for a, b in zip(out, expected):
        torch.testing.assert_close(a, b)
    # EigenPool on the transform's precomputed partition, cluster count given
    data = EigenPooling(10)(Data(edge_index=edge_index.cpu(), num_nodes=x.size(0)))
    pool = EigenPool(1)
    args = (x, edge_index, data.eigen0_cluster_batch.to(device), data.eigen0_theta.to(device))
    expected = pool(*args, num_clusters=data.eigen0_batch.numel())
    with no_sync(device):
        out = pool(*args, num_clusters=data.eigen0_batch.numel())
    for a, b in zip(out, expected):
        torch.testing.assert_close(a, b)
