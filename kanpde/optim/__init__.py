"""Second-order optimisers for physics-informed training (issue 13).

    lbfgs                     limited-memory BFGS as torch's, the direction in compact form
                              (`kanpde.optim.lbfgs`); built by `kanpde.stages.make_optimizer`
    bfgs, ssbfgs, ssbroyden   dense quasi-Newton with a strong-Wolfe line search
                              (`kanpde.optim.quasi_newton`); step(closure) as torch's L-BFGS
    lm                        Levenberg-Marquardt on the residual vector
                              (`kanpde.optim.levenberg_marquardt`); step(residual_closure,
                              jacobian_closure=None)

`make(name, params, **options)` builds one by name; options are the class's keyword arguments,
word for word, and an unknown one fails with the allowed ones listed.

Smoothness matters to all of them. A cubic-spline KAN (order k = 3) feeds a second-order PDE's
residual with phi'' of its later layers, piecewise linear in their inputs, so r is only
continuous in the first layer's parameters, with kinks where a point's hidden value crosses a
knot: near the optimum LM drives points onto knots and its damping runs away (1e9), and
quasi-Newton steps shrink. Order 5 makes r twice differentiable. Paper's Poisson problem,
KAN [2, 10, 1], G = 5 -> 10 -> 20 -> 40, one thread: LM L2^2 2.4e-9 at k = 3 (40 iterations per
grid, stalled), 3.9e-14 at k = 5 (30 per grid); SSBFGS (500 per grid) 9.3e-9 and 2.7e-11.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch
from torch import Tensor

from kanpde.optim.lbfgs import LBFGS
from kanpde.optim.levenberg_marquardt import LevenbergMarquardt
from kanpde.optim.quasi_newton import BFGS, SSBFGS, SSBroyden
from kanpde.validate import ConfigError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "bfgs": BFGS,
    "ssbfgs": SSBFGS,
    "ssbroyden": SSBroyden,
    "lm": LevenbergMarquardt,
}
NAMES = tuple(OPTIMIZERS)
RESIDUAL = ("lm",)  # the ones whose step takes a residual closure, not a loss closure


def options(name: str) -> list[str]:
    """The keyword options of optimiser `name`."""
    return [p for p in inspect.signature(OPTIMIZERS[name]).parameters if p != "params"]


def make(name: str, params: Iterable[Tensor], **opts) -> torch.optim.Optimizer:
    """The optimiser called `name` (one of `NAMES`) over `params`, with its keyword options."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer {name!r} is not known; allowed: {', '.join(NAMES)}")
    allowed = options(name)
    for key in opts:
        if key not in allowed:
            raise ConfigError(f"optimizer {name!r} has no option {key!r}; allowed: {', '.join(allowed)}")
    return OPTIMIZERS[name](params, **opts)


__all__ = ["LBFGS", "BFGS", "SSBFGS", "SSBroyden", "LevenbergMarquardt", "NAMES", "RESIDUAL", "make", "options"]
