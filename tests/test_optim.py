"""Second-order optimisers (kanpde.optim) and the residual vector they read
(PDEProblem.residual_vector / residual_jacobian): least-squares problems with known solutions
solved to 1e-10, the self-scaled methods beating L-BFGS on an ill-conditioned quadratic,
Jacobians equal to autograd's row by row, sum(r^2) equal to the loss, refusals of what does
not fit in memory."""

from __future__ import annotations

import pytest
import torch

from kanpde.nn.derivatives import autograd_jet, func_jet
from kanpde.nn.kan import KAN
from kanpde.nn.mlp import MLP
from kanpde.optim import NAMES, LevenbergMarquardt, make
from kanpde.optim.jacobian import jacobian
from kanpde.optim.levenberg_marquardt import GRAM_LEAF, MAX_JACOBIAN, gram
from kanpde.optim.quasi_newton import MAX_PARAMS
from kanpde.pde.conditions import Periodic
from kanpde.pde.jacobian import pointwise_ok
from kanpde.registry import build_problem
from kanpde.validate import ConfigError

F64 = torch.float64
QUASI_NEWTON = ("bfgs", "ssbfgs", "ssbroyden")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def minimise(name: str, x: torch.Tensor, residual, steps: int, **opts) -> torch.optim.Optimizer:
    """Run optimiser `name` on |residual(x)|^2 for `steps` steps."""
    opt = make(name, [x], **opts)
    for _ in range(steps):
        if name == "lm":
            opt.step(lambda: residual(x))
        else:
            def closure():
                opt.zero_grad()
                loss = residual(x).pow(2).sum()
                loss.backward()
                return loss
            opt.step(closure)
    return opt


# --- least squares with known solutions --------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_consistent_linear_least_squares_to_1e10(name):
    """r = A x - b, A (40, 6) with condition number 1e2, b = A x*: every method finds x*."""
    g = gen(1)
    u, _ = torch.linalg.qr(torch.randn(40, 6, generator=g, dtype=F64))
    v, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=F64))
    a = u @ torch.diag(torch.logspace(0, 2, 6, dtype=F64)) @ v.T
    x_star = torch.randn(6, generator=g, dtype=F64)
    b = a @ x_star
    x = torch.zeros(6, dtype=F64, requires_grad=True)
    minimise(name, x, lambda x: a @ x - b, steps=3, max_iter=50)
    assert float((x.detach() - x_star).abs().max()) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_rosenbrock_as_residuals_to_1e10(name):
    """r = (10 (x2 - x1^2), 1 - x1) from Rosenbrock's (-1.2, 1): the minimiser is (1, 1)."""
    x = torch.tensor([-1.2, 1.0], dtype=F64, requires_grad=True)
    minimise(name, x, lambda x: torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]]), steps=4, max_iter=100)
    assert float((x.detach() - 1).abs().max()) < 1e-10


def test_levenberg_scaling_and_monotone_decrease():
    """Levenberg's D = I also converges on Rosenbrock, and |r|^2 never increases across steps."""
    x = torch.tensor([-1.2, 1.0], dtype=F64, requires_grad=True)
    opt = LevenbergMarquardt([x], scaling="levenberg", damping=1e-2)
    residual = lambda: torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])  # noqa: E731
    losses = [float(opt.step(residual)) for _ in range(60)]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert float((x.detach() - 1).abs().max()) < 1e-10


@pytest.mark.parametrize("cols", [1, GRAM_LEAF, GRAM_LEAF + 1, 3 * GRAM_LEAF + 7])
def test_gram_by_halves_equals_the_product(cols):
    """J^T J by halving the columns equals one product to rounding, and is symmetric."""
    jac = torch.randn(300, cols, dtype=F64, generator=gen(cols))
    a = gram(jac)
    ref = jac.T @ jac
    assert a.shape == (cols, cols)
    assert float((a - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    assert float((a - a.T).abs().max()) <= 1e-12 * float(ref.abs().max())


@pytest.mark.parametrize("name", ["ssbfgs", "ssbroyden"])
def test_self_scaled_beat_lbfgs_on_an_ill_conditioned_quadratic(name):
    """f = (x - x*)^T H (x - x*) / 2, H with eigenvalues 1 .. 1e6 (n = 40): iterations to
    |x - x*| < 1e-8, one line search per step for each; torch's L-BFGS (memory 10) needs more."""
    g = gen(2)
    n = 40
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    h = q @ torch.diag(torch.logspace(0, 6, n, dtype=F64)) @ q.T
    x_star = torch.randn(n, generator=g, dtype=F64)

    def iterations(make_opt, cap=400):
        x = torch.zeros(n, dtype=F64, requires_grad=True)
        opt = make_opt(x)

        def closure():
            opt.zero_grad()
            loss = 0.5 * (x - x_star) @ h @ (x - x_star)
            loss.backward()
            return loss

        for k in range(1, cap + 1):
            opt.step(closure)
            if float((x.detach() - x_star).abs().max()) < 1e-8:
                return k
        return cap + 1

    ours = iterations(lambda x: make(name, [x], max_iter=1))
    lbfgs = iterations(lambda x: torch.optim.LBFGS([x], max_iter=1, history_size=10, line_search_fn="strong_wolfe",
                                                   tolerance_grad=1e-32, tolerance_change=1e-32))
    assert ours <= 250 and ours < lbfgs / 1.5, (ours, lbfgs)


# --- residual vectors and Jacobians of PDE problems -------------------------------------------

CASES = [("poisson", {}), ("heat", {"hard": False, "n_initial": 20}), ("advection", {"hard": False, "n_initial": 20}),
         ("kovasznay", {}), ("heat_inverse", {"noise": 0.0}), ("helmholtz", {"hard": True}),
         ("kdv", {}), ("kdv", {"hard": False, "n_initial": 12})]  # KdV: u_xxx, order 3


def setup(name, kw, seed=0):
    """A small problem with its data and a perturbed random KAN (float64)."""
    prob = build_problem({"name": name, "n_interior": 48, "n_boundary": 16, "n_test": 10, **kw})
    prob.setup(gen(seed), F64, torch.device("cpu"))
    model = KAN([prob.in_dim, 4, prob.out_dim], grid=4, generator=gen(seed + 1), dtype=F64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen(seed + 2), dtype=F64))
    return prob, model, prob.sample(gen(seed + 3))


def autograd_rows(r: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """(R, P) the Jacobian one autograd.grad per row: the oracle."""
    rows = []
    for i in range(r.numel()):
        grads = torch.autograd.grad(r[i], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]))
    return torch.stack(rows)


@pytest.mark.parametrize("name, kw", CASES)
def test_residual_vector_sums_to_the_loss(name, kw):
    """sum(r^2) = sum of the loss terms, and its gradient is the loss's, on the kernel path."""
    prob, model, data = setup(name, kw)
    params = list(model.parameters()) + prob.parameters()
    terms = prob.losses(model, data, fast=True)
    r = prob.residual_vector(model, data, fast=True)
    total = sum(terms.values())
    assert r.ndim == 1 and r.requires_grad
    assert float(r.detach().pow(2).sum()) == pytest.approx(float(total.detach()), rel=1e-13)
    g_vec = torch.autograd.grad(r.pow(2).sum(), params, allow_unused=True)
    g_loss = torch.autograd.grad(total, params, allow_unused=True)
    for a, b in zip(g_vec, g_loss):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_periodic_residuals_reproduce_the_sum_of_term_means():
    """Periodic(derivatives=2): mean(residuals^2) = mean(du^2) + mean(du_x^2) + mean(du_xx^2),
    the three mismatches computed here from nested autograd of a non-periodic function."""
    prob = build_problem({"name": "advection", "n_interior": 8, "n_boundary": 8, "n_initial": 8, "hard": False})
    prob.scale_inputs = False
    cond = Periodic("x", derivatives=2)
    pts = cond.sample(prob.domain, 25, "random", gen(4))
    model = KAN([2, 3, 1], generator=gen(5), dtype=F64)
    u = prob.evaluator(model, fast=True)

    def derivs(x):
        x = x.clone().requires_grad_(True)
        v = model(x)
        (vx,) = torch.autograd.grad(v.sum(), x, create_graph=True)
        (vxx,) = torch.autograd.grad(vx[:, 0].sum(), x)
        return v.detach(), vx[:, :1].detach(), vxx[:, :1].detach()

    a, b = derivs(pts["x"]), derivs(pts["pair"])
    oracle = sum(float(((p - q) ** 2).mean()) for p, q in zip(a, b))
    res = cond.residuals(u, pts)
    assert res.shape == (25, 3)
    assert float(res.detach().pow(2).mean()) == pytest.approx(oracle, rel=1e-12)
    assert float(cond.loss(u, pts).detach()) == pytest.approx(oracle, rel=1e-12)


@pytest.mark.parametrize("name, kw", CASES)
def test_pointwise_jacobian_equals_autograd_rows(name, kw):
    """residual_jacobian's r and J equal residual_vector and its autograd rows to 1e-12."""
    prob, model, data = setup(name, kw)
    assert pointwise_ok(prob, model)
    params = list(model.parameters()) + prob.parameters()
    r0 = prob.residual_vector(model, data, fast=True)
    r, jac = prob.residual_jacobian(model, data)
    torch.testing.assert_close(r, r0.detach(), rtol=0, atol=1e-12)
    assert jac.shape == (r0.numel(), sum(p.numel() for p in params))
    torch.testing.assert_close(jac, autograd_rows(r0, params), rtol=0, atol=1e-12)


@pytest.mark.parametrize("problem, width, seed", [
    ({"name": "heat", "n_interior": 40, "n_boundary": 12, "n_initial": 12, "n_test": 10, "hard": False}, [2, 8, 8, 1], 8),
    ({"name": "kdv", "n_interior": 30, "n_boundary": 10, "n_test": 10}, [2, 6, 6, 1], 10),  # u_xxx: forward mode
])
def test_pointwise_jacobian_of_an_mlp(problem, width, seed):
    """The per-point route also takes an MLP's forward jets (float64): the heat equation, and
    KdV's u_xxx (forward mode under torch.func)."""
    prob = build_problem(problem)
    model = MLP(width, activation="tanh", generator=gen(seed), dtype=F64)
    data = prob.sample(gen(seed + 1))
    r0 = prob.residual_vector(model, data, fast=True)
    r, jac = prob.residual_jacobian(model, data)
    torch.testing.assert_close(r, r0.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(jac, autograd_rows(r0, list(model.parameters())), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["none", "laplacian", "diag", "full"])
def test_func_jet_equals_autograd_jet(mode):
    """The torch.func jet of closed forms (used for hard constraints under the per-point route)
    equals nested autograd's."""
    fn = lambda z: torch.cat([torch.sin(z[:, :1]) * z[:, 1:] ** 3, torch.exp(z.sum(1, keepdim=True))], dim=1)  # noqa: E731
    x = torch.rand(7, 2, generator=gen(10), dtype=F64)
    a, b = func_jet(fn, x, mode), autograd_jet(fn, x, mode)
    for name in ("value", "grad", "second"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name).detach(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", ["rows", "columns"])
def test_generic_jacobian_equals_autograd_rows(method):
    """The closure-only Jacobian (batched backward passes) on the kernel's problem: 1e-12."""
    prob, model, data = setup("advection", {"hard": False, "n_initial": 20})
    params = list(model.parameters())
    r0 = prob.residual_vector(model, data, fast=True)
    r, jac = jacobian(lambda: prob.residual_vector(model, data, fast=True), params, method, chunk=64)
    torch.testing.assert_close(r, r0.detach(), rtol=0, atol=1e-14)
    torch.testing.assert_close(jac, autograd_rows(r0, params), rtol=0, atol=1e-12)


def test_lm_trains_a_small_poisson_kan():
    """LM with the per-point Jacobian on the paper's Poisson problem (small): the loss falls by
    orders of magnitude in a few steps and never rises."""
    prob = build_problem({"name": "poisson", "n_interior": 100, "n_boundary": 40, "n_test": 10})
    model = KAN([2, 3, 1], grid=3, generator=gen(6), dtype=F64)
    data = prob.sample(gen(7))
    opt = make("lm", model.parameters(), max_iter=5, scaling="levenberg")
    losses = [float(opt.step(lambda: prob.residual_vector(model, data), lambda: prob.residual_jacobian(model, data)))
              for _ in range(4)]
    losses.append(opt.state[next(model.parameters())]["loss"])
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 1e-2 * losses[0]


# --- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_too_many_parameters_for_a_dense_matrix(name):
    with pytest.raises(ConfigError, match=rf"P = {MAX_PARAMS + 1} .*limit P <= {MAX_PARAMS}"):
        make(name, [torch.zeros(MAX_PARAMS + 1, dtype=F64, requires_grad=True)])


def test_too_large_a_jacobian_is_refused_before_it_is_built():
    x = torch.zeros(1000, dtype=F64, requires_grad=True)
    rows = MAX_JACOBIAN // 1000 + 1
    opt = make("lm", [x])
    with pytest.raises(ConfigError, match=rf"R = {rows} residuals x P = 1000 .*R x P <= {MAX_JACOBIAN}"):
        opt.step(lambda: x.sum() * torch.ones(rows, dtype=F64), lambda: pytest.fail("Jacobian built"))


@pytest.mark.parametrize("name, opts, message", [
    ("newton", {}, "optimizer 'newton' is not known; allowed: bfgs, ssbfgs, ssbroyden, lm"),
    ("ssbfgs", {"history_size": 10}, "optimizer 'ssbfgs' has no option 'history_size'; allowed: lr, max_iter"),
    ("lm", {"scaling": "diag"}, "lm scaling must be one of marquardt, levenberg; got 'diag'"),
    ("ssbroyden", {"c1": 0.9, "c2": 0.1}, "line search needs 0 < c1 < c2 < 1"),
    ("lm", {"damping": 0.0}, "lm damping must be a number > 0, got 0.0"),
])
def test_bad_options_fail_in_one_line(name, opts, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        make(name, [torch.zeros(2, dtype=F64, requires_grad=True)], **opts)
    assert "\n" not in str(info.value)


def test_lm_scale_invariance_of_marquardt_damping():
    """Marquardt's D = diag(J^T J) makes LM's path independent of a parameter's units: x2 scaled
    by 1000 gives the same iterates (rescaled) to rounding."""
    def run(scale):
        x = torch.tensor([-1.2, 1.0 / scale], dtype=F64, requires_grad=True)
        opt = make("lm", [x], max_iter=6)
        opt.step(lambda: torch.stack([10 * (scale * x[1] - x[0] ** 2), 1 - x[0]]))
        return x.detach() * torch.tensor([1.0, scale], dtype=F64)
    torch.testing.assert_close(run(1.0), run(1000.0), rtol=1e-9, atol=0)
