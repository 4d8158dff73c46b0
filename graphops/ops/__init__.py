"""The engine room: device-agnostic sparse kernels and input validation. No nn.Module here."""

from graphops.ops.csr import (
    CSR,
    from_edge_index,
    in_degree,
    normalize,
    orient,
    out_degree,
    symmetrize,
    to_csr,
)
from graphops.ops.dispatch import current_backend, set_backend, use_backend
from graphops.ops.edge_type import EdgeTypeStack, edge_type_norm
from graphops.ops.induced import augmented_subgraph, induced_edge_index, induced_subgraph
from graphops.ops.memory import ProductTooLargeError, set_memory_budget
from graphops.ops.optional import has_torch_sparse, is_sparse_tensor
from graphops.ops.sddmm import sddmm
from graphops.ops.spgemm import spgemm, spspmm
from graphops.ops.spmm import has_numba, host_empty, spmm
from graphops.ops.streaming import RowBlockStream, sliced_spmm
from graphops.ops.topk import topk
from graphops.ops.triangle import triangle_adjacency

__all__ = [
    'current_backend',
    'set_backend',
    'use_backend',
    'RowBlockStream',
    'has_numba',
    'host_empty',
    'sliced_spmm',
    'sddmm',
    'ProductTooLargeError',
    'set_memory_budget',
    'spgemm',
    'spspmm',
    'triangle_adjacency',
    'augmented_subgraph',
    'EdgeTypeStack',
    'edge_type_norm',
    'induced_edge_index',
    'induced_subgraph',
    'topk',
    'CSR',
    'from_edge_index',
    'has_torch_sparse',
    'in_degree',
    'is_sparse_tensor',
    'normalize',
    'orient',
    'out_degree',
    'spmm',
    'symmetrize',
    'to_csr',
]
