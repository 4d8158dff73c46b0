r"""Sparse x dense products with bounded memory, for graphs and features larger than a device:
:func:`sliced_spmm` cuts the *features* into column slices, :class:`RowBlockStream` the *matrix*
into row blocks, and on CUDA both overlap the host-device copies with the products.

Both give exactly :func:`graphops.ops.spmm`'s result: the output is written row block by row block
(or column slice by column slice) and every row still sums its entries in CSR order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphops.ops.csr import CSR
from graphops.ops.spmm import check_features, check_out, spmm
from graphops.ops.validate import check_positive_int


def row_blocks(rowptr: Tensor, block_nnz: int) -> list[tuple[int, int]]:
    """``[start, end)`` row ranges with at most ``block_nnz`` entries each (a single row with
    more entries is a block of its own)."""
    rowptr = rowptr.cpu().long()
    num_rows = rowptr.numel() - 1
    blocks = []
    start = 0
    while start < num_rows:
        limit = int(rowptr[start]) + block_nnz
        end = int(torch.searchsorted(rowptr, torch.tensor(limit), right=True)) - 1
        end = min(max(end, start + 1), num_rows)
        blocks.append((start, end))
        start = end
    return blocks


class RowBlockStream:
    r"""A :class:`~graphops.ops.csr.CSR` held in host memory (pinned when ``device`` is CUDA) and
    multiplied on ``device`` one row block at a time; on CUDA, block :math:`b+1` is copied on a
    side stream while block :math:`b` is multiplied.

    .. math::
        \mathbf{Y}_{[a_b, e_b)} = \mathbf{M}_{[a_b, e_b), :} \mathbf{X}
        \quad \text{for each row block } b

    Args:
        csr (CSR): the ``[N_dst, N_src]`` matrix (any device; kept on the host).
        block_nnz (int): most entries per block.
        device (torch.device or str): where the products run. (default: ``'cpu'``)
        pin_memory (bool): pin the host blocks when ``device`` is CUDA. (default: ``True``)

    Shapes:
        ``spmm(x)``: ``x`` :math:`(N_{src}, F)` on ``device`` -> :math:`(N_{dst}, F)`.
    """

    def __init__(
        self, csr: CSR, block_nnz: int, device: torch.device | str = 'cpu', pin_memory=True
    ):
        if not isinstance(csr, CSR):
            raise TypeError(f'csr must be a graphops CSR (use to_csr), got {type(csr).__name__}')
        self.block_nnz = check_positive_int(block_nnz, 'block_nnz')
        self.device = torch.device(device)
        self.shape = csr.shape
        self.num_rows, self.num_cols = csr.shape
        self.nnz = csr.nnz
        pin = pin_memory and self.device.type == 'cuda'
        host = csr.to('cpu')
        self.blocks: list[tuple[int, int, CSR]] = []
        for start, end in row_blocks(host.rowptr, self.block_nnz):
            lo, hi = int(host.rowptr[start]), int(host.rowptr[end])
            rowptr = host.rowptr[start : end + 1] - host.rowptr[start]
            col = host.col[lo:hi]
            value = None if host.value is None else host.value[lo:hi]
            if pin:
                rowptr, col = rowptr.pin_memory(), col.pin_memory()
                value = None if value is None else value.pin_memory()
            self.blocks.append(
                (start, end, CSR(rowptr, col, value, end - start, self.num_cols, trust_data=True))
            )

    def spmm(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """``M @ x`` with ``x`` on :attr:`device`."""
        check_features(x, self.num_cols)
        if x.device.type != self.device.type:
            raise ValueError(f'x is on {x.device} but this stream runs on {self.device}')
        if out is None:
            out = x.new_empty(self.num_rows, x.size(1))
        else:
            check_out(out, self.num_rows, x)
        if self.device.type == 'cuda':
            return self._spmm_cuda(x, out)
        for start, end, block in self.blocks:
            spmm(block, x, out=out[start:end])
        return out

    def _spmm_cuda(self, x: Tensor, out: Tensor) -> Tensor:
        compute = torch.cuda.current_stream(x.device)
        copy = torch.cuda.Stream(x.device)

        def upload(block: CSR) -> tuple[CSR, torch.cuda.Event]:
            with torch.cuda.stream(copy):
                moved = CSR(
                    block.rowptr.to(x.device, non_blocking=True),
                    block.col.to(x.device, non_blocking=True),
                    None
                    if block.value is None
                    else block.value.to(x.device, x.dtype, non_blocking=True),
                    block.num_rows,
                    block.num_cols,
                    trust_data=True,
                )
                ready = torch.cuda.Event()
                ready.record(copy)
            return moved, ready

        pending = upload(self.blocks[0][2]) if self.blocks else None
        for index, (start, end, _) in enumerate(self.blocks):
            moved, ready = pending
            if index + 1 < len(self.blocks):
                pending = upload(self.blocks[index + 1][2])  # overlaps the product below
            compute.wait_event(ready)
            for tensor in (moved.rowptr, moved.col, moved.value):
                if tensor is not None:
                    tensor.record_stream(compute)
            spmm(moved, x, out=out[start:end])  # a row range of a contiguous out is contiguous
        return out

    def __repr__(self) -> str:
        return (
            f'RowBlockStream(shape={self.shape}, nnz={self.nnz}, blocks={len(self.blocks)}, '
            f'block_nnz={self.block_nnz}, device={self.device})'
        )


def sliced_spmm(
    csr,
    x: Tensor,
    slice_width: int,
    device: torch.device | str | None = None,
    out: Tensor | None = None,
) -> Tensor:
    r"""``M @ X`` one column slice of ``X`` at a time: :math:`\mathbf{Y}_{:, [a, b)} =
    \mathbf{M} \mathbf{X}_{:, [a, b)}`. Only ``[N, slice_width]`` of ``X`` and of the output
    live on ``device`` at a time; from host memory to CUDA, two pairs of pinned staging buffers
    alternate, so copies run asynchronously while the previous slice multiplies.

    Args:
        csr (CSR or RowBlockStream): the matrix, on ``device`` (or a row-block stream to it).
        x (Tensor): ``[N_src, F]`` features in host memory (or on ``device``).
        slice_width (int): columns per slice.
        device (torch.device or str, optional): where the products run (default: ``x``'s).
        out (Tensor, optional): ``[N_dst, F]`` result buffer of ``x``'s dtype on ``x``'s device
            (host memory when ``x`` is).

    Shapes:
        ``x``: :math:`(N_{src}, F)` -> output :math:`(N_{dst}, F)` on ``x``'s device.
    """
    check_features(x, csr.num_cols)
    slice_width = check_positive_int(slice_width, 'slice_width')
    device = x.device if device is None else torch.device(device)
    if out is None:
        out = x.new_empty(csr.num_rows, x.size(1))
    else:
        check_out(out, csr.num_rows, x, contiguous=False)
    if device.type == 'cuda' and x.device.type != 'cuda':
        return _sliced_spmm_from_host(csr, x, slice_width, device, out)
    for start in range(0, x.size(1), slice_width):
        end = min(start + slice_width, x.size(1))
        out[:, start:end].copy_(_product(csr, x[:, start:end].contiguous()))
    return out


def _product(csr, x: Tensor) -> Tensor:
    return csr.spmm(x) if isinstance(csr, RowBlockStream) else spmm(csr, x)


def _sliced_spmm_from_host(csr, x: Tensor, slice_width: int, device, out: Tensor) -> Tensor:
    """:func:`sliced_spmm` for host ``x`` and ``out`` with products on a CUDA ``device``.

    Slice :math:`k` uses the pinned (input, result) staging pair :math:`k \bmod 2`. Its upload, its
    product and its download are queued without blocking, then the host waits for slice
    :math:`k-1`'s event and copies its result into ``out``: when slice :math:`k+1` refills a pair,
    the event of the slice that last used it (:math:`k-1`) has completed, so no copy still in
    flight reads or writes a buffer the host is changing.
    """
    stream = torch.cuda.current_stream(device)
    pairs: list[tuple[Tensor, Tensor] | None] = [None, None]
    in_flight = None  # (event, result staging, start, end) of the previous slice
    for index, start in enumerate(range(0, x.size(1), slice_width)):
        end = min(start + slice_width, x.size(1))
        pair = pairs[index % 2]
        if pair is None or pair[0].size(1) != end - start:
            pair = (
                torch.empty(x.size(0), end - start, dtype=x.dtype, pin_memory=True),
                torch.empty(out.size(0), end - start, dtype=x.dtype, pin_memory=True),
            )
            pairs[index % 2] = pair
        pair[0].copy_(x[:, start:end])
        result = _product(csr, pair[0].to(device, non_blocking=True))
        pair[1].copy_(result, non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)
        if in_flight is not None:
            _drain(in_flight, out)
        in_flight = (done, pair[1], start, end)
    if in_flight is not None:
        _drain(in_flight, out)
    return out


def _drain(in_flight, out: Tensor) -> None:
    done, result, start, end = in_flight
    done.synchronize()  # its upload, product and download have completed
    out[:, start:end].copy_(result)
