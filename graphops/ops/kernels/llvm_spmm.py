r"""The fast CPU kernel behind :func:`graphops.ops.spmm`: LLVM IR written for one feature width and
compiled for the host CPU by llvmlite (numba's code generator, part of the ``fast`` extra).

On a graph that does not fit in cache, :math:`Y = M X` is bound by the random reads of source
rows :math:`X_j`; what decides the speed is how many of those reads a core keeps in flight. Three
things do, and a numba loop gets none of them:

* **accumulators in registers.** A row's running sum is a few SIMD registers, not an array in
  memory; each entry then costs a handful of instructions and the out-of-order window reaches
  several entries ahead. Columns are summed in passes of :data:`PASS_VECTORS` vectors so the
  accumulators, the broadcast weight and a load fit in 16 registers without spills (a second
  pass re-reads source rows that the first pass left in L1/L2).
* **software prefetch** of whole source rows, far enough ahead to keep
  :data:`PREFETCH_LINES` cache lines in flight (:func:`prefetch_distance`): narrow rows need more
  rows ahead than wide ones.
* **aligned operands** (:func:`graphops.ops.spmm.host_empty`): a 512-byte row that starts 16
  bytes into a cache line (numpy's large arrays do) touches nine lines instead of eight.

The SIMD width is read from the host CPU's features (:func:`supported_vector_bytes`: AVX-512,
AVX2, SSE2/NEON, or scalar code), so one build runs on any x86-64 or Arm machine.

Each output row is computed by one thread, summing its entries in CSR order (a multiply-add per
entry, fused where the CPU has FMA), so the bytes out do not depend on the thread count or on how
the feature columns are sliced. Rows are split into chunks of equal work (:func:`row_chunks`) that
a small thread pool runs; ctypes releases the GIL for each call.
"""

from __future__ import annotations

import ctypes
import os
import threading
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from graphops.ops import dispatch
from graphops.ops.optional import has_numba

#: vectors summed per pass over a row's entries (8 accumulators + weight + load <= 16 registers)
PASS_VECTORS = 8
#: cache lines of source rows kept in flight by the prefetches (at least PREFETCH_DISTANCE rows):
#: a 16-float32 row is one line, so 16 rows ahead left a core's misses short of what it can
#: overlap; 64 lines made such products 10-16% faster at 4M-32M nodes, and no slower in cache
PREFETCH_LINES = 64
#: the fewest entries ahead whose source row is prefetched
PREFETCH_DISTANCE = 16
#: rows up to this many cache lines are prefetched whole in the first pass; longer rows pass by pass
FULL_ROW_PREFETCH_LINES = 16
#: chunks per thread: enough to even out rows of unequal cost
CHUNKS_PER_THREAD = 8

#: SIMD register width in bytes by CPU feature, widest first (0: scalar code)
VECTOR_FEATURES = (('avx512f', 64), ('avx', 32), ('sse2', 16), ('neon', 16), ('asimd', 16))
_LINE = 64
_IR_TYPES = {torch.float32: 'float', torch.float64: 'double'}
_IR_INDEX = {torch.int32: 'i32', torch.int64: 'i64'}
_lock = threading.Lock()
_compiled: dict[tuple, object] = {}
_engines: list = []  # compiled code lives as long as its execution engine
_target_machine = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_unavailable: str | None = None
_vector_widths: tuple[int, ...] | None = None


def available() -> bool:
    """True when the kernel can run here: llvmlite importable and able to compile for this CPU."""
    if not has_numba():
        return False
    try:
        _machine()
    except Exception:
        return False
    return True


def row_chunks(rowptr: np.ndarray, num_chunks: int) -> np.ndarray:
    """Row boundaries ``[num_chunks + 1]`` splitting the rows into runs of about equal nnz (plus
    one unit per row, so long runs of empty rows are split too). A binary search per boundary:
    a product over a row block of a matrix streamed from disk calls this for every block, so it
    must not cost a pass over the rows."""
    num_rows = rowptr.shape[0] - 1
    num_chunks = max(1, min(num_chunks, num_rows))
    targets = np.linspace(0, int(rowptr[-1]) + num_rows, num_chunks + 1)
    rows = range(num_rows + 1)
    bounds = np.array(
        [bisect_left(rows, target, key=lambda i: int(rowptr[i]) + i) for target in targets],
        dtype=np.int64,
    )
    bounds[0], bounds[-1] = 0, num_rows
    return np.maximum.accumulate(bounds)


def spmm_into(
    rowptr: torch.Tensor,
    col: torch.Tensor,
    value: torch.Tensor | None,
    x: torch.Tensor,
    out: torch.Tensor,
    mean: bool,
    *,
    vector_bytes: int | None = None,
) -> None:
    """``out = M @ x`` (``mean``: each row divided by its number of entries) for a CSR ``M`` on
    CPU. ``x`` and ``out`` are contiguous float32 or float64 tensors of one dtype; ``value``, when
    given, has their dtype too; ``rowptr`` and ``col`` share an index dtype. Index ranges are the
    caller's to validate (:func:`graphops.ops.to_csr` does); the layout is checked here, since the
    kernel reads raw memory. ``vector_bytes`` forces a SIMD width that this CPU supports (one of
    :func:`supported_vector_bytes`; default: the widest)."""
    _check_layout(rowptr, col, value, x, out)
    supported = supported_vector_bytes()
    if vector_bytes is None:
        vector_bytes = supported[0]
    elif vector_bytes not in supported:
        raise ValueError(f'vector_bytes must be one of {supported} on this CPU, got {vector_bytes}')
    num_rows, num_features = out.shape
    nnz = col.numel()
    function = _kernel(num_features, x.dtype, col.dtype, value is not None, mean, vector_bytes)
    value_address = value.data_ptr() if value is not None else 0
    addresses = (
        rowptr.data_ptr(),
        col.data_ptr(),
        value_address,
        x.data_ptr(),
        out.data_ptr(),
        nnz,
    )
    threads = torch.get_num_threads()
    if (
        (nnz + num_rows) * max(num_features, 1) < dispatch.SPMM_SERIAL_WORK
        or threads == 1
        or num_rows < 2
    ):
        function(0, num_rows, *addresses)
        return
    bounds = row_chunks(rowptr.numpy(), CHUNKS_PER_THREAD * threads).tolist()
    pool = _thread_pool(threads)
    futures = [
        pool.submit(function, start, end, *addresses)
        for start, end in zip(bounds[:-1], bounds[1:])
        if end > start
    ]
    for future in futures:
        future.result()


def _check_layout(rowptr, col, value, x, out) -> None:
    tensors = {'rowptr': rowptr, 'col': col, 'x': x, 'out': out}
    if value is not None:
        tensors['value'] = value
    for name, tensor in tensors.items():
        if tensor.device.type != 'cpu' or not tensor.is_contiguous():
            raise ValueError(f'{name} must be a contiguous CPU tensor for the CPU SpMM kernel')
    if x.dtype not in _IR_TYPES or out.dtype != x.dtype:
        raise TypeError(f'x and out must share a float32/float64 dtype, got {x.dtype}, {out.dtype}')
    if value is not None and (value.dtype != x.dtype or value.shape != col.shape):
        raise ValueError(f'value must be a {x.dtype} tensor shaped like col {tuple(col.shape)}')
    if col.dtype not in _IR_INDEX or rowptr.dtype != col.dtype:
        raise TypeError(f'rowptr and col must share an int32/int64 dtype, got {rowptr.dtype}')
    if x.dim() != 2 or out.dim() != 2 or x.shape[1] != out.shape[1]:
        raise ValueError(f'x {tuple(x.shape)} and out {tuple(out.shape)} must be [N, F] alike')
    if rowptr.dim() != 1 or rowptr.numel() != out.shape[0] + 1:
        raise ValueError(f'rowptr must hold out.shape[0] + 1 = {out.shape[0] + 1} offsets')


# --- compilation --------------------------------------------------------------------------------


def supported_vector_bytes() -> tuple[int, ...]:
    """SIMD widths in bytes the kernel can be built for on this CPU, widest first, read from the
    host's CPU features (AVX-512: 64, AVX/AVX2: 32, SSE2 or NEON: 16); 0 (scalar code) is always
    supported."""
    global _vector_widths
    if _vector_widths is None:
        import llvmlite.binding as llvm

        _machine()
        features = llvm.get_host_cpu_features()
        widest = max((width for name, width in VECTOR_FEATURES if features.get(name)), default=0)
        _vector_widths = tuple(w for w in (64, 32, 16) if w <= widest) + (0,)
    return _vector_widths


def _machine():
    global _target_machine, _unavailable
    if _target_machine is not None:
        return _target_machine
    if _unavailable is not None:
        raise RuntimeError(_unavailable)
    with _lock:
        if _target_machine is None:
            try:
                import llvmlite.binding as llvm

                llvm.initialize_native_target()
                llvm.initialize_native_asmprinter()
                target = llvm.Target.from_default_triple()
                _target_machine = target.create_target_machine(
                    cpu=llvm.get_host_cpu_name(),
                    features=llvm.get_host_cpu_features().flatten(),
                    opt=3,
                )
            except Exception as err:  # no llvmlite, or one that cannot target this CPU
                _unavailable = f'the LLVM SpMM kernel is unavailable: {err}'
                raise
    return _target_machine


def _optimise(module, machine) -> None:
    import llvmlite.binding as llvm

    if hasattr(llvm, 'create_pass_builder'):  # llvmlite >= 0.44: the new pass manager
        builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(3))
        builder.getModulePassManager().run(module, builder)
        return
    manager_builder = llvm.create_pass_manager_builder()  # pragma: no cover - older llvmlite
    manager_builder.opt_level = 3
    manager = llvm.create_module_pass_manager()
    manager_builder.populate(manager)
    manager.run(module)


_SIGNATURE = ctypes.CFUNCTYPE(
    None,
    ctypes.c_int64,  # first row
    ctypes.c_int64,  # end row (exclusive)
    ctypes.c_void_p,  # rowptr
    ctypes.c_void_p,  # col
    ctypes.c_void_p,  # value (unused when unweighted)
    ctypes.c_void_p,  # x
    ctypes.c_void_p,  # out
    ctypes.c_int64,  # nnz
)


def _kernel(num_features, dtype, index_dtype, weighted, mean, vector_bytes):
    key = (num_features, dtype, index_dtype, bool(weighted), bool(mean), vector_bytes)
    function = _compiled.get(key)
    if function is not None:
        return function
    import llvmlite.binding as llvm

    machine = _machine()
    with _lock:
        function = _compiled.get(key)
        if function is None:
            module = llvm.parse_assembly(kernel_ir(*key))
            module.verify()
            _optimise(module, machine)
            engine = llvm.create_mcjit_compiler(module, machine)
            engine.finalize_object()
            _engines.append(engine)
            function = _SIGNATURE(engine.get_function_address('spmm_rows'))
            _compiled[key] = function
    return function


def _forget_pool_after_fork() -> None:
    # a forked child has none of the parent's worker threads: a pool it inherited would take
    # work and never run it
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix='graphops-spmm')
            _pool_size = threads
    return _pool


def prefetch_distance(row_bytes: int) -> int:
    """Entries ahead whose source row is prefetched, for rows of ``row_bytes`` bytes."""
    return max(PREFETCH_DISTANCE, PREFETCH_LINES // max(1, -(-row_bytes // _LINE)))


def kernel_ir(
    num_features: int,
    dtype: torch.dtype,
    index_dtype: torch.dtype,
    weighted: bool,
    mean: bool,
    vector_bytes: int = 32,
) -> str:
    """The LLVM IR of ``spmm_rows(first, end, rowptr, col, value, x, out, nnz)`` for rows
    ``[first, end)``: the feature width, dtypes, variant and SIMD width (``vector_bytes``, 0 for
    scalar code) are constants of the code."""
    scalar, index = _IR_TYPES[dtype], _IR_INDEX[index_dtype]
    size = dtype.itemsize
    lanes = max(1, vector_bytes // size)
    row_bytes = num_features * size
    # (column, width) of each vector of a row: full SIMD vectors, then one shorter tail vector
    vectors = [(c, min(lanes, num_features - c)) for c in range(0, num_features, lanes)]
    passes = [vectors[p : p + PASS_VECTORS] for p in range(0, len(vectors), PASS_VECTORS)]
    full_row_prefetch = -(-row_bytes // _LINE) <= FULL_ROW_PREFETCH_LINES
    distance = prefetch_distance(row_bytes)
    fma = {
        w: f'llvm.fmuladd.v{w}f{size * 8}' if w > 1 else f'llvm.fmuladd.f{size * 8}'
        for w in {w for _, w in vectors}
    }

    def vec(w):
        return scalar if w == 1 else f'<{w} x {scalar}>'

    def zero(w):
        return '0.0' if w == 1 else 'zeroinitializer'

    def as_i64(raw: str, name: str) -> str:
        """An index loaded from memory, as an i64 operand (int32 indices are sign-extended)."""
        if index == 'i64':
            return f'%{raw}'
        emit(f'  %{name} = sext i32 %{raw} to i64')
        return f'%{name}'

    lines = ['declare void @llvm.prefetch.p0(ptr, i32, i32, i32)']
    lines += [f'declare {vec(w)} @{name}({vec(w)}, {vec(w)}, {vec(w)})' for w, name in fma.items()]
    emit = lines.append
    emit(
        'define void @spmm_rows(i64 %first, i64 %last, ptr noalias %rowptr, ptr noalias %col, '
        'ptr noalias %value, ptr noalias %x, ptr noalias %out, i64 %nnz) nounwind {'
    )
    emit('entry:')
    emit('  %none = icmp sge i64 %first, %last')
    emit('  br i1 %none, label %done, label %row')
    emit('row:')
    emit('  %i = phi i64 [ %first, %entry ], [ %next_i, %row_end ]')
    emit(f'  %start_at = getelementptr {index}, ptr %rowptr, i64 %i')
    emit(f'  %start_raw = load {index}, ptr %start_at')
    emit('  %i_plus = add i64 %i, 1')
    emit(f'  %end_at = getelementptr {index}, ptr %rowptr, i64 %i_plus')
    emit(f'  %end_raw = load {index}, ptr %end_at')
    start, end = as_i64('start_raw', 'start'), as_i64('end_raw', 'end')
    emit(f'  %out_offset = mul i64 %i, {row_bytes}')
    emit('  %out_row = getelementptr i8, ptr %out, i64 %out_offset')
    emit(f'  %empty = icmp sge i64 {start}, {end}')
    if mean:  # once per row; unused (and inf) for an empty row
        emit(f'  %count = sub i64 {end}, {start}')
        emit(f'  %count_f = sitofp i64 %count to {scalar}')
        emit(f'  %inverse = fdiv {scalar} 1.0, %count_f')
    emit('  br i1 %empty, label %empty_row, label %pass0_begin')
    emit('empty_row:')
    for v, (column, w) in enumerate(vectors):
        emit(f'  %zero_at{v} = getelementptr i8, ptr %out_row, i64 {column * size}')
        emit(f'  store {vec(w)} {zero(w)}, ptr %zero_at{v}, align {size}')
    emit('  br label %row_end')
    for p, group in enumerate(passes):
        tag = f'p{p}_'
        after = f'pass{p + 1}_begin' if p + 1 < len(passes) else 'row_end'
        emit(f'pass{p}_begin:')
        emit(f'  br label %pass{p}')
        emit(f'pass{p}:')
        emit(f'  %{tag}k = phi i64 [ {start}, %pass{p}_begin ], [ %{tag}next_k, %pass{p} ]')
        for v, (_, w) in enumerate(group):
            emit(
                f'  %{tag}acc{v} = phi {vec(w)} [ {zero(w)}, %pass{p}_begin ], '
                f'[ %{tag}sum{v}, %pass{p} ]'
            )
        # prefetch the source row `distance` entries ahead (its segment, for long rows)
        if p == 0 or not full_row_prefetch:
            if full_row_prefetch:
                span_start, span_bytes = 0, row_bytes
            else:
                span_start = group[0][0] * size
                span_bytes = (group[-1][0] + group[-1][1]) * size - span_start
            emit(f'  %{tag}ahead = add i64 %{tag}k, {distance}')
            emit(f'  %{tag}in_range = icmp slt i64 %{tag}ahead, %nnz')
            emit(f'  %{tag}ahead_k = select i1 %{tag}in_range, i64 %{tag}ahead, i64 %{tag}k')
            emit(f'  %{tag}ahead_at = getelementptr {index}, ptr %col, i64 %{tag}ahead_k')
            emit(f'  %{tag}ahead_raw = load {index}, ptr %{tag}ahead_at')
            ahead_j = as_i64(f'{tag}ahead_raw', f'{tag}ahead_j')
            emit(f'  %{tag}ahead_offset = mul i64 {ahead_j}, {row_bytes}')
            emit(f'  %{tag}ahead_row = getelementptr i8, ptr %x, i64 %{tag}ahead_offset')
            offsets = list(range(span_start, span_start + span_bytes, _LINE))
            offsets.append(span_start + span_bytes - 1)  # the last line when rows are unaligned
            for n, off in enumerate(offsets):
                emit(f'  %{tag}pf{n} = getelementptr i8, ptr %{tag}ahead_row, i64 {off}')
                emit(f'  call void @llvm.prefetch.p0(ptr %{tag}pf{n}, i32 0, i32 3, i32 1)')
        emit(f'  %{tag}col_at = getelementptr {index}, ptr %col, i64 %{tag}k')
        emit(f'  %{tag}j_raw = load {index}, ptr %{tag}col_at')
        j = as_i64(f'{tag}j_raw', f'{tag}j')
        emit(f'  %{tag}x_offset = mul i64 {j}, {row_bytes}')
        emit(f'  %{tag}x_row = getelementptr i8, ptr %x, i64 %{tag}x_offset')
        if weighted:
            emit(f'  %{tag}w_at = getelementptr {scalar}, ptr %value, i64 %{tag}k')
            emit(f'  %{tag}w = load {scalar}, ptr %{tag}w_at')
        for v, (column, w) in enumerate(group):
            emit(f'  %{tag}x_at{v} = getelementptr i8, ptr %{tag}x_row, i64 {column * size}')
            emit(f'  %{tag}x{v} = load {vec(w)}, ptr %{tag}x_at{v}, align {size}')
            if weighted:
                weight = _splat(emit, f'{tag}w', w, scalar, f'{tag}w{v}')
                emit(
                    f'  %{tag}sum{v} = call {vec(w)} @{fma[w]}({vec(w)} {weight}, '
                    f'{vec(w)} %{tag}x{v}, {vec(w)} %{tag}acc{v})'
                )
            else:
                emit(f'  %{tag}sum{v} = fadd {vec(w)} %{tag}acc{v}, %{tag}x{v}')
        emit(f'  %{tag}next_k = add i64 %{tag}k, 1')
        emit(f'  %{tag}finished = icmp sge i64 %{tag}next_k, {end}')
        emit(f'  br i1 %{tag}finished, label %pass{p}_store, label %pass{p}')
        emit(f'pass{p}_store:')
        for v, (column, w) in enumerate(group):
            result = f'%{tag}sum{v}'
            if mean:
                scale = _splat(emit, 'inverse', w, scalar, f'{tag}inv{v}')
                emit(f'  %{tag}mean{v} = fmul {vec(w)} {result}, {scale}')
                result = f'%{tag}mean{v}'
            emit(f'  %{tag}out_at{v} = getelementptr i8, ptr %out_row, i64 {column * size}')
            emit(f'  store {vec(w)} {result}, ptr %{tag}out_at{v}, align {size}')
        emit(f'  br label %{after}')
    emit('row_end:')
    emit('  %next_i = add i64 %i, 1')
    emit('  %rows_done = icmp sge i64 %next_i, %last')
    emit('  br i1 %rows_done, label %done, label %row')
    emit('done:')
    emit('  ret void')
    emit('}')
    return '\n'.join(lines) + '\n'


def _splat(emit, scalar_name: str, width: int, scalar: str, name: str) -> str:
    """A vector of ``width`` copies of ``%scalar_name`` (the scalar itself when ``width == 1``)."""
    if width == 1:
        return f'%{scalar_name}'
    emit(
        f'  %{name}_one = insertelement <{width} x {scalar}> poison, {scalar} %{scalar_name}, i32 0'
    )
    emit(
        f'  %{name} = shufflevector <{width} x {scalar}> %{name}_one, <{width} x {scalar}> poison, '
        f'<{width} x i32> zeroinitializer'
    )
    return f'%{name}'
