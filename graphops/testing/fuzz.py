"""Fuzzing the public entry points that reach the raw-memory kernels with malformed input.

Each entry point gets inputs drawn by hypothesis: wrong dtypes and shapes, non-contiguous views,
out-of-range, negative and int32-overflowing indices, empty and huge-degree rows, NaN and Inf. A
call must either return what a dense reference computes or raise a clean ``ValueError``,
``TypeError`` or ``MemoryError``. Anything else (another exception, a wrong number) fails, and a
crash or a hang shows as the process dying, which is why the tests run this module in a
subprocess::

    python -m graphops.testing.fuzz spmm --examples 200 --seed 0
"""

from __future__ import annotations

import argparse
import sys

import torch

#: what a well-formed rejection raises
CLEAN_ERRORS = (ValueError, TypeError, MemoryError)
INT32_OVERFLOW = 2**31 + 5
INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.float32, torch.bool)
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64)


def _strategies():
    from hypothesis import strategies as st

    return st


def draw_edge_index(draw, num_nodes: int) -> torch.Tensor:
    """A ``[2, E]`` edge index, often malformed: dtype, shape, layout or values."""
    st = _strategies()
    num_edges = draw(st.integers(0, 60))
    hub = draw(st.booleans())  # one huge-degree row
    low, high = draw(st.sampled_from([(0, num_nodes - 1), (-3, num_nodes + 3)]))
    values = draw(
        st.lists(st.integers(low, max(low, high)), min_size=2 * num_edges, max_size=2 * num_edges)
    )
    edge_index = torch.tensor(values, dtype=torch.long).view(2, num_edges)
    if hub and num_edges and num_nodes:
        edge_index[1] = 0
    if draw(st.integers(0, 9)) == 0 and num_edges:
        edge_index[draw(st.integers(0, 1)), 0] = draw(st.sampled_from([INT32_OVERFLOW, -(2**31)]))
    dtype = draw(st.sampled_from(INDEX_DTYPES))
    if dtype is not torch.int64:
        edge_index = edge_index.to(dtype)
    shape = draw(st.sampled_from(['ok', 'ok', 'ok', 'transposed', 'flat', 'three_rows']))
    if shape == 'transposed':
        edge_index = edge_index.t()
    elif shape == 'flat':
        edge_index = edge_index.reshape(-1)
    elif shape == 'three_rows':
        edge_index = torch.cat([edge_index, edge_index[:1]], 0)
    if draw(st.booleans()) and edge_index.dim() == 2:
        edge_index = edge_index.t().contiguous().t()  # same values, non-contiguous
    return edge_index


def draw_float(draw, rows: int, cols: int | None) -> torch.Tensor:
    """A float tensor of about the expected shape, sometimes wrong in dtype, shape or values."""
    st = _strategies()
    rows = rows + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    rows = max(rows, 0)
    shape = (rows,) if cols is None else (rows, cols)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    value = torch.rand(shape, generator=generator, dtype=torch.float64) + 0.1
    poison = draw(st.sampled_from([None, None, None, float('nan'), float('inf')]))
    if poison is not None and value.numel():
        value.view(-1)[draw(st.integers(0, value.numel() - 1))] = poison
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    value = value.to(dtype)
    if cols is not None and draw(st.booleans()):
        value = torch.cat([value, value], 1)[:, ::2]  # same values, non-contiguous
    return value


def _dense(edge_index: torch.Tensor, weight, num_src: int, num_dst: int, dtype) -> torch.Tensor:
    """``[num_dst, num_src]`` reference adjacency of a well-formed edge index."""
    adj = torch.zeros(num_dst, num_src, dtype=dtype)
    w = torch.ones(edge_index.size(1), dtype=dtype) if weight is None else weight.to(dtype)
    adj.index_put_((edge_index[1].long(), edge_index[0].long()), w, accumulate=True)
    return adj


def assert_matches_reference(result: torch.Tensor, expected: torch.Tensor, dtype) -> None:
    """``result`` equals the float64 ``expected`` to ``dtype``'s precision (NaN where it is NaN)."""
    low = dtype in (torch.float16, torch.bfloat16)
    torch.testing.assert_close(
        result.double(),
        expected,
        atol=0.2 if low else 1e-4,
        rtol=0.05 if low else 1e-4,
        equal_nan=True,
    )


def fuzz_to_csr(draw) -> None:
    from graphops.ops import to_csr

    st = _strategies()
    num_nodes = draw(st.integers(0, 12))
    edge_index = draw_edge_index(draw, num_nodes)
    num_edges = edge_index.size(-1) if edge_index.dim() else 0
    weight = draw_float(draw, num_edges, None) if draw(st.booleans()) else None
    given = draw(st.sampled_from([num_nodes, None, -1]))
    try:
        csr = to_csr(edge_index, weight, given)
    except CLEAN_ERRORS:
        return
    # accepted: it must equal the dense reference of the same edges
    n = csr.num_rows
    expected = _dense(edge_index, weight, csr.num_cols, n, torch.float64)
    got = csr.to_dense(torch.float64)
    assert torch.allclose(got, expected, equal_nan=True), 'to_csr accepted input it got wrong'


def _valid_csr(draw, num_nodes: int):
    from graphops.ops import to_csr

    st = _strategies()
    num_edges = draw(st.integers(0, 80))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    edge_index = torch.randint(0, max(num_nodes, 1), (2, num_edges), generator=generator)
    if num_nodes == 0:
        edge_index = edge_index[:, :0]
    if draw(st.booleans()) and edge_index.size(1):
        edge_index[1] = 0  # a huge-degree row
    weight = torch.rand(edge_index.size(1), generator=generator) + 0.1
    weight = weight if draw(st.booleans()) else None
    return to_csr(edge_index, weight, num_nodes), edge_index, weight


def fuzz_csr_constructor(draw) -> None:
    """The public constructor reads user arrays: malformed ones must be refused."""
    from graphops.ops import CSR, spmm

    st = _strategies()
    num_rows, num_cols = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    nnz = draw(st.integers(0, 10))
    rowptr = draw(st.lists(st.integers(-2, nnz + 2), min_size=num_rows + 1, max_size=num_rows + 1))
    if draw(st.booleans()):
        rowptr = sorted(rowptr)
    col = draw(st.lists(st.integers(-2, num_cols + 2), min_size=nnz, max_size=nnz))
    dtype = draw(st.sampled_from([torch.int64, torch.int32, torch.float32]))
    rowptr_t, col_t = torch.tensor(rowptr, dtype=dtype), torch.tensor(col, dtype=dtype)
    if draw(st.booleans()):
        col_t = col_t.to(torch.int32 if dtype == torch.int64 else torch.int64)
    try:
        csr = CSR(rowptr_t, col_t, None, num_rows, num_cols)
    except CLEAN_ERRORS:
        return
    # accepted: a true CSR, so the kernel's product equals the dense one
    counts = csr.rowptr[1:] - csr.rowptr[:-1]
    assert int(csr.rowptr[0]) == 0 and int(csr.rowptr[-1]) == nnz and bool((counts >= 0).all())
    x = torch.randn(num_cols, 5, dtype=torch.float64)
    torch.testing.assert_close(spmm(csr, x), csr.to_dense(torch.float64) @ x)


def fuzz_spmm(draw) -> None:
    from graphops.ops import spmm

    st = _strategies()
    num_nodes = draw(st.integers(0, 30))
    csr, _, _ = _valid_csr(draw, num_nodes)
    features = draw(st.integers(0, 9))
    x = draw_float(draw, num_nodes, features)
    reduce = draw(st.sampled_from(['sum', 'mean', 'max']))
    backend = draw(st.sampled_from(['auto', 'torch', 'llvm', 'numba', 'cuda']))
    out = None
    if draw(st.integers(0, 3)) == 0:
        out = draw_float(draw, num_nodes, features)
    try:
        result = spmm(csr, x, reduce, out=out, backend=backend)
    except CLEAN_ERRORS:
        return
    # sparse semantics: a missing entry contributes nothing (a dense 0 * NaN would be NaN)
    row, col = csr.row().long(), csr.col.long()
    expected = torch.zeros(csr.num_rows, x.size(1), dtype=torch.float64)
    expected.index_add_(0, row, x.double()[col] * csr.values(torch.float64)[:, None])
    if reduce == 'mean':
        expected = expected / csr.row_counts().clamp(min=1).double()[:, None]
    assert_matches_reference(result, expected, x.dtype)


def fuzz_sddmm(draw) -> None:
    from graphops.ops import sddmm

    st = _strategies()
    num_nodes = draw(st.integers(0, 30))
    csr, _, _ = _valid_csr(draw, num_nodes)
    features = draw(st.integers(0, 7))
    left = draw_float(draw, num_nodes, features)
    right = draw_float(draw, num_nodes, features)
    try:
        result = sddmm(csr, left, right)
    except CLEAN_ERRORS:
        return
    row, col = csr.row().long(), csr.col.long()
    expected = (left.double()[row] * right.double()[col]).sum(-1)
    assert_matches_reference(result, expected, left.dtype)


def fuzz_normalize(draw) -> None:
    from graphops.ops import normalize, to_csr

    st = _strategies()
    num_nodes = draw(st.integers(0, 20))
    _, edge_index, weight = _valid_csr(draw, num_nodes)
    norm = draw(st.sampled_from(['sym', 'rw', 'col', None, 'bad']))
    loops = draw(st.booleans())
    try:
        csr = normalize(to_csr(edge_index, weight, num_nodes), norm, add_self_loops=loops)
    except CLEAN_ERRORS:
        return
    assert bool(torch.isfinite(csr.values()).all()), 'normalize produced NaN/Inf'


def fuzz_triangle_adjacency(draw) -> None:
    from graphops.ops import to_csr, triangle_adjacency

    st = _strategies()
    num_nodes = draw(st.integers(0, 20))
    _, edge_index, _ = _valid_csr(draw, num_nodes)
    backend = draw(st.sampled_from(['auto', 'torch', 'numba', 'llvm']))
    try:
        result = triangle_adjacency(to_csr(edge_index, None, num_nodes), backend=backend)
    except CLEAN_ERRORS:
        return
    a = _dense(edge_index, None, num_nodes, num_nodes, torch.float64)
    a = ((a + a.t()) > 0).double()
    a.fill_diagonal_(0)
    expected = a * (a @ a)
    torch.testing.assert_close(result.to_dense(torch.float64), expected)


def fuzz_topk(draw) -> None:
    from graphops.ops import topk

    st = _strategies()
    num_nodes = draw(st.integers(0, 30))
    score = draw_float(draw, num_nodes, None)
    ratio = draw(st.sampled_from([0.5, 1.0, 0.0, 1.5, 3, 0, -1, float('nan')]))
    batch = None
    if draw(st.booleans()) and num_nodes:
        batch = torch.sort(torch.randint(0, 3, (num_nodes,))).values
        if draw(st.integers(0, 4)) == 0:
            batch = batch.flip(0)  # unsorted
    try:
        kept = topk(score, ratio, batch)
    except CLEAN_ERRORS:
        return
    assert kept.dtype == torch.long and kept.dim() == 1
    assert kept.numel() == 0 or (int(kept.min()) >= 0 and int(kept.max()) < score.numel())
    assert kept.unique().numel() == kept.numel()


def fuzz_rgcn_conv(draw) -> None:
    from graphops.nn import RGCNConv

    st = _strategies()
    num_nodes = draw(st.integers(1, 15))
    num_relations = draw(st.integers(1, 4))
    edge_index = draw_edge_index(draw, num_nodes)
    num_edges = edge_index.size(-1) if edge_index.dim() else 0
    edge_type = torch.randint(0, num_relations + draw(st.integers(0, 1)), (num_edges,))
    if draw(st.integers(0, 4)) == 0:
        edge_type = edge_type.float()
    x = draw_float(draw, num_nodes, 4)
    kind = draw(st.sampled_from([{}, {'num_bases': 2}, {'num_blocks': 2}]))
    conv = RGCNConv(4, 6, num_relations, aggr=draw(st.sampled_from(['mean', 'add'])), **kind)
    try:
        out = conv(x, edge_index, edge_type)
    except CLEAN_ERRORS:
        return
    assert out.shape == (num_nodes, 6)


ENTRY_POINTS = {
    'to_csr': fuzz_to_csr,
    'csr': fuzz_csr_constructor,
    'spmm': fuzz_spmm,
    'sddmm': fuzz_sddmm,
    'normalize': fuzz_normalize,
    'triangle_adjacency': fuzz_triangle_adjacency,
    'topk': fuzz_topk,
    'rgcn_conv': fuzz_rgcn_conv,
}


def run(entry: str, examples: int, seed: int) -> None:
    """Runs ``examples`` hypothesis cases of one entry point (raises on the first failure)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    fuzz = ENTRY_POINTS[entry]

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
        report_multiple_bugs=False,
    )
    @given(st.data())
    def case(data):
        fuzz(data.draw)

    case()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('entry', choices=sorted(ENTRY_POINTS))
    parser.add_argument('--examples', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run(args.entry, args.examples, args.seed)
    print(f'fuzz {args.entry}: {args.examples} examples, no crash, no wrong number')
    return 0


if __name__ == '__main__':
    sys.exit(main())
