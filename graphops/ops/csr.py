r"""One CSR representation for every adjacency form PyG accepts, with degrees and normalisations.

Convention (PyG's ``adj_t``): a :class:`CSR` ``M`` of shape ``[num_dst, num_src]`` holds
``M[i, j] = w`` for each edge ``j -> i``, so ``M @ X`` aggregates source features into targets.
An ``edge_index`` is ``[2, E]`` with row 0 the source and row 1 the target; a
``torch_sparse.SparseTensor``, a ``torch.sparse`` COO/CSR tensor or a scipy matrix is already in
``adj_t`` form (rows are targets), exactly as :class:`torch_geometric.nn.MessagePassing` reads them.

Entries are kept sorted by ``(row, col)``. Duplicate edges are kept (they count twice, as in message
passing) unless :meth:`CSR.coalesce` is called. Indices are ``int32`` when every index and the
number of stored entries fit, else ``int64``; ``rowptr`` and ``col`` always share one dtype
(``torch.sparse_csr_tensor`` requires it).

Every conversion validates its input through :mod:`graphops.ops.validate`: no later layer
re-implements these checks.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import InitVar, dataclass

import numpy as np
import torch
from torch import Tensor

from graphops.ops import dispatch
from graphops.ops.kernels import csr as csr_kernels
from graphops.ops.optional import is_sparse_tensor, torch_sparse
from graphops.ops.validate import (
    check_condition,
    check_edge_index,
    check_edge_weight,
    check_float,
    check_index,
    check_num_nodes,
    check_same_device,
    defers_value_checks,
    named_size,
)

_INT32_MAX = 2**31 - 1


def torch_csr_tensor(rowptr: Tensor, col: Tensor, value: Tensor, shape) -> Tensor:
    """``torch.sparse_csr_tensor`` without torch's once-per-process "beta" and "invariant checks"
    warnings: graphops builds these tensors from CSRs it has validated itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Sparse (CSR tensor support|invariant checks)')
        return torch.sparse_csr_tensor(
            rowptr, col, value, size=tuple(shape), dtype=value.dtype, check_invariants=False
        )


NORMS = ('sym', 'rw', 'col', None)
DIRECTIONS = ('directed', 'transposed', 'symmetric')


def index_dtype_for(num_rows: int, num_cols: int, nnz: int) -> torch.dtype:
    """``int32`` when every index and offset fits in it, else ``int64``."""
    return torch.int32 if max(num_rows, num_cols, nnz) <= _INT32_MAX else torch.int64


@dataclass(frozen=True)
class CSR:
    r"""A compressed-sparse-row matrix ``M`` of shape ``[num_rows, num_cols]`` (``adj_t`` form).

    Args:
        rowptr (Tensor): ``[num_rows + 1]`` offsets into ``col``/``value``.
        col (Tensor): ``[nnz]`` column (source node) of each entry, same dtype as ``rowptr``.
        value (Tensor, optional): ``[nnz]`` float weights; ``None`` means every weight is 1.
        num_rows (int): number of target nodes.
        num_cols (int): number of source nodes.

    Build one with :func:`to_csr`; the constructor trusts its arguments.
    """

    rowptr: Tensor
    col: Tensor
    value: Tensor | None
    num_rows: int
    num_cols: int
    trust_data: InitVar[bool] = False

    def __post_init__(self, trust_data: bool):
        # O(1) layout checks on every matrix; the O(nnz) range checks unless the data is trusted
        for name in ('rowptr', 'col'):
            tensor = getattr(self, name)
            if not isinstance(tensor, Tensor) or tensor.dtype not in (torch.int32, torch.int64):
                raise TypeError(
                    f'CSR {name} must be an int32/int64 tensor, got {_describe(tensor)}'
                )
            if tensor.dim() != 1:
                raise ValueError(f'CSR {name} must be 1-dimensional, got {tuple(tensor.shape)}')
        if self.rowptr.dtype != self.col.dtype:
            raise TypeError(
                f'CSR rowptr ({self.rowptr.dtype}) and col ({self.col.dtype}) must share one '
                'index dtype'
            )
        for name in ('num_rows', 'num_cols'):
            size = getattr(self, name)
            if isinstance(size, bool) or not isinstance(size, int | torch.SymInt) or size < 0:
                raise ValueError(f'CSR {name} must be a non-negative int, got {size!r}')
        if self.rowptr.numel() != self.num_rows + 1:
            raise ValueError(
                f'CSR rowptr must hold num_rows + 1 = {self.num_rows + 1} offsets, got '
                f'{self.rowptr.numel()}'
            )
        if self.value is not None:
            if not isinstance(self.value, Tensor) or not self.value.is_floating_point():
                raise TypeError(f'CSR value must be a float tensor, got {_describe(self.value)}')
            if self.value.shape != self.col.shape:
                raise ValueError(
                    f'CSR value must hold one weight per entry ({self.col.numel()}), got shape '
                    f'{tuple(self.value.shape)}'
                )
        check_same_device([('CSR rowptr', self.rowptr), ('CSR col', self.col)])
        check_same_device([('CSR col', self.col), ('CSR value', self.value)])
        if not trust_data:
            self.validate()

    def validate(self) -> CSR:
        """Checks the entries: ``rowptr`` starts at 0, never decreases and ends at ``nnz``, and
        every column lies in ``[0, num_cols)``. The constructor runs it unless
        ``trust_data=True``; the kernels read raw memory, so a matrix whose tensors were changed
        in place should be checked again. Returns ``self``."""
        check_index(self.col, 'CSR col', upper=self.num_cols, upper_name='num_cols')
        steps = self.rowptr[1:] - self.rowptr[:-1]
        ends = torch.stack([self.rowptr[0], self.rowptr[-1] - self.nnz]).long()
        check_condition(
            (ends == 0).all() & (steps >= 0).all(),
            f'CSR rowptr must start at 0, never decrease and end at {named_size("nnz", self.nnz)}; '
            'build the matrix with graphops.ops.to_csr',
        )
        return self

    @classmethod
    def from_coo(
        cls,
        row: Tensor,
        col: Tensor,
        value: Tensor | None,
        num_rows: int,
        num_cols: int,
        *,
        is_sorted: bool = False,
        trust_data: bool = False,
    ) -> CSR:
        """The CSR of entries ``(row[e], col[e], value[e])`` (duplicates kept, in input order).

        Args:
            row (Tensor): ``[nnz]`` row of each entry.
            col (Tensor): ``[nnz]`` column of each entry.
            value (Tensor, optional): ``[nnz]`` float weights; ``None`` for ones.
            num_rows (int): number of rows.
            num_cols (int): number of columns.
            is_sorted (bool): the entries are already sorted by ``(row, col)`` (skips the sort).
            trust_data (bool): skip the range checks of ``row`` and ``col`` (for indices graphops
                built itself).
        """
        if not trust_data:
            check_index(row, 'row', upper=num_rows, upper_name='num_rows')
            check_index(col, 'col', upper=num_cols, upper_name='num_cols')
            if row.numel() != col.numel():
                raise ValueError(f'row ({row.numel()}) and col ({col.numel()}) differ in length')
            value = check_edge_weight(value, col.numel())
        build = _from_sorted if is_sorted else _from_coo
        return build(row, col, value, num_rows, num_cols)

    @classmethod
    def from_csr(
        cls, rowptr: Tensor, col: Tensor, value, num_rows: int, num_cols: int, trust_data=True
    ) -> CSR:
        """A CSR of these arrays (any integer dtype) in the index dtype of :func:`index_dtype_for`
        (``trust_data``: skip :meth:`validate`, for arrays graphops built itself)."""
        dtype = index_dtype_for(num_rows, num_cols, col.numel())
        return cls(
            rowptr.to(dtype), col.to(dtype), value, num_rows, num_cols, trust_data=trust_data
        )

    # --- basic properties -------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.num_cols)

    @property
    def device(self) -> torch.device:
        return self.col.device

    @property
    def index_dtype(self) -> torch.dtype:
        return self.col.dtype

    def row(self) -> Tensor:
        """``[nnz]`` row (target node) of each entry, expanded from ``rowptr``."""
        counts = self.rowptr[1:] - self.rowptr[:-1]
        rows = torch.arange(self.num_rows, device=self.device, dtype=self.col.dtype)
        return torch.repeat_interleave(rows, counts.long(), output_size=self.nnz)

    def values(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weights (in ``dtype``, default: their own, or float32 for ones)."""
        if self.value is None:
            return torch.ones(self.nnz, dtype=dtype or torch.float32, device=self.device)
        return self.value if dtype is None else self.value.to(dtype)

    def row_counts(self) -> Tensor:
        """Number of stored entries per row (unweighted in-degree), ``int64``."""
        return (self.rowptr[1:] - self.rowptr[:-1]).long()

    def __repr__(self) -> str:
        weighted = 'weighted' if self.value is not None else 'unweighted'
        return (
            f'CSR(shape=({self.num_rows}, {self.num_cols}), nnz={self.nnz}, {weighted}, '
            f'index_dtype={self.index_dtype}, device={self.device})'
        )

    # --- conversions out ----------------------------------------------------------------------
    def with_value(self, value: Tensor | None) -> CSR:
        """The same pattern with other weights. It shares this matrix's structural caches (the
        transposed pattern), also those built later on either of them."""
        csr = CSR(self.rowptr, self.col, value, self.num_rows, self.num_cols, trust_data=True)
        object.__setattr__(csr, '_structure', self._structure_cache())
        return csr

    def _structure_cache(self) -> dict:
        """Caches of the structure alone, one dict shared by every :meth:`with_value` copy: a
        copy made before the first backward (one per basis in R-GCN's basis sum) then builds
        the transpose once for all of them, not once each."""
        cache = self.__dict__.get('_structure')
        if cache is None:
            cache = {}
            object.__setattr__(self, '_structure', cache)
        return cache

    def transposed_pattern(self) -> tuple[CSR, Tensor]:
        """``(pattern, perm)``: the transpose's unweighted structure and, for each of its entries,
        the index of the same entry here, so ``pattern.with_value(self.value[perm])`` equals
        :meth:`t`. Built on the first call and kept with this pattern (a cache, not state: it is
        left out of pickles)."""
        cache = self._structure_cache()
        if 'transposed' not in cache:
            pattern, perm = sort_coo(self.col, self.row(), self.num_cols, self.num_rows, True)
            if perm is None:  # already in transposed order
                perm = torch.arange(self.nnz, device=self.device)
            cache['transposed'] = (pattern, perm)
        return cache['transposed']

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop('_structure', None)
        return state

    def to(self, device=None, index_dtype: torch.dtype | None = None) -> CSR:
        index_dtype = index_dtype or self.index_dtype
        if index_dtype == torch.int32 and index_dtype_for(*self.shape, self.nnz) != torch.int32:
            raise ValueError('index_dtype=torch.int32 cannot hold this matrix; use torch.int64')
        value = None if self.value is None else self.value.to(device)
        return CSR(
            self.rowptr.to(device=device, dtype=index_dtype),
            self.col.to(device=device, dtype=index_dtype),
            value,
            self.num_rows,
            self.num_cols,
            trust_data=True,
        )

    def to_torch_csr(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch_csr_tensor(self.rowptr, self.col, self.values(dtype), self.shape)

    def to_dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        out = torch.zeros(self.shape, dtype=dtype, device=self.device)
        out.index_put_((self.row().long(), self.col.long()), self.values(dtype), accumulate=True)
        return out

    def to_edge_index(self) -> tuple[Tensor, Tensor | None]:
        """``(edge_index, edge_weight)`` with row 0 = source (``col``), row 1 = target (``row``)."""
        edge_index = torch.stack([self.col.long(), self.row().long()], dim=0)
        return edge_index, self.value

    def to_scipy(self):
        import scipy.sparse as sp

        value = self.values(torch.float64 if self.value is None else self.value.dtype)
        return sp.csr_matrix(
            (value.cpu().numpy(), self.col.cpu().numpy(), self.rowptr.cpu().numpy()),
            shape=self.shape,
        )

    def to_sparse_tensor(self):
        """A ``torch_sparse.SparseTensor`` in ``adj_t`` form (needs the ``sparse`` extra)."""
        return torch_sparse().SparseTensor(
            rowptr=self.rowptr.long(),
            col=self.col.long(),
            value=self.value,
            sparse_sizes=self.shape,
            is_sorted=True,
            trust_data=True,
        )

    # --- structural operations -----------------------------------------------------------------
    def t(self) -> CSR:
        """The transpose: reverses every edge."""
        row = self.row()
        return _from_coo(self.col, row, self.value, self.num_cols, self.num_rows)

    def coalesce(self, reduce: str = 'sum') -> CSR:
        """Merges duplicate entries, summing (or taking the max of) their weights."""
        if reduce not in ('sum', 'max'):
            raise ValueError(f"reduce must be 'sum' or 'max', got {reduce!r}")
        if self.nnz == 0:
            return self
        row, col = self.row().long(), self.col.long()
        new_entry = _new_entries(row, col)
        if bool(new_entry.all()):
            return self
        group = torch.cumsum(new_entry.long(), 0) - 1
        num_groups = int(group[-1]) + 1
        value = self.values()
        merged = torch.zeros(num_groups, dtype=value.dtype, device=self.device)
        if reduce == 'sum':
            merged.index_add_(0, group, value)
        else:
            merged.fill_(float('-inf')).scatter_reduce_(0, group, value, reduce='amax')
        keep_value = None if (self.value is None and reduce == 'max') else merged
        return _from_sorted(
            row[new_entry], col[new_entry], keep_value, self.num_rows, self.num_cols
        )

    def entry_groups(self) -> Tensor:
        """``[nnz]`` id of the distinct ``(row, col)`` of each entry: duplicates share one, ids
        count up from 0 along the entries. What :meth:`coalesce` merges, in static shapes (no
        value read back), so ``zeros(nnz).index_add(0, groups, value)`` holds the merged weights
        (trailing slots zero) under ``torch.compile`` too."""
        return torch.cumsum(_new_entries(self.row(), self.col).long(), 0) - 1

    def binarize(self) -> CSR:
        """Drops weights and duplicates: every stored edge becomes a 1."""
        return self.with_value(None).coalesce(reduce='max')

    def remove_self_loops(self) -> CSR:
        row = self.row()
        keep = row != self.col
        if bool(keep.all()):
            return self
        value = None if self.value is None else self.value[keep]
        return _from_sorted(row[keep], self.col[keep], value, self.num_rows, self.num_cols)

    def add_self_loops(self, fill_value: float = 1.0) -> CSR:
        """Adds one loop ``(i, i)`` of weight ``fill_value`` per node (square matrices only)."""
        self._require_square('add_self_loops')
        n = self.num_rows
        loops = torch.arange(n, device=self.device, dtype=self.col.dtype)
        row = torch.cat([self.row(), loops])
        col = torch.cat([self.col, loops])
        if self.value is None and fill_value == 1.0:
            value = None
        else:
            fill = torch.full(
                (n,), float(fill_value), dtype=self.values().dtype, device=self.device
            )
            value = torch.cat([self.values(), fill])
        return _from_coo(row, col, value, n, n)

    def select_rows(self, rows: Tensor) -> CSR:
        """The sub-matrix ``M[rows, :]`` (rows in the given order)."""
        return self.select_rows_entries(rows)[0]

    def select_rows_entries(self, rows: Tensor) -> tuple[CSR, Tensor]:
        """:meth:`select_rows`, and the ``[nnz']`` (``int64``) entries of ``self`` it took, in
        its order: what a plan needs to gather the values of ``M[rows, :]`` later."""
        check_index(rows, 'rows', upper=self.num_rows, upper_name='num_rows')
        rows = rows.to(self.device).long()
        start, end = self.rowptr[rows].long(), self.rowptr[rows + 1].long()
        counts = end - start
        new_rowptr = torch.zeros(rows.numel() + 1, dtype=torch.long, device=self.device)
        torch.cumsum(counts, 0, out=new_rowptr[1:])
        nnz = int(new_rowptr[-1])
        offsets, _ = segment_arange(start, counts, nnz)
        value = None if self.value is None else self.value[offsets]
        sub = CSR.from_csr(new_rowptr, self.col[offsets], value, rows.numel(), self.num_cols)
        return sub, offsets.long()

    def _require_square(self, what: str) -> None:
        if self.num_rows != self.num_cols:
            raise ValueError(
                f'{what} needs a square adjacency, got shape {self.shape}; '
                'bipartite graphs have no self-loops'
            )

    def fingerprint(self) -> str:
        """A SHA-256 of shape, entries and weights: the same multiset of weighted edges gives the
        same fingerprint, whatever the input order."""
        rowptr, col, value = self.rowptr.long(), self.col.long(), self.value
        if value is not None and self.nnz:
            # Entries are sorted by (row, col); order duplicates by weight too, to be canonical.
            by_value = torch.sort(value.detach(), stable=True).indices
            key = self.row().long()[by_value] * max(self.num_cols, 1) + col[by_value]
            perm = by_value[torch.sort(key, stable=True).indices]
            col, value = col[perm], value[perm]
        digest = hashlib.sha256()
        digest.update(np.asarray(self.shape, dtype=np.int64).tobytes())
        for tensor in (rowptr, col):
            digest.update(tensor.cpu().numpy().tobytes())
        if value is not None:
            digest.update(value.detach().double().cpu().numpy().tobytes())
        return digest.hexdigest()


# --- construction ---------------------------------------------------------------------------


def check_csr(csr, name: str = 'csr') -> CSR:
    """A :class:`CSR`, or a TypeError that says how to make one."""
    if not isinstance(csr, CSR):
        raise TypeError(
            f'{name} must be a graphops CSR, got {type(csr).__name__}; build one with '
            'graphops.ops.to_csr(edge_index, edge_weight, num_nodes)'
        )
    return csr


def _new_entries(row: Tensor, col: Tensor) -> Tensor:
    """``[nnz]`` bool: the entry begins a new ``(row, col)`` (duplicates are adjacent)."""
    new_entry = torch.ones(col.numel(), dtype=torch.bool, device=col.device)
    new_entry[1:] = (row[1:] != row[:-1]) | (col[1:] != col[:-1])
    return new_entry


def _csr_kernel_applies(*tensors: Tensor) -> bool:
    return dispatch.numba_kernel_applies(
        tensors, dispatch.CSR_NUMBA_MIN_ENTRIES, 'CSR construction/normalisation'
    )


def _describe(value) -> str:
    return f'{value.dtype} tensor' if isinstance(value, Tensor) else type(value).__name__


def segment_arange(starts: Tensor, counts: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """For segments ``[starts[s], starts[s] + counts[s])`` (``total`` indices in all): every
    index, and the segment it belongs to."""
    segment = torch.repeat_interleave(
        torch.arange(counts.numel(), device=counts.device), counts, output_size=total
    )
    first = torch.cumsum(counts, 0) - counts
    index = starts[segment] + torch.arange(total, device=counts.device) - first[segment]
    return index, segment


def rowptr_from_rows(row: Tensor, num_rows: int) -> Tensor:
    """``[num_rows + 1]`` ``int64`` offsets of entries sorted by ``row``."""
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
    if not row.numel():
        return rowptr
    if defers_value_checks(row):  # bincount's size is read back: count into fixed rows
        counts = torch.zeros(num_rows, dtype=torch.long, device=row.device)
        counts = counts.index_add_(0, row.long(), torch.ones_like(row, dtype=torch.long))
    else:
        counts = torch.bincount(row.long(), minlength=num_rows)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return rowptr


def _from_sorted(row: Tensor, col: Tensor, value, num_rows: int, num_cols: int) -> CSR:
    return CSR.from_csr(rowptr_from_rows(row, num_rows), col, value, num_rows, num_cols)


def _from_coo(row: Tensor, col: Tensor, value, num_rows: int, num_cols: int) -> CSR:
    """Sorts ``(row, col)`` lexicographically (stably, so duplicates keep their order)."""
    csr, perm = sort_coo(row, col, num_rows, num_cols, with_perm=value is not None)
    if value is None:
        return csr
    return csr.with_value(value if perm is None else value[perm])


def sort_coo(
    row: Tensor, col: Tensor, num_rows: int, num_cols: int, with_perm: bool
) -> tuple[CSR, Tensor | None]:
    """The unweighted CSR of the entries ``(row[e], col[e])`` sorted stably by ``(row, col)``
    (duplicates kept) and, with ``with_perm``, the input position of each sorted entry (``None``
    when the input was already sorted). The caller has checked the indices' range."""
    if _csr_kernel_applies(col, row):
        # a two-level counting/radix sort: about 3x faster than torch.sort on 20M edges, same order
        rowptr, col, perm = csr_kernels.sort_coo(
            row.contiguous(),
            col.contiguous(),
            num_rows,
            num_cols,
            index_dtype_for(num_rows, num_cols, col.numel()),
            with_perm=with_perm,
        )
        return CSR(rowptr, col, None, num_rows, num_cols, trust_data=True), perm
    perm = None
    if col.numel():
        key = row.long() * max(num_cols, 1) + col.long()
        # (under torch.compile or on a GPU it sorts rather than read back whether it must)
        if defers_value_checks(key) or not bool((key[1:] >= key[:-1]).all()):
            sorted_key, perm = torch.sort(key, stable=True)
            # row and col come back from the sorted keys by a sequential divmod: two random
            # gathers of E indices cost about 8x more on a 20M-edge graph
            width = max(num_cols, 1)
            row = torch.div(sorted_key, width, rounding_mode='floor')
            col = sorted_key - row * width
    return _from_sorted(row, col, None, num_rows, num_cols), perm


def _resolve_size(num_nodes, edge_index: Tensor) -> tuple[int, int]:
    if num_nodes is None:
        n = int(edge_index.max()) + 1 if edge_index.numel() else 0
        return n, n
    if isinstance(num_nodes, tuple | list):
        if len(num_nodes) != 2:
            raise ValueError(f'num_nodes as a tuple must be (num_src, num_dst), got {num_nodes}')
        return check_num_nodes(num_nodes[0], 'num_nodes[0]'), check_num_nodes(
            num_nodes[1], 'num_nodes[1]'
        )
    n = check_num_nodes(num_nodes)
    return n, n


def from_edge_index(
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
    num_nodes: int | tuple[int, int] | None = None,
) -> CSR:
    """CSR of ``adj_t`` from a ``[2, E]`` edge list (row 0 = source, row 1 = target).

    ``num_nodes`` is an int, a ``(num_src, num_dst)`` pair for bipartite graphs, or ``None`` to
    infer ``max(edge_index) + 1``.
    """
    check_edge_index(edge_index)
    check_same_device([('edge_index', edge_index), ('edge_weight', edge_weight)])
    num_src, num_dst = _resolve_size(num_nodes, edge_index)
    check_index(edge_index[0], 'edge_index[0] (sources)', upper=num_src, upper_name='num_src_nodes')
    check_index(edge_index[1], 'edge_index[1] (targets)', upper=num_dst, upper_name='num_dst_nodes')
    edge_weight = check_edge_weight(edge_weight, edge_index.size(1))
    return _from_coo(edge_index[1], edge_index[0], edge_weight, num_dst, num_src)


def _from_torch_sparse(adj: Tensor) -> CSR:
    if adj.dim() != 2:
        raise ValueError(f'a sparse adjacency must be 2-dimensional, got {adj.dim()} dimensions')
    num_rows, num_cols = adj.shape
    if adj.layout == torch.sparse_coo:
        adj = adj.coalesce()
        index, value = adj.indices(), adj.values()
        row, col = index[0], index[1]
    elif adj.layout == torch.sparse_csr:
        rowptr, col, value = adj.crow_indices(), adj.col_indices(), adj.values()
        counts = (rowptr[1:] - rowptr[:-1]).long()
        row = torch.repeat_interleave(torch.arange(num_rows, device=adj.device), counts)
    elif adj.layout == torch.sparse_csc:
        return _from_torch_sparse(adj.to_sparse_coo())
    else:
        raise TypeError(f'unsupported sparse layout {adj.layout}; use COO, CSR or CSC')
    if value.dim() != 1:
        raise ValueError('hybrid sparse tensors (values with extra dimensions) are not supported')
    check_float(value, 'adjacency values')
    return _from_coo(row, col, value, num_rows, num_cols)


def _from_sparse_tensor(adj) -> CSR:
    rowptr, col, value = adj.csr()
    num_rows, num_cols = adj.sparse_sizes()
    if value is not None:
        if value.dim() != 1:
            raise ValueError('SparseTensor values must be 1-dimensional edge weights')
        if not value.is_floating_point():
            raise TypeError(
                f'SparseTensor values must be float edge weights, got {value.dtype}; a relational '
                'layer reads integer values as edge types itself'
            )
        check_float(value, 'SparseTensor values')
    csr = CSR.from_csr(rowptr, col, value, num_rows, num_cols, trust_data=False)
    return (
        csr
        if adj.is_coalesced() or csr.nnz == 0
        else _from_coo(csr.row(), csr.col, value, *csr.shape)
    )


def to_csr(
    adj,
    edge_weight: Tensor | None = None,
    num_nodes: int | tuple[int, int] | None = None,
) -> CSR:
    """Converts any adjacency PyG accepts into a validated :class:`CSR` (``adj_t`` form).

    Args:
        adj: a ``[2, E]`` ``edge_index``, a ``torch_sparse.SparseTensor``, a ``torch.sparse``
            COO/CSR/CSC tensor, a scipy sparse matrix, or a :class:`CSR` (returned as is).
        edge_weight (Tensor, optional): ``[E]`` weights, only with an ``edge_index``.
        num_nodes (int or (int, int), optional): node count, or ``(num_src, num_dst)`` for a
            bipartite ``edge_index``; inferred when ``None``.

    Raises:
        TypeError: wrong type or dtype.
        ValueError: out-of-range or negative indices, shape/length mismatch, NaN/Inf weights,
            tensors on different devices.
    """
    if isinstance(adj, Tensor) and adj.layout == torch.strided:
        return from_edge_index(adj, edge_weight, num_nodes)
    is_scipy = hasattr(adj, 'tocsr') and hasattr(adj, 'shape')
    if not (isinstance(adj, CSR | Tensor) or is_sparse_tensor(adj) or is_scipy):
        raise TypeError(
            'adj must be an edge_index Tensor [2, E], a torch_sparse.SparseTensor, a torch.sparse '
            f'tensor, a scipy sparse matrix or a graphops CSR; got {type(adj).__name__}'
        )
    if edge_weight is not None:
        raise ValueError(
            'edge_weight must be None unless adj is an edge_index: a sparse matrix (here a '
            f'{type(adj).__name__}) carries its weights as its values'
        )
    if isinstance(adj, CSR):
        return adj
    if is_sparse_tensor(adj):
        return _from_sparse_tensor(adj)
    if isinstance(adj, Tensor):
        return _from_torch_sparse(adj)
    mat = adj.tocsr()
    mat.sort_indices()
    value = torch.from_numpy(np.asarray(mat.data, dtype=np.float64)).to(torch.float32)
    check_float(value, 'adjacency values')
    rowptr = torch.from_numpy(mat.indptr.astype(np.int64))
    col = torch.from_numpy(mat.indices.astype(np.int64))
    return CSR.from_csr(rowptr, col, value, *mat.shape, trust_data=False)


# --- degrees and normalisation ----------------------------------------------------------------


def in_degree(csr: CSR, dtype: torch.dtype = torch.float32) -> Tensor:
    """Weighted row sums: the (weighted) in-degree of each target node, ``[num_rows]``."""
    if csr.value is None:
        return csr.row_counts().to(dtype)
    out = torch.zeros(csr.num_rows, dtype=dtype, device=csr.device)
    return out.index_add_(0, csr.row().long(), csr.value.to(dtype))


def out_degree(csr: CSR, dtype: torch.dtype = torch.float32) -> Tensor:
    """Weighted column sums: the (weighted) out-degree of each source node, ``[num_cols]``."""
    out = torch.zeros(csr.num_cols, dtype=dtype, device=csr.device)
    return out.index_add_(0, csr.col.long(), csr.values(dtype))


def _inverse_power(degree: Tensor, power: float) -> Tensor:
    out = degree.pow(power)
    return out.masked_fill_(degree == 0, 0.0)  # isolated nodes stay zero rows, never Inf


def normalize(
    csr: CSR,
    norm: str | None = 'sym',
    add_self_loops: bool = False,
    fill_value: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> CSR:
    r"""Normalises ``M`` (``adj_t`` form). With :math:`d^{in}_i = \sum_j M_{ij}` and
    :math:`d^{out}_j = \sum_i M_{ij}`:

    * ``'sym'``: :math:`D_{in}^{-1/2} M D_{in}^{-1/2}` (PyG's ``gcn_norm``; for a symmetric graph
      the usual :math:`D^{-1/2} A D^{-1/2}`);
    * ``'rw'``: :math:`D_{in}^{-1} M`, the mean over incoming neighbours (rows sum to 1);
    * ``'col'``: :math:`M D_{out}^{-1}`, column-stochastic (each source spreads unit mass);
    * ``None``: ``M`` unchanged.

    Zero degrees give zero rows or columns, never NaN or Inf. ``add_self_loops`` adds ``fill_value``
    on the diagonal first (square matrices only).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of 'sym', 'rw', 'col' or None, got {norm!r}")
    if add_self_loops:
        csr = csr.add_self_loops(fill_value)
    if norm is None:
        return csr.with_value(csr.values(dtype))
    if norm == 'sym':
        csr._require_square("norm='sym'")
        left = right = _inverse_power(in_degree(csr, dtype), -0.5)
    elif norm == 'rw':
        left, right = _inverse_power(in_degree(csr, dtype), -1.0), None
    else:
        left, right = None, _inverse_power(out_degree(csr, dtype), -1.0)
    if dtype in (torch.float32, torch.float64) and _csr_kernel_applies(csr.col, csr.value):
        # one fused pass instead of a row expansion, two gathers and two products over E
        ones = torch.ones(max(csr.num_rows, csr.num_cols), dtype=dtype)
        left = ones[: csr.num_rows] if left is None else left
        right = ones[: csr.num_cols] if right is None else right
        return csr.with_value(csr_kernels.scale_values(csr.rowptr, csr.col, csr.value, left, right))
    value = csr.values(dtype)
    if left is not None:
        value = left[csr.row().long()] * value
    if right is not None:
        value = value * right[csr.col.long()]
    return csr.with_value(value)


def symmetrize(csr: CSR, binarize: bool = True) -> CSR:
    """``M + M^T`` as a graph: every edge in both directions.

    With ``binarize`` (default) the union is unweighted and duplicate-free (what SIGN and the
    triangle operator use); otherwise weights of both directions are summed.
    """
    csr._require_square('symmetrize')
    row = csr.row()
    both_row = torch.cat([row, csr.col])
    both_col = torch.cat([csr.col, row])
    value = None if binarize else torch.cat([csr.values(), csr.values()])
    merged = _from_coo(both_row, both_col, value, csr.num_rows, csr.num_cols)
    return merged.binarize() if binarize else merged.coalesce()


def orient(csr: CSR, direction: str = 'directed') -> CSR:
    """``'directed'``: edges as given (messages flow source -> target); ``'transposed'``: every
    edge reversed; ``'symmetric'``: both directions (binarised union)."""
    if direction == 'directed':
        return csr
    if direction == 'transposed':
        return csr.t()
    if direction == 'symmetric':
        return symmetrize(csr)
    raise ValueError(f'direction must be one of {DIRECTIONS}, got {direction!r}')
