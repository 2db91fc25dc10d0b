"""Problems (kanpde.problem, problems/poisson.py): residuals, named derivatives, metrics, sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kanpde.nn.derivatives import autograd_jet
from kanpde.nn.kan import KAN
from kanpde.pde.fields import Fields
from kanpde.registry import build_problem, problem_names

F64 = torch.float64
SMALL = {"n_interior": 64, "n_boundary": 16, "n_test": 100}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ExactSolution(nn.Module):
    """The problem's exact solution (plus a constant) as a model; one dummy parameter sets dtype."""

    def __init__(self, problem, shift: float = 0.0):
        super().__init__()
        self.problem, self.shift = problem, shift
        self.dummy = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, x):
        return self.problem.exact(x) + self.shift + 0 * self.dummy


class Polynomial(nn.Module):
    """u(x, y, z) = x^2 y + 3 x y^3 + y z^2 + z."""

    def forward(self, p):
        x, y, z = p[:, :1], p[:, 1:2], p[:, 2:]
        return x**2 * y + 3 * x * y**3 + y * z**2 + z


def problem(name: str, **kw):
    return build_problem({"name": name, **SMALL, **kw})


def test_registry_lists_problems():
    """Both Poisson problems are registered under their config names."""
    assert {"poisson", "poisson_sinsin"} <= set(problem_names())


@pytest.mark.parametrize("name", ["poisson", "poisson_sinsin"])
def test_exact_solution_has_zero_loss(name):
    """The exact solution's PDE term (nested autograd) is < 1e-20 and its boundary term ~0;
    shifting it by 0.1 leaves the PDE term ~0 and makes the boundary term 0.1^2."""
    prob = problem(name)
    data = prob.sample(gen(0))
    terms = prob.losses(ExactSolution(prob), data, fast=False)
    assert set(terms) == {"pde", "boundary"}
    assert float(terms["pde"].detach()) < 1e-20
    assert float(terms["boundary"].detach()) < 1e-25
    shifted = prob.losses(ExactSolution(prob, 0.1), data, fast=False)
    assert float(shifted["pde"].detach()) < 1e-20
    assert float(shifted["boundary"].detach()) == pytest.approx(0.01, rel=1e-12)


@pytest.mark.parametrize("name", ["poisson", "poisson_sinsin"])
def test_loss_of_zero_model_is_alpha_mean_source_squared(name):
    """For u = 0 the loss is alpha * mean(f^2) (residual = -f) plus 0 on the boundary."""
    prob = problem(name, alpha=0.5)
    data = prob.sample(gen(1))
    zero = ExactSolution(prob, 0.0)
    # 0 * x^2, not 0 * x: nested autograd needs a gradient that depends on x (see test_kan.py)
    zero.forward = lambda x: 0 * (x**2).sum(dim=1, keepdim=True) + 0 * zero.dummy
    terms = prob.losses(zero, data, fast=False)
    x = data["interior"]
    assert float(terms["pde"].detach()) == pytest.approx(0.5 * float((prob.source(x) ** 2).mean()), rel=1e-12)
    assert float(terms["pde"].detach()) > 1.0
    assert float(terms["boundary"].detach()) == 0.0


@pytest.mark.parametrize("name", ["poisson", "poisson_sinsin"])
def test_fast_and_autograd_losses_agree_for_kan(name):
    """A KAN's losses on the forward-propagated path equal those on the nested-autograd path."""
    prob = problem(name)
    data = prob.sample(gen(2))
    model = KAN([2, 4, 1], grid=5, generator=gen(3), dtype=F64, noise_scale=1.0)
    fast, slow = prob.losses(model, data, fast=True), prob.losses(model, data, fast=False)
    for key in ("pde", "boundary"):
        assert float(fast[key].detach()) == pytest.approx(float(slow[key].detach()), rel=1e-10)


def test_fields_named_derivatives_on_polynomial():
    """Fields.d / laplacian on u = x^2 y + 3 x y^3 + y z^2 + z in "full" mode match hand derivatives."""
    g = gen(4)
    p = torch.rand(10, 3, generator=g, dtype=F64) * 2 - 1
    x, y, z = p[:, :1], p[:, 1:2], p[:, 2:]
    f = Fields(autograd_jet(Polynomial(), p, "full"), ("x", "y", "z"))
    expected = {
        ("x",): 2 * x * y + 3 * y**3,
        ("y",): x**2 + 9 * x * y**2 + z**2,
        ("z",): 2 * y * z + 1,
        ("x", "x"): 2 * y,
        ("x", "y"): 2 * x + 9 * y**2,
        ("y", "x"): 2 * x + 9 * y**2,
        ("x", "z"): torch.zeros_like(x),
        ("y", "y"): 18 * x * y,
        ("z", "y"): 2 * z,
        ("z", "z"): 2 * y,
    }
    for names, want in expected.items():
        torch.testing.assert_close(f.d(*names), want, rtol=0, atol=1e-12, msg=str(names))
    torch.testing.assert_close(f.laplacian, 4 * y + 18 * x * y, rtol=0, atol=1e-12)
    torch.testing.assert_close(f.value, Polynomial()(p), rtol=0, atol=0)


def test_fields_modes_and_errors():
    """"laplacian" and "diag" modes give the same Laplacian; mixed derivatives need "full";
    unknown variables and third derivatives are refused."""
    p = torch.rand(6, 3, generator=gen(5), dtype=F64)
    x, y = p[:, :1], p[:, 1:2]
    lap = Fields(autograd_jet(Polynomial(), p, "laplacian"), ("x", "y", "z"))
    diag = Fields(autograd_jet(Polynomial(), p, "diag"), ("x", "y", "z"))
    torch.testing.assert_close(lap.laplacian, 4 * y + 18 * x * y, rtol=0, atol=1e-12)
    torch.testing.assert_close(diag.laplacian, 4 * y + 18 * x * y, rtol=0, atol=1e-12)
    torch.testing.assert_close(diag.d("y", "y"), 18 * x * y, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="full"):
        diag.d("x", "y")
    with pytest.raises(ValueError):
        lap.d("x", "x")
    with pytest.raises(KeyError, match="w"):
        lap.d("w")
    with pytest.raises(ValueError):
        lap.d("x", "x", "y")
    none = Fields(autograd_jet(Polynomial(), p, "none"), ("x", "y", "z"))
    with pytest.raises(ValueError):
        none.laplacian


@pytest.mark.parametrize("name", ["poisson", "poisson_sinsin"])
def test_metrics_of_exact_and_shifted_solution(name):
    """metrics: the exact solution has l2_sq = h1_sq = 0; exact + 0.1 has l2_sq = h1_sq = 0.01,
    max_err = 0.1 and rel_l2 = 0.1 / rms(u)."""
    prob = problem(name)
    test = prob.test_data(gen(6))
    exact = prob.metrics(ExactSolution(prob), test)
    assert exact["l2_sq"] == 0.0 and exact["h1_sq"] == 0.0
    assert exact["rel_l2"] == 0.0 and exact["max_err"] == 0.0
    shifted = prob.metrics(ExactSolution(prob, 0.1), test)
    assert shifted["l2_sq"] == pytest.approx(0.01, rel=1e-12)
    assert shifted["h1_sq"] == pytest.approx(0.01, rel=1e-12)
    assert shifted["max_err"] == pytest.approx(0.1, rel=1e-12)
    rms = math.sqrt(float((prob.exact(test["x"]) ** 2).mean()))
    assert shifted["rel_l2"] == pytest.approx(0.1 / rms, rel=1e-12)


def test_metrics_gradient_error():
    """h1_sq adds the mean squared gradient error: for u_exact + 0.2 x, h1_sq - l2_sq = 0.04."""
    prob = problem("poisson_sinsin")
    test = prob.test_data(gen(7))
    model = ExactSolution(prob)
    model.forward = lambda x: prob.exact(x) + 0.2 * x[:, :1] + 0 * model.dummy
    m = prob.metrics(model, test)
    assert m["l2_sq"] == pytest.approx(0.04 * float((test["x"][:, 0] ** 2).mean()), rel=1e-12)
    assert m["h1_sq"] - m["l2_sq"] == pytest.approx(0.04, rel=1e-10)


@pytest.mark.parametrize("name", ["poisson", "poisson_sinsin"])
def test_sampling_is_deterministic_by_seed(name):
    """The same generator seed gives identical training and test data; another seed differs
    (random sampling) and all points lie in [-1, 1]^2, boundary points on the boundary."""
    prob = problem(name, sampling="random")
    a, b, c = prob.sample(gen(8)), prob.sample(gen(8)), prob.sample(gen(9))
    assert a.keys() == {"interior", "boundary"}
    assert torch.equal(a["interior"], b["interior"]) and torch.equal(a["boundary"]["x"], b["boundary"]["x"])
    assert not torch.equal(a["interior"], c["interior"])
    assert a["interior"].shape == (64, 2) and a["interior"].dtype == F64
    assert float(a["interior"].abs().max()) <= 1.0
    assert a["boundary"]["x"].shape == (16, 2)
    torch.testing.assert_close(a["boundary"]["x"].abs().max(dim=1).values, torch.ones(16, dtype=F64),
                               rtol=0, atol=0)
    t1, t2 = prob.test_data(gen(10)), prob.test_data(gen(10))
    assert torch.equal(t1["x"], t2["x"]) and t1["x"].shape == (100, 2)


def mesh_problem():
    return build_problem({"name": "poisson_sinsin", "n_interior": 10_000, "n_boundary": 204,
                          "sampling": "mesh", "n_test": 10})


def test_mesh_sampling_counts():
    """Mesh sampling: 10,000 interior points are the 100 x 100 cell centres, strictly inside,
    independent of the seed; 204 boundary points, 51 on each side, all on the boundary."""
    prob = mesh_problem()
    data = prob.sample(gen(11))
    inner = data["interior"]
    assert inner.shape == (10_000, 2)
    centres = -1 + (torch.arange(100, dtype=F64) + 0.5) * 0.02
    for axis in range(2):
        torch.testing.assert_close(inner[:, axis].unique(), centres, rtol=0, atol=1e-14)
    assert float(inner.abs().max()) < 1.0
    assert len({tuple(r) for r in inner.tolist()}) == 10_000
    assert torch.equal(prob.sample(gen(12))["interior"], inner)
    bnd = data["boundary"]["x"]
    assert bnd.shape == (204, 2)
    torch.testing.assert_close(bnd.abs().max(dim=1).values, torch.ones(204, dtype=F64), rtol=0, atol=0)
    # ticks of the boundary mesh: multiples of 2/51 from -1
    steps = (bnd + 1) * 51 / 2
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-9)


def test_mesh_boundary_covers_each_corner_once():
    """204 mesh boundary points are exactly the 4 x 51 boundary nodes of the 52 x 52 lattice with
    spacing 2/51: every node (each corner included) once."""
    bnd = mesh_problem().sample(gen(11))["boundary"]["x"]
    got = sorted(tuple(round((v + 1) * 51 / 2) for v in r) for r in bnd.tolist())
    nodes = sorted((i, j) for i in range(52) for j in range(52) if i in (0, 51) or j in (0, 51))
    assert len(nodes) == 204
    assert got == nodes
