"""Conditions, hard constraints and named derivatives (kanpde.pde.conditions, solution, fields):
each condition's loss is ~0 for the exact solution and not for a perturbed one; periodic pairs
match; hard constraints hold to rounding; the fast jet through scaling and transforms equals
nested autograd; higher derivatives and components read the right numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kanpde.nn import kernel
from kanpde.nn.derivatives import autograd_jet, jet
from kanpde.nn.kan import KAN
from kanpde.nn.mlp import MLP
from kanpde.pde.conditions import Dirichlet, Initial, InitialVelocity, Neumann, Observations, Periodic, Robin
from kanpde.pde.domains import Box, Disk
from kanpde.pde.fields import Fields
from kanpde.pde.solution import Solution
from kanpde.registry import build_problem
from kanpde.validate import ConfigError

F64 = torch.float64
SMALL = {"n_interior": 64, "n_boundary": 32, "n_test": 50}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Exact(nn.Module):
    """A closed-form function as a model (with a dummy parameter), optionally perturbed."""

    def __init__(self, fn, shift: float = 0.0):
        super().__init__()
        self.fn, self.shift = fn, shift
        self.dummy = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, x):
        return self.fn(x) + self.shift * (x**2 + x).sum(dim=1, keepdim=True) + 0 * self.dummy


def exact_problem(name, **kw):
    prob = build_problem({"name": name, **SMALL, **kw})
    prob.scale_inputs = False  # the closed forms below see the problem's own coordinates
    return prob


@pytest.mark.parametrize("name, kw", [("heat", {"hard": False}), ("wave", {"hard": False}),
                                      ("advection", {"hard": False}), ("poisson3d", {}), ("helmholtz", {"hard": False}),
                                      ("kovasznay", {}), ("heat_inverse", {"noise": 0.0})])
def test_exact_solution_zeroes_every_term(name, kw):
    """Residual and every condition ~0 at the exact solution, each condition > 1e-6 perturbed."""
    prob = exact_problem(name, **({"n_initial": 32} if name in ("heat", "wave", "advection", "heat_inverse") else {}), **kw)
    prob.setup(gen(), F64, torch.device("cpu"))
    if name == "heat_inverse":
        with torch.no_grad():
            prob.unknowns.log_value.fill_(math.log(prob.kappa))
    data = prob.sample(gen(1))
    terms = prob.losses(Exact(prob.exact), data, fast=False)
    assert len(terms) >= 2
    for key, value in terms.items():
        assert float(value.detach()) < 1e-20, key
    perturbed = prob.losses(Exact(prob.exact, 0.1), data, fast=False)
    for key in prob.conditions():
        assert float(perturbed[key].detach()) > 1e-6, key


def test_neumann_and_robin_read_the_outward_normal_derivative():
    """u = x^2 + 3 y on the unit box and u = |x|^2 on a disk: du/dn from the jet equals the closed form."""
    box = Box([0.0, 0.0], [1.0, 1.0])
    fn = lambda x: x[:, :1] ** 2 + 3 * x[:, 1:]  # noqa: E731
    prob = exact_problem("poisson")
    u = prob.evaluator(Exact(fn), fast=False)
    neumann = Neumann(lambda x: torch.where(x[:, :1] == 1, 2.0, 0.0), where=["left", "right"])
    assert float(neumann.loss(u, neumann.sample(box, 40, "random", gen(2))).detach()) < 1e-28
    top = Robin(2.0, 0.5, lambda x: 2 * fn(x) + 0.5 * 3, where="top")
    assert float(top.loss(u, top.sample(box, 40, "random", gen(3))).detach()) < 1e-28
    disk = Disk([0.0, 0.0], 2.0)
    radial = Neumann(4.0)  # d(r^2)/dr = 2 r = 4
    got = radial.loss(prob.evaluator(Exact(lambda x: (x**2).sum(1, keepdim=True))), radial.sample(disk, 50, "sobol", gen(4)))
    assert float(got.detach()) < 1e-24
    assert float(Neumann(3.9).loss(prob.evaluator(Exact(lambda x: (x**2).sum(1, keepdim=True))),
                                   radial.sample(disk, 50, "sobol", gen(4))).detach()) == pytest.approx(0.01)


def test_periodic_pairs_match_across_faces():
    prob = exact_problem("advection", n_initial=16, hard=False)
    pts = Periodic("x").sample(prob.domain, 30, "random", gen(5))
    a, b = pts["x"], pts["pair"]
    assert bool((a[:, 0] == 0).all()) and torch.allclose(b[:, 0], torch.full((30,), 2 * math.pi, dtype=F64))
    assert torch.equal(a[:, 1], b[:, 1])
    u = prob.evaluator(Exact(prob.exact), fast=False)
    for k in (0, 1, 2):
        assert float(Periodic("x", derivatives=k).loss(u, pts)) < 1e-26
    not_periodic = prob.evaluator(Exact(lambda x: torch.cos(x[:, :1] / 2)), fast=False)
    assert float(Periodic("x", derivatives=0).loss(not_periodic, pts)) > 0.1


def test_initial_velocity_and_observations():
    prob = exact_problem("wave", n_initial=16, hard=False)
    u = prob.evaluator(Exact(prob.exact), fast=False)
    cond = InitialVelocity()
    pts = cond.sample(prob.domain, 20, "random", gen(6))
    assert bool((pts["x"][:, 1] == 0).all()) and float(cond.loss(u, pts)) < 1e-26
    moving = prob.evaluator(Exact(lambda x: prob.exact(x) + 0.5 * x[:, 1:2]), fast=False)
    assert float(cond.loss(moving, pts)) == pytest.approx(0.25)
    clean = Observations(prob.exact, n=2000, noise=0.0)
    assert float(clean.loss(u, clean.sample(prob.domain, 0, "random", gen(7)))) < 1e-28
    noisy = Observations(prob.exact, n=20000, noise=0.1)
    pts = noisy.sample(prob.domain, 0, "random", gen(7))
    rms2 = float((prob.exact(pts["x"]) ** 2).mean())
    assert float(noisy.loss(u, pts)) == pytest.approx(0.01 * rms2, rel=0.05)
    fixed = Observations.from_arrays(torch.zeros(1, 2), torch.ones(1, 1), component="u")
    assert float(fixed.loss(u, fixed.sample(prob.domain, 0, "random", gen()))) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["heat", "wave", "burgers", "allen_cahn", "kdv", "advection"])
def test_hard_constraints_hold_to_rounding(name):
    """With hard = true a random KAN satisfies the initial value (and u_t = 0 for the wave, and
    zero ends where the problem has them) to rounding; the terms leave the loss."""
    prob = build_problem({"name": name, **SMALL, "n_initial": 16, "hard": True})
    assert "initial" not in prob.conditions()
    sol = prob.solution(KAN([2, 5, 1], generator=gen(8), dtype=F64))
    x0 = prob.domain.boundary(50, "random", gen(9), where="initial")[0]
    torch.testing.assert_close(sol(x0), prob.initial(x0), rtol=0, atol=1e-14)
    if prob.dirichlet_ends:
        xb = prob.domain.boundary(50, "random", gen(9))[0]
        assert float(sol(xb).abs().max()) < 1e-14
    if name == "wave":
        j = sol.jet(x0, "diag")
        assert float(j.grad[:, 0, 1].abs().max()) < 1e-14


def test_faded_initial_data():
    """fade = tau: u = e^(-t/tau) u0 + (1 - e^(-t/tau)) N, so u0 at t = 0 to rounding, and the
    network's value, periodic in its derivatives too, once t >> tau (here to e^(-50))."""
    prob = build_problem({"name": "allen_cahn", **SMALL, "n_initial": 16, "hard": True, "fade": 0.02})
    net = KAN([2, 5, 1], generator=gen(8), dtype=F64)
    sol = prob.solution(net)
    x0 = prob.domain.boundary(50, "random", gen(9), where="initial")[0]
    torch.testing.assert_close(sol(x0), prob.initial(x0), rtol=0, atol=1e-14)
    late = torch.stack([torch.linspace(-1, 1, 9, dtype=F64), torch.ones(9, dtype=F64)], dim=1)
    torch.testing.assert_close(sol(late), net(late), rtol=0, atol=1e-20)
    with pytest.raises(ConfigError, match="problem.fade=0.1 .* needs problem.hard=true"):
        build_problem({"name": "allen_cahn", "hard": False, "fade": 0.1})


@pytest.mark.parametrize("mode", ["laplacian", "diag", "full"])
@pytest.mark.parametrize("use_kernel", [True, False])
def test_solution_jet_equals_nested_autograd(mode, use_kernel):
    """Input scaling plus an output transform: the forward-propagated jet equals nested autograd
    of the same module to 1e-10, for KANs (kernel on and off) and MLPs."""
    lower, upper = torch.tensor([0.0, -2.0], dtype=F64), torch.tensor([2 * math.pi, 3.0], dtype=F64)
    constraint = lambda x: (torch.sin(x[:, :1]) * x[:, 1:], x[:, :1] * (x[:, 1:] + 2))  # noqa: E731
    x = lower + (upper - lower) * torch.rand(40, 2, generator=gen(10), dtype=F64)
    for net in (KAN([2, 4, 1], generator=gen(11), dtype=F64), MLP([2, 8, 1], generator=gen(11), dtype=F64)):
        sol = Solution(net, lower, upper, constraint)
        with kernel.switched(use_kernel):
            fast = sol.jet(x, mode)
        slow = autograd_jet(sol, x, mode)
        for a, b in ((fast.value, slow.value), (fast.grad, slow.grad), (fast.second, slow.second)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fields_components_and_higher_derivatives():
    """u = (x^3 t, sin x + t^2): components by name, u_xxx and u_xxt by autograd on the jet."""
    x = torch.rand(30, 2, generator=gen(12), dtype=F64).requires_grad_(True)
    fn = lambda p: torch.cat([p[:, :1] ** 3 * p[:, 1:], torch.sin(p[:, :1]) + p[:, 1:] ** 2], dim=1)  # noqa: E731
    f = Fields(autograd_jet(fn, x, "diag"), ("x", "t"), ("u", "v"), x)
    a, t = x[:, :1].detach(), x[:, 1:].detach()
    torch.testing.assert_close(f["u"].value.detach(), a**3 * t)
    torch.testing.assert_close(f.d("x", component="v").detach(), torch.cos(a))
    torch.testing.assert_close(f["u"].d("x", "x", "x").detach(), 6 * t)
    torch.testing.assert_close(f["u"].d("x", "t", "x").detach(), 6 * a)
    torch.testing.assert_close(f["v"].d("x", "x", "x", "x").detach(), torch.sin(a))
    with pytest.raises(KeyError, match="outputs are"):
        f["p"]
    with pytest.raises(ValueError, match="order = 3"):
        Fields(autograd_jet(fn, x.detach(), "diag"), ("x", "t"), ("u", "v")).d("x", "x", "x")


def test_higher_derivatives_in_forward_mode_equal_autograd():
    """With `jet_fn` (the route under torch.func) u_xxx, u_xtx and u_xxxx are forward-mode
    derivatives of the jet; they equal autograd's on top of it, per component, to 1e-12."""
    net = MLP([2, 8, 8, 2], generator=gen(13), dtype=F64)
    x = torch.rand(25, 2, generator=gen(14), dtype=F64)
    xg = x.clone().requires_grad_(True)
    slow = Fields(jet(net, xg, "diag"), ("x", "t"), ("u", "v"), xg)
    fast = Fields(jet(net, x, "diag"), ("x", "t"), ("u", "v"), x, jet_fn=lambda p: jet(net, p, "diag"))
    for names in (("x", "x", "x"), ("x", "t", "x"), ("x", "x", "x", "x")):
        for c in ("u", "v"):
            torch.testing.assert_close(fast.d(*names, component=c), slow.d(*names, component=c).detach(),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_kernel", [True, False])
def test_third_derivative_trains(use_kernel):
    """KdV's loss through the KAN: value and parameter gradients the same with the kernel on and
    off and with nested autograd (a silent zero gradient of the u_xxx term would differ)."""
    prob = build_problem({"name": "kdv", **SMALL, "n_initial": 16})
    data = prob.sample(gen(13))
    results = []
    for fast, on in ((True, use_kernel), (False, False)):
        model = KAN([2, 5, 1], generator=gen(14), dtype=F64)
        with kernel.switched(on):
            loss = prob.losses(model, data, fast=fast)["pde"]
            grads = torch.autograd.grad(loss, list(model.parameters()))
        results.append((loss.detach(), grads))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2, rtol=1e-10, atol=0)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    assert all(float(g.abs().max()) > 0 for g in g1)


def test_dirichlet_component_and_initial_value_function():
    prob = exact_problem("kovasznay")
    u = prob.evaluator(Exact(prob.exact), fast=False)
    wrong = Dirichlet(lambda x: torch.zeros(len(x), 2), component=("u", "v"))
    assert float(wrong.loss(u, wrong.sample(prob.domain, 40, "random", gen(15)))) > 0.1
    heat = exact_problem("heat", n_initial=16)
    init = Initial(heat.initial)
    pts = init.sample(heat.domain, 20, "random", gen(16))
    assert float(init.loss(heat.evaluator(Exact(heat.exact), fast=False), pts)) < 1e-28


def test_lshape_enrichment_is_harmonic_and_keeps_the_boundary_exact():
    """The L-shape's corner functions are harmonic and vanish on the re-entrant edges; with
    trained coefficients c_j != 0 the enriched hard constraint still gives u = 0 on the whole
    boundary to rounding, and its jet equals nested autograd."""
    from kanpde.problems.poisson import corner_functions

    prob = build_problem({"name": "poisson_lshape", **SMALL, "enrich": 2})
    prob.setup(gen(), F64, torch.device("cpu"))
    with torch.no_grad():
        prob.unknowns.coef.copy_(torch.tensor([0.4, -0.2], dtype=F64))
    x = prob.domain.interior(60, "random", gen(13)).requires_grad_(True)
    s = corner_functions(x, 2)
    for j in range(2):
        g = torch.autograd.grad(s[:, j].sum(), x, create_graph=True)[0]
        lap = sum(torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
        assert float(lap.abs().max()) < 1e-9
    edges = torch.cat([torch.stack([torch.zeros(20), torch.linspace(0.01, 1, 20)], 1),
                       torch.stack([torch.linspace(0.01, 1, 20), torch.zeros(20)], 1)]).to(F64)
    assert float(corner_functions(edges, 2).abs().max()) < 1e-15
    sol = prob.solution(KAN([2, 5, 1], generator=gen(8), dtype=F64))
    xb = prob.domain.boundary(200, "random", gen(9))[0]
    with torch.no_grad():
        assert float(sol(xb).abs().max()) < 1e-14
        assert float(sol(x.detach()).abs().max()) > 1e-3
    fast, slow = sol.jet(x.detach(), "laplacian"), autograd_jet(sol, x.detach(), "laplacian")
    torch.testing.assert_close(fast.second, slow.second, rtol=1e-9, atol=1e-9)
    assert prob.unknown_metrics() == {"c1": 0.4, "c2": -0.2}


def test_lshape_enrichment_needs_the_hard_constraint():
    with pytest.raises(ConfigError, match="problem.enrich=2 needs problem.hard=true"):
        build_problem({"name": "poisson_lshape", **SMALL, "hard": False, "enrich": 2})
    assert build_problem({"name": "poisson_lshape", **SMALL, "hard": False, "enrich": 0}).unknowns is None
