"""The solver: optimiser stages over a problem's loss, with the KAN grid schedule.

A run is a list of stages, each with its optimiser (Adam, or torch's L-BFGS with a strong-Wolfe
line search), a number of steps, optionally a new grid size (grid extension, e.g. 5 -> 10 -> 20),
grid updates from samples every n steps, and the KAN sparsity regulariser (sec. 2.5.1). One
L-BFGS "step" is one `optimizer.step(closure)` (up to `max_iter` iterations), as in pykan. A
non-finite loss stops the run: the last finite parameters are restored and the status says
"diverged".
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor, nn

from kanpde.nn.grid import extend_grid, update_grid_
from kanpde.nn.kan import KAN
from kanpde.problem import Data, Problem
from kanpde.interpret.sparsity import regularizer
from kanpde.validate import ConfigError, check_choice, check_int, check_number

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "lbfgs")
REG_POINTS = 4096  # samples the sparsity regulariser is evaluated on (at most)


@dataclass
class Stage:
    """One optimisation stage; config keys are these field names.

    Attributes:
        optimizer: "adam" or "lbfgs".
        steps: optimiser steps (L-BFGS: calls of step(closure)).
        lr: learning rate (1.0 is L-BFGS's usual).
        grid: KAN grid size for this stage (extension from the previous grid); None keeps it.
            Models without a grid ignore it.
        update_grid_every: update the KAN grid from samples every n steps (0: never).
        update_grid_until: ...but only during the first n steps of the stage (None: all).
        grid_eps: grid update mix, 1 uniform, 0 sample quantiles.
        max_iter: L-BFGS iterations per step (max evaluations = 1.25 x this).
        history_size: L-BFGS memory, the number of past steps kept (pykan: 10; torch: 100).
        reg: lambda, weight of the sparsity regulariser (`kanpde.interpret.sparsity.regularizer`, on a
            fixed subset of at most REG_POINTS of the problem's grid samples) added to the loss;
            0: none. Models other than KANs ignore it.
            The history's `loss_reg` column is the weighted term lambda R, part of `loss`.
        reg_entropy: mu, weight of the entropy inside R (pykan's lamb_entropy).
        reg_coef: nu, weight of the coefficient L1 inside R (pykan's lamb_coef).
        resample_every: draw fresh interior collocation points every n steps (0: never), from
            the run's data generator (`Problem.resample`); L-BFGS restarts its memory then,
            since the objective changed.
    """

    optimizer: str = "lbfgs"
    steps: int = 50
    lr: float = 1.0
    grid: int | None = None
    update_grid_every: int = 0
    update_grid_until: int | None = None
    grid_eps: float = 1.0
    max_iter: int = 20
    history_size: int = 10
    reg: float = 0.0
    reg_entropy: float = 2.0
    reg_coef: float = 0.0
    resample_every: int = 0

    @classmethod
    def from_config(cls, cfg: dict, where: str) -> Stage:
        allowed = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in allowed:
                raise ConfigError(f"{where} has no option {key!r}; allowed: {', '.join(allowed)}")
        s = cls(**cfg)
        check_choice(s.optimizer, f"{where}.optimizer", OPTIMIZERS)
        check_int(s.steps, f"{where}.steps", minimum=0)
        check_number(s.lr, f"{where}.lr", positive=True)
        if s.grid is not None:
            check_int(s.grid, f"{where}.grid", minimum=1)
        check_int(s.update_grid_every, f"{where}.update_grid_every", minimum=0)
        if s.update_grid_until is not None:
            check_int(s.update_grid_until, f"{where}.update_grid_until", minimum=0)
        check_number(s.grid_eps, f"{where}.grid_eps", minimum=0.0)
        if s.grid_eps > 1:
            raise ConfigError(f"{where}.grid_eps must be in [0, 1], got {s.grid_eps!r}")
        check_int(s.max_iter, f"{where}.max_iter", minimum=1)
        check_int(s.history_size, f"{where}.history_size", minimum=1)
        check_int(s.resample_every, f"{where}.resample_every", minimum=0)
        for name in ("reg", "reg_entropy", "reg_coef"):
            check_number(getattr(s, name), f"{where}.{name}", minimum=0.0)
        return s


def parse_optim(optim: dict) -> list[Stage]:
    """The stages of an optim config group: its `stages`, with its other keys (besides name) as
    every stage's defaults (`parse_stages`)."""
    return parse_stages(optim.get("stages"), {k: v for k, v in optim.items() if k not in ("name", "stages")})


def parse_stages(cfg: list, shared: dict | None = None) -> list[Stage]:
    """Stages from a config list; ConfigError on a bad entry.

    Args:
        cfg: one mapping of `Stage` options per stage.
        shared: options for every stage (the optim group's keys besides name and stages, e.g.
            history_size); a stage's own value wins.
    """
    shared = dict(shared or {})
    Stage.from_config(shared, "optim")  # its errors name optim.<key>
    if isinstance(cfg, (str, bytes)) or not hasattr(cfg, "__iter__"):
        raise ConfigError(f"optim.stages must be a list of stages, got {cfg!r}")
    stages = []
    for i, entry in enumerate(cfg):
        if not isinstance(entry, dict):
            raise ConfigError(f"optim.stages[{i}] must be a mapping of stage options, got {entry!r}")
        stages.append(Stage.from_config({**shared, **entry}, f"optim.stages[{i}]"))
    if not stages:
        raise ConfigError("optim.stages must hold at least one stage, got []")
    return stages


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained model (a new object when the grid was extended).
        history: one row per logged step: step, stage, grid, loss, loss terms, evals, wall_s
            and the test metrics.
        status: "ok" or "diverged".
        steps: optimiser steps taken.
        evals: loss-and-gradient evaluations.
        wall_s: training time in seconds (metrics logging excluded).
        grid_changes: per extension, the new grid and the max change of u it caused.
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    status: str = "ok"
    steps: int = 0
    evals: int = 0
    wall_s: float = 0.0
    grid_changes: list[dict] = field(default_factory=list)


def _optimizer(stage: Stage, params: list[Tensor]) -> torch.optim.Optimizer:
    if stage.optimizer == "adam":
        return torch.optim.Adam(params, lr=stage.lr)
    # Tolerances at ~0 so a step always runs its iterations, as pykan does.
    return torch.optim.LBFGS(
        params, lr=stage.lr, max_iter=stage.max_iter, max_eval=stage.max_iter * 5 // 4,
        history_size=stage.history_size, line_search_fn="strong_wolfe",
        tolerance_grad=1e-32, tolerance_change=1e-32,
    )


def train(
    model: nn.Module,
    problem: Problem,
    data: Data,
    test: Data,
    stages: list[Stage],
    fast: bool = True,
    log_every: int = 1,
    progress: bool = True,
    compile: bool = False,
    generator: torch.Generator | None = None,
) -> TrainResult:
    """Minimise the problem's loss over `stages`.

    Args:
        model: maps (N, d) -> (N, m); a KAN follows the stages' grid settings.
        problem: gives the loss terms and the test metrics.
        data: training tensors from `problem.sample`, on the model's device and dtype.
        test: test tensors from `problem.test_data`, on the model's device.
        stages: the schedule.
        fast: use forward-propagated derivatives where the model has them.
        log_every: evaluate test metrics and record a history row every n steps.
        progress: show a progress bar.
        compile: evaluate the loss through torch.compile (recompiles when the grid changes).
        generator: the source of resampled points (stages with resample_every).
    """
    from tqdm.auto import tqdm

    result = TrainResult(model)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    grid_x = problem.grid_samples(data)
    # The regulariser's edge scales are means over samples: a fixed subset estimates them well
    # at a fraction of the cost (fixed, so L-BFGS sees one deterministic objective).
    if grid_x.shape[0] > REG_POINTS:
        pick = torch.randperm(grid_x.shape[0], generator=torch.Generator().manual_seed(0))[:REG_POINTS]
        reg_x = grid_x[pick.to(grid_x.device)]
    else:
        reg_x = grid_x
    total = sum(s.steps for s in stages)
    bar = tqdm(total=total, disable=not progress, dynamic_ncols=True, leave=False)
    evals = 0
    t_train = 0.0

    losses = torch.compile(problem.losses, dynamic=False) if compile else problem.losses

    def loss_fn(stage: Stage | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        terms = losses(model, data, fast)
        if stage is not None and stage.reg > 0 and isinstance(model, KAN):
            r = regularizer(model, reg_x, stage.reg_entropy, stage.reg_coef)
            terms = {**terms, "reg": stage.reg * r}
        return sum(terms.values()), terms

    def record(stage_i: int, loss: float, terms: dict[str, Tensor]) -> dict:
        row = {"step": result.steps, "stage": stage_i, "loss": loss, "evals": evals, "wall_s": t_train}
        if isinstance(model, KAN):
            row["grid"] = model.layers[0].grid_size
        row.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
        row.update(problem.metrics(model, test))
        result.history.append(row)
        return row

    extra = problem.parameters()  # an inverse problem's unknowns, trained with the model

    def state() -> dict:
        return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "extra": [p.detach().clone() for p in extra]}

    def restore(saved: dict) -> None:
        model.load_state_dict(saved["model"])
        with torch.no_grad():
            for p, v in zip(extra, saved["extra"]):
                p.copy_(v)

    # the bar shows the loss, the error, and an inverse problem's recovered unknowns
    shown = ("loss", "rel_l2", *[k for k in problem.unknown_metrics() if not k.endswith("_true")]) \
        if hasattr(problem, "unknown_metrics") else ("loss", "l2_sq")
    last_good = state()
    loss0, terms0 = loss_fn()
    record(-1, float(loss0.detach()), terms0)
    for i, stage in enumerate(stages):
        if stage.grid is not None and isinstance(model, KAN) and stage.grid != model.layers[0].grid_size:
            model, change = extend_grid(model, stage.grid, grid_x)
            result.grid_changes.append({"step": result.steps, "grid": stage.grid, "max_change": change})
            log.info("grid -> %d (max change of u on the training points %.2e)", stage.grid, change)
            last_good = state()
        opt = _optimizer(stage, list(model.parameters()) + extra)
        until = stage.steps if stage.update_grid_until is None else stage.update_grid_until
        for step in range(stage.steps):
            t0 = time.perf_counter()
            if isinstance(model, KAN) and stage.update_grid_every and step < until and step % stage.update_grid_every == 0:
                update_grid_(model, grid_x, stage.grid_eps)
            if stage.resample_every and step and step % stage.resample_every == 0:
                data = problem.resample(data, generator)
                grid_x = problem.grid_samples(data)
                if stage.optimizer == "lbfgs":  # its curvature pairs belong to the old points
                    opt = _optimizer(stage, list(model.parameters()) + extra)
            box: dict = {}

            def closure() -> Tensor:
                nonlocal evals
                opt.zero_grad(set_to_none=True)
                loss, terms = loss_fn(stage)
                loss.backward()
                for p in model.parameters():  # L-BFGS views grads flat; some come back strided
                    if p.grad is not None and not p.grad.is_contiguous():
                        p.grad = p.grad.contiguous()
                evals += 1
                box["loss"], box["terms"] = loss.detach(), terms
                return loss

            if stage.optimizer == "lbfgs":
                opt.step(closure)
            else:
                closure()
                opt.step()
            t_train += time.perf_counter() - t0
            result.steps += 1
            loss = float(box["loss"])
            finite_params = all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters())
            if not math.isfinite(loss) or not finite_params:
                restore(last_good)
                result.status = "diverged"
                what = f"loss became {loss}" if not math.isfinite(loss) else "parameters became non-finite"
                log.warning("%s at step %d: stopped, last finite parameters restored", what, result.steps)
                break
            last_good = state()
            bar.update(1)
            if result.steps % log_every == 0 or step == stage.steps - 1:
                row = record(i, loss, box["terms"])
                bar.set_postfix({k: f"{row[k]:.3g}" for k in shown if k in row})
        if result.status != "ok":
            break
    bar.close()
    result.model, result.evals, result.wall_s = model, evals, t_train
    return result
