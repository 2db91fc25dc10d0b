"""Full-matrix quasi-Newton optimisers of the self-scaled Broyden family (BFGS, SSBFGS, SSBroyden).

They keep a dense approximation H (P x P, float64) of the inverse Hessian of the loss, step along
d = -H g with a strong-Wolfe line search (torch's, the one its L-BFGS uses), and after each step
s = x_{k+1} - x_k, y = g_{k+1} - g_k update H within the Broyden family in its self-scaled form
(Urban, Stefanou & Pons 2024, "Unveiling the optimization process of Physics Informed Neural
Networks: How accurate and competitive can PINNs be?", J. Comput. Phys. 113656, arXiv 2405.04230,
sec. 3; restated for PINNs and PIKANs by Kiyani et al. 2025, "Which optimizer works best for
physics-informed neural networks and Kolmogorov-Arnold networks?", arXiv 2501.16371, sec. 2):

    H+ = (1 / tau) [H - H y y^T H / (y^T H y) + phi (y^T H y) v v^T] + rho s s^T,
    v = rho s - H y / (y^T H y),   rho = 1 / (y^T s),

with the scalars (b is s^T H^-1 s rho, read from the line search as -alpha rho s^T g_k)

    h = rho y^T H y,   b = -alpha rho s^T g_k,   a = b h - 1 (>= 0 while H is positive definite).

phi = 1, tau = 1 is BFGS; phi = 1, tau = min(1, 1/b) is SSBFGS with Al-Baali's scaling (Urban et
al., eq. 11; Oren-Luenberger's tau = 1/b is not used); SSBroyden takes phi and tau from
Al-Baali's choice of the Broyden parameter theta (Urban et al., eqs. 13-23, the authors'
"SSBroyden2"):

    c = sqrt(a / (1 + a)),  rho- = min(1, h (1 - c)),  theta- = (rho- - 1) / a,  theta+ = 1 / rho-,
    theta = max(theta-, min(theta+, (1 - b) / b)),     phi = (1 - theta) / (1 + a theta),
    sigma = 1 + a theta,  sigma_n = |sigma|^(1 / (1 - n)),  rho~ = min(1, 1 / b),
    tau = min(rho~ sigma_n, sigma) if theta <= 0 else rho~ min(sigma_n, 1 / theta),

n the number of parameters. On the first update H = I is replaced by the usual initial scaling:
(s^T y / y^T y) I before a BFGS/SSBFGS update, tau = h / (1 + a theta) for SSBroyden.

`step(closure)` follows torch's L-BFGS: the closure zeroes the gradients, computes the loss, calls
backward and returns the loss; one step runs up to `max_iter` iterations (line searches) and
returns the loss at its start. H, the last gradient and the counters live in `state`, so
consecutive steps continue one run.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable
from typing import final

import torch
from torch import Tensor
from torch.optim.lbfgs import _strong_wolfe

from kanpde.optim.flat import FlatParams
from kanpde.validate import ConfigError, check_int, check_number

MAX_PARAMS = 20_000  # a dense P x P float64 matrix: 3.2 GB at the limit
LINE_SEARCH_TOLERANCE = 1e-14  # the line search stops zooming once the step's bracket moves x less


def check_dense(n_params: int, name: str, limit: int = MAX_PARAMS) -> None:
    """ConfigError unless a dense P x P float64 matrix of `n_params` is within `limit`."""
    if n_params > limit:
        gb = n_params**2 * 8 / 1e9
        raise ConfigError(f"{name} keeps a dense P x P matrix: P = {n_params} parameters ({gb:.1f} GB) "
                          f"is more than the limit P <= {limit}; use lbfgs")


class DenseQuasiNewton(torch.optim.Optimizer, abc.ABC):
    """A quasi-Newton method with a dense inverse Hessian and a strong-Wolfe line search; a
    subclass states its update's (tau, phi), see the module docstring.

    Args:
        params: the parameters (P = their total size, at most `MAX_PARAMS`).
        lr: the first trial step of each line search (1 takes the quasi-Newton step); the very
            first iteration tries min(1, 1/|g|_1) lr along -g, as torch's L-BFGS.
        max_iter: iterations per `step`.
        max_eval: loss evaluations per `step` (default 1.25 max_iter).
        tolerance_grad: stop when max |g| falls to this.
        tolerance_change: stop when the loss or the step changes less than this.
        c1, c2: the strong-Wolfe constants (sufficient decrease, curvature).
    """

    name = "quasi-Newton"

    def __init__(self, params: Iterable[Tensor], lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-32, tolerance_change: float = 1e-32, c1: float = 1e-4, c2: float = 0.9):
        check_number(lr, f"{self.name} lr", positive=True)
        check_int(max_iter, f"{self.name} max_iter", minimum=1)
        max_eval = max_iter * 5 // 4 if max_eval is None else check_int(max_eval, f"{self.name} max_eval", minimum=1)
        check_number(tolerance_grad, f"{self.name} tolerance_grad", minimum=0.0)
        check_number(tolerance_change, f"{self.name} tolerance_change", minimum=0.0)
        if not 0 < c1 < c2 < 1:
            raise ConfigError(f"{self.name} line search needs 0 < c1 < c2 < 1, got c1 = {c1!r}, c2 = {c2!r}")
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, c1=c1, c2=c2)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ConfigError(f"{self.name} takes one parameter group, got {len(self.param_groups)}")
        self._params = self.param_groups[0]["params"]
        self._flat = FlatParams(self._params, torch.float64)
        self.n_params = sum(p.numel() for p in self._params)
        check_dense(self.n_params, self.name)

    # --- what a subclass states -----------------------------------------------------------------

    @abc.abstractmethod
    def coefficients(self, h: float, b: float, first: bool) -> tuple[float, float, float]:
        """(tau, phi, scale) of one update from h = rho y^T H y and b = -alpha rho s^T g_k; H is
        first multiplied by `scale` (the first update's initial scaling; else 1)."""

    # --- the iteration --------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """Up to `max_iter` line-search iterations; returns the loss at the start of the step.

        Args:
            closure: zeroes the gradients, computes the loss, calls backward, returns the loss.
        """
        group = self.param_groups[0]
        closure = torch.enable_grad()(closure)
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        first_loss = closure()
        loss, g = float(first_loss), self._flat.grad()
        evals = 1
        for _ in range(group["max_iter"]):
            if g.abs().max() <= group["tolerance_grad"]:
                break
            H = state.get("H")
            d = -g if H is None else -(H @ g)
            gtd = g.dot(d)
            if gtd > -group["tolerance_change"] and H is not None:  # H lost positive definiteness: restart
                H, state["H"] = None, None
                d, gtd = -g, -g.dot(g)
            t = min(1.0, 1.0 / float(g.abs().sum())) * group["lr"] if H is None else group["lr"]
            new_loss, new_g, t, n = _strong_wolfe(self._flat.along(closure), self._flat.clone(), t, d, loss, g, gtd, c1=group["c1"], c2=group["c2"],
                                                  tolerance_change=LINE_SEARCH_TOLERANCE,
                                                  max_ls=max(1, group["max_eval"] - evals))
            evals += n
            state["n_iter"] += 1
            if not new_loss < loss:  # no decrease along d: restart from -g once, else give up
                if H is None:
                    break
                state["H"] = None
                continue
            self._flat.add_(t, d)
            s, y = t * d, new_g - g
            self._update(state, s, y, g, t)
            change = loss - new_loss
            loss, g = new_loss, new_g
            if change < group["tolerance_change"] or float(s.abs().max()) < group["tolerance_change"]:
                break
            if evals >= group["max_eval"]:
                break
        state["func_evals"] += evals
        state["loss"] = loss
        return first_loss

    def _update(self, state: dict, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> None:
        """The self-scaled Broyden-family update of H from step s, gradient change y, the old
        gradient g and the line search's step length alpha (module docstring); skipped when the
        curvature y^T s is not clearly positive."""
        ys = float(y.dot(s))
        if not ys > 1e-12 * float(y.norm() * s.norm()):
            return
        rho = 1.0 / ys
        H = state.get("H")
        first = H is None
        if first:
            H = torch.eye(self.n_params, dtype=torch.float64, device=s.device)
        Hy = H @ y
        yHy = float(y.dot(Hy))
        h, b = rho * yHy, -alpha * rho * float(s.dot(g))
        tau, phi, scale = self.coefficients(h, b, first)
        if scale != 1.0:
            H, Hy, yHy = H * scale, Hy * scale, yHy * scale
        v = rho * s - Hy / yHy
        H = (H - torch.outer(Hy, Hy) / yHy + phi * yHy * torch.outer(v, v)) / tau + rho * torch.outer(s, s)
        state["H"] = (H + H.T) / 2  # keep it symmetric against rounding


@final
class BFGS(DenseQuasiNewton):
    """Plain BFGS (phi = 1, tau = 1) with the initial scaling (s^T y / y^T y) I."""

    name = "bfgs"

    def coefficients(self, h, b, first):
        return 1.0, 1.0, (1.0 / h if first else 1.0)


@final
class SSBFGS(DenseQuasiNewton):
    """Self-scaled BFGS: phi = 1, tau = min(1, 1/b) (Urban et al. 2024, eq. 11)."""

    name = "ssbfgs"

    def coefficients(self, h, b, first):
        if first:
            return 1.0, 1.0, 1.0 / h
        return min(1.0, 1.0 / b), 1.0, 1.0


@final
class SSBroyden(DenseQuasiNewton):
    """Self-scaled Broyden with Al-Baali's theta (Urban et al. 2024, eqs. 13-23; module docstring)."""

    name = "ssbroyden"

    def coefficients(self, h, b, first):
        a = b * h - 1
        if a <= 1e-12:  # H y is parallel to s: the phi term vanishes, any theta is the same update
            theta = 0.0
        else:
            rho_minus = min(1.0, h * (1 - math.sqrt(a / (1 + a))))
            theta = max((rho_minus - 1) / a, min(1 / rho_minus, (1 - b) / b))
        phi = (1 - theta) / (1 + a * theta)
        sigma = 1 + a * theta
        if first:
            return h / sigma, phi, 1.0
        sigma_n = abs(sigma) ** (1.0 / (1 - self.n_params)) if self.n_params > 1 else 1.0
        rho_tilde = min(1.0, 1.0 / b)
        tau = min(rho_tilde * sigma_n, sigma) if theta <= 0 else rho_tilde * min(sigma_n, 1 / theta)
        return tau, phi, 1.0
