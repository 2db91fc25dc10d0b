"""The problem library end to end: every PDE problem with both models runs two optimiser steps
through `kanpde.run.run` and writes a complete record (metrics against its exact or reference
solution, solution fields a plot can draw); a problem in the user's own folder runs from the
command line and from `kanpde.solve`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from kanpde.pde.problem import PDEProblem
from kanpde.registry import PROBLEMS, problem_names
from kanpde.run import run

from conftest import compose_config

# Coarse reference solvers: the test checks the plumbing, the solvers have their own tests.
COARSE = {
    "burgers": ["problem.reference={nx: 33, nt: 11, quad_points: 40}"],
    "allen_cahn": ["problem.reference={nx: 64, dt: 0.01, nt_out: 11}"],
    "kdv": ["problem.reference={nx: 64, dt: 0.001, nt_out: 11}"],
    "poisson_lshape": ["problem.reference={n: 17, singular_correction: false}"],
    "cavity": ["problem.reference={n: 17}"],
}
LIBRARY = ["poisson3d", "poisson_lshape", "helmholtz", "heat", "advection", "wave", "burgers", "allen_cahn", "kdv",
           "kovasznay", "cavity", "heat_inverse", "diffusion_inverse"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_library_is_registered():
    assert set(LIBRARY) <= set(problem_names())
    assert all(issubclass(PROBLEMS[name], PDEProblem) for name in LIBRARY)


@pytest.mark.parametrize("model", ["kan", "mlp"])
@pytest.mark.parametrize("name", LIBRARY)
def test_every_problem_runs_with_both_models(name, model, tmp_path):
    overrides = [f"problem={name}", f"model={model}", *COARSE.get(name, [])]
    if model == "mlp":
        overrides.append("model.width=[in,8,out]")
    metrics = run(compose_config(overrides), tmp_path)
    assert metrics["status"] == "ok" and metrics["steps"] == 2
    assert np.isfinite(metrics["rel_l2"]) and np.isfinite(metrics["loss"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rel_l2"] == metrics["rel_l2"]
    if name in COARSE:
        assert "reference" in saved and "solver" in saved["reference"]
    with h5py.File(tmp_path / "run.h5") as f:
        x, inside, u = f["fields/x"][()], f["fields/inside"][()], f["fields/u_pred"][()]
        assert x.shape[1] == len(metrics["variables"]) and u.shape == (len(x), len(metrics["outputs"]))
        truth = f["fields/u_exact"][()] if "u_exact" in f["fields"] else f["fields/u_ref"][()]
        assert truth.shape == u.shape and np.isfinite(truth[inside]).all()
        assert len(f["history/loss"]) == 3
    if name.endswith("_inverse"):
        assert any(k.endswith("_rel_err") or k == "a_rel_l2" for k in metrics)


AUTO = ["heat", "helmholtz", "wave", "poisson3d", "poisson_lshape", "advection", "allen_cahn"]


def test_every_model_has_a_recipe_in_each_family():
    """A problem picks `optim: auto/${model}` (or inverse/...): each model option needs a file."""
    conf = Path(__file__).resolve().parents[1] / "conf"
    models = {p.stem for p in (conf / "model").glob("*.yaml")}
    for family in ("auto", "inverse"):
        assert models <= {p.stem for p in (conf / "optim" / family).glob("*.yaml")}, family


def test_burgers_mlp_recipe_is_lm_with_rad_and_runs(tmp_path):
    """recipe=burgers_mlp: MLP [2,30,30,30,1], one LM stage redrawing points by RAD (eps^2); a
    shrunk run of it (3 steps, RAD after 2) trains and redraws without error."""
    cfg = compose_config(["problem=burgers", "recipe=burgers_mlp"], shrink=False)
    assert cfg.model.name == "mlp" and list(cfg.model.width) == ["in", 30, 30, 30, "out"]
    (stage,) = cfg.optim.stages
    assert (stage.optimizer, stage.resampling, stage.rad_k, stage.resample_every) == ("lm", "rad", 2, 50)
    tiny = compose_config(["problem=burgers", "recipe=burgers_mlp", "problem.n_initial=16",
                           "optim.stages=[{optimizer: lm, steps: 3, resample_every: 2, resampling: rad, rad_k: 2}]"])
    metrics = run(tiny, tmp_path)
    assert metrics["status"] == "ok" and metrics["steps"] == 3 and metrics["n_params"] == 1981


@pytest.mark.parametrize("optimizer, built", [("lm", 1), ("lbfgs", 3)])
def test_resampling_keeps_lm_and_restarts_quasi_newton(tmp_path, monkeypatch, optimizer, built):
    """Redrawing the points (every 2 of 5 steps) restarts L-BFGS's memory (a new optimiser per
    draw) but keeps Levenberg-Marquardt, whose damping is all it carries."""
    import kanpde.train

    made = []
    real = kanpde.train.make_optimizer
    monkeypatch.setattr(kanpde.train, "make_optimizer", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    tiny = compose_config(["problem=burgers", "recipe=burgers_mlp", "problem.n_initial=16",
                           f"optim.stages=[{{optimizer: {optimizer}, steps: 5, resample_every: 2, resampling: rad}}]"])
    assert run(tiny, tmp_path)["status"] == "ok"
    assert len(made) == built
    if optimizer == "lm":
        assert made[0].state[made[0]._params[0]]["n_iter"] == 5


@pytest.mark.parametrize("name", AUTO)
def test_library_recipe_follows_the_model_and_yields_to_the_user(name):
    kan = compose_config([f"problem={name}"], shrink=False)
    assert kan.optim.name == "lm" and kan.model.order == 5
    assert [s.optimizer for s in kan.optim.stages] == ["lm"] * 4
    mlp = compose_config([f"problem={name}", "model=mlp"], shrink=False)
    assert mlp.optim.name == "pde" and {s.optimizer for s in mlp.optim.stages} == {"lbfgs"}
    mine = compose_config([f"problem={name}", "optim=grid_lbfgs", "model.order=3"], shrink=False)
    assert mine.optim.name == "grid_lbfgs" and mine.model.order == 3
    assert compose_config([f"problem={name}", "model=kan_gaam"], shrink=False).optim.name == "lm"
    chosen = compose_config(["optim=auto/kan"], shrink=False)  # on the command line, any problem
    assert chosen.optim.name == "lm" and chosen.model.order == 5
    inverse = compose_config(["problem=diffusion_inverse"], shrink=False)
    assert inverse.optim.stages[-1].steps == 100 and inverse.model.order == 5


def test_recipe_lm_trains_the_lshape_corner_coefficients(tmp_path):
    """Two Levenberg-Marquardt steps on the enriched L-shape: the corner coefficients are in the
    Jacobian (they move off zero) and in the record."""
    metrics = run(compose_config(["problem=poisson_lshape", *COARSE["poisson_lshape"],
                                  "optim.stages=[{optimizer: lm, steps: 2, grid: 5}]"]), tmp_path)
    assert metrics["status"] == "ok" and metrics["optim"] == "lm" and metrics["steps"] == 2
    assert abs(metrics["c1"]) > 1e-3 and "c2" in metrics
    with h5py.File(tmp_path / "run.h5") as f:
        loss, c1 = f["history/loss"][()], f["history/c1"][()]
    assert loss[-1] < loss[0] and c1[0] == 0.0 and c1[-1] == metrics["c1"]


def test_benchmark_experiment_sweeps_the_library():
    """experiment=benchmark: every library problem x the library's KAN and MLP x 3 seeds, and each
    job composes to the problem's recipe for its model."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=benchmark"], return_hydra_config=True)
        params = cfg.hydra.sweeper.params
        assert params.problem.split(",") == LIBRARY and params.recipe == "library_kan,best_mlp"
        assert params.seed == "0,1,2" and cfg.threads == 1
        mlp = compose("config", overrides=["experiment=benchmark", "problem=helmholtz", "recipe=best_mlp"])
        kan = compose("config", overrides=["experiment=benchmark", "problem=helmholtz", "recipe=library_kan"])
        burgers = compose("config", overrides=["experiment=benchmark", "problem=burgers", "recipe=best_mlp"])
    assert list(mlp.model.width) == ["in", 50, 50, 50, "out"] and mlp.optim.name == "pde"
    assert kan.model.name == "kan" and kan.optim.name == "lm" and kan.model.order == 5
    assert burgers.model.name == "mlp" and list(burgers.model.width) == ["in", 30, 30, 30, "out"]
    assert burgers.optim.name == "lm" and burgers.progress is False


@pytest.mark.parametrize("problem", ["burgers", "allen_cahn"])
def test_best_mlp_is_the_problems_own_recipe(problem):
    """recipe=best_mlp picks conf/recipe_by_problem/<problem>_best_mlp.yaml: the same model,
    problem and stages as recipe=<problem>_mlp (Allen-Cahn with its fade); elsewhere library_mlp."""
    best = compose_config([f"problem={problem}", "recipe=best_mlp"], shrink=False)
    own = compose_config([f"problem={problem}", f"recipe={problem}_mlp"], shrink=False)
    assert best.model == own.model and best.problem == own.problem
    assert best.optim.stages == own.optim.stages and (best.optim.name, best.optim.damping) == ("lm", own.optim.damping)
    assert best.problem.get("fade", 0.0) == (0.1 if problem == "allen_cahn" else 0.0)
    heat = compose_config(["problem=heat", "recipe=best_mlp"], shrink=False)
    assert heat == compose_config(["problem=heat", "recipe=library_mlp"], shrink=False)


USER_PROBLEM = '''
"""A user's own problem: u'' + u = 0 on [0, pi / 2], u(0) = 0, u(pi / 2) = 1; exact u = sin x."""
import math
from typing import final

import torch

from kanpde.pde.conditions import Dirichlet
from kanpde.pde.domains import Interval
from kanpde.pde.problem import PDEProblem
from kanpde.registry import register_problem


@final
@register_problem("my_oscillator")
class MyOscillator(PDEProblem):
    second = "diag"

    def __init__(self, n_interior=100, n_boundary=2, sampling="sobol", n_test=200):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.domain = Interval(0.0, math.pi / 2)

    def residual(self, x, u):
        return u.d("x", "x") + u.value

    def conditions(self):
        return {"left": Dirichlet(0.0, where="left"), "right": Dirichlet(1.0, where="right")}

    def exact(self, x):
        return torch.sin(x)
'''


def user_folder(tmp_path):
    conf = tmp_path / "my_conf"
    (conf / "problem").mkdir(parents=True)
    (tmp_path / "my_oscillator.py").write_text(textwrap.dedent(USER_PROBLEM))
    (conf / "problem" / "my_oscillator.yaml").write_text(
        "name: my_oscillator\nfile: my_oscillator.py\nn_interior: 100\n")
    return conf


def test_user_problem_from_own_folder_on_the_command_line(tmp_path):
    """`python -m kanpde --config-dir ./my_conf problem=my_oscillator` from the user's folder."""
    conf = user_folder(tmp_path)
    cmd = [sys.executable, "-m", "kanpde", "--config-dir", str(conf), "problem=my_oscillator", "threads=1",
           "progress=false", "optim.stages=[{optimizer: lbfgs, steps: 20}]", "hydra.run.dir=run"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["problem"] == "my_oscillator" and metrics["rel_l2"] < 1e-2
    bad = subprocess.run([*cmd[:5], "problem=my_oscilator"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        bad.stderr.strip().splitlines()[-1]] and "my_oscillator" in bad.stderr and "allowed" in bad.stderr


def test_solve_from_python_with_a_problem_object(tmp_path):
    """`kanpde.solve` takes a problem object from a notebook and writes the same record."""
    import kanpde

    namespace: dict = {}
    exec(compile(USER_PROBLEM.replace('"my_oscillator"', '"my_oscillator_obj"'), "notebook", "exec"), namespace)
    problem = namespace["MyOscillator"]()
    result = kanpde.solve(problem, overrides=["threads=1", "optim.stages=[{optimizer: lbfgs, steps: 20}]"],
                          out_dir=tmp_path / "run")
    assert result.metrics["problem"] == "my_oscillator_obj" and result.metrics["rel_l2"] < 1e-2
    assert (tmp_path / "run" / "run.h5").exists()
    import torch

    x = torch.tensor([[0.3], [1.2]], dtype=torch.float64)
    assert torch.allclose(result.predict(x), torch.sin(x), atol=1e-2)


def test_resampling_draws_fresh_points_reproducibly(tmp_path):
    """A stage's resample_every draws new interior points from the run's generator: the same
    config gives identical metrics twice, and differs from the same run without resampling."""
    from kanpde.registry import build_problem
    import torch

    prob = build_problem({"name": "heat", "n_interior": 50})
    data = prob.sample(torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    fresh = prob.resample(data, g)
    assert not torch.equal(fresh["interior"], data["interior"]) and fresh["initial"] is data["initial"]
    assert bool(prob.domain.contains(fresh["interior"], closed=False).all())
    stages = "optim.stages=[{optimizer: adam, steps: 4, lr: 0.001, resample_every: 2}]"
    a = run(compose_config(["problem=heat", stages]), tmp_path / "a")
    b = run(compose_config(["problem=heat", stages]), tmp_path / "b")
    c = run(compose_config(["problem=heat", stages.replace("resample_every: 2", "resample_every: 0")]), tmp_path / "c")
    assert a["loss"] == b["loss"] and a["rel_l2"] == b["rel_l2"]
    assert a["loss"] != c["loss"]


def readme_block(first_line: str) -> str:
    """The README code block whose first line is `first_line`."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    start = text.index("\n" + first_line + "\n") + 1
    return text[start : text.index("```", start)]


def test_readme_own_problem(tmp_path):
    """The README's "Your own problem" example, as written there, runs from a folder outside the
    repository (fewer steps here) and solves its equation."""
    (tmp_path / "my_pde.py").write_text(readme_block("# my_pde.py"))
    (tmp_path / "my_conf" / "problem").mkdir(parents=True)
    (tmp_path / "my_conf" / "problem" / "my_pde.yaml").write_text(readme_block("# my_conf/problem/my_pde.yaml"))
    cmd = [sys.executable, "-m", "kanpde", "--config-dir", "my_conf", "problem=my_pde", "threads=1", "progress=false",
           "problem.n_interior=500", "optim.stages=[{optimizer: lbfgs, steps: 30}]", "hydra.run.dir=run"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["rel_l2"] < 1e-2
