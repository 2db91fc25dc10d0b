"""Where the interior collocation points go during training: residual-based adaptive
resampling (RAD), and time windows for training an evolution problem forwards in time.

Wu, Zhu, Tan, Kartha & Lu 2023, "A comprehensive study of non-adaptive and residual-based
adaptive sampling for physics-informed neural networks", CMAME 403: draw a pool of
`candidates` x N uniform random points, evaluate the residual eps(x) there, and keep N of them
drawn without replacement with probability

    p(x) ~ eps(x)^k / mean(eps^k) + c,

so that points gather where the equation is worst satisfied while a share (c) stays spread over
the domain (k = 0 or c -> infinity: uniform; the paper's default k = 1, c = 1). The trainer calls
it in place of uniform resampling every `resample_every` steps of a stage with `resampling: rad`.

A time window (a stage's `time_window` = f in (0, 1]) trains on [t0, t0 + f (t1 - t0)] only:
the interior points' times are mapped onto the window, t -> t0 + f (t - t0), so the points keep
their number and their sampling's spread; stages with growing windows (0.25, 0.5, 1) march the
solution forwards in time. The unwindowed points are kept (`data["interior_all"]`) for the next
window; the conditions' points and the test points are left as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from kanpde.pde.weighting import point_residuals
from kanpde.problem import Data

RESAMPLINGS = ("uniform", "rad")
ALL = "interior_all"


def rad(problem, model: nn.Module, data: Data, generator: torch.Generator, fast: bool, k: float = 1.0,
        c: float = 1.0, candidates: int = 10) -> Data:
    """The data with N new interior points drawn by RAD (see the module docstring).

    Args:
        problem: a `kanpde.pde.problem.PDEProblem` (its domain and residual).
        model: the network being trained.
        data: the training data; its interior points (N, d) are replaced.
        generator: the run's data generator (the pool and the draw).
        fast: forward-propagated derivatives where the model has them.
        k, c: the density's exponent and floor.
        candidates: the pool's size in multiples of N.
    """
    old = data["interior"]
    n = len(old)
    pool = problem.domain.interior(candidates * n, "random", generator).to(old)
    eps = point_residuals(problem, model, pool, fast).double().cpu() ** k
    density = eps / eps.mean().clamp(min=torch.finfo(torch.float64).tiny) + c
    if not bool(torch.isfinite(density).all()):  # a non-finite residual somewhere: stay uniform there
        density = torch.where(torch.isfinite(density), density, torch.full_like(density, c if c > 0 else 1.0))
    if float(density.sum()) <= 0:  # c = 0 and a zero residual everywhere
        density = torch.ones_like(density)
    pick = torch.multinomial(density, n, replacement=False, generator=generator)
    return {**data, "interior": pool[pick.to(pool.device)]}


def time_window(problem, data: Data, fraction: float) -> Data:
    """The data with its interior points in the first `fraction` of the time interval (1: all).

    Args:
        problem: a PDE problem on a `kanpde.pde.timedomain.TimeDomain` (a variable named t).
        data: the training data; `data["interior_all"]`, if there, holds the unwindowed points.
        fraction: the window's share of [t0, t1], in (0, 1].
    """
    full = data.get(ALL, data["interior"])
    if fraction >= 1:
        return {**{k: v for k, v in data.items() if k != ALL}, "interior": full}
    lower, _ = problem.domain.bounding_box()
    axis = problem.variables.index("t")
    t0 = float(lower[axis])
    x = full.clone()
    x[:, axis] = t0 + fraction * (full[:, axis] - t0)
    return {**data, ALL: full, "interior": x}
