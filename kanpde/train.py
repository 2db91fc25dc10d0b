"""The solver: optimiser stages (`kanpde.stages`) over a problem's loss, with the KAN grid schedule.

One L-BFGS "step" is one `optimizer.step(closure)` (up to `max_iter` iterations), as in pykan.
Training survives what long runs meet:

- **divergence**: a non-finite loss or parameters, or a loss above `stage.explode` times the best
  since the objective last changed, is caught at the step it happens; the last good parameters
  are restored and the step retried with half the learning rate and a fresh optimiser, at most
  `stage.retries` times per stage; then the run ends "diverged" with its last good state.
- **stops**: Ctrl-C or SIGTERM ends training after the current step ("interrupted", checkpoint
  saved; `kanpde.signals`).
- **kills**: with `checkpoints`, the state is saved every n steps, at stage ends and at the end
  (`kanpde.checkpoint`); `resume=` that state continues bit for bit as if never stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor, nn

from kanpde.checkpoint import Checkpoints, pack_model, unpack_model
from kanpde.interpret.sparsity import regularizer
from kanpde.nn.grid import extend_grid, update_grid_
from kanpde.nn.features import PeriodicFeatures
from kanpde.nn.kan import KAN
from kanpde.pde import adaptive_sampling, weighting
from kanpde.problem import Data, Problem
from kanpde.signals import stop_requests
from kanpde.stages import FIRST_ORDER, Stage, make_optimizer
from kanpde.validate import ConfigError

log = logging.getLogger(__name__)

REG_POINTS = 4096  # samples the sparsity regulariser is evaluated on (at most)


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained model (a new object when the grid was extended).
        history: one row per logged step: step, stage, grid, loss, loss terms, evals, wall_s
            and the test metrics.
        status: "ok", "diverged" or "interrupted".
        steps: optimiser steps taken (retried steps count once).
        evals: loss-and-gradient evaluations.
        wall_s: training time in seconds (metrics logging excluded).
        grid_changes: per extension, the new grid and the max change of u it caused.
        recoveries: per divergence caught: step, stage, what happened, the new learning rate
            (None when no retry was left).
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    status: str = "ok"
    steps: int = 0
    evals: int = 0
    wall_s: float = 0.0
    grid_changes: list[dict] = field(default_factory=list)
    recoveries: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """The result without its model, as a checkpoint stores it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


def spline_kan(model: nn.Module) -> tuple[KAN | None, Callable[[Tensor], Tensor]]:
    """The KAN whose grid the stages drive (the model, or the one behind `PeriodicFeatures`),
    or None, and the map from the model's inputs (N, d) to that KAN's inputs."""
    if isinstance(model, KAN):
        return model, lambda x: x
    if isinstance(model, PeriodicFeatures) and isinstance(model.model, KAN):
        return model.model, model.embed
    return None, lambda x: x


def _lm_setup(stage: Stage, i: int, problem: Problem, model: nn.Module) -> bool:
    """For an LM stage: check that the problem gives residual vectors; whether its point-by-point
    Jacobian applies (else LM builds a generic one). False for other optimisers."""
    if stage.optimizer != "lm":
        return False
    if not hasattr(problem, "residual_vector"):
        raise ConfigError(f"optim.stages[{i}].optimizer=lm needs a least-squares problem (a PDE problem with "
                          f"residual_vector); {type(problem).__name__} has none: use lbfgs or ssbfgs")
    if stage.reg > 0 and spline_kan(model)[0] is not None:
        raise ConfigError(f"optim.stages[{i}]: lm minimises the residuals only; reg={stage.reg} needs another optimizer")
    from kanpde.pde.jacobian import pointwise_ok

    return pointwise_ok(problem, model)


def _diverged(loss: float, best: float, explode: float, params: list[Tensor]) -> str | None:
    """What went wrong at a step (a non-finite loss or parameters, or a loss above `explode`
    times `best`), or None."""
    if not math.isfinite(loss):
        return f"loss became {loss}"
    if explode and loss > explode * best:
        return f"loss exploded to {loss:.3g} (best {best:.3g})"
    if not all(bool(torch.isfinite(p.detach()).all()) for p in params):
        return "parameters became non-finite"
    return None


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
    checkpoints: Checkpoints | None = None,
    resume: dict | None = None,
    inject_nan: dict | None = None,
    on_step: Callable[[int], None] | None = None,
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
        checkpoints: where and how often to save the training state (None: never).
        resume: a state `checkpoints.load()` returned: continue from it (model, data and
            generator are replaced by the saved ones); a finished one is returned as it was.
        inject_nan: a test hook, {"step": k, "times": n}: the loss of the k-th step (1-based)
            is forced to NaN in its first n attempts.
        on_step: called with the number of steps taken after each step (the run's thread
            watch, `kanpde.cores.Watch`).
    """
    from tqdm.auto import tqdm

    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
    extra = problem.parameters()  # an inverse problem's unknowns, trained with the model
    result = TrainResult(model)
    if resume is not None:
        model = unpack_model(resume["model"], dtype, device)
        result = TrainResult(model, **{**resume["result"], "status": "ok"}) if not resume["done"] \
            else TrainResult(model, **resume["result"])
        with torch.no_grad():
            for p, v in zip(extra, resume["extra"]):
                p.copy_(v)
        data = {k: v for k, v in resume["data"].items()}
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["rng"])
        if resume["done"]:
            return result
    grid_x = problem.grid_samples(data)
    if resume is not None:
        reg_x = resume["reg_x"].to(grid_x)
    elif grid_x.shape[0] > REG_POINTS:
        # The regulariser's edge scales are means over samples: a fixed subset estimates them well
        # at a fraction of the cost (fixed, so L-BFGS sees one deterministic objective).
        pick = torch.randperm(grid_x.shape[0], generator=torch.Generator().manual_seed(0))[:REG_POINTS]
        reg_x = grid_x[pick.to(grid_x.device)]
    else:
        reg_x = grid_x
    total = sum(s.steps for s in stages)
    bar = tqdm(total=total, initial=result.steps, disable=not progress, dynamic_ncols=True, leave=False)
    losses = torch.compile(problem.losses, dynamic=False) if compile else problem.losses

    def loss_fn(stage: Stage | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        terms = losses(model, data, fast)
        kan, embed = spline_kan(model)
        if stage is not None and stage.reg > 0 and kan is not None:
            r = regularizer(kan, embed(reg_x), stage.reg_entropy, stage.reg_coef)
            terms = {**terms, "reg": stage.reg * r}
        return sum(terms.values()), terms

    def record(stage_i: int, loss: float, terms: dict[str, Tensor]) -> dict:
        row = {"step": result.steps, "stage": stage_i, "loss": loss, "evals": result.evals, "wall_s": result.wall_s}
        kan = spline_kan(model)[0]
        if kan is not None:
            row["grid"] = kan.layers[0].grid_size
        row.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
        row.update(problem.metrics(model, test))
        result.history.append(row)
        return row

    def good_state() -> dict:
        return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "extra": [p.detach().clone() for p in extra]}

    def restore(saved: dict) -> None:
        model.load_state_dict(saved["model"])
        with torch.no_grad():
            for p, v in zip(extra, saved["extra"]):
                p.copy_(v)

    def save(i: int, step: int, lr: float, opt, best: float, retries: int, done: bool = False) -> None:
        if checkpoints is None:
            return
        if not done and step >= stages[i].steps:  # a finished stage: the next one starts afresh
            i, step, opt, best, retries = i + 1, 0, None, math.inf, 0
            lr = stages[i].lr if i < len(stages) else lr
        checkpoints.save({
            "done": done, "stage": i, "step": step, "lr": lr, "best": best, "retries": retries,
            "model": pack_model(model), "extra": [p.detach().clone() for p in extra],
            "optimizer": None if opt is None else opt.state_dict(), "data": data,
            "generator": generator.get_state(), "rng": torch.get_rng_state(), "reg_x": reg_x,
            "result": result.summary(),
        })

    # the bar shows the loss, the error, and an inverse problem's recovered unknowns
    shown = ("loss", "rel_l2", *[k for k in problem.unknown_metrics() if not k.endswith("_true")]) \
        if hasattr(problem, "unknown_metrics") else ("loss", "l2_sq")
    if resume is None:
        loss0, terms0 = loss_fn()
        record(-1, float(loss0.detach()), terms0)
    first, step0 = (resume["stage"], resume["step"]) if resume is not None else (0, 0)
    injected, i, lr = 0, first, stages[min(first, len(stages) - 1)].lr
    with stop_requests() as stop:
        for i in range(first, len(stages)):
            stage = stages[i]
            kan, embed = spline_kan(model)
            if stage.grid is not None and kan is not None and stage.grid != kan.layers[0].grid_size:
                finer, change = extend_grid(kan, stage.grid, embed(grid_x))
                if kan is model:
                    model = finer
                else:  # behind periodic features
                    model.model = finer
                result.grid_changes.append({"step": result.steps, "grid": stage.grid, "max_change": change})
                log.info("grid -> %d (max change of u on the training points %.2e)", stage.grid, change)
            params = list(model.parameters()) + extra
            if stage.time_window < 1 or adaptive_sampling.ALL in data:
                weighting.check("window", problem)
                data = adaptive_sampling.time_window(problem, data, stage.time_window)
                data.pop(weighting.KEY, None)  # weights of the other window's points
            pointwise = _lm_setup(stage, i, problem, model)
            weighting.check(stage.weighting, problem)
            if stage.resampling == "rad" or stage.balance != "none":
                weighting.check("rad" if stage.resampling == "rad" else "balance", problem)
            jacobian_closure = (lambda: problem.residual_jacobian(model, data)) if pointwise else None
            lr, best, retries = stage.lr, math.inf, 0
            opt = make_optimizer(stage, params)
            step = step0 if i == first else 0
            if i == first and resume is not None and step0 > 0:
                lr, best, retries = resume["lr"], resume["best"], resume["retries"]
                opt = make_optimizer(stage, params, lr)
                if resume["optimizer"] is not None:
                    opt.load_state_dict(resume["optimizer"])
            last_good = checked = good_state()
            until = stage.steps if stage.update_grid_until is None else stage.update_grid_until
            box: dict = {}
            while step < stage.steps:
                t0 = time.perf_counter()
                kan, embed = spline_kan(model)
                # whether this step's objective differs from the last step's end: else L-BFGS may
                # reuse the loss and gradient it ended on instead of evaluating them again
                changed = False
                if kan is not None and stage.update_grid_every and step < until and step % stage.update_grid_every == 0:
                    update_grid_(kan, embed(grid_x), stage.grid_eps)
                    best, changed = math.inf, True  # a new objective
                if stage.resample_every and step and step % stage.resample_every == 0:
                    changed = True
                    if stage.resampling == "rad":
                        data = adaptive_sampling.rad(problem, model, data, generator, fast, stage.rad_k, stage.rad_c,
                                                     stage.rad_candidates)
                    else:
                        data = problem.resample(data, generator)
                    data.pop(weighting.KEY, None)  # the old points' weights
                    data.pop(adaptive_sampling.ALL, None)
                    if stage.time_window < 1:
                        data = adaptive_sampling.time_window(problem, data, stage.time_window)
                    grid_x = problem.grid_samples(data)
                    best = math.inf
                    # quasi-Newton curvature belongs to the old points; LM holds only its damping,
                    # kept (Burgers, MLP, seed 0, 1,200 steps: rel L2 9.6e-4 kept, 2.8e-3 reset)
                    if stage.optimizer not in FIRST_ORDER + ("lm",):
                        opt = make_optimizer(stage, params, lr)
                if stage.balance != "none" and step % stage.balance_every == 0:
                    data = weighting.balance(problem, model, params, data, fast, stage.balance_alpha)
                    changed = True
                if stage.weighting != "none" or weighting.KEY in data:  # fixed within the step
                    data = weighting.update(stage.weighting, problem, model, data, fast, stage.rba_gamma,
                                            stage.rba_eta, stage.causal_eps, stage.causal_chunks)
                    changed = True
                nan = inject_nan is not None and result.steps + 1 == inject_nan["step"] and injected < inject_nan["times"]
                changed = changed or nan
                if changed:
                    box = {}  # else it keeps the last evaluation's loss and terms

                def closure() -> Tensor:
                    opt.zero_grad(set_to_none=True)
                    loss, terms = loss_fn(stage)
                    if nan:
                        loss = loss * math.nan
                    loss.backward()
                    for p in model.parameters():  # L-BFGS views grads flat; some come back strided
                        if p.grad is not None and not p.grad.is_contiguous():
                            p.grad = p.grad.contiguous()
                    result.evals += 1
                    box["loss"], box["terms"] = loss.detach(), terms
                    return loss

                if stage.optimizer == "lm":
                    opt.step(lambda: problem.residual_vector(model, data, fast), jacobian_closure)
                    with torch.enable_grad():  # the loss at the new parameters, for the record
                        loss_lm, terms_lm = loss_fn(stage)
                    result.evals += 1
                    box["loss"], box["terms"] = loss_lm.detach(), {k: v.detach() for k, v in terms_lm.items()}
                elif stage.optimizer == "lbfgs":
                    opt.step(closure, reuse=not changed)
                elif stage.optimizer != "adam":
                    opt.step(closure)
                else:
                    closure()  # Adam: the loss at the parameters before its update
                injected += nan
                loss = float(box["loss"])
                what = _diverged(loss, best, stage.explode, params)
                if what is None and stage.optimizer == "adam":
                    checked = good_state()  # the state whose loss was just found good
                    opt.step()
                    what = _diverged(loss, best, 0.0, params)
                result.wall_s += time.perf_counter() - t0
                if what is not None:
                    restore(last_good if stage.optimizer != "adam" or what.startswith("loss") else checked)
                    retry = retries < stage.retries
                    lr = lr / 2 if retry else lr
                    result.recoveries.append({"step": result.steps + 1, "stage": i, "what": what,
                                              "lr": lr if retry else None})
                    if retry:
                        retries += 1
                        opt = make_optimizer(stage, params, lr)
                        log.warning("%s at step %d: last good state restored, retrying with lr %.3g and a "
                                    "fresh optimiser (retry %d of %d)", what, result.steps + 1, lr, retries, stage.retries)
                        continue
                    result.status = "diverged"
                    log.warning("%s at step %d: no retry left (stage.retries=%d); stopped with the last good "
                                "state", what, result.steps + 1, stage.retries)
                    break
                best = min(best, loss)
                last_good = good_state() if stage.optimizer != "adam" else checked
                result.steps += 1
                step += 1
                bar.update(1)
                if on_step is not None:
                    on_step(result.steps)
                if result.steps % log_every == 0 or step == stage.steps:
                    row = record(i, loss, box["terms"])
                    bar.set_postfix({k: f"{row[k]:.3g}" for k in shown if k in row})
                if stop.requested:
                    result.status = "interrupted"
                    log.warning("interrupted (%s) after step %d", stop.signal, result.steps)
                    save(i, step, lr, opt, best, retries)
                    break
                if checkpoints is not None and (step == stage.steps or checkpoints.every and result.steps % checkpoints.every == 0):
                    save(i, step, lr, opt, best, retries)
            if result.status != "ok":
                break
    bar.close()
    result.model = model
    if result.status != "interrupted":
        save(min(i, len(stages) - 1), 0, lr, None, math.inf, 0, done=True)
    return result
