"""Levenberg-Marquardt on a residual vector: minimise F(theta) = |r(theta)|^2.

Each iteration linearises r at theta with its Jacobian J (R x P) and solves the damped
Gauss-Newton system

    (J^T J + lambda D) delta = -J^T r

by Cholesky, D = diag(J^T J) (Marquardt's scaling, invariant to rescaling a parameter; floored at
1e-12 of its largest entry so that a parameter r does not see keeps it regular) or D = I
(Levenberg's). A step is accepted only when F decreases; lambda follows Nielsen's rule
(H. B. Nielsen 1999, "Damping parameter in Marquardt's method", IMM-REP-1999-05; Madsen,
Nielsen & Tingleff 2004, "Methods for non-linear least squares problems", sec. 3.2),
with the gain ratio rho = (F - F(theta + delta)) / (L(0) - L(delta)) of the actual to the
predicted decrease, L(delta) = |r + J delta|^2, L(0) - L(delta) = lambda delta^T D delta - delta^T J^T r:

    accepted:  lambda *= max(1/3, 1 - (2 rho - 1)^3),  nu = 2;
    rejected:  lambda *= nu,  nu *= 2  (and the next trial solves again, same J).

`step(residual_closure, jacobian_closure=None)` runs up to `max_iter` iterations (one Jacobian
each, trials included) and returns F at its start. residual_closure() -> r (R,) gives the trial
points' residuals (run with autograd enabled, as torch's L-BFGS runs its closure: a residual may
differentiate by autograd itself). The Jacobian comes from jacobian_closure() -> (r, J) when
given (a PDE problem's per-point one, `kanpde.pde.problem.PDEProblem.residual_jacobian`), else
from r's graph (`kanpde.optim.jacobian.jacobian`: min(R, P) backward passes, slow for large R
and P). lambda, nu and the counters live in `state`, so consecutive steps continue one run;
state["loss"] is F after the last accepted step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from kanpde.optim.jacobian import METHODS, jacobian
from kanpde.optim.quasi_newton import check_dense
from kanpde.validate import ConfigError, check_choice, check_int, check_number

MAX_JACOBIAN = 250_000_000  # entries R x P of a float64 Jacobian: 2 GB
SCALINGS = ("marquardt", "levenberg")
MAX_DAMPING = 1e16  # lambda beyond this: no decrease along any damped direction; the step ends
GRAM_LEAF = 256  # columns below which gram() takes one product


def gram(jac: Tensor, out: Tensor | None = None) -> Tensor:
    """J^T J (P, P) of J (R, P) in about 5/8 of one product's work, by halving the columns:

        J = [A B]:  J^T J = [[A^T A, (B^T A)^T], [B^T A, B^T B]],

    one product for the off-diagonal block and the two diagonal blocks again by halving, down to
    `GRAM_LEAF` columns. torch has no symmetric rank-k update (BLAS syrk); this keeps the large
    products (the work of a Levenberg-Marquardt iteration) in the one BLAS torch uses, with its
    threads, on any device. Exactly symmetric outside the leaf blocks.
    """
    n = jac.shape[1]
    if out is None:
        out = torch.empty(n, n, dtype=jac.dtype, device=jac.device)
    if n <= GRAM_LEAF:
        out.copy_(jac.T @ jac)
        return out
    h = n // 2
    a, b = jac[:, :h], jac[:, h:]
    gram(a, out[:h, :h])
    gram(b, out[h:, h:])
    low = b.T @ a  # (P - h, h)
    out[h:, :h] = low
    out[:h, h:] = low.T
    return out


class LevenbergMarquardt(torch.optim.Optimizer):
    """See the module docstring.

    Args:
        params: the parameters (P at most `kanpde.optim.quasi_newton.MAX_PARAMS`; R x P at most
            `MAX_JACOBIAN`).
        max_iter: iterations (Jacobians) per `step`.
        damping: the initial lambda (Marquardt: relative to diag(J^T J); Levenberg: relative to
            its largest entry).
        min_damping: lambda's floor (tiny: Gauss-Newton steps near a zero-residual solution).
        scaling: "marquardt" (D = diag(J^T J)) or "levenberg" (D = I).
        max_tries: damped solves per iteration before the step gives up.
        jacobian: the generic Jacobian's route when no jacobian_closure is given ("auto", "rows",
            "columns"; `kanpde.optim.jacobian`).
        tolerance_grad: stop when max |J^T r| falls to this.
        tolerance_change: stop when F or the step changes less than this.
    """

    def __init__(self, params: Iterable[Tensor], max_iter: int = 1, damping: float = 1e-3, min_damping: float = 1e-15,
                 scaling: str = "marquardt", max_tries: int = 30, jacobian: str = "auto",
                 tolerance_grad: float = 1e-32, tolerance_change: float = 1e-32):
        check_int(max_iter, "lm max_iter", minimum=1)
        check_number(damping, "lm damping", positive=True)
        check_number(min_damping, "lm min_damping", minimum=0.0)
        check_choice(scaling, "lm scaling", SCALINGS)
        check_int(max_tries, "lm max_tries", minimum=1)
        check_choice(jacobian, "lm jacobian", METHODS)
        check_number(tolerance_grad, "lm tolerance_grad", minimum=0.0)
        check_number(tolerance_change, "lm tolerance_change", minimum=0.0)
        defaults = dict(max_iter=max_iter, damping=damping, min_damping=min_damping, scaling=scaling,
                        max_tries=max_tries, jacobian=jacobian, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ConfigError(f"lm takes one parameter group, got {len(self.param_groups)}")
        self._params = self.param_groups[0]["params"]
        self.n_params = sum(p.numel() for p in self._params)
        check_dense(self.n_params, "lm")

    def _set(self, start: list[Tensor], delta: Tensor | None = None) -> None:
        """theta = start + delta (start itself for None)."""
        offset = 0
        for p, p0 in zip(self._params, start):
            n = p.numel()
            p.copy_(p0 if delta is None else p0 + delta[offset : offset + n].view_as(p).to(p.dtype))
            offset += n

    def _jacobian(self, residual_closure, jacobian_closure) -> tuple[Tensor, Tensor]:
        if jacobian_closure is not None:
            with torch.enable_grad():
                r, jac = jacobian_closure()
        else:
            r, jac = jacobian(residual_closure, self._params, self.param_groups[0]["jacobian"])
        if jac.shape != (r.numel(), self.n_params):
            raise ValueError(f"lm: the Jacobian is {tuple(jac.shape)}, expected (R, P) = ({r.numel()}, {self.n_params})")
        return r.detach().reshape(-1).to(torch.float64), jac.to(torch.float64)

    @torch.no_grad()
    def step(self, residual_closure: Callable[[], Tensor],
             jacobian_closure: Callable[[], tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """Up to `max_iter` Levenberg-Marquardt iterations; returns |r|^2 at the start.

        Args:
            residual_closure: () -> r (R,), differentiable w.r.t. the parameters (its graph is
                used only without jacobian_closure).
            jacobian_closure: () -> (r (R,), J (R, P)), J's columns in the parameters' order.
        """
        group = self.param_groups[0]
        # with a graph, as torch's L-BFGS: a residual may itself differentiate (u_xxx by autograd)
        residual_closure = torch.enable_grad()(residual_closure)
        state = self.state[self._params[0]]
        for key in ("n_iter", "func_evals", "jac_evals"):
            state.setdefault(key, 0)
        if "n_residuals" not in state:  # refuse before building a Jacobian that does not fit
            state["n_residuals"] = n_rows = residual_closure().numel()
            if n_rows * self.n_params > MAX_JACOBIAN:
                raise ConfigError(f"lm builds a dense R x P Jacobian: R = {n_rows} residuals x P = {self.n_params} "
                                  f"parameters is more than the limit R x P <= {MAX_JACOBIAN}")
        first_loss = None
        for _ in range(group["max_iter"]):
            r, jac = self._jacobian(residual_closure, jacobian_closure)
            state["jac_evals"] += 1
            state["n_iter"] += 1
            loss = float(r.dot(r))
            if first_loss is None:
                first_loss = loss
            grad = jac.T @ r  # (P,) half the gradient of F
            if float(grad.abs().max()) <= group["tolerance_grad"]:
                break
            a = gram(jac)  # (P, P)
            diag = a.diagonal()
            if group["scaling"] == "marquardt":
                d = diag.clamp(min=1e-12 * float(diag.max()) + 1e-300)
            else:
                d = torch.ones_like(diag)
            if "damping" not in state:
                scale = 1.0 if group["scaling"] == "marquardt" else float(diag.max())
                state["damping"], state["nu"] = group["damping"] * scale, 2.0
            accepted = False
            start = [p.detach().clone() for p in self._params]
            for _ in range(group["max_tries"]):
                lam = state["damping"]
                factor, info = torch.linalg.cholesky_ex(a + lam * torch.diag(d))
                if int(info) == 0:
                    delta = torch.cholesky_solve(-grad.unsqueeze(1), factor).squeeze(1)
                    predicted = lam * float(delta.dot(d * delta)) - float(delta.dot(grad))
                    self._set(start, delta)
                    new_r = residual_closure().detach().reshape(-1).to(torch.float64)
                    state["func_evals"] += 1
                    new_loss = float(new_r.dot(new_r))
                    if new_loss < loss and predicted > 0:
                        rho = (loss - new_loss) / predicted
                        state["damping"] = max(lam * max(1 / 3, 1 - (2 * rho - 1) ** 3), group["min_damping"])
                        state["nu"] = 2.0
                        accepted = True
                        break
                    self._set(start)
                state["damping"], state["nu"] = lam * state["nu"], state["nu"] * 2
                if state["damping"] > MAX_DAMPING:
                    break
            if not accepted:
                state["damping"] = min(state["damping"], MAX_DAMPING)
                break
            state["loss"] = new_loss
            if loss - new_loss < group["tolerance_change"] or float(delta.abs().max()) < group["tolerance_change"]:
                break
        if "loss" not in state:
            state["loss"] = first_loss
        return torch.tensor(first_loss, dtype=torch.float64)
