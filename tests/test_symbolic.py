"""Symbolic fitting (kanpde.interpret.symbolic): the library, affine fits, ranking, and snapping a KAN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from kanpde.nn.bspline import basis
from kanpde.nn.kan import KAN
from kanpde.interpret.symbolic import LIBRARY, auto_symbolic, edge_samples, fit_affine, score, suggest
from kanpde.validate import ConfigError

X = np.linspace(-2, 2, 401)


def test_library_versions_agree():
    """For every function: torch == numpy everywhere (finite, finite gradients, even at 0 and
    off the domain), and sympy == numpy on the domain."""
    z = np.concatenate([np.linspace(-3, 3, 61), [0.0, 1e-9, -1e-9, 1e-5]])
    zs = sp.Symbol("z")
    for name, fn in LIBRARY.items():
        zt = torch.tensor(z, requires_grad=True)
        out = fn.torch(zt)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(zt.grad).all(), name
        np.testing.assert_allclose(out.detach().numpy(), fn.numpy(z), rtol=1e-14, atol=0, err_msg=name)
        on = z[fn.domain(z)] if fn.domain else z
        exact = sp.lambdify(zs, fn.sympy(zs), "numpy")(on) * np.ones_like(on)
        np.testing.assert_allclose(fn.numpy(on), exact, rtol=1e-12, atol=1e-12, err_msg=name)
    assert {"0", "x", "x^2", "x^3", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "cosh",
            "arctan", "abs", "1/x"} <= set(LIBRARY)


@pytest.mark.parametrize("name, params", [
    ("sin", (1.5, 2.0, 0.3, -0.5)),
    ("cos", (0.7, 3.0, 5.0, 0.2)),
    ("tanh", (-2.0, 1.3, 0.4, 1.0)),
    ("sigmoid", (3.0, 2.5, -1.0, -1.0)),
    ("arctan", (0.5, 4.0, 1.0, 0.0)),
    ("x", (3.0, 1.0, 0.0, -1.0)),
    ("x^2", (2.0, 1.0, -0.3, 1.0)),
])
def test_fit_affine_recovers_parameters(name, params):
    """Clean samples of a f(b x + c) + d give back (a, b, c, d) (canonical: b > 0, and a > 0,
    c in [0, 2 pi) for sin and cos) to 1e-7 and R^2 = 1 to 1e-12."""
    a, b, c, d = params
    fit = fit_affine(X, a * LIBRARY[name].numpy(b * X + c) + d, name)
    assert fit.name == name
    np.testing.assert_allclose(fit.params, params, rtol=1e-7, atol=1e-7)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_fit_affine_line_is_linear_regression():
    """For "x" the fit is the least-squares line, also on noisy data (torch input accepted)."""
    rng = np.random.default_rng(0)
    y = 3 * X - 1 + 0.1 * rng.standard_normal(len(X))
    fit = fit_affine(torch.from_numpy(X), torch.from_numpy(y), "x")
    slope, icept = np.polyfit(X, y, 1)
    np.testing.assert_allclose(fit.params, (slope, 1.0, 0.0, icept), rtol=1e-12)
    assert fit.r2 == pytest.approx(1 - np.sum((fit(X) - y) ** 2) / np.sum((y - y.mean()) ** 2), rel=1e-12)


@pytest.mark.parametrize("name, params", [
    ("x^3", (0.5, 1.2, 0.3, 0.1)), ("exp", (2.0, 0.7, 0.2, -1.0)), ("cosh", (1.0, 1.5, 0.5, 0.0)),
    ("log", (1.5, 1.0, 3.0, 0.0)), ("sqrt", (2.0, 0.5, 1.5, 1.0)), ("1/x", (1.0, 1.0, 2.5, 0.0)),
    ("abs", (1.0, 2.0, 0.5, -1.0)),
])
def test_fit_affine_reproduces_curves(name, params):
    """Where (a, b, c) are not identifiable (a e^c, a b^3, ...) the fitted curve still equals the
    true one to 1e-7 of its range, and stays inside the function's domain."""
    a, b, c, d = params
    y = a * LIBRARY[name].numpy(b * X + c) + d
    fit = fit_affine(X, y, name)
    assert np.abs(fit(X) - y).max() < 1e-7 * np.ptp(y)
    assert fit.r2 == pytest.approx(1.0, abs=1e-10)
    fn = LIBRARY[name]
    if fn.domain:
        assert fn.domain(fit.params[1] * X + fit.params[2]).all()


@pytest.mark.parametrize("truth, y", [
    ("sin", np.sin(2 * X + 0.3)),
    ("x", 3 * X - 1),
    ("x^2", 0.5 * (X - 0.2) ** 2 + 1),
    ("exp", np.exp(0.8 * X)),
    ("x", X + 0.01 * np.sin(5 * X)),  # near-linear, R^2 ~ 0.99997 for the line
])
def test_suggest_prefers_the_simplest_good_fit(truth, y):
    """Clean data picks its function (sin over cos, x over x^3, x^2 over cos) and near-linear
    data picks x; fits come best first with their scores."""
    fits = suggest(X, y, top=4)
    assert fits[0].name == truth
    assert [f.score for f in fits] == sorted(f.score for f in fits)
    assert fits[0].score == pytest.approx(score(fits[0].r2, LIBRARY[truth].complexity))


def test_constant_is_only_a_candidate_when_asked():
    """A poorly fitted but large edge is not zeroed by default; with "0" among the names it is,
    as in pykan (complexity 0 beats x below R^2 ~0.94)."""
    rng = np.random.default_rng(0)
    y = 5 * X + 3 * rng.standard_normal(len(X))
    best = suggest(X, y, top=1)[0]
    assert best.name == "x" and 0.5 < best.r2 < 0.9
    assert suggest(X, y, names=["0", "x", "sin"])[0].name == "0"


def test_score_is_pykans():
    """w complexity + (1 - w) log2(1 + 1e-5 - R^2)."""
    assert score(0.75, 2, 0.8) == pytest.approx(1.6 + 0.2 * math.log2(0.25001))
    assert score(1.0, 0, 0.5) == pytest.approx(0.5 * math.log2(1e-5))


@pytest.mark.parametrize("call, word", [
    (lambda: fit_affine(X, X, "tan"), "tan"),
    (lambda: fit_affine(X, X[:-1], "x"), "400"),
    (lambda: fit_affine(X, np.full_like(X, np.nan), "x"), "finite"),
    (lambda: suggest(X, X, weight_simple=1.5), "1.5"),
])
def test_bad_input_fails_in_one_line(call, word):
    with pytest.raises(ConfigError) as err:
        call()
    assert word in str(err.value) and "\n" not in str(err.value)


TARGETS = {(0, 0): lambda x: np.sin(np.pi * x), (0, 1): lambda x: (x - 0.2) ** 2,
           (1, 0): lambda x: 0.5 * x + 0.1, (1, 1): lambda x: np.exp(0.8 * x)}


def teacher() -> KAN:
    """KAN [2, 2] whose splines (G = 40, no SiLU part) fit TARGETS to ~1e-7."""
    model = KAN([2, 2], grid=40, dtype=torch.float64)
    layer = model.layers[0]
    x = torch.linspace(-1, 1, 801, dtype=torch.float64)[:, None].repeat(1, 2)  # (N, 2)
    b = basis(x, layer.knots, layer.order)  # (N, 2, G+k)
    with torch.no_grad():
        layer.base_weight.zero_()
        for (i, j), f in TARGETS.items():
            layer.coef[i, :, j] = torch.linalg.lstsq(b[:, i], torch.from_numpy(f(x[:, i].numpy()))).solution
    return model


def test_auto_symbolic_snaps_known_edges():
    """Spline edges fitted to sin(pi x), (x - 0.2)^2, a line and exp(0.8 x) snap to those
    functions with R^2 ~ 1, and the snapped network equals the target sums to 1e-5."""
    model = teacher()
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    report = auto_symbolic(model, x)
    assert {(r["i"], r["j"]): r["name"] for r in report} == {(0, 0): "sin", (0, 1): "x^2", (1, 0): "x", (1, 1): "exp"}
    assert all(r["fixed"] and r["r2"] > 1 - 1e-8 for r in report)
    layer = model.layers[0]
    assert layer.sym_mask.bool().all() and layer.sym_names == [["sin", "x^2"], ["x", "exp"]]
    xn = x.numpy()
    want = np.stack([TARGETS[0, j](xn[:, 0]) + TARGETS[1, j](xn[:, 1]) for j in (0, 1)], axis=1)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), want, atol=1e-5)
    assert auto_symbolic(model, x) == []  # nothing left to snap


def test_auto_symbolic_hints_and_threshold():
    """A hint forces its function; an R^2 threshold above 1 leaves every other edge a spline."""
    model = teacher()
    x = torch.rand(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    report = auto_symbolic(model, x, names=["x", "sin"], r2_threshold=1.5, hints={"0,1,1": "x^3"})
    fixed = [(r["i"], r["j"], r["name"]) for r in report if r["fixed"]]
    assert fixed == [(1, 1, "x^3")] and len(report) == 4
    assert model.layers[0].sym_mask.tolist() == [[0, 0], [0, 1]]
    with pytest.raises(ConfigError, match="3,0,0"):
        auto_symbolic(model, x, hints={"3,0,0": "x"})


@pytest.mark.parametrize("mult", [None, [0, 1, 0]])
def test_edge_samples_rebuild_the_forward_pass(mult):
    """Summing the last layer's edges, adding its bias and combining its subnodes gives model(x);
    each layer's input is the previous layer's node values."""
    model = KAN([2, 2, 1], mult=mult, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1
    samples = edge_samples(model, x)
    assert [tuple(e.shape) for _, e in samples] == [(50, 2, 2 + (mult is not None)), (50, 2, 1)]
    h1 = samples[0][1].sum(1) + model.layers[0].bias
    if mult:
        h1 = model.combine(0, h1)
    torch.testing.assert_close(samples[1][0], h1)
    with torch.no_grad():
        torch.testing.assert_close(samples[1][1].sum(1) + model.layers[1].bias, model(x))
