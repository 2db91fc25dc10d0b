"""Point weights of the PDE residual (`kanpde.pde.weighting`): RBA's and causal weighting's
updates against their formulas, the weighted loss and Levenberg-Marquardt's weighted Jacobian
against autograd, stage validation, and training runs that use them."""

from __future__ import annotations

import math
from typing import final

import numpy as np
import pytest
import torch

from kanpde.pde import weighting
from kanpde.pde.domains import Interval
from kanpde.pde.problem import PDEProblem
from kanpde.run import run
from kanpde.stages import parse_stages
from kanpde.validate import ConfigError

from conftest import compose_config
from test_optim import autograd_rows, setup


def raw_residual(prob, model, data):
    """(N,) the largest |r| over the equations at each interior point, by the slow route."""
    x = data["interior"]
    res = prob.residual(x, prob.fields(model, x, fast=False))
    parts = res.values() if isinstance(res, dict) else [res]
    return torch.cat([p.detach().reshape(len(x), -1) for p in parts], dim=1).abs().amax(dim=1)


def test_rba_update_follows_its_formula():
    prob, model, data = setup("heat", {"hard": False, "n_initial": 20})
    r = raw_residual(prob, model, data)
    once = weighting.update("rba", prob, model, data, True, gamma=0.9, eta=0.05)
    torch.testing.assert_close(once[weighting.KEY], 0.9 + 0.05 * r / r.max(), rtol=1e-12, atol=0)
    twice = weighting.update("rba", prob, model, once, True, gamma=0.9, eta=0.05)
    torch.testing.assert_close(twice[weighting.KEY], 0.9 * once[weighting.KEY] + 0.05 * r / r.max(), rtol=1e-12, atol=0)
    assert weighting.KEY not in weighting.update("none", prob, model, twice, True)
    assert weighting.KEY not in data  # the input is left alone


def test_causal_weights_follow_the_earlier_slices():
    prob, model, data = setup("heat", {"hard": False, "n_initial": 20})
    out = weighting.update("causal", prob, model, data, True, eps=3.0, chunks=4)
    r = raw_residual(prob, model, data).numpy()
    t = data["interior"][:, 1].numpy()
    edges = np.linspace(t.min(), t.max(), 5)
    slot = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, 3)
    mean = np.array([np.mean(r[slot == k] ** 2) for k in range(4)])
    w = np.exp(-3.0 * np.concatenate([[0.0], np.cumsum(mean)[:-1]]))
    np.testing.assert_allclose(out[weighting.KEY].numpy() ** 2, w[slot], rtol=1e-12)
    assert w[0] == 1.0 and np.all(np.diff(w) <= 0) and w[-1] < 1.0


def test_weighted_loss_and_lm_jacobian():
    """With point weights m the PDE term is mean((m r)^2), and the per-point Jacobian of the
    weighted residual vector equals its autograd rows."""
    prob, model, data = setup("heat", {"hard": False, "n_initial": 20})
    plain = prob.losses(model, data)["pde"]
    m = torch.linspace(0.2, 2.0, len(data["interior"]), dtype=torch.float64)
    weighted = {**data, weighting.KEY: m}
    x = data["interior"]
    r = prob.residual(x, prob.fields(model, x)).detach()[:, 0]
    assert float(prob.losses(model, weighted)["pde"].detach()) == pytest.approx(float(((m * r) ** 2).mean()), rel=1e-12)
    assert float(plain.detach()) == pytest.approx(float((r**2).mean()), rel=1e-12)
    assert float(prob.losses(model, weighted)["initial"].detach()) == float(prob.losses(model, data)["initial"].detach())
    params = list(model.parameters())
    r0 = prob.residual_vector(model, weighted)
    rj, jac = prob.residual_jacobian(model, weighted)
    torch.testing.assert_close(rj, r0.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(jac, autograd_rows(r0, params), rtol=0, atol=1e-12)


def test_weighting_options_are_checked():
    with pytest.raises(ConfigError, match=r"optim.stages\[0\].weighting must be one of"):
        parse_stages([{"weighting": "attention"}])
    with pytest.raises(ConfigError, match=r"rba_gamma must be in \[0, 1\)"):
        parse_stages([{"weighting": "rba", "rba_gamma": 1.0}])
    with pytest.raises(ConfigError, match="causal_chunks"):
        parse_stages([{"weighting": "causal", "causal_chunks": 0}])
    prob, _, _ = setup("poisson", {})
    with pytest.raises(ConfigError, match=r"weighting=causal needs a time variable t; .*\(x, y\)"):
        weighting.check("causal", prob)
    weighting.check("rba", prob)


@pytest.mark.parametrize("kind, optimizer", [("rba", "adam"), ("causal", "lbfgs"), ("causal", "lm")])
def test_runs_with_point_weights(kind, optimizer, tmp_path):
    """Three steps on Burgers with each weighting: the run finishes, the weights it trained with
    are in the final checkpoint, and they are what the formula gives."""
    stage = f"{{optimizer: {optimizer}, steps: 3, grid: 5, weighting: {kind}, lr: 1e-2}}"
    if optimizer != "adam":
        stage = stage.replace(", lr: 1e-2", ", max_iter: 2")
    metrics = run(compose_config(["problem=burgers", "problem.reference={nx: 33, nt: 11, quad_points: 40}",
                                  f"optim.stages=[{stage}]", "model.order=5"]), tmp_path)
    assert metrics["status"] == "ok" and metrics["steps"] == 3 and math.isfinite(metrics["rel_l2"])
    saved = torch.load(tmp_path / "checkpoints" / "restart-0.pt", weights_only=True)
    m = saved["data"][weighting.KEY]
    assert m.shape == (len(saved["data"]["interior"]),) and bool((m >= 0).all())
    if kind == "rba":
        low, high = 0.999**3, 0.999**3 + 0.01 * (1 + 0.999 + 0.999**2)
        assert low - 1e-12 <= float(m.min()) < float(m.max()) <= high + 1e-12
    else:
        assert float(m.max()) == 1.0


@final
class _Ramp(PDEProblem):
    """u = 0 should equal |x| on [-1, 1]: with the zero network the residual is -|x|."""

    second = "none"

    def __init__(self):
        super().__init__(n_interior=2000, n_boundary=2, sampling="random", n_test=10)
        self.domain = Interval(-1.0, 1.0)

    def residual(self, x, u):
        return u.value - x.abs()

    def conditions(self):
        return {}


class _Zero(torch.nn.Module):
    def forward(self, x):
        return 0.0 * x[:, :1]


@pytest.mark.parametrize("k, c, mean_abs", [(1.0, 0.0, 2 / 3), (1.0, 1.0, 7 / 12), (0.0, 1.0, 1 / 2), (2.0, 0.0, 3 / 4)])
def test_rad_draws_by_the_residual(k, c, mean_abs):
    """With residual |x| on [-1, 1], RAD's points have E|x| = E[|x| p] / E[p] for p = |x|^k /
    mean + c: 2/3 (k = 1, c = 0), 7/12 (k = 1, c = 1), 1/2 (uniform), 3/4 (k = 2)."""
    from kanpde.pde.adaptive_sampling import rad

    prob = _Ramp()
    data = prob.sample(torch.Generator().manual_seed(0))
    out = rad(prob, _Zero(), data, torch.Generator().manual_seed(1), fast=False, k=k, c=c, candidates=50)
    x = out["interior"]
    assert x.shape == data["interior"].shape and len(torch.unique(x)) == len(x)
    assert float(x.abs().mean()) == pytest.approx(mean_abs, abs=0.02)


def test_rad_options_and_run(tmp_path):
    with pytest.raises(ConfigError, match=r"resampling=rad needs optim.stages\[0\].resample_every > 0"):
        parse_stages([{"resampling": "rad"}])
    with pytest.raises(ConfigError, match="rad_candidates"):
        parse_stages([{"resampling": "rad", "resample_every": 2, "rad_candidates": 0}])
    stage = "{optimizer: lbfgs, steps: 3, grid: 5, max_iter: 2, resample_every: 1, resampling: rad, weighting: rba}"
    metrics = run(compose_config(["problem=heat", "optim=pde", f"optim.stages=[{stage}]"]), tmp_path)
    assert metrics["status"] == "ok" and metrics["steps"] == 3
    saved = torch.load(tmp_path / "checkpoints" / "restart-0.pt", weights_only=True)["data"]
    first = compose_config(["problem=heat"])
    assert saved["interior"].shape == (first.problem.n_interior, 2)
    assert saved[weighting.KEY].shape == (first.problem.n_interior,)


def grad_norms(prob, model, data):
    params = list(model.parameters())
    out = {}
    for name, loss in prob.losses(model, data).items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        out[name] = float(torch.sqrt(sum((g**2).sum() for g in grads if g is not None)))
    return out


def test_grad_norm_balance_equalises_the_terms():
    """With alpha = 0 the balanced terms' gradient norms all equal the sum of the unbalanced
    ones; with alpha = 0.5 each weight is halfway from 1; the weighted Jacobian is still exact."""
    prob, model, data = setup("heat", {"hard": False, "n_initial": 20})
    params = list(model.parameters())
    before = grad_norms(prob, model, data)
    assert set(before) == {"pde", "initial", "boundary"} and max(before.values()) > 2 * min(before.values())
    out = weighting.balance(prob, model, params, data, True, alpha=0.0)
    after = grad_norms(prob, model, out)
    for name in before:
        assert after[name] == pytest.approx(sum(before.values()), rel=1e-10)
    half = weighting.balance(prob, model, params, data, True, alpha=0.5)
    for name, g in before.items():
        assert float(half[weighting.TERMS][name]) == pytest.approx(0.5 + 0.5 * sum(before.values()) / g, rel=1e-12)
    r0 = prob.residual_vector(model, out)
    r, jac = prob.residual_jacobian(model, out)
    torch.testing.assert_close(r, r0.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(jac, autograd_rows(r0, params), rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="balance must be one of"):
        parse_stages([{"balance": "ntk"}])


def test_run_with_balancing(tmp_path):
    stage = "{optimizer: adam, steps: 4, lr: 1e-3, grid: 5, balance: grad_norm, balance_every: 2}"
    metrics = run(compose_config(["problem=heat", "problem.hard=false", f"optim.stages=[{stage}]"]), tmp_path)
    assert metrics["status"] == "ok" and metrics["steps"] == 4
    saved = torch.load(tmp_path / "checkpoints" / "restart-0.pt", weights_only=True)["data"]
    assert set(saved[weighting.TERMS]) == {"pde", "initial", "boundary"}
    assert all(float(w) > 0 and float(w) != 1.0 for w in saved[weighting.TERMS].values())


def test_time_window_maps_the_times_and_restores_them():
    from kanpde.pde.adaptive_sampling import ALL, time_window

    prob, _, data = setup("heat", {"hard": False, "n_initial": 20})
    half = time_window(prob, data, 0.5)
    x, full = half["interior"], data["interior"]
    torch.testing.assert_close(x[:, 1], 0.5 * full[:, 1], rtol=0, atol=0)  # heat: t in [0, 1]
    torch.testing.assert_close(x[:, 0], full[:, 0], rtol=0, atol=0)
    assert half[ALL] is full and half["initial"] is data["initial"]
    quarter = time_window(prob, half, 0.25)
    torch.testing.assert_close(quarter["interior"][:, 1], 0.25 * full[:, 1], rtol=0, atol=0)
    back = time_window(prob, quarter, 1.0)
    assert back["interior"] is full and ALL not in back
    with pytest.raises(ConfigError, match=r"time_window must be in \(0, 1\]"):
        parse_stages([{"time_window": 1.5}])
    poisson, _, _ = setup("poisson", {})
    with pytest.raises(ConfigError, match=r"time_window < 1 needs a time variable t"):
        weighting.check("window", poisson)


def test_run_marching_in_time_windows(tmp_path):
    stages = ("[{optimizer: lbfgs, steps: 2, grid: 5, max_iter: 2, time_window: 0.5},"
              " {optimizer: lbfgs, steps: 1, grid: 5, max_iter: 2, time_window: 0.25, weighting: causal}]")
    metrics = run(compose_config(["problem=heat", "optim=pde", f"optim.stages={stages}"]), tmp_path)
    assert metrics["status"] == "ok" and metrics["steps"] == 3
    saved = torch.load(tmp_path / "checkpoints" / "restart-0.pt", weights_only=True)["data"]
    t, t_all = saved["interior"][:, 1], saved["interior_all"][:, 1]
    torch.testing.assert_close(t, 0.25 * t_all, rtol=0, atol=0)
    assert float(t_all.max()) > 0.9 and saved[weighting.KEY].shape == t.shape
