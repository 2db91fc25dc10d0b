"""kanpde's L-BFGS against torch's: the compact-form direction equals the two-loop recursion's,
and whole steps follow the same iterates."""

from __future__ import annotations

import pytest
import torch

from kanpde.optim.lbfgs import LBFGS, compact_direction
from kanpde.validate import ConfigError


def two_loop(g, steps, changes, gamma):
    """-H g by the textbook two-loop recursion (Nocedal & Wright, alg. 7.4), oldest pair first."""
    q, alpha = g.clone(), []
    for s, y in reversed(list(zip(steps, changes))):
        a = (s @ q) / (y @ s)
        alpha.append(a)
        q -= a * y
    r = gamma * q
    for (s, y), a in zip(zip(steps, changes), reversed(alpha)):
        r += s * (a - (y @ r) / (y @ s))
    return -r


def rosenbrock(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


@pytest.mark.parametrize("k", [1, 2, 7])
def test_compact_direction_equals_the_two_loop_recursion(k):
    gen = torch.Generator().manual_seed(k)
    n = 30
    A = torch.randn(n, n, generator=gen, dtype=torch.float64)
    A = A @ A.T + 0.1 * torch.eye(n, dtype=torch.float64)  # pairs from a convex quadratic: y = A s
    S = torch.randn(k, n, generator=gen, dtype=torch.float64)
    Y = S @ A
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    gamma = float(S[-1] @ Y[-1] / (Y[-1] @ Y[-1]))
    got = compact_direction(g, S, Y, S @ Y.T, Y @ Y.T, gamma)
    want = two_loop(g, list(S), list(Y), gamma)
    assert torch.allclose(got, want, rtol=1e-11, atol=1e-12 * float(want.abs().max()))


def _run(opt_cls, steps, **kw):
    x = torch.tensor([-1.2, 1.0, -0.5, 0.8, 0.3, -0.9], dtype=torch.float64, requires_grad=True)
    opt = opt_cls([x], **kw)
    evals = [0]

    def closure():
        opt.zero_grad()
        evals[0] += 1
        loss = rosenbrock(x)
        loss.backward()
        return loss

    losses = [float(opt.step(closure).detach()) for _ in range(steps)]
    return x.detach(), losses, evals[0], opt


@pytest.mark.parametrize("line_search", ["strong_wolfe", None])
def test_steps_follow_torchs_lbfgs(line_search):
    """Same iterates, losses and evaluation counts as torch.optim.LBFGS, with a history short
    enough (3) that old pairs are dropped."""
    lr = 1.0 if line_search else 0.2
    kw = dict(lr=lr, max_iter=5, history_size=3, line_search_fn=line_search,
              tolerance_grad=1e-32, tolerance_change=1e-32)
    x_ours, loss_ours, n_ours, _ = _run(LBFGS, 4, **kw)
    x_torch, loss_torch, n_torch, _ = _run(torch.optim.LBFGS, 4, **kw)
    assert n_ours == n_torch
    assert loss_ours == pytest.approx(loss_torch, rel=1e-9)
    assert torch.allclose(x_ours, x_torch, rtol=1e-9, atol=1e-12)


def test_converges_on_rosenbrock():
    x, losses, _, _ = _run(LBFGS, 20, max_iter=20, line_search_fn="strong_wolfe",
                           tolerance_grad=1e-32, tolerance_change=1e-32)
    assert rosenbrock(x) < 1e-20
    assert torch.allclose(x, torch.ones_like(x), atol=1e-10)


def _continue(saved, x_start, steps, **kw):
    """`steps` more steps of kanpde's L-BFGS from x_start, its state loaded from optimiser `saved`."""
    x = x_start.clone().requires_grad_()
    opt = LBFGS([x], **kw)
    opt.load_state_dict(saved.state_dict())

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return x.detach()


def test_state_dict_resumes_the_same_run():
    """Two steps, a state_dict round trip into a fresh optimiser, two more: the same as four."""
    kw = dict(max_iter=4, history_size=5, line_search_fn="strong_wolfe")
    x_all, _, _, _ = _run(LBFGS, 4, **kw)
    x_half, _, _, opt = _run(LBFGS, 2, **kw)
    assert torch.allclose(_continue(opt, x_half, 2, **kw), x_all, rtol=1e-12, atol=1e-14)


def test_adopts_a_checkpoint_of_torchs_lbfgs():
    """A state saved by torch.optim.LBFGS continues as torch would continue it."""
    kw = dict(max_iter=4, history_size=5, line_search_fn="strong_wolfe")
    x_torch, _, _, _ = _run(torch.optim.LBFGS, 4, **kw)
    x_half, _, _, opt = _run(torch.optim.LBFGS, 2, **kw)
    assert torch.allclose(_continue(opt, x_half, 2, **kw), x_torch, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kw, message", [
    (dict(history_size=0), "history_size"),
    (dict(line_search_fn="backtracking"), "backtracking"),
    (dict(max_iter=0), "max_iter"),
])
def test_bad_options_fail_clearly(kw, message):
    with pytest.raises(ConfigError, match=message):
        LBFGS([torch.zeros(2, requires_grad=True)], **kw)


def test_does_not_import_dynamo():
    """Building, stepping and saving it leaves torch._dynamo unimported (2 s of start-up)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from kanpde.optim.lbfgs import LBFGS\n"
            "x = torch.ones(3, requires_grad=True)\n"
            "opt = LBFGS([x], line_search_fn='strong_wolfe')\n"
            "def closure():\n"
            "    opt.zero_grad()\n"
            "    loss = (x ** 4).sum()\n"
            "    loss.backward()\n"
            "    return loss\n"
            "opt.step(closure)\n"
            "opt.load_state_dict(opt.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def _steps(reuse, steps=4, edit_between=False, **kw):
    x = torch.tensor([-1.2, 1.0, -0.5, 0.8, 0.3, -0.9], dtype=torch.float64, requires_grad=True)
    opt = LBFGS([x], **kw)
    calls = [0]

    def closure():
        opt.zero_grad()
        calls[0] += 1
        loss = rosenbrock(x)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure, reuse=reuse)
        if edit_between:
            with torch.no_grad():
                x.mul_(1.0)  # same values, but changed in place: its version counter moves
    return x.detach(), calls[0]


@pytest.mark.parametrize("line_search", ["strong_wolfe", None])
def test_reuse_skips_the_repeated_evaluation_and_changes_nothing_else(line_search):
    """With reuse the iterates are bit for bit the same, with one evaluation fewer per step
    after the first; a parameter changed in place in between is evaluated again."""
    kw = dict(max_iter=5, history_size=3, line_search_fn=line_search, lr=1.0 if line_search else 0.2,
              tolerance_grad=1e-32, tolerance_change=1e-32)
    x_plain, n_plain = _steps(False, **kw)
    x_reuse, n_reuse = _steps(True, **kw)
    assert torch.equal(x_plain, x_reuse)
    # the fixed step's last iteration moves without evaluating: nothing to reuse there
    assert n_reuse == (n_plain - 3 if line_search else n_plain)
    _, n_edited = _steps(True, edit_between=True, **kw)
    assert n_edited == n_plain
