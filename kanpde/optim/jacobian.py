"""The Jacobian of a residual vector r(theta) given only as a closure: what Levenberg-Marquardt
falls back to when the problem cannot give it point by point (`kanpde.pde.jacobian`).

Two routes, both from one evaluation of r with its graph:

* "rows" (reverse mode): J's rows, R backward passes batched with
  `torch.autograd.grad(..., is_grads_batched=True)`;
* "columns" (forward mode by double backward): g(u) = J^T u is a backward pass with a graph, linear
  in u; J e_j = d(g(u)^T e_j)/du is one backward through it per column, P of them batched.

Each costs about min(R, P) passes over the whole batch, whatever the batching. On the paper's
Poisson problem (R = 10,800 residuals, KAN [2, 10, 1], G = 5, P = 281; one thread, AMD EPYC):
"columns" 73 s, "rows" ~1,300 s (extrapolated from two chunks), torch.func.jacfwd through
functional_call 46 s, torch.func.jacrev through it > 800 s, against 0.3 s for the per-point
route (2.0 s at G = 40, P = 1331). "auto" takes rows when R <= P, else columns. Both run the
model's torch path: the C++ kernel's first-order backward cannot be batched
(`kanpde.nn.kernel.switched(False)` around the closure; with the kernel, batched rows fail with
"Cannot access data pointer").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kanpde.nn import kernel
from kanpde.validate import check_choice

METHODS = ("auto", "rows", "columns")
CHUNK = 256  # backward passes per batched call


def flat(tensors: Sequence[Tensor | None], like: Sequence[Tensor], batch: int | None = None) -> Tensor:
    """Flatten per-parameter tensors (zeros for None) into (P,), or (batch, P) when batched."""
    if batch is None:
        return torch.cat([(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(tensors, like)])
    return torch.cat([(p.new_zeros(batch, p.numel()) if t is None else t.reshape(batch, -1))
                      for t, p in zip(tensors, like)], dim=1)


def jacobian(residual_closure: Callable[[], Tensor], params: Sequence[Tensor], method: str = "auto",
             chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """r and J = dr/dtheta of a residual closure.

    Args:
        residual_closure: () -> r (R,), differentiable w.r.t. `params`.
        params: the P parameters' tensors (J's columns follow their order, each flattened).
        method: "rows", "columns" or "auto" (see the module docstring).
        chunk: rows or columns per batched backward.

    Returns:
        r (R,) detached, J (R, P) float64.
    """
    check_choice(method, "lm jacobian", METHODS)
    with torch.enable_grad(), kernel.switched(False):
        r = residual_closure()
        n_rows, n_cols = r.numel(), sum(p.numel() for p in params)
        if method == "auto":
            method = "rows" if n_rows <= n_cols else "columns"
        if method == "rows":
            blocks = []
            for start in range(0, n_rows, chunk):
                eye = _unit_rows(start, min(chunk, n_rows - start), n_rows, r)
                grads = torch.autograd.grad(r, params, eye, is_grads_batched=True, retain_graph=True, allow_unused=True)
                blocks.append(flat(grads, params, len(eye)))
            jac = torch.cat(blocks)
        else:
            u = torch.zeros_like(r, requires_grad=True)
            g = flat(torch.autograd.grad(r, params, u, create_graph=True, allow_unused=True), params)
            blocks = []
            for start in range(0, n_cols, chunk):
                eye = _unit_rows(start, min(chunk, n_cols - start), n_cols, g)
                if g.requires_grad:
                    col = torch.autograd.grad(g, u, eye, is_grads_batched=True, retain_graph=True, allow_unused=True)[0]
                else:  # r does not depend on the parameters at all
                    col = None
                blocks.append(r.new_zeros(len(eye), n_rows) if col is None else col)
            jac = torch.cat(blocks).T
    return r.detach(), jac.to(torch.float64)


def _unit_rows(start: int, n: int, size: int, like: Tensor) -> Tensor:
    """(n, size) rows start .. start + n - 1 of the identity."""
    eye = like.new_zeros(n, size)
    eye[torch.arange(n), start + torch.arange(n)] = 1
    return eye
