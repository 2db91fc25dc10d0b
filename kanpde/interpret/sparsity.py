"""Edge activation scales and the sparsity regulariser of a KAN (arXiv 2404.19756, sec. 2.5.1).

The scale of edge i -> j of layer l on samples x_s is its mean absolute activation,
A_l[i, j] = 1/N sum_s |phi_ij(h_i(x_s))| (eq. 2.17). The regulariser is

    R = sum_l ( |A_l|_1 + mu S(A_l) ) + nu sum_l C_l,

with |A_l|_1 = sum_ij A_l[i, j], S the entropy of p = A_l / |A_l|_1 (eq. 2.18, -sum p log p) and
C_l = sum_ij mean_k |c_ijk| pykan's small L1 on spline coefficients. The trainer minimises
loss + lambda R (eq. 2.19; pykan's lamb, lamb_entropy = mu, lamb_coef = nu).

Scales follow the network as it computes: masks and symbolic edges apply, multiplication nodes
are combined (`KAN.combine`). Pruned edges have scale 0 and add nothing to R.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kanpde.nn.kan import KAN


def edge_activations(model: KAN, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Every layer's input and edge activations for network input x, with gradient.

    Args:
        model: a KAN.
        x: (N, width[0]).

    Returns:
        per layer l, (h, phi): h (N, width[l]) its input node values, phi (N, n_in, n_out) its
        edges' outputs phi_ij(h_i) (n_out counts subnodes).
    """
    out = []
    h = x
    for l, layer in enumerate(model.layers):
        phi = layer.edges(h)  # (N, n_in, n_out)
        out.append((h, phi))
        h = model.combine(l, phi.sum(dim=1) + layer.bias)  # (N, width[l+1])
    return out


def edge_scales(model: KAN, x: Tensor) -> list[Tensor]:
    """A_l = mean over samples of |phi_ij|, with gradient.

    Args:
        model: a KAN.
        x: (N, width[0]) samples.

    Returns:
        per layer, (n_in, n_out) scales; 0 on pruned edges.
    """
    return [phi.abs().mean(dim=0) for _, phi in edge_activations(model, x)]


def entropy(scales: Tensor) -> Tensor:
    """Entropy -sum p log p of p = scales / sum(scales), over all entries (0 log 0 = 0).

    Args:
        scales: non-negative (n_in, n_out) edge scales.

    Returns:
        scalar; 0 when at most one entry is non-zero (or all are 0).
    """
    p = scales / scales.sum().clamp_min(torch.finfo(scales.dtype).tiny)  # (n_in, n_out)
    # where(), not xlogy: the gradient must stay finite (0) at p = 0, e.g. on pruned edges.
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return -(p * safe.log()).sum()


def coef_l1(model: KAN) -> Tensor:
    """pykan's coefficient L1: sum over layers and active spline edges of mean_k |c_ijk|, scalar."""
    return sum(layer.effective_weights()[1].abs().mean(dim=1).sum() for layer in model.layers)


def regularizer(model: KAN, x: Tensor, entropy_weight: float = 2.0, coef_weight: float = 0.0) -> Tensor:
    """R = sum_l (|A_l|_1 + mu S(A_l)) + nu C (see the module docstring), with gradient.

    Args:
        model: a KAN.
        x: (N, width[0]) samples on which the edge scales are measured.
        entropy_weight: mu (pykan's lamb_entropy, default 2).
        coef_weight: nu (pykan's lamb_coef).

    Returns:
        scalar tensor.
    """
    total = x.new_zeros(())
    for a in edge_scales(model, x):  # (n_in, n_out)
        total = total + a.sum() + entropy_weight * entropy(a)
    if coef_weight:
        total = total + coef_weight * coef_l1(model)
    return total
