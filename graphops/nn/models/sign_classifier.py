"""The shallow inception classifier of SIGN, trained on precomputed operator outputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import BatchNorm1d, Dropout, Linear, Module, ModuleList, PReLU, ReLU

from graphops.ops.validate import check_float, check_positive_int, check_same_device

MODES = ('inception', 'concat-mlp')


def _check_probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f'{name} must be a float in [0, 1), got {type(value).__name__}')
    if not 0.0 <= value < 1.0:
        raise ValueError(f'{name} must lie in [0, 1), got {value}')
    return float(value)


class SIGNClassifier(Module):
    r"""The shallow inception network from the `"SIGN: Scalable Inception Graph Neural Networks"
    <https://arxiv.org/abs/2004.11198>`_ paper, trained on operator outputs computed once
    beforehand (e.g. by :class:`graphops.transforms.SIGN` or the precompute engine).

    With ``mode='inception'`` every operator output :math:`\mathbf{A}_i \mathbf{X}` (the first is
    usually :math:`\mathbf{X}` itself) gets its own branch; the branches are concatenated and
    classified:

    .. math::
        \mathbf{Z} &= \sigma\left( \left[ \mathbf{X} \mathbf{\Theta}_0 \,\Vert\,
        \mathbf{A}_1 \mathbf{X} \mathbf{\Theta}_1 \,\Vert\, \cdots \,\Vert\,
        \mathbf{A}_r \mathbf{X} \mathbf{\Theta}_r \right] \right)

        \mathbf{Y} &= \xi \left( \mathbf{Z} \mathbf{\Omega} \right)

    with :math:`\sigma` a PReLU and :math:`\xi` the softmax. A branch
    :math:`\mathbf{\Theta}_i` is ``branch_layers`` linear layers (each followed by an optional
    BatchNorm; PReLU and dropout between them), :math:`\mathbf{\Omega}` is ``head_layers`` linear
    layers (optional BatchNorm, PReLU and dropout between them), and dropout is applied to the
    inputs (``input_dropout``) and to :math:`\mathbf{Z}` (``dropout``). With one layer each this
    is exactly the paper's two equations.

    ``mode='concat-mlp'`` is the model the authors trained on ogbn-papers100M: a plain MLP on
    :math:`[\mathbf{X} \Vert \mathbf{A}_1 \mathbf{X} \Vert \cdots \Vert \mathbf{A}_r \mathbf{X}]`
    whose hidden layers are Linear, BatchNorm, ReLU, dropout (``head_layers=3``,
    ``hidden_channels=512``, ``dropout=0.3`` reproduce it).

    :meth:`forward` returns the logits :math:`\mathbf{Z}\mathbf{\Omega}`; the softmax
    :math:`\xi` belongs in the loss (:func:`torch.nn.functional.cross_entropy`).

    Args:
        in_channels (int or list of int): Feature size of each operator output; one int when all
            are the same size.
        hidden_channels (int): Width of every hidden layer and of each branch's output.
        out_channels (int): Number of classes.
        num_operators (int): How many tensors :meth:`forward` receives: ``1 + K`` for
            ``SIGN(K)``'s ``[data.x] + [data[f'x{i}'] for i in range(1, K + 1)]`` (PyG's keys),
            in general ``1 + len(transform.keys())``; with ``SIGN(..., sign_keys=True)``,
            ``[data.x] + [data[k] for k in data.sign_keys]`` on a ``Data`` or a ``Batch``.
        mode (str, optional): ``'inception'`` (one branch per operator) or ``'concat-mlp'`` (one
            MLP on the concatenated features). (default: ``'inception'``)
        branch_layers (int, optional): Linear layers per branch; ``'concat-mlp'`` has no
            branches and accepts only ``1``. (default: ``1``)
        head_layers (int, optional): Linear layers of the classifier head (the whole MLP for
            ``'concat-mlp'``). ``None`` means ``1`` for ``'inception'`` (the paper's
            :math:`\mathbf{\Omega}`) and ``3`` for ``'concat-mlp'`` (the authors' MLP).
            (default: ``None``)
        dropout (float, optional): Dropout after every hidden activation and on :math:`\mathbf{Z}`.
            (default: ``0.5``)
        input_dropout (float, optional): Dropout on the operator outputs as they come in.
            (default: ``0.0``)
        batch_norm (bool, optional): BatchNorm after each hidden linear layer (and each branch's
            output layer). (default: ``True``)

    Shapes:
        - **input:** a list of ``num_operators`` node feature tensors
          :math:`(|\mathcal{V}|, F_i)`: ``data.x`` then the operator outputs in the transform's
          ``keys()`` order (``data.sign_keys`` order when recorded)
        - **output:** logits :math:`(|\mathcal{V}|, C)`
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        hidden_channels: int,
        out_channels: int,
        num_operators: int,
        mode: str = 'inception',
        branch_layers: int = 1,
        head_layers: int | None = None,
        dropout: float = 0.5,
        input_dropout: float = 0.0,
        batch_norm: bool = True,
    ):
        super().__init__()
        num_operators = check_positive_int(num_operators, 'num_operators')
        if isinstance(in_channels, int) and not isinstance(in_channels, bool):
            channels = [check_positive_int(in_channels, 'in_channels')] * num_operators
        elif isinstance(in_channels, Sequence) and not isinstance(in_channels, str):
            channels = [
                check_positive_int(c, f'in_channels[{i}]') for i, c in enumerate(in_channels)
            ]
            if len(channels) != num_operators:
                raise ValueError(
                    f'in_channels lists {len(channels)} sizes but num_operators = {num_operators}; '
                    'give one size per operator output (or a single int)'
                )
        else:
            raise TypeError(
                f'in_channels must be an int or a list of ints, got {type(in_channels).__name__}'
            )
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        branch_layers = check_positive_int(branch_layers, 'branch_layers')
        if mode == 'concat-mlp' and branch_layers != 1:
            raise ValueError(
                "mode='concat-mlp' has no branches, so branch_layers must be 1; "
                'set head_layers for the depth of its MLP'
            )
        if head_layers is None:
            head_layers = 1 if mode == 'inception' else 3
        head_layers = check_positive_int(head_layers, 'head_layers')
        if not isinstance(batch_norm, bool):
            raise TypeError(f'batch_norm must be a bool, got {type(batch_norm).__name__}')

        self.in_channels = in_channels if isinstance(in_channels, int) else list(channels)
        self.channels = channels
        self.hidden_channels = check_positive_int(hidden_channels, 'hidden_channels')
        self.out_channels = check_positive_int(out_channels, 'out_channels')
        self.num_operators = num_operators
        self.mode = mode
        self.branch_layers = branch_layers
        self.head_layers = head_layers
        self.dropout = _check_probability(dropout, 'dropout')
        self.input_dropout = _check_probability(input_dropout, 'input_dropout')
        self.batch_norm = batch_norm

        self.input_drop = Dropout(self.input_dropout)
        if mode == 'inception':
            self.branches = ModuleList(
                ModuleList(self._stack(c, hidden_channels, branch_layers, PReLU, last_norm=True))
                for c in channels
            )
            self.act = PReLU()
            self.drop = Dropout(self.dropout)
            head_in, head_act = num_operators * hidden_channels, PReLU
        else:
            self.branches = ModuleList()
            head_in, head_act = sum(channels), ReLU
        self.head = ModuleList(self._stack(head_in, out_channels, head_layers, head_act))
        self.reset_parameters()

    def _stack(self, first: int, last: int, depth: int, act, last_norm: bool = False) -> list:
        """Linear layers with (BatchNorm, activation, dropout) between them."""
        layers: list[Module] = []
        for i in range(depth):
            is_last = i == depth - 1
            layers.append(
                Linear(
                    first if i == 0 else self.hidden_channels,
                    last if is_last else self.hidden_channels,
                )
            )
            if self.batch_norm and (not is_last or last_norm):
                layers.append(BatchNorm1d(self.hidden_channels))
            if not is_last:
                layers += [act(), Dropout(self.dropout)]
        return layers

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def _check_inputs(self, xs) -> list[Tensor]:
        if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)):
            raise TypeError(
                f'xs must be a list of tensors, got {type(xs).__name__}; pass [data.x] and the '
                "transform's outputs in its keys() order, e.g. [data.x] + [data[k] for k in "
                'data.sign_keys] with SIGN(..., sign_keys=True)'
            )
        if len(xs) != self.num_operators:
            raise ValueError(
                f'xs has {len(xs)} tensors but the model was built for num_operators = '
                f'{self.num_operators}; pass one tensor per operator output'
            )
        weight = self.head[0].weight
        for i, (x, channels) in enumerate(zip(xs, self.channels)):
            name = f'xs[{i}]'
            check_float(x, name)
            if x.dim() != 2:
                raise ValueError(
                    f'{name} must be 2-dimensional [num_nodes, features], got {tuple(x.shape)}'
                )
            if x.size(1) != channels:
                raise ValueError(
                    f'{name} has {x.size(1)} features but in_channels expects {channels} there'
                )
            if x.size(0) != xs[0].size(0):
                raise ValueError(
                    f'{name} has {x.size(0)} rows but xs[0] has {xs[0].size(0)}; every operator '
                    'output must cover the same nodes in the same order'
                )
            if x.dtype != weight.dtype:
                raise TypeError(
                    f'{name} is {x.dtype} but the model parameters are {weight.dtype}; cast the '
                    f'inputs (e.g. {name}.to({weight.dtype})) or the model (model.to(dtype))'
                )
        check_same_device(
            [('model parameters', weight), *((f'xs[{i}]', x) for i, x in enumerate(xs))]
        )
        if xs[0].size(0) == 0:
            raise ValueError('xs has no rows; pass at least one node')
        return list(xs)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        """Returns logits for the nodes whose operator outputs ``xs`` holds."""
        xs = self._check_inputs(xs)
        if self.mode == 'inception':
            hs = []
            for x, branch in zip(xs, self.branches):
                h = self.input_drop(x)
                for layer in branch:
                    h = layer(h)
                hs.append(h)
            h = self.drop(self.act(torch.cat(hs, dim=-1)))
        else:
            h = self.input_drop(torch.cat(xs, dim=-1))
        for layer in self.head:
            h = layer(h)
        return h

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, '
            f'{self.out_channels}, num_operators={self.num_operators}, mode={self.mode!r}, '
            f'branch_layers={self.branch_layers}, head_layers={self.head_layers}, '
            f'dropout={self.dropout}, input_dropout={self.input_dropout}, '
            f'batch_norm={self.batch_norm})'
        )
