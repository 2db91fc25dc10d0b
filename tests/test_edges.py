"""Edge masks and symbolic edge slots of KANLayer: every evaluation path, gradients, jets, saving."""

from __future__ import annotations

import copy

import h5py
import pytest
import torch

from kanpde.nn import kernel
from kanpde.nn.derivatives import autograd_jet
from kanpde.nn.kan import KAN, KANLayer
from kanpde.record import load_model, write_h5
from kanpde.validate import ConfigError

F64 = torch.float64
PATHS = ("kernel", "per_edge", "dense", "cox_de_boor")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def points(n: int, d: int, seed: int, half_width: float = 1.5) -> torch.Tensor:
    return (torch.rand(n, d, generator=gen(seed), dtype=F64) * 2 - 1) * half_width


def set_path(model: torch.nn.Module, path: str) -> None:
    """Force every layer onto one evaluation path (C++ kernel, uniform per-edge, uniform dense,
    Cox-de Boor)."""
    if path == "kernel" and kernel.library() is None:
        pytest.skip("the C++ kernel cannot be built here (no compiler)")
    for layer in model.layers if isinstance(model, KAN) else [model]:
        if path != "kernel":
            layer._kernel = lambda x, d=0, p=0: False
        if path == "cox_de_boor":
            layer.uniform = False
        else:
            layer._per_edge = (lambda n, c: True) if path == "per_edge" else (lambda n, c: False)


MASKED = [(0, 1), (2, 0), (2, 2)]  # (input, output) edges of a (3 -> 4) layer to prune


def masked_layer(seed: int = 0) -> tuple[KANLayer, KANLayer]:
    """(unmasked layer, copy with MASKED edges' mask 0), random non-zero bias."""
    layer = KANLayer(3, 4, grid_size=4, generator=gen(seed), dtype=F64, noise_scale=1.0)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=F64))
    masked = copy.deepcopy(layer)
    for i, j in MASKED:
        masked.mask[i, j] = 0.0
    return layer, masked


@pytest.mark.parametrize("path", PATHS)
def test_masked_edges_are_exactly_zero_on_every_path(path):
    """A pruned edge gives exactly 0 in `edges`; the output is the sum of the unpruned edges of the
    unmasked layer plus the bias (oracle), on each evaluation path."""
    layer, masked = masked_layer()
    set_path(layer, path)
    set_path(masked, path)
    x = points(20, 3, seed=1)
    full = layer.edges(x).detach()  # (N, 3, 4)
    keep = torch.ones(3, 4, dtype=F64)
    for i, j in MASKED:
        keep[i, j] = 0.0
    e = masked.edges(x).detach()
    assert all(float(e[:, i, j].abs().max()) == 0.0 for i, j in MASKED)
    assert float(full[:, 0, 1].abs().max()) > 1e-2  # the pruned edge was not zero before
    torch.testing.assert_close(e, full * keep, rtol=0, atol=0)
    torch.testing.assert_close(masked(x).detach(), (full * keep).sum(dim=1) + layer.bias.detach(),
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize("path", PATHS)
def test_masked_parameters_get_zero_gradient(path):
    """coef[i, :, j] and base_weight[i, j] of a pruned edge get exactly zero gradient, through the
    forward pass and the forward-propagated Laplacian; the others do not."""
    model = KAN([3, 4, 1], grid=4, generator=gen(2), dtype=F64, noise_scale=1.0)
    for i, j in MASKED:
        model.layers[0].mask[i, j] = 0.0
    set_path(model, path)
    x = points(16, 3, seed=3)
    j = model.jet(x, "laplacian")
    (model(x).pow(2).sum() + j.second.pow(2).sum()).backward()
    lay = model.layers[0]
    for i, o in MASKED:
        assert float(lay.coef.grad[i, :, o].abs().max()) == 0.0
        assert float(lay.base_weight.grad[i, o].abs()) == 0.0
    assert float(lay.coef.grad[0, :, 0].abs().max()) > 0 and float(lay.base_weight.grad[1, 1].abs()) > 0


@pytest.mark.parametrize("path", ("per_edge", "dense"))
@pytest.mark.parametrize("mode", ("laplacian", "full"))
def test_masked_kan_jet_equals_autograd(path, mode):
    """With pruned edges in both layers the forward-propagated jet equals nested autograd (1e-10)."""
    model = KAN([3, 4, 2], grid=5, generator=gen(4), dtype=F64, noise_scale=1.0)
    for i, o in MASKED:
        model.layers[0].mask[i, o] = 0.0
    model.layers[1].mask[1, 0] = 0.0
    set_path(model, path)
    x = points(12, 3, seed=5)
    fast, slow = model.jet(x, mode), autograd_jet(model, x, mode)
    for name in ("value", "grad", "second"):
        a, b = getattr(fast, name), getattr(slow, name)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10 * float(b.detach().abs().max()))


@pytest.mark.parametrize("path", PATHS)
def test_symbolic_edge_computes_affine_library_function(path):
    """fix_symbolic(i, j, "sin", (a, b, c, d)): edge i -> j is a sin(b x + c) + d (times its mask),
    the other edges are unchanged, the output sums the edges; unfix restores the layer exactly."""
    layer, _ = masked_layer(seed=6)
    set_path(layer, path)
    x = points(20, 3, seed=7)
    before_edges, before_out = layer.edges(x).detach(), layer(x).detach()
    a, b, c, d = 1.5, -2.0, 0.3, 0.25
    layer.fix_symbolic(1, 2, "sin", (a, b, c, d))
    layer.fix_symbolic(0, 0, "x^2", (2.0, 1.0, -0.5, 0.0))
    e = layer.edges(x).detach()
    torch.testing.assert_close(e[:, 1, 2], a * torch.sin(b * x[:, 1] + c) + d, rtol=0, atol=1e-15)
    torch.testing.assert_close(e[:, 0, 0], 2.0 * (x[:, 0] - 0.5) ** 2, rtol=0, atol=1e-15)
    others = torch.ones(3, 4, dtype=torch.bool)
    others[1, 2] = others[0, 0] = False
    torch.testing.assert_close(e[:, others], before_edges[:, others], rtol=0, atol=0)
    torch.testing.assert_close(layer(x).detach(), e.sum(dim=1) + layer.bias.detach(), rtol=0, atol=1e-14)
    assert layer.sym_names[1][2] == "sin" and float(layer.sym_mask.sum()) == 2.0
    layer.mask[1, 2] = 0.0  # a pruned symbolic edge gives 0 too
    assert float(layer.edges(x).detach()[:, 1, 2].abs().max()) == 0.0
    layer.mask[1, 2] = 1.0
    layer.unfix_symbolic(1, 2)
    layer.unfix_symbolic(0, 0)
    assert not layer.has_symbolic and float(layer.sym_mask.sum()) == 0.0
    torch.testing.assert_close(layer(x).detach(), before_out, rtol=0, atol=0)


def test_symbolic_kan_jet_by_autograd_fallback():
    """A KAN [1, 1] whose edge is fixed to a sin(b x + c) + d: jet gives the analytic value,
    derivative a b cos(.) and second derivative -a b^2 sin(.) (through the autograd fallback);
    the spline parameters of the symbolic edge get zero gradient."""
    model = KAN([1, 1], grid=4, generator=gen(8), dtype=F64)
    a, b, c, d = 0.7, 1.9, -0.4, 0.2
    model.layers[0].fix_symbolic(0, 0, "sin", (a, b, c, d))
    assert not model.fast_jet
    x = points(9, 1, seed=9)
    j = model.jet(x, "diag")
    z = b * x + c
    bias = float(model.layers[0].bias.detach())
    torch.testing.assert_close(j.value, a * torch.sin(z) + d + bias, rtol=0, atol=1e-14)
    torch.testing.assert_close(j.grad[:, :, 0], a * b * torch.cos(z), rtol=0, atol=1e-14)
    torch.testing.assert_close(j.second[:, :, 0], -a * b * b * torch.sin(z), rtol=0, atol=1e-13)
    (j.value.sum() + j.second.sum()).backward()
    assert float(model.layers[0].coef.grad.abs().max()) == 0.0
    assert float(model.layers[0].bias.grad) == pytest.approx(9.0)


def test_symbolic_two_layer_jet_equals_autograd():
    """A two-layer KAN with one symbolic edge per layer: KAN.jet equals nested autograd, and the
    layer's own jet refuses symbolic edges instead of silently dropping them."""
    model = KAN([2, 3, 1], grid=5, generator=gen(10), dtype=F64, noise_scale=1.0)
    model.layers[0].fix_symbolic(1, 2, "tanh", (1.2, 0.8, 0.1, -0.3))
    model.layers[1].fix_symbolic(0, 0, "x^2", (0.5, 1.0, 0.2, 0.0))
    x = points(10, 2, seed=11)
    fast, slow = model.jet(x, "full"), autograd_jet(model, x, "full")
    for name in ("value", "grad", "second"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="symbolic"):
        model.layers[0].edge_jet(x, 1)


@pytest.mark.parametrize("call, words", [
    (lambda l: l.fix_symbolic(0, 0, "sinh"), "sinh.*allowed: .*sin"),
    (lambda l: l.fix_symbolic(3, 0, "sin"), "edge input i"),
    (lambda l: l.fix_symbolic(0, -1, "sin"), "edge output j"),
    (lambda l: l.fix_symbolic(0, 0, "sin", (1.0, 2.0)), "four finite numbers"),
    (lambda l: l.fix_symbolic(0, 0, "sin", (1.0, float("nan"), 0.0, 0.0)), "four finite numbers"),
    (lambda l: l.unfix_symbolic(0, 4), "edge output j"),
])
def test_fix_symbolic_rejects_bad_input(call, words):
    """Unknown function names, edges outside the layer and bad parameters raise ConfigError."""
    layer = KANLayer(3, 4, generator=gen(0), dtype=F64)
    with pytest.raises(ConfigError, match=words):
        call(layer)
    assert not layer.has_symbolic


def test_masks_and_symbolic_edges_round_trip_through_state_dict_and_record(tmp_path):
    """Masks, symbolic buffers and names survive state_dict loading and run.h5 write/load; the
    reloaded model computes the same numbers."""
    model = KAN([3, 4, 1], grid=4, generator=gen(12), dtype=F64, noise_scale=1.0)
    model.layers[0].mask[2, 1] = 0.0
    model.layers[0].fix_symbolic(0, 3, "exp", (0.5, -1.0, 0.2, 0.1))
    model.layers[1].fix_symbolic(2, 0, "cos", (1.0, 2.0, 0.0, 0.0))
    x = points(15, 3, seed=13)
    other = KAN([3, 4, 1], grid=4, generator=gen(99), dtype=F64)
    other.load_state_dict(model.state_dict())
    assert other.layers[0].sym_names == model.layers[0].sym_names
    torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)
    write_h5(tmp_path / "run.h5", [{"step": 0, "loss": 1.0}], {}, model)
    loaded = load_model(tmp_path)
    assert [layer.sym_names for layer in loaded.layers] == [layer.sym_names for layer in model.layers]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_record_without_masks_or_symbolic_state_still_loads(tmp_path):
    """A run.h5 written before masks and symbolic slots existed loads with all edges active and
    none symbolic, computing the saved weights' function."""
    model = KAN([2, 3, 1], grid=4, generator=gen(14), dtype=F64, noise_scale=1.0)
    write_h5(tmp_path / "run.h5", [{"step": 0}], {}, model)
    with h5py.File(tmp_path / "run.h5", "a") as f:
        for key in list(f["model"].keys()):
            if key.rsplit(".", 1)[-1] in ("mask", "sym_mask", "sym_params", "_extra_state"):
                del f["model"][key]
        assert "layers.0.coef" in f["model"] and "layers.0.mask" not in f["model"]
    loaded = load_model(tmp_path)
    assert all(float(layer.mask.min()) == 1.0 and not layer.has_symbolic for layer in loaded.layers)
    x = points(10, 2, seed=15)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_model_symbolic_fixes_edges_from_the_start():
    """KAN(symbolic={"l,i,j": name}) starts with those edges computing exactly name(x) (and the
    rest splines); the setting survives a rebuild from constructor_args; bad keys are refused."""
    model = KAN([3, 2, 1], grid=4, generator=gen(5), dtype=F64, symbolic={"0,1,0": "exp", "0,2,1": "cosh"})
    assert model.layers[0].sym_names == [["", ""], ["exp", ""], ["", "cosh"]]
    x = points(30, 3, seed=6)
    edges = model.layers[0].edges(x)  # (N, 3, 2)
    torch.testing.assert_close(edges[:, 1, 0], torch.exp(x[:, 1]), rtol=1e-14, atol=0)
    torch.testing.assert_close(edges[:, 2, 1], torch.cosh(x[:, 2]), rtol=1e-14, atol=0)
    rebuilt = KAN(**model.constructor_args(), dtype=F64)
    assert rebuilt.layers[0].sym_names == model.layers[0].sym_names
    affine = KAN([3, 1], generator=gen(5), dtype=F64, symbolic={"0,0,0": ["x", -2.0, 1.0, 0.0, 0.5]})
    torch.testing.assert_close(affine.layers[0].edges(x)[:, 0, 0], -2 * x[:, 0] + 0.5, rtol=1e-14, atol=1e-14)
    for bad, words in [({"0,3,0": "exp"}, "names no edge"), ({"0-1-0": "exp"}, "layer,i,j"),
                       ({"0,1,0": "expo"}, "not known"), ("exp", "mapping"),
                       ({"0,1,0": ["exp", 1.0]}, "four finite numbers")]:
        with pytest.raises(ConfigError, match=words):
            KAN([3, 2, 1], symbolic=bad)
