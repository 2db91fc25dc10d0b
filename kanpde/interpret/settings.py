"""The `interpret` config group's settings, checked before training.

Apart from `kanpde.interpret.discover` on purpose: a run without interpretation imports this
module only, not sympy and scipy.optimize (about 1.2 s of start-up on one Intel Xeon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch

from kanpde.nn.kan import KAN, edge_key
from kanpde.pde.problem import PDEProblem
from kanpde.validate import ConfigError, check_int, check_number


@dataclass
class Settings:
    """The `interpret` config group (config keys are these names).

    Attributes:
        name: "symbolic" runs the pipeline after training; "none" skips it.
        prune: edge/node scale threshold for pruning (mean |phi| on the training inputs).
        names: library functions to try (None: all but "0").
        weight_simple: preference for simple functions in `suggest` (0..1).
        r2_threshold: an edge whose best fit is worse stays a spline (then no formula).
        r2_tol: the simplest function within this R^2 of the best one is chosen.
        hints: {"layer,i,j": function} forced fits.
        term_tol: `prune_terms` tolerance (relative RMS change allowed by dropping terms), used
            instead of `select_terms` when refit is false.
        select_tol: `select_terms` tolerance (training accuracy the dropped terms may cost).
        refit: choose the terms (`select_terms`) and refit the formula's numbers on the training
            data with the problem's loss; false: drop small terms (`prune_terms`), no refit.
        digits: decimals of the numbers in the reported formula.
    """

    name: str = "none"
    prune: float = 0.01
    names: list[str] | None = None
    weight_simple: float = 0.8
    r2_threshold: float = 0.0
    r2_tol: float = 0.002
    hints: dict[str, str] = field(default_factory=dict)
    term_tol: float = 0.1
    select_tol: float = 0.005
    refit: bool = True
    digits: int = 4

    @classmethod
    def from_config(cls, cfg: dict | None) -> Settings:
        if cfg is not None and not isinstance(cfg, Mapping):
            raise ConfigError(f"interpret must be a config group (a mapping), got {cfg!r}")
        cfg = dict(cfg or {})
        allowed = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in allowed:
                raise ConfigError(f"interpret has no option {key!r}; allowed: {', '.join(allowed)}")
        s = cls(**cfg)
        if s.name not in ("none", "symbolic"):
            raise ConfigError(f"interpret.name must be none or symbolic, got {s.name!r}")
        for name in ("prune", "term_tol", "select_tol", "r2_tol"):
            check_number(getattr(s, name), f"interpret.{name}", minimum=0.0)
        check_number(s.r2_threshold, "interpret.r2_threshold")  # above 1: every edge stays a spline
        if not 0 <= check_number(s.weight_simple, "interpret.weight_simple") <= 1:
            raise ConfigError(f"interpret.weight_simple must be in [0, 1], got {s.weight_simple!r}")
        if not isinstance(s.refit, bool):
            raise ConfigError(f"interpret.refit must be true or false, got {s.refit!r}")
        check_int(s.digits, "interpret.digits", minimum=0, maximum=17)
        if s.names is not None and (isinstance(s.names, (str, bytes)) or not isinstance(s.names, Sequence)):
            raise ConfigError(f"interpret.names must be null or a list of library functions, got {s.names!r}")
        names = _library_names() if s.names or s.hints else ()
        for n in s.names or []:
            if not isinstance(n, str) or n not in names:
                raise ConfigError(f"interpret.names: {n!r} is not a library function; allowed: {', '.join(names)}")
        if s.hints is not None and not isinstance(s.hints, Mapping):
            raise ConfigError(f"interpret.hints must be a mapping {{'layer,i,j': function}}, got {s.hints!r}")
        s.hints = {str(k): str(v) for k, v in (s.hints or {}).items()}
        for name in s.hints.values():
            if name not in names:
                raise ConfigError(f"interpret.hints: {name!r} is not a library function; allowed: {', '.join(names)}")
        return s

    def check_target(self, model: torch.nn.Module, problem) -> None:
        """ConfigError unless `interpret` can read a formula off `model` trained on `problem`:
        checked before training, since `interpret` itself runs only after it."""
        if self.name == "none":
            return
        if not isinstance(model, KAN):
            raise ConfigError(f"interpret={self.name} needs a KAN model, got {type(model).__name__}; "
                              "use model=kan or interpret=none")
        if isinstance(problem, PDEProblem):
            name = getattr(problem, "name", type(problem).__name__)
            raise ConfigError(f"interpret={self.name} reads a formula off a classifier's data (x, y); "
                              f"problem {name!r} is a PDE problem: use interpret=none")
        for key in self.hints:
            edge_key(key, model.layers, "interpret.hints")


def _library_names() -> tuple[str, ...]:
    """The symbolic library's function names, imported only when a setting names one."""
    from kanpde.nn.functions import LIBRARY  # lazy: it imports sympy and scipy

    return tuple(LIBRARY)
