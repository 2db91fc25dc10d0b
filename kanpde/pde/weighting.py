"""Adaptive loss weights: per-point weights of the PDE residual (residual-based attention,
causal weighting in time) and per-term weights balancing the gradient norms.

Both scale each interior point's residual by a multiplier m_i >= 0 that the trainer recomputes
from the current residuals before every step (held fixed within the step, so a line search sees
one objective) and keeps in the training data as `data["point_weights"]` (N,), so that a
checkpoint resumes them. The PDE loss becomes mean_i (m_i r_i)^2 for every residual term; the
conditions' terms are left as they are. The same multipliers enter Levenberg-Marquardt's
residual vector and its Jacobian.

* **rba** (residual-based attention; Anagnostopoulos, Toscano, Stergiopulos & Karniadakis 2024,
  "Residual-based attention in physics-informed neural networks", CMAME 421):
      m_i <- gamma m_i + eta |r_i| / max_j |r_j|,   m_i = 1 at the start,
  with |r_i| the largest residual of point i over the equations. The multipliers settle near
  eta / (1 - gamma) |r_i| / max |r| (10x the relative residual for the defaults), so the points
  where the equation is worst satisfied weigh most.
* **causal** (Wang, Sankaran & Perdikaris 2024, "Respecting causality for training
  physics-informed neural networks", CMAME 421): the time interval of the points is cut into
  `chunks` equal slices with mean squared residuals L_1 .. L_M, and
      w_k = exp(-eps sum_{j < k} L_j),   m_i = sqrt(w_k(i)),
  so a later time slice counts only once the earlier ones are solved (w_1 = 1).

Term weights (`balance`, kept as `data["term_weights"]` {term: weight}, multiplying each loss
term's own weight): **grad_norm** (Wang, Teng & Perdikaris 2021, "Understanding and mitigating
gradient flow pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43; in the
form of Wang et al. 2023, "An expert's guide to training physics-informed neural networks"):
every `balance_every` steps,
      lambda_i <- alpha lambda_i + (1 - alpha) sum_j |grad L_j| / |grad L_i|,   lambda_i = 1 at the start,
with |grad L_i| the norm of term i's gradient w.r.t. all trained parameters, so that every term
pulls on the parameters with the same strength.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kanpde.problem import Data
from kanpde.validate import ConfigError

WEIGHTINGS = ("none", "rba", "causal")
BALANCES = ("none", "grad_norm")
KEY = "point_weights"
TERMS = "term_weights"


def apply(r: Tensor, data: Data) -> Tensor:
    """Residuals r (N, k) at the interior points times their multipliers (N, 1), if any."""
    m = data.get(KEY)
    return r if m is None else r * m.to(r)[:, None]


def check(weighting: str, problem) -> None:
    """ConfigError unless `weighting` ("rba", "causal"; "rad" for RAD resampling, "balance" for
    term balancing) suits the problem: it needs PDE residuals, causal also a variable named t."""
    if weighting == "none":
        return
    variables = tuple(getattr(problem, "variables", ()))
    if not hasattr(problem, "weighted_residuals"):
        what = {"rad": "resampling=rad draws points by the PDE residual",
                "balance": "balance=grad_norm weighs a PDE problem's loss terms",
                "window": "time_window < 1 trains on part of a PDE problem's time interval"}.get(
                    weighting, f"weighting={weighting} weighs PDE residuals")
        raise ConfigError(f"{what}; problem {getattr(problem, 'name', '?')!r} has none")
    if weighting in ("causal", "window") and "t" not in variables:
        what = "weighting=causal" if weighting == "causal" else "time_window < 1"
        raise ConfigError(f"{what} needs a time variable t; this problem's variables are "
                          f"({', '.join(variables)})")


@torch.no_grad()
def point_residuals(problem, model: nn.Module, x: Tensor, fast: bool) -> Tensor:
    """(N,) the largest |residual| over the equations at each point of x (N, d), detached."""
    with torch.enable_grad():  # the autograd route of a residual's derivatives needs a graph
        res = problem.residual(x, problem.fields(model, x, fast))
    parts = res.values() if isinstance(res, dict) else [res]
    return torch.cat([p.detach().reshape(len(x), -1) for p in parts], dim=1).abs().amax(dim=1)


@torch.no_grad()
def update(weighting: str, problem, model: nn.Module, data: Data, fast: bool, gamma: float = 0.999,
           eta: float = 0.01, eps: float = 1.0, chunks: int = 32) -> Data:
    """The data with fresh multipliers `data["point_weights"]` (N,) from the current residuals.

    Args:
        weighting: "rba" or "causal" (see the module docstring); "none" drops the multipliers.
        problem: a `kanpde.pde.problem.PDEProblem`.
        model: the network being trained.
        data: the training data; its interior points are weighted.
        fast: forward-propagated derivatives where the model has them.
        gamma, eta: RBA's memory and step.
        eps, chunks: causal weighting's tolerance and number of time slices.
    """
    if weighting == "none":
        return {k: v for k, v in data.items() if k != KEY}
    x = data["interior"]
    r = point_residuals(problem, model, x, fast)
    if weighting == "rba":
        old = data.get(KEY)
        old = torch.ones_like(r) if old is None or old.shape != r.shape else old.to(r)
        return {**data, KEY: gamma * old + eta * r / r.max().clamp(min=torch.finfo(r.dtype).tiny)}
    t = x[:, problem.variables.index("t")].detach()
    lo, hi = float(t.min()), float(t.max())
    slot = ((t - lo) / max(hi - lo, 1e-300) * chunks).long().clamp(0, chunks - 1)  # (N,) in 0..chunks-1
    sq = torch.zeros(chunks, dtype=r.dtype, device=r.device).index_add_(0, slot, r * r)
    count = torch.zeros(chunks, dtype=r.dtype, device=r.device).index_add_(0, slot, torch.ones_like(r))
    mean = sq / count.clamp(min=1)
    before = torch.cumsum(mean, 0) - mean  # sum over the earlier slices
    return {**data, KEY: torch.exp(-eps * before / 2)[slot]}  # sqrt(w) per point



def term_factor(data: Data, name: str) -> float:
    """The balancing weight of loss term `name` (1 without balancing)."""
    w = data.get(TERMS)
    return 1.0 if w is None or name not in w else float(w[name])


def balance(problem, model: nn.Module, params: list[Tensor], data: Data, fast: bool, alpha: float = 0.9) -> Data:
    """The data with the grad_norm term weights updated (see the module docstring).

    Args:
        problem: a `kanpde.pde.problem.PDEProblem`.
        model: the network being trained.
        params: every trained parameter (the model's and an inverse problem's unknowns).
        data: the training data, with or without term weights.
        fast: forward-propagated derivatives where the model has them.
        alpha: the moving average's memory.
    """
    plain = {k: v for k, v in data.items() if k != TERMS}
    with torch.enable_grad():
        terms = problem.losses(model, plain, fast)
        norms = {}
        for name, loss in terms.items():
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            norms[name] = float(torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None)))
    total = sum(norms.values())
    old = data.get(TERMS) or {}
    new = {}
    for name, g in norms.items():
        before = float(old[name]) if name in old else 1.0
        new[name] = torch.tensor(alpha * before + (1 - alpha) * total / g if g > 0 else before, dtype=torch.float64)
    return {**data, TERMS: new}
