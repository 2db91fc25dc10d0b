"""A fully symbolic KAN as a sympy formula (kanpde.interpret.formula): round trip, exact polynomials, tidying."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from kanpde.interpret.formula import formula, latex, prune_terms, round_formula, to_function
from kanpde.nn.kan import KAN
from kanpde.validate import ConfigError

# Functions defined on all of R (no domain to respect) for random parameters.
EVERYWHERE = ["sin", "x^2", "tanh", "exp", "x", "cos", "sigmoid", "arctan", "cosh", "x^3", "abs", "0"]


def snap_all(model: KAN, seed: int = 0) -> None:
    """Fix every edge to a library function with random (a, b, c, d) and give every node a bias."""
    rng = np.random.default_rng(seed)
    k = 0
    for layer in model.layers:
        with torch.no_grad():
            layer.bias.copy_(torch.from_numpy(rng.uniform(-1, 1, layer.out_dim)))
        for i in range(layer.in_dim):
            for j in range(layer.out_dim):
                a, b, c, d = rng.uniform(-1, 1, 4)
                layer.fix_symbolic(i, j, EVERYWHERE[k % len(EVERYWHERE)], params=(a, b, c, d))
                k += 1


@pytest.mark.parametrize("width, mult", [([2, 3, 1], None), ([2, 3, 2], [0, 2, 0]), ([3, 2, 2, 1], [0, 1, 1, 0])])
def test_formula_reproduces_the_network(width, mult):
    """lambdify(formula) equals model(x) in float64 to 1e-10, with pruned edges, biases and
    multiplication nodes, for every output."""
    model = KAN(width, mult=mult, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    snap_all(model)
    model.layers[0].mask[1, 0] = 0  # a pruned edge contributes nothing
    x = torch.rand(200, width[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        want = model(x).numpy()  # (N, width[-1])
    names = [f"v{k}" for k in range(width[0])]
    for out in range(width[-1]):
        expr = formula(model, inputs=names, output=out)
        got = to_function(expr, names)(x.numpy())
        np.testing.assert_allclose(got, want[:, out], rtol=1e-10, atol=1e-10)
        assert "v1" in {s.name for s in expr.free_symbols}


def test_polynomial_network_gives_the_exact_polynomial():
    """Edges x and x^2 with integer parameters compose to exactly the expected polynomial,
    including a product node."""
    model = KAN([2, 2, 1], mult=[0, 1, 0], dtype=torch.float64)  # hidden: 1 sum node, 1 product
    l0, l1 = model.layers
    l0.fix_symbolic(0, 0, "x", params=(2, 1, 1, 0))      # node 0: 2 (x + 1) + y^2
    l0.fix_symbolic(1, 0, "x^2", params=(1, 1, 0, 0))
    l0.fix_symbolic(0, 1, "x", params=(1, 1, 0, 0))      # node 1 = subnode 1 x subnode 2:
    l0.fix_symbolic(1, 1, "0", params=(0, 1, 0, 0))      # x + 0
    l0.fix_symbolic(0, 2, "0", params=(0, 1, 0, 0))      # times 0 + y^2 + 1
    l0.fix_symbolic(1, 2, "x^2", params=(1, 1, 0, 1))
    l1.fix_symbolic(0, 0, "x^2", params=(1, 1, 0, 0))
    l1.fix_symbolic(1, 0, "x", params=(3, 1, 0, 0))
    with torch.no_grad():
        l1.bias.fill_(-2)
    x, y = sp.symbols("x y")
    want = sp.expand((2 * (x + 1) + y**2) ** 2 + 3 * x * (y**2 + 1) - 2)
    got = formula(model, inputs=("x", "y"), digits=8)
    assert sp.expand(got - want) == 0 and got == want


def test_spline_edges_are_refused():
    """A formula needs every active edge symbolic; the error names the first spline edge, and a
    pruned spline edge does not count."""
    model = KAN([2, 2, 1], dtype=torch.float64)
    with pytest.raises(ConfigError, match=r"edge 0,0,0 .*spline") as err:
        formula(model)
    assert "\n" not in str(err.value)
    snap_all(model)
    model.layers[1].unfix_symbolic(1, 0)
    with pytest.raises(ConfigError, match=r"edge 1,1,0 "):
        formula(model)
    model.layers[1].mask[1, 0] = 0
    assert isinstance(formula(model), sp.Expr)
    with pytest.raises(ConfigError, match="inputs"):
        formula(model, inputs=("a",))


def test_round_and_prune_give_the_clean_formula():
    """Rounding turns near-integers into integers; pruning drops the terms that hardly change the
    formula on the data (GAAM's edge alpha E + 2 lambda - 2 as the target)."""
    a, e, lam = sp.symbols("alpha E lam")
    noisy = 1.0000001 * a * e + 1.99996 * lam - 2.00003 + 0.0004 * e**2 + 0.0002 * a
    rng = np.random.default_rng(0)
    data = {"alpha": rng.uniform(-0.9, 0.9, 500), "E": rng.uniform(-3, 3, 500), "lam": rng.uniform(0.2, 2, 500)}
    clean = round_formula(prune_terms(noisy, data, rel_tol=1e-2), 3)
    assert clean == a * e + 2 * lam - 2
    assert prune_terms(noisy, data, rel_tol=0) == noisy
    assert round_formula(0.25 * a + 1e-5, 3) == sp.Float("0.25", "") * a
    assert latex(sp.sin(a) + e) in (r"E + \sin{\left(\alpha \right)}", r"\sin{\left(\alpha \right)} + E")


def test_to_function_checks_its_inputs():
    x, y = sp.symbols("x y")
    f = to_function(x * y + 1, ("x", "y"))
    np.testing.assert_allclose(f(np.array([[2.0, 3.0], [0.0, 5.0]])), [7.0, 1.0])
    np.testing.assert_allclose(to_function(sp.Integer(4), ("x",))(np.zeros((3, 1))), [4.0, 4.0, 4.0])
    with pytest.raises(ConfigError, match="y"):
        to_function(x * y, ("x",))
    with pytest.raises(ConfigError, match=r"\(N, 2\)"):
        f(np.zeros(3))
