"""Solving from Python, for notebooks and scripts: the command line's run in one call.

    import kanpde
    result = kanpde.solve("heat", model="mlp", overrides=["seed=1"])
    result.metrics["rel_l2"], result.predict(x)

`solve` composes the same config as `python -m kanpde` (the packaged configs, plus a user's
config folder if given), runs it through `kanpde.run.solve_config` and writes the same run
record. It takes a problem by name or as an object (an instance of a `PDEProblem` subclass
defined in the notebook, registered or not).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from kanpde.problem import Problem
from kanpde.validate import ConfigError


@dataclass
class Solved:
    """What `solve` returns.

    Attributes:
        metrics: the final metrics (as in metrics.json).
        model: the trained network.
        problem: the problem object (an inverse problem's recovered unknowns included).
        out_dir: the run record's folder.
    """

    metrics: dict
    model: nn.Module
    problem: Problem
    out_dir: Path

    def predict(self, x: Tensor) -> Tensor:
        """(N, m) the trained solution at x (N, d), input scaling and hard constraints included."""
        return self.problem.predict(self.model, torch.as_tensor(x, dtype=torch.float64))


def compose_config(problem: str = "poisson", model: str = "kan", optim: str | None = None,
                   overrides: Sequence[str] = (), config_dir: str | Path | None = None):
    """The config `python -m kanpde problem=<problem> model=<model> [optim=<optim>] <overrides>`
    composes (with `--config-dir <config_dir>`)."""
    from hydra import compose, initialize_config_module

    choices = [f"problem={problem}", f"model={model}", *([f"optim={optim}"] if optim else []), *overrides]
    if config_dir is not None:
        choices.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    try:
        with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
            return compose(config_name="config", overrides=choices)
    except Exception as exc:  # Hydra's errors span lines; one is enough
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConfigError("bad override: " + " ".join(lines[:2])) from exc


def solve(problem: str | Problem = "poisson", model: str = "kan", optim: str | None = None,
          overrides: Sequence[str] = (), out_dir: str | Path | None = None,
          config_dir: str | Path | None = None, progress: bool = False) -> Solved:
    """Solve a problem and write its run record.

    Args:
        problem: a problem name (a config in kanpde.conf/problem or in `config_dir`/problem) or a
            problem object.
        model: a model config name ("kan", "mlp", ...).
        optim: an optimiser config name; None: the problem's default.
        overrides: Hydra overrides, e.g. ["model.width=[in,20,out]", "seed=1"].
        out_dir: the run folder; default results/runs/<date>/<time>_<problem>_<model>.
        config_dir: a folder of the user's configs (like --config-dir).
        progress: show the progress bar.

    Returns:
        `Solved` with the metrics, the trained model, the problem and the run folder.
    """
    from omegaconf import OmegaConf

    from kanpde.run import solve_config

    obj = None
    if not isinstance(problem, str):
        if not isinstance(problem, Problem):
            raise ConfigError(f"problem must be a name or a kanpde Problem, got {type(problem).__name__}")
        obj, problem = problem, "poisson"  # any config: its problem group is replaced below
    cfg = OmegaConf.to_container(compose_config(problem, model, optim, [f"progress={str(progress).lower()}",
                                                                        *overrides], config_dir), resolve=True)
    if obj is not None:
        cfg["problem"] = {"name": getattr(obj, "name", type(obj).__name__)}
    if out_dir is None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
        out_dir = Path("results/runs") / f"{stamp}_{cfg['problem']['name']}_{cfg['model']['name']}"
    metrics, net, prob = solve_config(cfg, out_dir, obj)
    return Solved(metrics, net, prob, Path(out_dir))
