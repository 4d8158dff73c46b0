"""Dense references for :class:`graphops.nn.models.sign_classifier.SIGNClassifier`, written from
the SIGN paper's equations (https://arxiv.org/abs/2004.11198) and the authors' papers100M MLP.

Everything is evaluation mode (no dropout; BatchNorm uses its running statistics), with weights
passed explicitly as ``[out, in]`` matrices, the layout of ``torch.nn.Linear``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def prelu(x: Tensor, slope: Tensor) -> Tensor:
    """PReLU: ``x`` where positive, ``slope * x`` elsewhere."""
    return x.clamp(min=0) + slope * x.clamp(max=0)


def batch_norm_eval(x: Tensor, mean: Tensor, var: Tensor, gamma: Tensor, beta: Tensor, eps: float):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with fixed statistics."""
    return gamma * (x - mean) / (var + eps).sqrt() + beta


def sign_inception_reference(
    xs: list[Tensor],
    thetas: list[tuple[Tensor, Tensor]],
    sigma_slope: Tensor,
    omega: tuple[Tensor, Tensor],
    branch_norms: list[tuple] | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """The paper's two equations with one layer per branch and one in the head.

    ``Z = PReLU([X_0 Θ_0 + b_0 || ... || X_r Θ_r + b_r])`` (each term optionally batch-normed,
    ``branch_norms[i] = (mean, var, gamma, beta)``) and the logits ``Z Ω + c`` (softmax ``ξ`` left
    to the loss).
    """
    terms = []
    for i, (x, (weight, bias)) in enumerate(zip(xs, thetas)):
        term = x @ weight.T + bias
        if branch_norms is not None:
            term = batch_norm_eval(term, *branch_norms[i], eps)
        terms.append(term)
    z = prelu(torch.cat(terms, dim=1), sigma_slope)
    weight, bias = omega
    return z @ weight.T + bias


def concat_mlp_reference(
    xs: list[Tensor],
    layers: list[tuple[Tensor, Tensor]],
    norms: list[tuple] | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """The authors' papers100M MLP on ``[X || A_1 X || ... || A_r X]``: hidden layers
    ``ReLU(BN(h W^T + b))``, then a linear output layer (logits)."""
    h = torch.cat(xs, dim=1)
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight.T + bias
        if i < len(layers) - 1:
            if norms is not None:
                h = batch_norm_eval(h, *norms[i], eps)
            h = h.clamp(min=0)
    return h
