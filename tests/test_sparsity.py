"""Sparsity regularisation (kanpde.interpret.sparsity, sec. 2.5.1) and its use in training stages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kanpde.nn.kan import KAN
from kanpde.problem import Problem
from kanpde.interpret.sparsity import coef_l1, edge_scales, entropy, regularizer
from kanpde.stages import Stage, parse_stages
from kanpde.train import train
from kanpde.validate import ConfigError

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def symbolic_kan() -> KAN:
    """KAN [1, 2, 1] with known edges: h = (x, x^2), u = 2 h_0 + sin(h_1); zero biases."""
    model = KAN([1, 2, 1], grid=3, generator=gen(0), dtype=F64)
    model.layers[0].fix_symbolic(0, 0, "x")
    model.layers[0].fix_symbolic(0, 1, "x^2")
    model.layers[1].fix_symbolic(0, 0, "x", (2.0, 1.0, 0.0, 0.0))
    model.layers[1].fix_symbolic(1, 0, "sin")
    return model


def test_regularizer_equals_hand_computation():
    """R = sum_l |A_l|_1 + mu S(A_l) on x = (-1, -0.5, 0.5, 1): A_0 = (0.75, 0.625),
    A_1 = (1.5, mean |sin x^2|), S from numpy; the coefficient term adds nu sum mean |c|."""
    model = symbolic_kan()
    x = torch.tensor([[-1.0], [-0.5], [0.5], [1.0]], dtype=F64)
    a0 = np.array([0.75, 0.625])
    a1 = np.array([1.5, np.mean(np.abs(np.sin(np.array([1.0, 0.25, 0.25, 1.0]))))])

    def ent(a):
        p = a / a.sum()
        return -(p * np.log(p)).sum()

    scales = edge_scales(model, x)
    np.testing.assert_allclose(scales[0].detach().numpy().ravel(), a0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(scales[1].detach().numpy().ravel(), a1, rtol=0, atol=1e-15)
    mu = 2.0
    expected = a0.sum() + mu * ent(a0) + a1.sum() + mu * ent(a1)
    assert float(regularizer(model, x, entropy_weight=mu).detach()) == pytest.approx(expected, rel=1e-14)
    spline = KAN([2, 3, 1], grid=4, generator=gen(1), dtype=F64, noise_scale=1.0)
    spline.layers[0].mask[1, 2] = 0.0
    c0, c1 = spline.layers[0].coef.detach().abs().mean(dim=1), spline.layers[1].coef.detach().abs().mean(dim=1)
    by_hand = float(c0.sum() - c0[1, 2] + c1.sum())
    assert float(coef_l1(spline).detach()) == pytest.approx(by_hand, rel=1e-14)
    xs = torch.rand(30, 2, generator=gen(2), dtype=F64)
    with_coef = regularizer(spline, xs, 2.0, coef_weight=0.5) - regularizer(spline, xs, 2.0)
    assert float(with_coef.detach()) == pytest.approx(0.5 * by_hand, rel=1e-12)


def test_entropy_limits_and_gradient_at_zero():
    """S = log n for n equal scales, 0 for one non-zero scale, and its gradient stays finite when
    some scales are exactly 0 (pruned edges)."""
    assert float(entropy(torch.ones(2, 3, dtype=F64))) == pytest.approx(math.log(6), rel=1e-15)
    assert float(entropy(torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=F64))) == 0.0
    assert float(entropy(torch.zeros(2, 2, dtype=F64))) == 0.0
    a = torch.tensor([[0.0, 0.3], [0.5, 0.0]], dtype=F64, requires_grad=True)
    entropy(a).backward()
    assert bool(torch.isfinite(a.grad).all())
    model = KAN([2, 3, 1], grid=4, generator=gen(3), dtype=F64)
    model.layers[0].mask[0, :] = 0.0
    regularizer(model, torch.rand(20, 2, generator=gen(4), dtype=F64)).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    assert float(model.layers[0].coef.grad[0].abs().max()) == 0.0


class SineFit(Problem):
    """Supervised fit of u(x1, x2) = sin(pi x1) on 200 points: x2 is redundant."""

    in_dim, out_dim, variables = 2, 1, ("x1", "x2")

    def sample(self, generator):
        x = torch.rand(200, 2, generator=generator, dtype=F64) * 2 - 1
        return {"x": x, "y": torch.sin(torch.pi * x[:, :1])}

    def losses(self, model, data, fast=True):
        return {"fit": ((model(data["x"]) - data["y"]) ** 2).mean()}

    def test_data(self, generator):
        return {}

    def metrics(self, model, test):
        return {}

    def grid_samples(self, data):
        return data["x"]


def fit(reg: float) -> tuple[KAN, list[dict]]:
    problem = SineFit()
    data = problem.sample(gen(0))
    model = KAN([2, 2, 1], grid=5, generator=gen(1), dtype=F64)
    result = train(model, problem, data, {}, [Stage(optimizer="adam", steps=200, lr=1e-2, reg=reg)],
                   progress=False, log_every=50)
    return result.model, result.history


def test_regularised_training_shrinks_redundant_edges():
    """Adam, 200 steps on sin(pi x1): with lambda = 1e-2 the edges of the unused input x2 end 10x
    smaller than without, while the fit stays good; the history logs loss_reg = lambda R."""
    x = SineFit().sample(gen(0))["x"]
    plain, _ = fit(0.0)
    sparse, history = fit(1e-2)
    unused = [float(edge_scales(m, x)[0][1].detach().max()) for m in (plain, sparse)]
    assert unused[1] < 0.1 * unused[0]
    assert history[-1]["loss_fit"] < 1e-2
    last = history[-1]
    assert last["loss"] == pytest.approx(last["loss_fit"] + last["loss_reg"], rel=1e-12)
    assert "loss_reg" not in history[0]  # the initial row is before any stage
    with torch.no_grad():  # logged before the last Adam step: close, not equal
        assert last["loss_reg"] == pytest.approx(1e-2 * float(regularizer(sparse, x)), rel=5e-2)


@pytest.mark.parametrize("key, value", [("reg", -0.1), ("reg_entropy", -1.0), ("reg_coef", "big"),
                                        ("reg", True)])
def test_stage_rejects_bad_reg_values(key, value):
    """Regulariser weights must be non-negative numbers; the message names the option."""
    with pytest.raises(ConfigError, match=rf"optim.stages\[0\].{key} must be a number"):
        parse_stages([{key: value}])


def test_stage_reg_defaults():
    """The defaults are no regularisation, pykan's entropy weight 2 and no coefficient L1."""
    (stage,) = parse_stages([{"reg": 0.01}])
    assert (stage.reg, stage.reg_entropy, stage.reg_coef) == (0.01, 2.0, 0.0)


def test_optim_level_options_apply_to_every_stage():
    """optim.history_size (and any other stage option at the optim level) is every stage's default;
    a stage's own value wins; an unknown optim-level key is a one-line error naming it."""
    a, b = parse_stages([{"steps": 5}, {"steps": 5, "history_size": 7}], {"history_size": 100})
    assert (a.history_size, b.history_size) == (100, 7)
    assert parse_stages([{}])[0].history_size == 10  # pykan's memory unless asked
    with pytest.raises(ConfigError, match="optim has no option 'memory'"):
        parse_stages([{}], {"memory": 100})
    with pytest.raises(ConfigError, match=r"optim.history_size must be"):
        parse_stages([{}], {"history_size": 0})
