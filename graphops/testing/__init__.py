"""Shared test helpers: devices, dtypes, random graphs with the awkward cases, dense references.

``graphops.testing.core`` holds the graph makers and adjacency references; each layer family keeps
its dense reference, written straight from the paper's equations, in its own module here
(``graphops.testing.<topic>``). Tests and benchmarks import from here; nothing is copied.
"""

from graphops.testing.core import (
    DTYPES,
    Graph,
    awkward_graphs,
    cuda_available,
    dense_adjacency,
    dense_normalize,
    devices,
    random_batch_vector,
    random_features,
    random_graph,
    tolerance,
)

__all__ = [
    'DTYPES',
    'Graph',
    'awkward_graphs',
    'cuda_available',
    'dense_adjacency',
    'dense_normalize',
    'devices',
    'random_batch_vector',
    'random_features',
    'random_graph',
    'tolerance',
]
