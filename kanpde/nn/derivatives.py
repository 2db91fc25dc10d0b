"""Derivatives of a model u(x): value, gradient and second derivatives, two ways.

* Forward propagation ("jets"): a model that implements `jet(x, second)` pushes
  (u, grad u, second derivatives) through its layers in one pass; the parameters then need only
  an ordinary first-order backward. KAN and MLP both do this.
* Nested autograd: works for any `torch.nn.Module`; the reference the fast path is tested against.

Second derivatives come in one of three layouts ("second" modes), each a list of symmetric
d x d weight matrices Q_p, the p-th channel being sum_ab Q_p[a, b] d2u/dx_a dx_b:
  "laplacian": one channel, Q = I;  "diag": d channels, Q_a = e_a e_a^T;
  "full": d (d + 1) / 2 channels, the upper triangle (a <= b), Q = (e_a e_b^T + e_b e_a^T) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kanpde.nn import kernel

SECOND_MODES = ("none", "laplacian", "diag", "full")


def pairs(mode: str, dim: int) -> list[tuple[int, int]]:
    """Index pairs (a, b) of the second-derivative channels of `mode` ("laplacian": empty)."""
    if mode == "diag":
        return [(a, a) for a in range(dim)]
    if mode == "full":
        return [(a, b) for a in range(dim) for b in range(a, dim)]
    return []


def second_weights(mode: str, dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The matrices Q_p of a second mode.

    Returns:
        (P, dim, dim); P = 0 for "none", 1 for "laplacian", dim for "diag", dim (dim+1)/2 "full".
    """
    if mode not in SECOND_MODES:
        raise ValueError(f"second-derivative mode {mode!r} is not one of {SECOND_MODES}")
    if mode == "laplacian":
        return torch.eye(dim, dtype=dtype, device=device).unsqueeze(0)
    q = torch.zeros(len(pairs(mode, dim)), dim, dim, dtype=dtype, device=device)
    for p, (a, b) in enumerate(pairs(mode, dim)):
        q[p, a, b] += 0.5
        q[p, b, a] += 0.5
    return q


@dataclass(frozen=True)
class Jet:
    """A function's value and derivatives at N points.

    Attributes:
        value: (N, m) outputs.
        grad: (N, m, d) first derivatives du_c/dx_a.
        second: (N, m, P) second-derivative channels of `mode` (P = 0 for "none").
        mode: the second-derivative layout (see module docstring).
    """

    value: Tensor
    grad: Tensor
    second: Tensor
    mode: str


def input_jet(x: Tensor, mode: str) -> Jet:
    """The jet of the identity map x -> x, the start of forward propagation.

    Args:
        x: (N, d) points.
        mode: second-derivative layout.

    Returns:
        Jet with value x (N, d), grad I (N, d, d), second 0 (N, d, P).
    """
    n, d = x.shape
    eye = torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
    p = {"none": 0, "laplacian": 1}.get(mode, len(pairs(mode, d)))
    return Jet(x, eye, x.new_zeros(n, d, p), mode)


def silu_jet(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """silu(x) = x sigmoid(x) and its first two derivatives, elementwise."""
    s = torch.sigmoid(x)
    return x * s, s * (1 + x * (1 - s)), s * (1 - s) * (2 + x * (1 - 2 * s))


def quadratic(grad: Tensor, mode: str, dim: int = -1) -> Tensor:
    """sum_ab Q_p[a, b] g_a g_b per channel p: the chain rule's (dh)^T Q_p dh term.

    Computed per mode directly (|g|^2, g_a^2 or g_a g_b) rather than through the Q matrices.

    Args:
        grad: gradients of intermediate quantities, the d components along `dim`.
        mode: second-derivative layout.
        dim: the axis of the gradient components.

    Returns:
        the same shape with P entries along `dim`.
    """
    if mode == "laplacian":
        return (grad * grad).sum(dim=dim, keepdim=True)
    if mode == "diag":
        return grad * grad
    if mode == "full":
        a, b = zip(*pairs(mode, grad.shape[dim]))
        ia, ib = (torch.tensor(v, device=grad.device) for v in (a, b))
        return grad.index_select(dim, ia) * grad.index_select(dim, ib)
    return grad.narrow(dim, 0, 0)


def autograd_jet(model: nn.Module, x: Tensor, mode: str) -> Jet:
    """Value and derivatives of `model` at x by (nested) autograd, keeping the graph.

    Args:
        model: maps (N, d) -> (N, m).
        x: (N, d) points (not modified; a leaf copy that requires grad is made, unless x already
            requires grad: then derivatives are taken w.r.t. x itself, so they can be differentiated
            again w.r.t. x).
        mode: second-derivative layout.

    Returns:
        Jet whose tensors are differentiable w.r.t. the model's parameters.
    """
    # Off for speed, not correctness: every backward here builds a graph, so the kernel's would
    # run its torch recomputation (`kernel.torch_layer_jet`) on top of the kernel's forward;
    # the same jet, about 1.5x slower.
    with kernel.switched(False):
        return _autograd_jet(model, x, mode)


def _autograd_jet(model: nn.Module, x: Tensor, mode: str) -> Jet:
    if not x.requires_grad:  # points that already carry a graph keep it (higher derivatives on top)
        x = x.detach().requires_grad_(True)
    u = model(x)  # (N, m)
    n, m = u.shape
    d = x.shape[1]
    grads = []
    for c in range(m):
        (g,) = torch.autograd.grad(u[:, c].sum(), x, create_graph=True, allow_unused=True)
        grads.append(torch.zeros_like(x) if g is None else g)  # (N, d); None: u does not depend on x
    grad = torch.stack(grads, dim=1)  # (N, m, d)
    if mode == "none":
        return Jet(u, grad, u.new_zeros(n, m, 0), mode)
    hess = u.new_zeros(n, m, d, d)
    for c in range(m):
        for a in range(d):
            if not grad.requires_grad:  # affine in x: no second derivatives
                break
            (h,) = torch.autograd.grad(grad[:, c, a].sum(), x, create_graph=True, allow_unused=True)
            if h is not None:  # (N, d)
                hess[:, c, a, :] = h
    q = second_weights(mode, d, x.dtype, x.device)  # (P, d, d)
    second = torch.einsum("nmab,pab->nmp", hess, q)
    return Jet(u, grad, second, mode)


def func_jet(fn, x: Tensor, mode: str) -> Jet:
    """Value and derivatives of a pointwise function by torch.func (per point, vmapped): what
    `autograd_jet` gives, but usable inside a torch.func transform, where autograd.grad is not
    (e.g. a hard constraint's closed forms under `kanpde.pde.jacobian`'s per-point Jacobian).

    Args:
        fn: (N, d) -> (N, m), each row depending on its own point only.
        x: (N, d) points.
        mode: second-derivative layout.

    Returns:
        Jet with value (N, m), grad (N, m, d), second (N, m, P).
    """
    def one(z):  # (d,) -> (m,)
        return fn(z.unsqueeze(0)).squeeze(0)

    u = fn(x)
    grad = torch.func.vmap(torch.func.jacfwd(one))(x)  # (N, m, d)
    if mode == "none":
        return Jet(u, grad, u.new_zeros(u.shape[0], u.shape[1], 0), mode)
    hess = torch.func.vmap(torch.func.jacfwd(torch.func.jacfwd(one)))(x)  # (N, m, d, d)
    q = second_weights(mode, x.shape[1], x.dtype, x.device)
    return Jet(u, grad, torch.einsum("nmab,pab->nmp", hess, q), mode)


def jet(model: nn.Module, x: Tensor, mode: str = "laplacian", fast: bool = True) -> Jet:
    """The model's jet: forward propagation when it supports it and `fast`, else autograd.

    Args:
        model: maps (N, d) -> (N, m); forward propagation is used if it has a `jet` method.
        x: (N, d) points.
        mode: second-derivative layout.
        fast: allow the forward-propagation path.
    """
    if fast and hasattr(model, "jet"):
        return model.jet(x, mode)
    return autograd_jet(model, x, mode)
