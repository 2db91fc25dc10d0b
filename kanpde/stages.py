"""Optimiser stages: what one stage of a run does, read from an optim config group.

A run is a list of stages (`conf/optim/*.yaml`), each with its optimiser, a number of steps,
optionally a new grid size (grid extension, e.g. 5 -> 10 -> 20), grid updates from samples, the
KAN sparsity regulariser, resampling, and what to do when the loss diverges. Keys at the optim
level (besides name and stages) are every stage's defaults; a stage's own value wins, and an
optim-level key that every stage sets itself is refused (it would change nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from kanpde import optim
from kanpde.nn.kan import MAX_GRID
from kanpde.pde.adaptive_sampling import RESAMPLINGS
from kanpde.pde.weighting import BALANCES, WEIGHTINGS
from kanpde.validate import ConfigError, check_choice, check_int, check_number

OPTIMIZERS = ("adam", "lbfgs", "bfgs", "ssbfgs", "ssbroyden", "lm")
FIRST_ORDER = ("adam",)  # the others keep curvature of one objective: reset when it changes


@dataclass
class Stage:
    """One optimisation stage; config keys are these field names.

    Attributes:
        optimizer: "adam"; "lbfgs" (limited memory, torch's algorithm with the
            direction in compact form; `kanpde.optim.lbfgs`); "bfgs", "ssbfgs", "ssbroyden"
            (dense quasi-Newton, plain or self-scaled, strong-Wolfe line search;
            `kanpde.optim.quasi_newton`); "lm" (Levenberg-Marquardt on the residual vector of a
            PDE problem; `kanpde.optim.levenberg_marquardt`).
        steps: optimiser steps (the second-order ones: calls of step(closure), each up to
            max_iter iterations).
        lr: learning rate (1.0 is L-BFGS's usual).
        grid: KAN grid size for this stage (extension from the previous grid); None keeps it.
            Models without a grid ignore it.
        update_grid_every: update the KAN grid from samples every n steps (0: never).
        update_grid_until: ...but only during the first n steps of the stage (None: all).
        grid_eps: grid update mix, 1 uniform, 0 sample quantiles.
        max_iter: iterations per step of the second-order optimisers (L-BFGS: max evaluations =
            1.25 x this; LM: Jacobians).
        damping: LM's initial damping lambda (relative to diag(J^T J)), adapted as it goes.
        history_size: L-BFGS memory, the number of past steps kept (pykan: 10; torch: 100).
        reg: lambda, weight of the sparsity regulariser (`kanpde.interpret.sparsity.regularizer`, on a
            fixed subset of at most REG_POINTS of the problem's grid samples) added to the loss;
            0: none. Models other than KANs ignore it.
            The history's `loss_reg` column is the weighted term lambda R, part of `loss`.
        reg_entropy: mu, weight of the entropy inside R (pykan's lamb_entropy).
        reg_coef: nu, weight of the coefficient L1 inside R (pykan's lamb_coef).
        resample_every: draw fresh interior collocation points every n steps (0: never), from
            the run's data generator (`Problem.resample`); L-BFGS and the dense quasi-Newton
            methods restart their memory then, since the objective changed; LM keeps its damping.
        resampling: how: "uniform" (the problem's sampling) or "rad" (residual-based adaptive
            resampling, `kanpde.pde.adaptive_sampling`; needs resample_every > 0).
        rad_k, rad_c, rad_candidates: RAD's density eps^k / mean(eps^k) + c and its pool size
            in multiples of the number of interior points.
        time_window: train on the first fraction of the time interval only, in (0, 1] (1: all);
            stages with growing windows march forwards in time (`kanpde.pde.adaptive_sampling`).
        retries: after a divergence (a non-finite loss or parameters, or a loss above `explode`
            times the stage's best since the objective last changed), restore the last good state
            and retry with half the learning rate and a fresh optimiser (L-BFGS: empty memory),
            at most this many times per stage; then the run ends "diverged".
        explode: the factor over the best loss that counts as diverging (0: only non-finite).
        weighting: point weights of the PDE residual, recomputed before every step
            (`kanpde.pde.weighting`): "none", "rba" (residual-based attention) or "causal"
            (time slices weighted by how well the earlier ones are solved).
        rba_gamma, rba_eta: RBA's memory and step (m <- gamma m + eta |r| / max |r|).
        causal_eps, causal_chunks: causal weighting's tolerance eps (w_k = exp(-eps x the
            earlier slices' mean squared residuals)) and number of time slices.
        balance: loss-term weights: "none" or "grad_norm" (each term's weight follows the
            sum of the terms' gradient norms over its own; `kanpde.pde.weighting.balance`).
        balance_every, balance_alpha: how often (steps) and the moving average's memory.
    """

    optimizer: str = "lbfgs"
    steps: int = 50
    lr: float = 1.0
    grid: int | None = None
    update_grid_every: int = 0
    update_grid_until: int | None = None
    grid_eps: float = 1.0
    max_iter: int = 20
    damping: float = 1e-3
    history_size: int = 10
    reg: float = 0.0
    reg_entropy: float = 2.0
    reg_coef: float = 0.0
    resample_every: int = 0
    retries: int = 2
    explode: float = 1e6
    resampling: str = "uniform"
    rad_k: float = 1.0
    rad_c: float = 1.0
    rad_candidates: int = 10
    time_window: float = 1.0
    weighting: str = "none"
    rba_gamma: float = 0.999
    rba_eta: float = 0.01
    causal_eps: float = 1.0
    causal_chunks: int = 32
    balance: str = "none"
    balance_every: int = 100
    balance_alpha: float = 0.9

    @classmethod
    def from_config(cls, cfg: dict, where: str) -> Stage:
        allowed = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in allowed:
                raise ConfigError(f"{where} has no option {key!r}; allowed: {', '.join(allowed)}")
        s = cls(**cfg)
        # keep the checked values: a number given as a huge int becomes the float torch takes
        s.optimizer = check_choice(s.optimizer, f"{where}.optimizer", OPTIMIZERS)
        s.steps = check_int(s.steps, f"{where}.steps", minimum=0)
        s.lr = check_number(s.lr, f"{where}.lr", positive=True)
        if s.grid is not None:
            s.grid = check_int(s.grid, f"{where}.grid", minimum=1, maximum=MAX_GRID)
        s.update_grid_every = check_int(s.update_grid_every, f"{where}.update_grid_every", minimum=0)
        if s.update_grid_until is not None:
            s.update_grid_until = check_int(s.update_grid_until, f"{where}.update_grid_until", minimum=0)
        s.grid_eps = check_number(s.grid_eps, f"{where}.grid_eps", minimum=0.0)
        if s.grid_eps > 1:
            raise ConfigError(f"{where}.grid_eps must be in [0, 1], got {s.grid_eps!r}")
        s.max_iter = check_int(s.max_iter, f"{where}.max_iter", minimum=1)
        s.damping = check_number(s.damping, f"{where}.damping", positive=True, finite=True)
        s.history_size = check_int(s.history_size, f"{where}.history_size", minimum=1)
        s.resample_every = check_int(s.resample_every, f"{where}.resample_every", minimum=0)
        s.retries = check_int(s.retries, f"{where}.retries", minimum=0)
        s.explode = check_number(s.explode, f"{where}.explode", minimum=0.0)
        if 0 < s.explode <= 1:
            raise ConfigError(f"{where}.explode must be 0 (off) or a factor > 1, got {s.explode!r}")
        s.resampling = check_choice(s.resampling, f"{where}.resampling", RESAMPLINGS)
        if s.resampling != "uniform" and not s.resample_every:
            raise ConfigError(f"{where}.resampling={s.resampling} needs {where}.resample_every > 0 (how often), got 0")
        s.rad_k = check_number(s.rad_k, f"{where}.rad_k", minimum=0.0, finite=True)
        s.rad_c = check_number(s.rad_c, f"{where}.rad_c", minimum=0.0, finite=True)
        s.rad_candidates = check_int(s.rad_candidates, f"{where}.rad_candidates", minimum=1, maximum=1000)
        s.time_window = check_number(s.time_window, f"{where}.time_window", positive=True, finite=True)
        if s.time_window > 1:
            raise ConfigError(f"{where}.time_window must be in (0, 1] (a share of the time interval), got {s.time_window!r}")
        s.weighting = check_choice(s.weighting, f"{where}.weighting", WEIGHTINGS)
        s.rba_gamma = _below_one(s.rba_gamma, f"{where}.rba_gamma")
        s.rba_eta = check_number(s.rba_eta, f"{where}.rba_eta", positive=True, finite=True)
        s.causal_eps = check_number(s.causal_eps, f"{where}.causal_eps", minimum=0.0, finite=True)
        s.causal_chunks = check_int(s.causal_chunks, f"{where}.causal_chunks", minimum=1, maximum=10_000)
        s.balance = check_choice(s.balance, f"{where}.balance", BALANCES)
        s.balance_every = check_int(s.balance_every, f"{where}.balance_every", minimum=1)
        s.balance_alpha = _below_one(s.balance_alpha, f"{where}.balance_alpha")
        for name in ("reg", "reg_entropy", "reg_coef"):
            setattr(s, name, check_number(getattr(s, name), f"{where}.{name}", minimum=0.0, finite=True))
        return s


def _below_one(value, name: str) -> float:
    """`value` as a float in [0, 1) (a moving average's memory), else ConfigError."""
    value = check_number(value, name, minimum=0.0, finite=True)
    if value >= 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return value


def parse_optim(optim: dict) -> list[Stage]:
    """The stages of an optim config group: its `stages`, with its other keys (besides name) as
    every stage's defaults (`parse_stages`)."""
    return parse_stages(optim.get("stages"), {k: v for k, v in optim.items() if k not in ("name", "stages")})


def parse_stages(cfg: list, shared: dict | None = None) -> list[Stage]:
    """Stages from a config list; ConfigError on a bad entry.

    Args:
        cfg: one mapping of `Stage` options per stage.
        shared: options for every stage (the optim group's keys besides name and stages, e.g.
            history_size); a stage's own value wins, and a shared key that every stage sets
            itself is refused, since it would change nothing (`optim.steps=2` when each stage
            has its own steps).
    """
    shared = dict(shared or {})
    Stage.from_config(shared, "optim")  # its errors name optim.<key>
    if isinstance(cfg, (str, bytes)) or not hasattr(cfg, "__iter__"):
        raise ConfigError(f"optim.stages must be a list of stages, got {cfg!r}")
    stages, entries = [], list(cfg)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"optim.stages[{i}] must be a mapping of stage options, got {entry!r}")
        stages.append(Stage.from_config({**shared, **entry}, f"optim.stages[{i}]"))
    if not stages:
        raise ConfigError("optim.stages must hold at least one stage, got []")
    for key in shared:
        if all(key in entry for entry in entries):
            raise ConfigError(
                f"optim.{key}={shared[key]!r} changes nothing: every stage sets its own {key}; "
                f"set it per stage instead (optim.stages.<i>.{key}=..., i in 0..{len(entries) - 1})")
    return stages


def make_optimizer(stage: Stage, params: list[Tensor], lr: float | None = None) -> torch.optim.Optimizer:
    """The stage's optimiser over `params`, at learning rate `lr` (default the stage's)."""
    lr = stage.lr if lr is None else lr
    if stage.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if stage.optimizer == "lm":
        return optim.make("lm", params, max_iter=stage.max_iter, damping=stage.damping)
    if stage.optimizer != "lbfgs":
        return optim.make(stage.optimizer, params, lr=lr, max_iter=stage.max_iter)
    # Tolerances at ~0 so a step always runs its iterations, as pykan does.
    return optim.LBFGS(
        params, lr=lr, max_iter=stage.max_iter, max_eval=stage.max_iter * 5 // 4,
        history_size=stage.history_size, line_search_fn="strong_wolfe",
        tolerance_grad=1e-32, tolerance_change=1e-32,
    )
