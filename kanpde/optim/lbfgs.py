"""L-BFGS as torch's `torch.optim.LBFGS` runs it, with the direction from the compact form.

torch computes the quasi-Newton direction d = -H g by the two-loop recursion: with a history of
m = 100 pairs that is 4m small vector operations per iteration, each a Python call and a tensor
dispatch. On kanpde's default Poisson run (731 parameters, 2,169 evaluations) that overhead cost
6.7 ms per evaluation, 15 s of 89 s. The same H, the BFGS recursion from H0 = gamma I over the
stored pairs, has the compact form of Byrd, Nocedal & Schnabel (1994, "Representations of
quasi-Newton matrices and their use in limited memory methods", Math. Prog. 63, eq. 3.1), the
one L-BFGS-B uses:

    H = gamma I + [S  gamma Y] [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S^T; gamma Y^T],

S and Y (n x k) the last k steps s_i and gradient changes y_i, oldest first, R the upper triangle
of S^T Y (R_ij = s_i^T y_j, i <= j), D its diagonal, gamma = s^T y / y^T y of the newest pair.
With a = S^T g, b = Y^T g, u = R^-1 a:

    H g = gamma g + S R^-T ((D + gamma Y^T Y) u - gamma b) - gamma Y u,

two (k x n) products, two triangular solves and a few k-vectors: about ten operations whatever
m is. S^T Y and Y^T Y are kept and grown by one row and column per pair.

Everything else is torch's algorithm, step for step: the first iteration's step length
min(1, 1/|g|_1) lr along -g, a pair kept only when y^T s > 1e-10, the strong-Wolfe line search
(torch's own `_strong_wolfe`), the evaluation budget and the stopping tests. The directions equal
the two-loop recursion's to rounding (tests/test_lbfgs.py), so a run follows torch's closely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import final

import torch
from torch import Tensor
from torch.optim.lbfgs import _strong_wolfe

from kanpde.optim.flat import FlatParams
from kanpde.validate import ConfigError, check_int, check_number

CURVATURE_MIN = 1e-10  # a pair is kept only when y^T s exceeds this (torch's threshold)


def _undecorated(method):
    """torch wraps some Optimizer methods in `torch._disable_dynamo`, whose first call imports
    torch._dynamo: 2 s of a run's start-up for an optimiser that is never compiled. The function
    it wraps (functools.wraps keeps it as __wrapped__), or the method itself where there is none."""
    return getattr(method, "__wrapped__", method)


def compact_direction(g: Tensor, S: Tensor, Y: Tensor, SY: Tensor, YY: Tensor, gamma: float) -> Tensor:
    """-H g for the L-BFGS inverse Hessian H of the pairs (S, Y) from H0 = gamma I (module docstring).

    Args:
        g: (n,) gradient.
        S, Y: (k, n) steps and gradient changes, oldest first (k >= 1).
        SY: (k, k) S Y^T, SY[i, j] = s_i . y_j.
        YY: (k, k) Y Y^T.
        gamma: the initial scaling s^T y / y^T y of the newest pair.
    Returns:
        (n,) the direction -H g.
    """
    a, b = S @ g, Y @ g  # (k,)
    R = torch.triu(SY)
    u = torch.linalg.solve_triangular(R, a[:, None], upper=True)[:, 0]
    w = torch.diagonal(SY) * u + gamma * (YY @ u) - gamma * b
    p = torch.linalg.solve_triangular(R.T, w[:, None], upper=False)[:, 0]
    return -(gamma * g + p @ S - gamma * (u @ Y))


@final
class LBFGS(torch.optim.Optimizer):
    """Limited-memory BFGS with torch's options and iteration, the direction in compact form.

    Args:
        params: the parameters (one group).
        lr: the first trial step of each line search (1 takes the quasi-Newton step).
        max_iter: iterations per `step`.
        max_eval: loss evaluations per `step` (default 1.25 max_iter).
        tolerance_grad: stop when max |g| falls to this.
        tolerance_change: stop when the loss, the step or the directional derivative changes less.
        history_size: the pairs kept (m).
        line_search_fn: "strong_wolfe" or None (fixed steps of length lr, as torch's).
    """

    add_param_group = _undecorated(torch.optim.Optimizer.add_param_group)
    zero_grad = _undecorated(torch.optim.Optimizer.zero_grad)
    state_dict = _undecorated(torch.optim.Optimizer.state_dict)
    load_state_dict = _undecorated(torch.optim.Optimizer.load_state_dict)

    def __init__(self, params: Iterable[Tensor], lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None):
        check_number(lr, "lbfgs lr", positive=True)
        check_int(max_iter, "lbfgs max_iter", minimum=1)
        max_eval = max_iter * 5 // 4 if max_eval is None else check_int(max_eval, "lbfgs max_eval", minimum=1)
        check_int(history_size, "lbfgs history_size", minimum=1)
        if line_search_fn not in (None, "strong_wolfe"):
            raise ConfigError(f"lbfgs line_search_fn={line_search_fn!r} is not known; allowed: strong_wolfe, None")
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ConfigError(f"lbfgs takes one parameter group, got {len(self.param_groups)}")
        self._params = self.param_groups[0]["params"]
        self._flat = FlatParams(self._params)
        self._last: tuple | None = None  # (versions, loss, gradient) where the last step ended

    # --- the memory -----------------------------------------------------------------------------

    @staticmethod
    def _remember(state: dict, s: Tensor, y: Tensor, ys: float, m: int) -> None:
        """Append the pair (s, y) to S, Y (dropping the oldest beyond m) and grow S Y^T, Y Y^T."""
        S, Y = state.get("S"), state.get("Y")
        if S is None:
            S, Y = s[None], y[None]
            SY = torch.full((1, 1), ys, dtype=s.dtype, device=s.device)
            YY = (y @ y).reshape(1, 1)
        else:
            keep = slice(1, None) if S.shape[0] == m else slice(None)
            S, Y, SY, YY = S[keep], Y[keep], state["SY"][keep, keep], state["YY"][keep, keep]
            sy_col, ys_row, yy_col = S @ y, Y @ s, Y @ y  # s_i.y_new, y_i.s_new, y_i.y_new
            yy = (y @ y).reshape(1, 1)
            SY = torch.cat([torch.cat([SY, sy_col[:, None]], 1),
                            torch.cat([ys_row, SY.new_tensor([ys])])[None]], 0)
            YY = torch.cat([torch.cat([YY, yy_col[:, None]], 1), torch.cat([yy_col[None], yy], 1)], 0)
            S, Y = torch.cat([S, s[None]]), torch.cat([Y, y[None]])
        state.update(S=S, Y=Y, SY=SY, YY=YY, gamma=ys / float(y @ y))

    @classmethod
    def _adopt(cls, state: dict, m: int) -> None:
        """Rebuild S, Y, S Y^T, Y Y^T from torch's lists old_stps / old_dirs (and drop those)."""
        steps, changes = state.pop("old_stps"), state.pop("old_dirs")
        for key in ("ro", "H_diag", "al"):
            state.pop(key, None)
        for s, y in zip(steps, changes):
            cls._remember(state, s, y, float(y @ s), m)
        if isinstance(state.get("t"), Tensor):
            state["t"] = float(state["t"])

    # --- the iteration --------------------------------------------------------------------------

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self._params)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor], reuse: bool = False) -> Tensor:
        """Up to `max_iter` iterations; returns the loss at the start of the step.

        Args:
            closure: zeroes the gradients, computes the loss, calls backward, returns the loss.
            reuse: the objective is the one the previous step ended on: start from the loss
                and gradient found there instead of evaluating them again (torch's L-BFGS
                always does, one evaluation in ~20 of the default run). Taken only when no
                parameter was changed in place since (their version counters), and never
                across a state_dict round trip.
        """
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change, m = group["tolerance_grad"], group["tolerance_change"], group["history_size"]
        closure = torch.enable_grad()(closure)
        state = self.state[self._params[0]]  # global state, kept on the first parameter as torch does
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        last = self._last if reuse else None
        if last is not None and last[0] == self._versions():
            orig_loss, g = last[1], last[2]
        else:
            orig_loss = closure()
            g = self._flat.grad()
            state["func_evals"] += 1
        loss, evals = float(orig_loss), 1  # a reused evaluation counts against max_eval too
        self._last, fresh = None, True  # fresh: loss and g are at the parameters as they are now
        if g.abs().max() <= tol_grad:
            self._remember_end(loss, g)
            return orig_loss
        if "old_dirs" in state:  # a checkpoint of torch's L-BFGS: its pairs become the compact memory
            self._adopt(state, group["history_size"])
        d, t, prev_g = state.get("d"), state.get("t"), state.get("prev_flat_grad")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -g
                for key in ("S", "Y", "SY", "YY", "gamma"):
                    state.pop(key, None)
            else:
                y, s = g - prev_g, d * t
                ys = float(y @ s)
                if ys > CURVATURE_MIN:
                    self._remember(state, s, y, ys, m)
                d = -g if "S" not in state else compact_direction(
                    g, state["S"], state["Y"], state["SY"], state["YY"], state["gamma"])
            prev_g = g  # never changed in place: the line search returns new tensors
            prev_loss = loss
            t = min(1.0, 1.0 / float(g.abs().sum())) * lr if state["n_iter"] == 1 else lr
            gtd = float(g @ d)
            if gtd > -tol_change:
                break
            if group["line_search_fn"] == "strong_wolfe":
                loss, g, t, n = _strong_wolfe(self._flat.along(closure), self._flat.clone(), t, d, loss, g, gtd,
                                              max_ls=max_eval - evals)
                t = float(t)
                self._flat.add_(t, d)  # to where the line search evaluated loss and g
            else:
                self._flat.add_(t, d)
                n, fresh = 0, False
                if n_iter != max_iter:
                    loss, n, fresh = float(closure()), 1, True
                    g = self._flat.grad()
            evals += n
            state["func_evals"] += n
            if n_iter == max_iter or evals >= max_eval or g.abs().max() <= tol_grad:
                break
            if float((d * t).abs().max()) <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        state.update(d=d, t=t, prev_flat_grad=prev_g, prev_loss=prev_loss)
        if fresh:
            self._remember_end(loss, g)
        return orig_loss

    def _remember_end(self, loss: float, g: Tensor) -> None:
        """Keep the loss and gradient at the parameters a step leaves, for `step(reuse=True)`."""
        self._last = (self._versions(), torch.tensor(loss, dtype=g.dtype, device=g.device), g)
