"""Second-order optimisers for physics-informed training (issue 13).

    bfgs, ssbfgs, ssbroyden   dense quasi-Newton with a strong-Wolfe line search
                              (`kanpde.optim.quasi_newton`); step(closure) as torch's L-BFGS
    lm                        Levenberg-Marquardt on the residual vector
                              (`kanpde.optim.levenberg_marquardt`); step(residual_closure,
                              jacobian_closure=None)

`make(name, params, **options)` builds one by name; options are the class's keyword arguments,
word for word, and an unknown one fails with the allowed ones listed.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch
from torch import Tensor

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


__all__ = ["BFGS", "SSBFGS", "SSBroyden", "LevenbergMarquardt", "NAMES", "RESIDUAL", "make", "options"]
