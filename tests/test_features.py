"""Periodic Fourier input features: the embedding by hand, jets against nested autograd for a
wrapped KAN, MLP and ChebyKAN, exact periodicity, validation, the registry and the run record."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import F64, assert_jets_equal, gen, points

from kanpde.nn.chebyshev import ChebyKAN
from kanpde.nn.derivatives import autograd_jet, input_jet
from kanpde.nn.features import PeriodicFeatures, embedded_dim
from kanpde.nn.kan import KAN
from kanpde.nn.mlp import MLP
from kanpde.pde.solution import Solution
from kanpde.record import load_model, read_history, read_metrics, write_h5
from kanpde.registry import build_model, model_name
from kanpde.run import run
from kanpde.validate import ConfigError

MODES = ("none", "laplacian", "diag", "full")


NETS = {
    "kan": lambda w: KAN(w, grid=4, noise_scale=1.0, generator=gen(1), dtype=F64),
    "mlp": lambda w: MLP(w, generator=gen(1), dtype=F64),
    "chebykan": lambda w: ChebyKAN(w, degree=4, generator=gen(1), dtype=F64),
}


def wrapped(net: str, period: dict, harmonics: int, in_dim: int = 3, out_dim: int = 2) -> PeriodicFeatures:
    width = [embedded_dim(in_dim, len(period), harmonics), 5, out_dim]
    return PeriodicFeatures(NETS[net](width), period, harmonics)


def test_embedding_by_hand():
    """Input 1 of (x0, x1, x2) with period L and M = 2 becomes, in place,
    cos(w x1), sin(w x1), cos(2 w x1), sin(2 w x1), w = 2 pi / L; the others pass through exactly."""
    model = wrapped("mlp", {1: 1.5}, 2)
    assert model.config.width == [3, 5, 2] and model.model.config.width == [6, 5, 2]
    x = points(7, 3, seed=2)
    w = 2 * math.pi / 1.5
    x1 = x[:, 1]
    expect = torch.stack([x[:, 0], torch.cos(w * x1), torch.sin(w * x1), torch.cos(2 * w * x1),
                          torch.sin(2 * w * x1), x[:, 2]], dim=1)
    e = model.embed(x)
    assert torch.equal(e[:, 0], x[:, 0]) and torch.equal(e[:, 5], x[:, 2])
    torch.testing.assert_close(e, expect, rtol=0, atol=1e-15)
    torch.testing.assert_close(model(x), model.model(expect), rtol=0, atol=1e-14)
    assert model.state_dict().keys() == {f"model.{k}" for k in model.model.state_dict()}


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize(("period", "harmonics"), [({0: 2.0}, 1), ({0: 2.0, 2: 0.7}, 3)])
def test_jet_equals_autograd(net, period, harmonics):
    """PeriodicFeatures.jet (features pushed into the network's own push) equals nested autograd
    to 1e-10 in float64 for every second mode."""
    model = wrapped(net, period, harmonics)
    assert model.fast_jet
    x = points(12, 3, seed=3)
    for mode in MODES:
        assert_jets_equal(model.jet(x, mode), autograd_jet(model, x, mode))


@pytest.mark.parametrize("net", sorted(NETS))
def test_embed_jet_equals_autograd(net):
    """The embedding's own jet equals nested autograd of e(x)."""
    model = wrapped(net, {0: 2.0, 1: 1.0}, 2)
    x = points(9, 3, seed=4)
    for mode in MODES:
        assert_jets_equal(model.embed_jet(input_jet(x, mode)), autograd_jet(model.embed, x, mode))


@pytest.mark.parametrize("net", sorted(NETS))
def test_exactly_periodic(net):
    """u(x + k L e_j) = u(x) to rounding for whole periods k, for the value and the whole jet;
    a non-periodic input is not."""
    model = wrapped(net, {0: 2.0, 2: 0.7}, 2)
    x = points(20, 3, seed=5, half_width=1.0)
    base = model.jet(x, "full")
    for j, lj in ((0, 2.0), (2, 0.7)):
        for k in (1, -3):
            shifted = x.clone()
            shifted[:, j] += k * lj
            moved = model.jet(shifted, "full")
            for name in ("value", "grad", "second"):
                a, b = getattr(moved, name).detach(), getattr(base, name).detach()
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * float(b.abs().max()))
    other = x.clone()
    other[:, 1] += 2.0
    assert float((model(other) - model(x)).detach().abs().max()) > 1e-3


@pytest.mark.parametrize("net", sorted(NETS))
def test_behind_a_problem_scaling_stays_on_the_fast_path(net):
    """Inside a problem's Solution (box scaling onto [-1, 1]^d), the wrapper's push takes a jet
    with a non-identity gradient: the result equals nested autograd of the whole Solution, and
    the network's autograd fallback is not used."""
    model = wrapped(net, {0: 2.0}, 2, in_dim=2, out_dim=1)
    lower, upper = torch.tensor([0.0, 0.0], dtype=F64), torch.tensor([2 * math.pi, 1.0], dtype=F64)
    sol = Solution(model, lower, upper)
    x = torch.rand(15, 2, generator=gen(6), dtype=F64) * (upper - lower) + lower
    calls = []
    push = model.push
    model.push = lambda h: calls.append(1) or push(h)
    for mode in MODES:
        assert_jets_equal(sol.jet(x, mode), autograd_jet(sol, x, mode))
    assert len(calls) == len(MODES)
    shifted = x + torch.tensor([2 * math.pi, 0.0], dtype=F64)  # the box's width: one period
    torch.testing.assert_close(sol(shifted), sol(x), rtol=0, atol=1e-12)


def test_network_without_fast_path_falls_back_to_autograd():
    """A KAN with multiplication nodes has no forward-propagated jet: the wrapper says so
    (`fast_jet` false) and its jet is nested autograd, still correct."""
    net = KAN([4, 3, 1], grid=3, mult=[0, 1, 0], noise_scale=1.0, generator=gen(7), dtype=F64)
    model = PeriodicFeatures(net, {0: 2.0}, 1)
    assert not model.fast_jet
    x = points(8, 3, seed=8)
    assert_jets_equal(model.jet(x, "diag"), autograd_jet(model, x, "diag"), rtol=1e-14)


def test_parameters_get_gradients():
    """The wrapper holds no parameters of its own; gradients flow to all of the network's."""
    model = wrapped("chebykan", {0: 2.0}, 2)
    assert list(model.parameters()) == list(model.model.parameters())
    model.jet(points(6, 3, seed=9), "laplacian").second.sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in model.parameters())


@pytest.mark.parametrize(("period", "harmonics", "width0", "words"), [
    ({0: -1.0}, 1, 3, r"periodic\.period\[0\]"),
    ({0: math.inf}, 1, 3, "finite"),
    ({5: 1.0}, 1, 3, "not an input"),
    ({"x": 1.0}, 1, 3, "not an input index"),
    ({}, 1, 3, "non-empty"),
    ([0], 1, 3, "mapping"),
    ({0: 1.0}, 0, 3, r"periodic\.harmonics"),
    ({0: 1.0, 1: 1.0}, 2, 5, "cannot take 2 periodic inputs"),
])
def test_constructor_rejects_bad_settings(period, harmonics, width0, words):
    """Bad periods, inputs or harmonics fail with one line naming the setting."""
    net = MLP([width0, 4, 1], generator=gen(10), dtype=F64)
    with pytest.raises(ConfigError, match=words) as info:
        PeriodicFeatures(net, period, harmonics)
    assert "\n" not in str(info.value)


def test_registry_option_and_record_round_trip(tmp_path):
    """build_model's `periodic` option wraps the network (width stays the outer one); variable
    names resolve when given; the record saves and rebuilds it."""
    cfg = {"name": "chebykan", "width": [2, 6, 1], "degree": 3, "periodic": {"period": {"x": 2.0}, "harmonics": 3}}
    with pytest.raises(ConfigError, match="not an input index"):
        build_model(cfg)
    model = build_model(cfg, generator=gen(11), dtype=F64, variables=["x", "t"])
    assert isinstance(model, PeriodicFeatures) and model_name(model) == "chebykan"
    assert model.config.width == [2, 6, 1] and model.model.config.width == [7, 6, 1]
    assert model.config.period == {0: 2.0}
    args = model.constructor_args()
    assert args["periodic"] == {"period": {"0": 2.0}, "harmonics": 3} and args["width"] == [2, 6, 1]
    again = build_model({"name": "chebykan", **args}, dtype=F64)
    assert again.constructor_args() == args
    write_h5(tmp_path / "run.h5", [{"step": 0, "loss": 1.0}], {}, model)
    loaded = load_model(tmp_path)
    x = points(10, 2, seed=12)
    assert isinstance(loaded, PeriodicFeatures) and type(loaded.model) is ChebyKAN
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="model.periodic"):
        build_model({**cfg, "periodic": {"periods": {0: 2.0}}})
    assert type(build_model({"name": "mlp", "width": [2, 3, 1], "periodic": None})) is MLP


def test_periodic_run_from_the_command_line_config(tiny_config, tmp_path):
    """`+model.periodic=...` on the advection problem (x periodic over its whole interval: period
    2 after the scaling onto [-1, 1]) trains, records, and the periodic mismatch is ~0."""
    cfg = tiny_config("problem=advection", "model=mlp", "model.width=[in,16,out]",
                      "+model.periodic={period:{0:2.0},harmonics:2}", "problem.n_initial=16")
    metrics = run(cfg, tmp_path)
    assert read_metrics(tmp_path)["status"] == "ok" and metrics["model"] == "mlp"
    assert metrics["variables"][0] == "x" and metrics["width"] == [2, 16, 1]
    loaded = load_model(tmp_path)
    assert isinstance(loaded, PeriodicFeatures) and loaded.model.config.width == [5, 16, 1]
    hist = read_history(tmp_path)
    assert hist["loss_pde"].max() > 1e-3 and hist["loss_periodic"].max() < 1e-25


def test_kan_behind_features_follows_the_grid_schedule(tiny_config, tmp_path):
    """A KAN behind periodic features gets the stages' grid extension and grid updates (on the
    features it sees; its hidden values leave [-1, 1], so the extension moves u by ~1e-3, as for
    a plain KAN whose samples leave its grid), and the run records the grid."""
    stages = ("optim.stages=[{optimizer: lbfgs, steps: 2, grid: 4, max_iter: 2, update_grid_every: 1},"
              " {optimizer: lbfgs, steps: 1, grid: 8, max_iter: 2}]")
    cfg = tiny_config("problem=advection", "optim=pde", "model=kan", "model.width=[in,4,out]", stages,
                      "+model.periodic={period:{0:2.0},harmonics:2}", "problem.n_initial=16")
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "ok" and metrics["grid"] == 8
    assert [c["grid"] for c in metrics["grid_changes"]] == [4, 8] and metrics["grid_changes"][-1]["max_change"] < 1e-2
    loaded = load_model(tmp_path)
    assert isinstance(loaded, PeriodicFeatures) and loaded.model.layers[0].grid_size == 8
    assert list(read_history(tmp_path)["grid"]) == [5, 4, 4, 8]  # the initial row: the model as built
