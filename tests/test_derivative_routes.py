"""Every way of taking a KAN's input derivatives gives the same loss and the same parameter
gradients: derivatives taken by the user with torch.autograd.grad(create_graph=True) on the fused
C++ kernel and on the torch path, nested autograd (`autograd_jet`), the forward jet, a third
derivative taken by autograd on top of the jet, and torch.func transforms.

The failure these guard against is silent: a derivative whose graph stops at the kernel gives a
loss term with no (or a wrong) parameter gradient, and training optimises something else. So
every term's gradient is compared with a torch-path reference that is checked to be non-zero.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck, gradgradcheck

from kanpde.nn import kernel
from kanpde.nn.bspline import make_uniform_knots
from kanpde.nn.derivatives import autograd_jet
from kanpde.nn.kan import KAN

F64 = torch.float64
TOL = 1e-10
needs_kernel = pytest.mark.skipif(kernel.library() is None, reason="the C++ kernel cannot be built here")
# torch.func.hessian loads torch's forward-AD decompositions, which call torch.jit.script: torch's noise.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

Terms = dict[str, Tensor]  # loss terms by name, each a scalar tensor


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model() -> KAN:
    """KAN [2, 5, 1], G = 5, float64, every parameter O(1) random so no term is negligible."""
    net = KAN([2, 5, 1], grid=5, generator=gen(0), dtype=F64)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen(p.numel()), dtype=F64))
    return net


@pytest.fixture(scope="module")
def points() -> Tensor:
    """(7, 2) points, some outside the grid [-1, 1] but inside the knot span."""
    return (torch.rand(7, 2, generator=gen(1), dtype=F64) * 2 - 1) * 1.5


@pytest.fixture
def kernel_calls(monkeypatch) -> list[int]:
    """Counts the layers evaluated by the C++ kernel (`kernel.layer_jet`, which `KANLayer` calls)."""
    calls: list[int] = []
    original = kernel.layer_jet
    monkeypatch.setattr(kernel, "layer_jet", lambda *a: calls.append(1) or original(*a))
    return calls


def loss_terms(u: Tensor, g: Tensor, lap: Tensor) -> Terms:
    """A loss mixing the value u (N,), the gradient g (N, 2) and the Laplacian lap (N,)."""
    return {"value": (u ** 2).mean(), "first": ((g + 0.3) ** 2).mean(), "laplacian": ((lap - 1) ** 2).mean()}


def user_derivatives(model: KAN, x: Tensor) -> Terms:
    """Derivatives the way a user writes a Neumann or Poisson residual: autograd.grad of model(x)."""
    x = x.detach().requires_grad_(True)
    u = model(x)[:, 0]
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)  # (N, 2)
    lap = sum(torch.autograd.grad(g[:, a].sum(), x, create_graph=True)[0][:, a] for a in range(2))
    return loss_terms(u, g, lap)


def nested_autograd(model: KAN, x: Tensor) -> Terms:
    j = autograd_jet(model, x, "laplacian")
    return loss_terms(j.value[:, 0], j.grad[:, 0], j.second[:, 0, 0])


def forward_jet(model: KAN, x: Tensor) -> Terms:
    j = model.jet(x, "laplacian")
    return loss_terms(j.value[:, 0], j.grad[:, 0], j.second[:, 0, 0])


def func_transforms(model: Callable[[Tensor], Tensor], x: Tensor) -> Terms:
    """torch.func per point: vmap of the model, of its grad and of its Hessian's trace."""
    def f(xi: Tensor) -> Tensor:  # (2,) -> ()
        return model(xi[None])[0, 0]

    hess = torch.func.vmap(torch.func.hessian(f))(x)  # (N, 2, 2)
    return loss_terms(torch.func.vmap(f)(x), torch.func.vmap(torch.func.grad(f))(x),
                      hess.diagonal(dim1=-2, dim2=-1).sum(-1))


def parameter_gradients(model: KAN, terms: Terms) -> dict[str, tuple[Tensor, list[Tensor]]]:
    """Per term: (loss (), its gradient w.r.t. every parameter, zeros where it has none)."""
    params = list(model.parameters())
    out = {}
    for name, loss in terms.items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        out[name] = (loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
    return out


def assert_same(got: dict, ref: dict) -> None:
    """Same terms, losses and parameter gradients to TOL relative; every reference term has a
    non-zero gradient, so a route that drops a term's gradient fails."""
    assert got.keys() == ref.keys()
    for name, (loss, grads) in ref.items():
        assert sum(float(g.norm()) for g in grads) > 0, f"reference term {name!r} has no parameter gradient"
        torch.testing.assert_close(got[name][0], loss, rtol=TOL, atol=TOL * float(loss.abs()), msg=name)
        scale = max(float(g.abs().max()) for g in grads)
        for i, (a, b) in enumerate(zip(got[name][1], grads)):
            torch.testing.assert_close(a, b, rtol=0, atol=TOL * scale, msg=f"{name}: parameter {i}")


def run(route: Callable[[KAN, Tensor], Terms], model: KAN, x: Tensor, use_kernel: bool) -> dict:
    with kernel.switched(use_kernel):
        return parameter_gradients(model, route(model, x))


@pytest.fixture(scope="module")
def reference(model, points) -> dict:
    """User-taken derivatives on the torch path."""
    return run(user_derivatives, model, points, False)


ROUTES = {"user_derivatives": user_derivatives, "nested_autograd": nested_autograd,
          "forward_jet": forward_jet, "func_transforms": func_transforms}


@pytest.mark.parametrize("use_kernel", [pytest.param(True, marks=needs_kernel), False], ids=["kernel", "torch"])
@pytest.mark.parametrize("route", ROUTES)
def test_route_matches_reference(route, use_kernel, model, points, reference, kernel_calls):
    """Each route, kernel on and off, gives the reference loss terms and parameter gradients.
    With the kernel on, routes that may use it do (torch.func and nested autograd take the torch
    path)."""
    assert_same(run(ROUTES[route], model, points, use_kernel), reference)
    takes_kernel = use_kernel and route in ("user_derivatives", "forward_jet")
    assert bool(kernel_calls) == takes_kernel


@pytest.mark.parametrize("use_kernel", [pytest.param(True, marks=needs_kernel), False], ids=["kernel", "torch"])
def test_func_grad_over_parameters(use_kernel, model, points, reference):
    """torch.func.grad of the loss w.r.t. the parameters (functional_call), the fully functional
    route, gives the reference gradients."""
    names = [n for n, _ in model.named_parameters()]

    def loss(params: dict[str, Tensor], name: str) -> Tensor:
        return func_transforms(lambda xi: torch.func.functional_call(model, params, (xi,)), points)[name]

    params = {n: p.detach() for n, p in model.named_parameters()}
    with kernel.switched(use_kernel):
        got = {}
        for name in reference:
            grads, value = torch.func.grad_and_value(loss)(params, name)
            got[name] = (value, [grads[n] for n in names])
    assert_same(got, reference)


def third_by_jet(model: KAN, x: Tensor, mode: str) -> Terms:
    """d/dx of the jet's first second-derivative channel (u_xx in "diag": KdV's u_xxx)."""
    x = x.detach().requires_grad_(True)
    second = model.jet(x, mode).second[:, 0, 0]  # (N,)
    (third,) = torch.autograd.grad(second.sum(), x, create_graph=True)  # (N, 2)
    return {"third": ((third + 0.5) ** 2).mean()}


def third_by_nested_autograd(model: KAN, x: Tensor, mode: str) -> Terms:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)  # (N, 2)
    axes = range(2) if mode == "laplacian" else range(1)  # "diag" channel 0: d2/dx_0^2
    second = sum(torch.autograd.grad(g[:, a].sum(), x, create_graph=True)[0][:, a] for a in axes)
    (third,) = torch.autograd.grad(second.sum(), x, create_graph=True)
    return {"third": ((third + 0.5) ** 2).mean()}


@pytest.mark.parametrize("use_kernel", [pytest.param(True, marks=needs_kernel), False], ids=["kernel", "torch"])
@pytest.mark.parametrize("mode", ["laplacian", "diag"])
def test_third_derivative_of_jet(mode, use_kernel, model, points, kernel_calls):
    """Autograd on top of the jet's second channel equals triple nested autograd on the torch
    path, in the loss and every parameter gradient."""
    ref = run(lambda m, x: third_by_nested_autograd(m, x, mode), model, points, False)
    kernel_calls.clear()
    assert_same(run(lambda m, x: third_by_jet(m, x, mode), model, points, use_kernel), ref)
    assert bool(kernel_calls) == use_kernel


@needs_kernel
def test_plain_backward_stays_in_cpp(model, points, monkeypatch):
    """Without create_graph the kernel's backward is the C++ one, not the torch recomputation."""
    def refuse(*args):
        raise AssertionError("the torch VJP ran for a first-order backward")

    monkeypatch.setattr(kernel, "_torch_vjp", refuse)
    forward_jet(model, points)["laplacian"].backward()
    model(points).sum().backward()


@needs_kernel
def test_kernel_function_refuses_func_transforms(model, points):
    """Should the torch.func probe fail, the kernel's Function itself raises under a transform
    (ctypes cannot read wrapped tensors) rather than return a wrong value."""
    layer = model.layers[0]
    empty = points.new_zeros(points.shape[0], 2, 0)
    t0, h = layer.knots[:, 0].contiguous(), (layer.knots[:, 1] - layer.knots[:, 0]).contiguous()

    def f(x: Tensor) -> Tensor:
        coef, wb = layer.coef.detach(), layer.base_weight.detach()
        return kernel._LayerJet.apply(x, empty, empty, empty, coef, wb, t0, h, layer.order)[0].sum()

    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(f)(points)


def layer_inputs(n: int, n_in: int, n_out: int, grid: int, order: int, d: int, p: int, seed: int):
    """Random (x, dh, d2h, m2, coef, wb) for `kernel.layer_jet`, x partly outside the knot span,
    and the (n_in, G+2k+1) knots on [-1, 1]."""
    r = gen(seed)
    shapes = ((n, n_in), (n, n_in, d), (n, n_in, p), (n, n_in, p), (n_in, grid + order, n_out), (n_in, n_out))
    args = [torch.randn(*s, generator=r, dtype=F64) for s in shapes]
    args[0] = args[0] * 1.5
    lo, hi = torch.full((n_in,), -1.0, dtype=F64), torch.full((n_in,), 1.0, dtype=F64)
    return args, make_uniform_knots(lo, hi, grid, order)


@needs_kernel
@pytest.mark.parametrize("order", range(1, 8))
def test_torch_layer_jet_equals_kernel(order):
    """`torch_layer_jet` computes what the C++ kernel computes, for every order it takes."""
    args, knots = layer_inputs(40, 3, 2, 4, order, d=2, p=3, seed=order)
    t0, h = knots[:, 0], knots[:, 1] - knots[:, 0]
    for got, ref in zip(kernel.torch_layer_jet(*args, t0, h, order), kernel.layer_jet(*args, knots, order)):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))


@needs_kernel
@pytest.mark.parametrize("mode, d", [("laplacian", 2), ("diag", 3), ("full", 3), ("full", 1), ("none", 2)])
def test_kernel_forms_m2_by_the_mode(mode, d):
    """With the mode in place of m2 the kernel forms dh^T Q_p dh itself: the same jet, and the
    same gradients (dh's now including the path through m2), as forming it in torch ops first;
    gradcheck holds on that route too."""
    from kanpde.nn.derivatives import pairs, quadratic

    p = {"none": 0, "laplacian": 1}.get(mode, len(pairs(mode, d)))
    args, knots = layer_inputs(30, 3, 2, 4, 3, d=d, p=p, seed=d + p)
    args = [a.requires_grad_() for a in args]
    x, dh, d2h, _, coef, wb = args
    formed = kernel.layer_jet(x, dh, d2h, mode, coef, wb, knots, 3)
    given = kernel.layer_jet(x, dh, d2h, quadratic(dh, mode), coef, wb, knots, 3)
    weights = [torch.randn(t.shape, generator=gen(3), dtype=F64) for t in given]
    grads = [torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, outs)), (x, dh, d2h, coef, wb))
             for outs in (formed, given)]
    for got, ref in zip([*formed, *grads[0]], [*given, *grads[1]]):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12 * max([1.0, *ref.detach().abs().flatten().tolist()]))
    small, knots = layer_inputs(4, 2, 2, 3, 3, d, p, seed=1)
    small = [a.requires_grad_() for a in small]

    def f(x, dh, d2h, coef, wb):
        return kernel.layer_jet(x, dh, d2h, mode, coef, wb, knots, 3)

    inputs = (small[0], small[1], small[2], small[4], small[5])
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-7) and gradgradcheck(f, inputs, eps=1e-6, atol=1e-6)


@needs_kernel
def test_layer_jet_refuses_a_mode_that_does_not_match_the_channels():
    args, knots = layer_inputs(4, 2, 2, 3, 3, d=2, p=2, seed=0)
    with pytest.raises(ValueError, match="2 second-derivative channels do not match mode 'laplacian' with d = 2"):
        kernel.layer_jet(args[0], args[1], args[2], "laplacian", *args[4:], knots, 3)
    with pytest.raises(ValueError, match="second-derivative mode 'hessian' is not one of"):
        kernel.layer_jet(args[0], args[1], args[2], "hessian", *args[4:], knots, 3)


@needs_kernel
@pytest.mark.parametrize("d,p,needed", [
    (2, 1, (True,) * 6),                           # a jet, every input differentiable
    (0, 0, (True, False, False, False, True, True)),  # the plain forward
    (1, 1, (True, False, False, True, True, False)),  # some inputs constant
])
def test_layer_jet_gradgradcheck(d, p, needed):
    """gradcheck and gradgradcheck of the kernel's Function (through `layer_jet`), order 3."""
    args, knots = layer_inputs(4, 2, 2, 3, 3, d, p, seed=d + p)
    args = [a.requires_grad_(need) for a, need in zip(args, needed)]

    def f(*a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return kernel.layer_jet(*a, knots, 3)

    assert gradcheck(f, tuple(args), eps=1e-6, atol=1e-7)
    assert gradgradcheck(f, tuple(args), eps=1e-6, atol=1e-6)
