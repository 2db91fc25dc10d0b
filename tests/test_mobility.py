"""The mobility-edge problems (gaam, maam, mosaic): supervised problems in the same API, trained by
the same solver and run by the same entry point."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import TINY_STAGES, compose_config
from kanpde.record import read_metrics
from kanpde.registry import build_model, build_problem
from kanpde.run import run
from kanpde.stages import Stage
from kanpde.train import train
from kanpde.validate import ConfigError


class TheoryLogit(nn.Module):
    """logit > 0 (extended) where alpha E + 2 (lambda - 1) < 0: the known GAAM mobility edge."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x):  # x: (N, 4) = (alpha, lambda, phi, E)
        alpha, lam, energy = x[:, 0:1], x[:, 1:2], x[:, 3:4]
        return -self.scale * (alpha * energy + 2 * (lam - 1))


def _problem(tmp_path):
    return build_problem({"name": "gaam", "n_hamiltonians": 6, "n_sites": 60, "test_fraction": 0.5,
                          "cache_dir": str(tmp_path)})


def test_theory_model_scores_the_theory_accuracy(tmp_path):
    """A model that is the theory formula gets exactly the reported theory accuracy, on held-out
    Hamiltonians disjoint from the training ones."""
    problem = _problem(tmp_path)
    data = problem.sample(torch.Generator().manual_seed(0))
    test = problem.test_data(torch.Generator().manual_seed(1))
    assert len(data["x"]) == len(test["x"]) == 3 * 60
    m = problem.metrics(TheoryLogit(), test)
    assert m["accuracy"] == m["theory_accuracy"] > 0.9


def test_kan_trains_on_gaam(tmp_path):
    """The solver fits a KAN [4,2,1,1] to the labels: the cross-entropy falls below half its start.

    (Held-out accuracy needs far more Hamiltonians than a unit test can afford: with 10 training
    chains the KAN fits their phases and generalises poorly.)"""
    problem = build_problem({"name": "gaam", "n_hamiltonians": 20, "n_sites": 80, "test_fraction": 0.5,
                             "cache_dir": str(tmp_path)})
    data = problem.sample(torch.Generator().manual_seed(0))
    test = problem.test_data(torch.Generator().manual_seed(1))
    model = build_model({"name": "kan", "width": [4, 2, 1, 1]}, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    result = train(model, problem, data, test, [Stage(steps=10, update_grid_every=5)], progress=False)
    assert result.status == "ok"
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert 0.0 <= result.history[-1]["accuracy"] <= 1.0


class FormulaLogit(nn.Module):
    """logit = -(localization margin): > 0 (extended) exactly where the theory says extended."""

    def __init__(self, margin):
        super().__init__()
        self.margin = margin
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        return -self.margin(x) + 0 * self.dummy


G = (math.sqrt(5) - 1) / 2
F_KAPPA = {2: lambda e: e, 3: lambda e: e**2 - 1, 4: lambda e: e * (e**2 - 2),
           5: lambda e: (e**2 - G**2) * (e**2 - G**-2)}
# margin > 0 where localized; x columns in the problem's input order
MARGINS = {
    ("maam", None): lambda x: x[:, 0:1] * torch.cosh(x[:, 1:2]) - x[:, 3:4] - torch.exp(x[:, 1:2]),
    **{("mosaic", k): (lambda k: lambda x: x[:, 0:1] * F_KAPPA[k](x[:, 1:2]).abs() - 1)(k) for k in (2, 3, 4, 5)},
}


@pytest.mark.parametrize("name, kappa", list(MARGINS))
def test_theory_formula_scores_theory_accuracy(tmp_path, name, kappa):
    """MAAM (lam cosh p > E + e^p) and mosaic (lam |f_kappa(E)| > 1) as models score exactly the
    reported theory accuracy on held-out Hamiltonians."""
    cfg = {"name": name, "n_hamiltonians": 6, "n_sites": 60, "test_fraction": 0.5, "cache_dir": str(tmp_path)}
    problem = build_problem({**cfg, **({"kappa": kappa} if kappa else {})})
    assert problem.variables == (("lam", "p", "phi", "E") if name == "maam" else ("lam", "E"))
    data = problem.sample(torch.Generator().manual_seed(0))
    test = problem.test_data(torch.Generator().manual_seed(1))
    assert data["x"].shape == test["x"].shape == (3 * 60, problem.in_dim)
    m = problem.metrics(FormulaLogit(MARGINS[(name, kappa)]), test)
    assert m["accuracy"] == m["theory_accuracy"] > 0.7  # short chains: kappa 4, 5 agree least


@pytest.mark.parametrize("kappa", [1, 6, 2.5, "2"])
def test_mosaic_rejects_bad_kappa(tmp_path, kappa):
    """kappa outside the integers 2..5 fails in one line naming it."""
    with pytest.raises(ConfigError, match=r"^problem\.kappa must be an integer") as err:
        build_problem({"name": "mosaic", "kappa": kappa, "cache_dir": str(tmp_path)})
    assert "\n" not in str(err.value) and repr(kappa) in str(err.value)


@pytest.mark.parametrize("problem, extra", [
    ("maam", []), ("mosaic", ["problem.kappa=3"]),
    ("gaam", ["model.width=[4,2,1,1]", "model.mult=null", "interpret=none"]),  # the paper's shape
])
def test_run_mobility_problem(tmp_path, problem, extra):
    """`python -m kanpde problem=<name>` shrunk: two optimiser steps through kanpde.run.run write
    metrics with a test accuracy, the theory's accuracy and (with the problem's own model and
    interpret=symbolic) a formula with its accuracy."""
    cfg = compose_config([f"problem={problem}", "problem.n_hamiltonians=4",
                          "problem.n_sites=30", "problem.test_fraction=0.5",
                          f"problem.cache_dir={tmp_path / 'cache'}", "progress=false", "device=cpu",
                          TINY_STAGES, *extra], shrink=False)
    metrics = run(cfg, tmp_path / "run")
    assert read_metrics(tmp_path / "run") == metrics
    assert metrics["problem"] == problem and metrics["status"] == "ok" and metrics["steps"] == 2
    assert 0 <= metrics["accuracy"] <= 1 and 0.5 < metrics["theory_accuracy"] <= 1
    if "interpret=none" in extra:
        assert "formula" not in metrics and not (tmp_path / "run" / "formula.json").exists()
    else:
        assert "interpret_error" not in metrics
        assert 0 <= metrics["formula_accuracy"] <= 1 and metrics["formula"]
        assert (tmp_path / "run" / "formula.json").exists() and (tmp_path / "run" / "edges.png").exists()
    assert math.isfinite(metrics["loss"])


class _EdgeAt(nn.Module):
    """Logit log(c / |f_kappa(E)|) - log(lambda): its edge is lambda = c / |f_kappa(E)|."""

    def __init__(self, problem, c: float):
        super().__init__()
        self.problem, self.c = problem, c
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # for the dtype/device

    def forward(self, x):
        f = torch.as_tensor(self.problem.edge_function(x[:, 1].numpy()))
        return (math.log(self.c) - torch.log(f.abs()) - torch.log(x[:, 0])).unsqueeze(1)


def test_mosaic_edge_error_oracle(tmp_path):
    """edge_error is ~0 for a model whose edge is 1/|f_kappa| and ~0.3 for one at 1.3/|f_kappa|,
    counting only energies whose nearby states lie on both sides of the edge."""
    import numpy as np

    problem = build_problem({"name": "mosaic", "kappa": 3, "cache_dir": str(tmp_path)})
    rng = np.random.default_rng(0)
    energies = rng.uniform(-3, 3, 4000)
    lams = rng.uniform(0.2, 3.0, 4000)
    exact = problem.edge_error(_EdgeAt(problem, 1.0), energies, lams)
    off = problem.edge_error(_EdgeAt(problem, 1.3), energies, lams)
    assert exact < 0.01 and abs(off - 0.3) < 0.02
    # states only above the edge: no energy determines it
    above = 1.5 / np.abs(problem.edge_function(energies)) + lams
    assert math.isnan(problem.edge_error(_EdgeAt(problem, 1.0), energies, above))
