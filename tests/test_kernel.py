"""The fused C++ kernel (kanpde.nn.kernel) against the torch path it replaces: values, jets, and the
gradients of a loss w.r.t. inputs and parameters, for every specialised and generic case."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from kanpde.nn import kernel
from kanpde.nn.bspline import make_uniform_knots
from kanpde.nn.derivatives import autograd_jet
from kanpde.nn.kan import KAN

F64 = torch.float64

pytestmark = pytest.mark.skipif(kernel.library() is None, reason="the C++ kernel cannot be built here")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_kan(width, grid, order, seed, dtype=F64) -> KAN:
    """A KAN with every parameter O(1) random, so no term of the jet is negligible."""
    model = KAN(width, grid=grid, order=order, generator=gen(seed), dtype=dtype)
    g = gen(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    return model


def loss_and_grads(model, x, mode, use_kernel):
    """A loss using every jet channel and the plain forward; its gradients w.r.t. x and parameters."""
    with kernel.switched(use_kernel):
        x = x.detach().clone().requires_grad_(True)
        j = model.jet(x, mode)
        loss = (j.value ** 2).sum() + (j.grad ** 3).sum() + 0.1 * (j.second ** 2).sum() + (model(x) ** 3).sum()
        grads = torch.autograd.grad(loss, [x, *model.parameters()])
    return j, grads


def assert_close_rel(a, b, rtol):
    scale = float(b.detach().abs().max()) if b.numel() else 0.0
    torch.testing.assert_close(a, b, rtol=0, atol=rtol * max(scale, 1e-300))


@pytest.mark.parametrize("width,grid,order,mode", [
    ([2, 10, 1], 5, 3, "laplacian"),   # specialised: d = 2, P = 1, one output
    ([2, 6, 3], 7, 3, "diag"),         # d = 2, P = 2
    ([3, 4, 5, 2], 4, 3, "full"),      # d = 3, P = 6
    ([1, 5, 1], 6, 3, "laplacian"),    # d = 1, P = 1
    ([2, 4, 1], 5, 3, "none"),         # d = 2, P = 0
    ([5, 3, 1], 3, 3, "full"),         # d = 5, P = 15: generic counts
    ([2, 4, 1], 5, 1, "laplacian"),    # linear splines: second derivative of the bases 0
    ([2, 4, 2], 6, 2, "full"),         # generic order
    ([2, 3, 1], 4, 5, "diag"),
    ([2, 5, 4, 1], 5, 3, "diag"),      # three layers into one output: its own cubic path
])
def test_kernel_equals_torch_path(width, grid, order, mode):
    """Value, gradient, second channels and the gradients of a loss through them (w.r.t. inputs
    and every parameter) agree with the torch path to 1e-10 relative, at points partly outside
    the knot span (where the bases vanish and only silu remains); 150 points, so that the kernel's
    blocks of 64 end in a partial one."""
    model = random_kan(width, grid, order, seed=grid + order)
    x = (torch.rand(150, width[0], generator=gen(1), dtype=F64) * 2 - 1) * 2.5
    fast, g_fast = loss_and_grads(model, x, mode, True)
    slow, g_slow = loss_and_grads(model, x, mode, False)
    for name in ("value", "grad", "second"):
        assert_close_rel(getattr(fast, name), getattr(slow, name), 1e-10)
    for a, b in zip(g_fast, g_slow):
        assert_close_rel(a, b, 1e-10)
    ref = autograd_jet(model, x, mode)  # and nested autograd, the independent oracle
    assert_close_rel(fast.second, ref.second, 1e-10)


def test_kernel_float32_matches_float64():
    """In float32 the kernel agrees with the float64 result to single precision."""
    model = random_kan([2, 8, 1], 6, 3, seed=3)
    x = torch.rand(200, 2, generator=gen(2), dtype=F64) * 2 - 1
    ref, _ = loss_and_grads(model, x, "laplacian", True)
    low, _ = loss_and_grads(model.float(), x.float(), "laplacian", True)
    assert_close_rel(low.second.double(), ref.second, 1e-4)


def test_layer_jet_gradcheck():
    """gradcheck of the kernel's autograd Function w.r.t. all of x, dh, d2h, m2, coef, w_b."""
    n, n_in, n_out, g, k = 5, 3, 2, 4, 3
    lo, hi = torch.full((n_in,), -1.0, dtype=F64), torch.full((n_in,), 1.0, dtype=F64)
    knots = make_uniform_knots(lo, hi, g, k)
    r = gen(7)
    args = [torch.randn(*s, generator=r, dtype=F64).requires_grad_(True)
            for s in ((n, n_in), (n, n_in, 2), (n, n_in, 1), (n, n_in, 1), (n_in, g + k, n_out), (n_in, n_out))]

    def f(*a):
        return kernel.layer_jet(*a, knots, k)

    assert gradcheck(f, tuple(args), eps=1e-6, atol=1e-7)


def test_switch_and_threads_do_not_change_results():
    """`switched(False)` takes the torch path (same numbers), and the result does not depend on
    the number of threads (per-thread gradient buffers are summed)."""
    model = random_kan([2, 16, 1], 10, 3, seed=5)
    x = torch.rand(999, 2, generator=gen(4), dtype=F64) * 2 - 1
    old = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(loss_and_grads(model, x, "laplacian", True)[1])
    finally:
        torch.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert_close_rel(a, b, 1e-12)
    calls = []
    original = kernel.layer_jet
    try:
        kernel.layer_jet = lambda *a, **k: calls.append(1) or original(*a, **k)
        with kernel.switched(False):
            model(x)
        assert not calls
        model(x)
        assert calls
    finally:
        kernel.layer_jet = original
