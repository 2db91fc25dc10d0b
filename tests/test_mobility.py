"""The GAAM mobility-edge problem: a supervised problem in the same API, trained by the same solver."""

from __future__ import annotations

import torch
from torch import nn

from kanpde.registry import build_model, build_problem
from kanpde.train import Stage, train


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
