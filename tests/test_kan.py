"""KAN and MLP models: gradients, forward-propagated jets vs nested autograd, purity, seeding, counts."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import F64, assert_jets_equal, gen, points
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

from kanpde.nn import kernel
from kanpde.nn.bspline import basis
from kanpde.nn.derivatives import autograd_jet, jet
from kanpde.nn.grid import update_grid_
from kanpde.nn.kan import KAN, KANLayer
from kanpde.nn.mlp import MLP
from kanpde.registry import count_params, paper_params



PATHS = ("kernel", "per_edge", "dense")


def force_path(model: torch.nn.Module, path: str) -> None:
    """Make every KAN layer take the fused C++ kernel (skips the test when it cannot be built), the
    per-edge (cell polynomial) or the dense-feature torch evaluation."""
    if path == "kernel" and kernel.library() is None:
        pytest.skip("the C++ kernel cannot be built here (no compiler)")
    layers = model.layers if isinstance(model, KAN) else [model]
    for layer in layers:
        if path != "kernel":
            layer._kernel = lambda x, d=0, p=0: False
        layer._per_edge = (lambda n, c: True) if path == "per_edge" else (lambda n, c: False)


def params_call(module: torch.nn.Module):
    """(names, values, f) with f(x, *values) = module(x) evaluated with those parameter values."""
    names = [n for n, _ in module.named_parameters()]
    values = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]

    def f(x, *vals):
        return functional_call(module, dict(zip(names, vals)), (x,))

    return names, values, f


@pytest.mark.parametrize("path", [*PATHS, "cox_de_boor"])
def test_kan_layer_gradcheck(path):
    """KANLayer passes gradcheck and gradgradcheck w.r.t. inputs and all parameters, on each
    evaluation path (C++ kernel, uniform per-edge cell polynomials, uniform dense features,
    general knots); the kernel's backward is itself differentiable, so gradgradcheck there too."""
    layer = KANLayer(2, 3, grid_size=3, order=3, generator=gen(0), dtype=F64)
    if path == "cox_de_boor":
        layer.uniform = False
    else:
        force_path(layer, path)
    _, values, f = params_call(layer)
    x = points(4, 2, seed=1).requires_grad_(True)
    assert gradcheck(f, (x, *values), eps=1e-6, atol=1e-7)
    assert gradgradcheck(f, (x, *values), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_kan_gradcheck(path):
    """A two-layer KAN passes gradcheck and gradgradcheck w.r.t. inputs and all parameters."""
    model = KAN([2, 3, 1], grid=3, generator=gen(2), dtype=F64, noise_scale=1.0)
    force_path(model, path)
    _, values, f = params_call(model)
    x = points(3, 2, seed=3).requires_grad_(True)
    assert gradcheck(f, (x, *values), eps=1e-6, atol=1e-7)
    assert gradgradcheck(f, (x, *values), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_kan_jet_gradcheck_wrt_parameters(path):
    """The forward-propagated Laplacian and gradient of a KAN are differentiated correctly
    w.r.t. the parameters (what PINN training backpropagates through)."""
    model = KAN([2, 3, 1], grid=3, generator=gen(4), dtype=F64, noise_scale=1.0)
    force_path(model, path)
    names, values, _ = params_call(model)
    x = points(3, 2, seed=5)

    class LaplacianJet(torch.nn.Module):  # forward = the model's jet, for functional_call
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            j = self.model.jet(x, "laplacian")
            return j.value, j.grad, j.second

    wrapper = LaplacianJet()

    def f(*vals):
        return functional_call(wrapper, {f"model.{n}": v for n, v in zip(names, vals)}, (x,))

    assert gradcheck(f, tuple(values), eps=1e-6, atol=1e-7)


MODES = ("laplacian", "diag", "full")


@pytest.mark.parametrize("width", [[2, 3, 1], [3, 4, 4, 2]])
@pytest.mark.parametrize("grid", [3, 7])
def test_kan_jet_equals_autograd(width, grid):
    """KAN.jet on uniform grids equals nested autograd to 1e-10 in every second mode, at points
    partly outside the grid, on the automatic choice of path and on each path forced."""
    model = KAN(width, grid=grid, generator=gen(grid), dtype=F64, noise_scale=1.0)
    assert all(layer.uniform for layer in model.layers)
    x = points(16, width[0], seed=7)
    for mode in MODES:
        slow = autograd_jet(model, x, mode)
        assert_jets_equal(model.jet(x, mode), slow)
        for path in PATHS:
            forced = copy.deepcopy(model)
            force_path(forced, path)
            assert_jets_equal(forced.jet(x, mode), slow)
            torch.testing.assert_close(forced(x), slow.value, rtol=0, atol=1e-13)


@pytest.mark.parametrize("width", [[2, 3, 1], [3, 4, 4, 2]])
@pytest.mark.parametrize("grid", [3, 7])
def test_kan_jet_equals_autograd_after_grid_update(width, grid):
    """After update_grid_(grid_eps=0.3) (non-uniform knots, Cox-de Boor path) KAN.jet still
    equals nested autograd to 1e-10 in every second mode."""
    model = KAN(width, grid=grid, generator=gen(grid + 1), dtype=F64, noise_scale=1.0)
    update_grid_(model, points(64, width[0], seed=8, half_width=1.0), grid_eps=0.3)
    assert not any(layer.uniform for layer in model.layers)
    x = points(16, width[0], seed=9, half_width=1.3)
    for mode in MODES:
        slow = autograd_jet(model, x, mode)
        assert_jets_equal(model.jet(x, mode), slow)
        for path in PATHS:  # per-edge on non-uniform knots falls back to Cox-de Boor bases
            forced = copy.deepcopy(model)
            force_path(forced, path)
            assert_jets_equal(forced.jet(x, mode), slow)


@pytest.mark.parametrize("path", PATHS)
def test_kan_uniform_fast_path_equals_general_path(path):
    """On uniform knots each fast path and Cox-de Boor give the same outputs, edges and jets."""
    model = KAN([2, 4, 1], grid=5, generator=gen(11), dtype=F64, noise_scale=1.0)
    force_path(model, path)
    x = points(32, 2, seed=12)
    fast_out, fast_jet = model(x), model.jet(x, "full")
    fast_edges = model.layers[0].edges(x)
    for layer in model.layers:
        layer.uniform = False
    torch.testing.assert_close(fast_out, model(x), rtol=0, atol=1e-13)
    assert_jets_equal(fast_jet, model.jet(x, "full"), rtol=1e-12)
    torch.testing.assert_close(fast_edges, model.layers[0].edges(x), rtol=0, atol=1e-13)


def test_kan_layer_edges_by_hand():
    """Each edge is w_b silu(x) + sum_j c_j B_j(x) (Cox-de Boor bases), and the layer output is
    the sum over incoming edges plus the bias."""
    layer = KANLayer(2, 3, grid_size=4, order=3, generator=gen(22), dtype=F64)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=F64))
    x = points(10, 2, seed=23)
    b = basis(x, layer.knots, 3)  # (N, 2, 7)
    c, w = layer.coef.detach(), layer.base_weight.detach()
    edges = torch.nn.functional.silu(x)[..., None] * w + torch.einsum("nik,iko->nio", b, c)
    torch.testing.assert_close(layer.edges(x).detach(), edges, rtol=0, atol=1e-14)
    torch.testing.assert_close(layer(x).detach(), edges.sum(dim=1) + layer.bias.detach(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("activation", ["tanh", "silu", "sin"])
def test_mlp_jet_equals_autograd(activation):
    """MLP.jet equals nested autograd to 1e-10 for every second mode."""
    model = MLP([3, 5, 4, 2], activation=activation, generator=gen(13), dtype=F64)
    x = points(16, 3, seed=14)
    for mode in MODES:
        assert_jets_equal(model.jet(x, mode), autograd_jet(model, x, mode))


def test_jet_dispatch_and_none_mode():
    """`jet(fast=False)` is the autograd path; mode "none" gives value and gradient, no channels."""
    model = KAN([2, 3, 1], grid=4, generator=gen(15), dtype=F64, noise_scale=1.0)
    x = points(8, 2, seed=16)
    fast, slow = jet(model, x, "none", fast=True), jet(model, x, "none", fast=False)
    assert fast.second.shape == slow.second.shape == (8, 1, 0)
    torch.testing.assert_close(fast.value, slow.value, rtol=0, atol=1e-14)
    torch.testing.assert_close(fast.grad, slow.grad, rtol=0, atol=1e-12)
    assert float(slow.grad.detach().abs().max()) > 1e-2


def test_autograd_jet_of_affine_model():
    """Nested autograd of an affine model (MLP [2, 1]) gives zero second derivatives, like MLP.jet."""
    model = MLP([2, 1], generator=gen(20), dtype=F64)
    x = points(5, 2, seed=21)
    slow = autograd_jet(model, x, "full")
    fast = model.jet(x, "full")
    torch.testing.assert_close(slow.value, fast.value, rtol=0, atol=1e-14)
    torch.testing.assert_close(slow.grad, model.weights[0].detach().T.expand(5, 1, 2), rtol=0, atol=1e-14)
    assert float(slow.second.detach().abs().max()) == 0.0 and slow.second.shape == (5, 1, 3)


@pytest.mark.parametrize("make", [
    lambda: KAN([2, 5, 1], grid=4, generator=gen(17), dtype=F64),
    lambda: MLP([2, 8, 1], generator=gen(17), dtype=F64),
], ids=["kan", "mlp"])
def test_forward_is_pure(make):
    """Calling forward (and jet) twice gives identical outputs and leaves the state_dict unchanged."""
    model = make()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = points(20, 2, seed=18)
    first = model(x)
    model.jet(x, "laplacian")
    second = model(x)
    assert torch.equal(first, second)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("cls", [KAN, MLP], ids=["kan", "mlp"])
def test_seeded_construction_is_reproducible_and_private(cls):
    """Same generator seed -> identical parameters; other seed -> different; global RNG untouched."""
    width = [2, 6, 1]
    state = torch.random.get_rng_state()
    a = cls(width, generator=gen(42), dtype=F64)
    b = cls(width, generator=gen(42), dtype=F64)
    c = cls(width, generator=gen(43), dtype=F64)
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_kan_initial_parameter_ranges():
    """Initial coefficients lie in +-noise_scale / (2 G); base weights in +-base_scale / sqrt(n_in)."""
    layer = KANLayer(4, 50, grid_size=5, noise_scale=0.1, base_scale=2.0, generator=gen(19), dtype=F64)
    c, w = layer.coef.detach(), layer.base_weight.detach()
    assert float(c.abs().max()) <= 0.1 / 2 / 5 and float(c.abs().max()) > 0.9 * 0.01
    assert float(w.abs().max()) <= 2.0 / 2 and float(w.abs().max()) > 0.9
    assert float(layer.bias.detach().abs().max()) == 0.0


def test_param_counts_kan():
    """KAN [2, 10, 1], G = 5, k = 3: 281 parameters; the paper's count is edges x G = 30 x 5."""
    model = KAN([2, 10, 1], grid=5, order=3, generator=gen(0))
    # per layer: in*out*(G+k) coefficients + in*out base weights + out biases
    real = (2 * 10 * 8 + 2 * 10 + 10) + (10 * 1 * 8 + 10 * 1 + 1)
    assert count_params(model) == real == 281
    assert paper_params(model) == (2 * 10 + 10 * 1) * 5 == 150


def test_param_counts_mlp():
    """MLP [2, 100, 100, 100, 1]: 20601 parameters; the paper counts the 20300 weights only."""
    model = MLP([2, 100, 100, 100, 1], generator=gen(0))
    weights = 2 * 100 + 100 * 100 + 100 * 100 + 100 * 1
    assert paper_params(model) == weights == 20300
    assert count_params(model) == weights + 100 + 100 + 100 + 1 == 20601


def test_param_counts_exclude_frozen():
    """count_params counts trainable parameters only."""
    model = KAN([2, 10, 1], grid=5, generator=gen(0))
    model.layers[1].coef.requires_grad_(False)
    assert count_params(model) == 281 - 80
