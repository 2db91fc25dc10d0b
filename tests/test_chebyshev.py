"""The Chebyshev KAN (cPIKAN): basis against closed forms, jets against nested autograd,
gradients, validation, the registry and the run record."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from conftest import F64, assert_jets_equal, gen, points
from omegaconf import OmegaConf
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

from kanpde.nn.chebyshev import ChebyKAN, ChebyLayer, chebyshev_jet, features
from kanpde.nn.derivatives import autograd_jet, jet
from kanpde.nn.mlp import MLP
from kanpde.record import load_model, read_metrics, write_h5
from kanpde.registry import build_model, build_problem, count_params, model_name, options
from kanpde.run import run
from kanpde.validate import ConfigError

MODES = ("laplacian", "diag", "full")


def test_basis_equals_closed_forms():
    """T_k(cos t) = cos(k t), T_k' = k sin(k t) / sin t and, from Chebyshev's equation
    (1 - s^2) T'' - s T' + k^2 T = 0, T_k'' = (s T_k' - k^2 T_k) / (1 - s^2), for k = 0..9."""
    theta = torch.linspace(0.05, math.pi - 0.05, 41, dtype=F64)
    s = torch.cos(theta)  # (41,)
    k = torch.arange(10, dtype=F64)  # (10,)
    t, t1, t2 = chebyshev_jet(s, 9, 2)  # (41, 10) each
    tk = torch.cos(k * theta[:, None])
    tk1 = k * torch.sin(k * theta[:, None]) / torch.sin(theta)[:, None]
    tk2 = (s[:, None] * tk1 - k * k * tk) / (1 - s * s)[:, None]
    torch.testing.assert_close(t, tk, rtol=0, atol=1e-13)
    torch.testing.assert_close(t1, tk1, rtol=0, atol=1e-11)
    torch.testing.assert_close(t2, tk2, rtol=0, atol=1e-8 * float(tk2.abs().max()))


@pytest.mark.parametrize("degree", [0, 1, 2, 5])
def test_basis_shapes_and_low_degrees(degree):
    """K + 1 bases for every degree, T_0 = 1 and T_1 = s exactly; features f_k = T_k(tanh x)."""
    x = points(7, 3, seed=0)
    f, f1, f2 = features(x, degree, 2)
    assert f.shape == f1.shape == f2.shape == (7, 3, degree + 1)
    assert torch.equal(f[..., 0], torch.ones_like(x)) and torch.equal(f1[..., 0], torch.zeros_like(x))
    if degree >= 1:
        torch.testing.assert_close(f[..., 1], torch.tanh(x), rtol=0, atol=0)
    assert len(features(x, degree, 0)) == 1 and len(features(x, degree, 1)) == 2


def test_feature_derivatives_equal_autograd():
    """d/dx and d2/dx2 of T_k(tanh x), by the differentiated recurrence and the chain rule, equal
    autograd of the values (so |x| > 1 and tanh's curvature are both covered)."""
    x = torch.linspace(-3, 3, 25, dtype=F64).reshape(25, 1).requires_grad_(True)
    f, f1, f2 = features(x, 6, 2)
    for k in range(7):
        (d1,) = torch.autograd.grad(f[:, 0, k].sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x, retain_graph=True, allow_unused=True)
        d2 = torch.zeros_like(x) if d2 is None else d2
        torch.testing.assert_close(f1[:, 0, k], d1[:, 0], rtol=0, atol=1e-12)
        torch.testing.assert_close(f2[:, 0, k], d2[:, 0], rtol=0, atol=1e-11)


def test_layer_by_hand():
    """A layer computes y_o = sum_ik c_iko cos(k arccos(tanh x_i)); `edges` are its summands."""
    layer = ChebyLayer(3, 2, degree=4, generator=gen(1), dtype=F64)
    x = points(6, 3, seed=2)
    k = torch.arange(5, dtype=F64)
    t = torch.cos(k * torch.arccos(torch.tanh(x))[..., None])  # (6, 3, 5)
    edges = torch.einsum("nik,iko->nio", t, layer.coef.detach())
    torch.testing.assert_close(layer.edges(x).detach(), edges, rtol=0, atol=1e-14)
    torch.testing.assert_close(layer(x).detach(), edges.sum(dim=1), rtol=0, atol=1e-14)


@pytest.mark.parametrize("width", [[2, 3, 1], [3, 4, 4, 2]])
@pytest.mark.parametrize("degree", [1, 3, 6])
def test_jet_equals_autograd(width, degree):
    """ChebyKAN.jet equals nested autograd to 1e-10 in every second mode, and in "none"."""
    model = ChebyKAN(width, degree=degree, generator=gen(degree), dtype=F64)
    x = points(16, width[0], seed=3)
    for mode in ("none", *MODES):
        fast = model.jet(x, mode)
        assert fast.value.shape == (16, width[-1]) and fast.grad.shape == (16, width[-1], width[0])
        assert_jets_equal(fast, autograd_jet(model, x, mode))
    assert model.jet(x, "none").second.shape == (16, width[-1], 0)
    assert model.jet(x, "full").second.shape == (16, width[-1], width[0] * (width[0] + 1) // 2)


def test_push_of_a_curved_input_jet_equals_autograd():
    """push through a map in front with second derivatives of its own (here an MLP, x -> h(x)):
    ChebyKAN.push(MLP.jet(x)) is the jet of ChebyKAN(MLP(x)) by nested autograd."""
    front = MLP([2, 5, 3], generator=gen(4), dtype=F64)
    model = ChebyKAN([3, 4, 2], degree=4, generator=gen(5), dtype=F64)
    x = points(12, 2, seed=6)
    for mode in MODES:
        assert_jets_equal(model.push(front.jet(x, mode)), autograd_jet(lambda z: model(front(z)), x, mode))


def test_degree_zero_is_constant():
    """Degree 0: every edge is the constant c_i0o; the jet is that constant with zero derivatives."""
    model = ChebyKAN([2, 3, 1], degree=0, generator=gen(7), dtype=F64)
    x = points(5, 2, seed=8)
    j = model.jet(x, "full")
    torch.testing.assert_close(j.value, j.value[:1].expand(5, 1), rtol=0, atol=1e-15)
    assert float(j.grad.detach().abs().max()) == 0.0 and float(j.second.detach().abs().max()) == 0.0


def params_call(module: torch.nn.Module):
    """(names, values, f) with f(x, *values) = module(x) evaluated with those parameter values."""
    names = [n for n, _ in module.named_parameters()]
    values = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]

    def f(x, *vals):
        return functional_call(module, dict(zip(names, vals)), (x,))

    return names, values, f


def test_layer_gradcheck():
    """A tiny layer passes gradcheck and gradgradcheck w.r.t. its inputs and coefficients."""
    layer = ChebyLayer(2, 3, degree=3, generator=gen(9), dtype=F64)
    _, values, f = params_call(layer)
    x = points(4, 2, seed=10).requires_grad_(True)
    assert gradcheck(f, (x, *values), eps=1e-6, atol=1e-7)
    assert gradgradcheck(f, (x, *values), eps=1e-6, atol=1e-6)


def test_jet_gradcheck_wrt_parameters():
    """The forward-propagated Laplacian and gradient are differentiated correctly w.r.t. the
    coefficients (what PINN training backpropagates through)."""
    model = ChebyKAN([2, 3, 1], degree=3, generator=gen(11), dtype=F64)
    names, values, _ = params_call(model)
    x = points(3, 2, seed=12)

    class LaplacianJet(torch.nn.Module):
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


def test_forward_is_pure_and_construction_private():
    """forward and jet leave the state unchanged; the same seed gives the same coefficients, the
    global RNG is untouched; initial coefficients have std init_scale / sqrt(n_in (K+1))."""
    state = torch.random.get_rng_state()
    a = ChebyKAN([2, 6, 1], generator=gen(42), dtype=F64)
    b = ChebyKAN([2, 6, 1], generator=gen(42), dtype=F64)
    c = ChebyKAN([2, 6, 1], generator=gen(43), dtype=F64)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    before = {k: v.clone() for k, v in a.state_dict().items()}
    x = points(10, 2, seed=13)
    first = a(x)
    a.jet(x, "laplacian")
    assert torch.equal(first, a(x)) and all(torch.equal(before[k], v) for k, v in a.state_dict().items())
    big = ChebyLayer(40, 200, degree=4, init_scale=2.0, generator=gen(14), dtype=F64)
    assert float(big.coef.detach().std()) == pytest.approx(2.0 / math.sqrt(40 * 5), rel=0.05)
    assert count_params(a) == 2 * 6 * 6 + 6 * 1 * 6


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"degree": -1}, "model.degree"),
    ({"degree": 2.5}, "model.degree"),
    ({"degree": True}, "model.degree"),
    ({"init_scale": -0.1}, "model.init_scale"),
    ({"init_scale": "big"}, "model.init_scale"),
    ({"width": [2]}, "model.width"),
    ({"width": [2, 0, 1]}, "model.width"),
])
def test_constructor_rejects_bad_settings(kwargs, words):
    """Bad settings fail with one line naming the setting."""
    args = {"width": [2, 4, 1], **kwargs}
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")) as info:
        ChebyKAN(**args)
    assert "\n" not in str(info.value)


def test_registry_builds_and_names_it():
    """`chebykan` is a registered model whose options are its constructor's arguments."""
    model = build_model({"name": "chebykan", "width": [2, 5, 1], "degree": 3}, generator=gen(15), dtype=F64)
    assert isinstance(model, ChebyKAN) and model_name(model) == "chebykan"
    assert options(ChebyKAN) == ["width", "degree", "init_scale"]
    assert model.constructor_args() == {"width": [2, 5, 1], "degree": 3, "init_scale": 1.0}
    assert not hasattr(model, "layers")  # `layers` would mark it as a B-spline KAN with a grid
    with pytest.raises(ConfigError, match="grid"):
        build_model({"name": "chebykan", "width": [2, 5, 1], "grid": 5})
    assert jet(model, points(4, 2, seed=16), "laplacian").second.shape == (4, 1, 1)


def test_record_round_trip(tmp_path):
    """write_h5 + load_model rebuild the same ChebyKAN (constructor_args and the registry)."""
    model = ChebyKAN([2, 4, 3, 1], degree=4, init_scale=0.5, generator=gen(17), dtype=F64)
    write_h5(tmp_path / "run.h5", [{"step": 0, "loss": 1.0}], {}, model)
    loaded = load_model(tmp_path)
    assert type(loaded) is ChebyKAN and loaded.constructor_args() == model.constructor_args()
    x = points(9, 2, seed=18)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_runs_and_is_recorded(tiny_config, tmp_path):
    """Two optimiser steps of heat with model=chebykan: the grid stages skip it, the record
    reloads it and reproduces its saved predictions."""
    cfg = tiny_config("problem=heat", "model=chebykan", "problem.n_initial=16")
    metrics = run(cfg, tmp_path)
    assert read_metrics(tmp_path)["status"] == "ok" and metrics["model"] == "chebykan"
    assert metrics["steps"] == 2 and metrics["grid_changes"] == [] and "grid" not in metrics
    assert metrics["n_params"] == (2 * 8 + 8 * 8 + 8 * 1) * 6
    with h5py.File(tmp_path / "run.h5", "r") as f:
        x, u_pred = (torch.from_numpy(np.array(f["fields"][k])) for k in ("x", "u_pred"))
    loaded = load_model(tmp_path)
    assert type(loaded) is ChebyKAN
    problem = build_problem(OmegaConf.to_container(cfg.problem))
    torch.testing.assert_close(problem.predict(loaded, x), u_pred, rtol=0, atol=1e-13)


@pytest.mark.parametrize("periodic", [None, {"period": {0: 2.0}, "harmonics": 2}])
def test_device_agnostic_on_meta_tensors(periodic):
    """Every tensor follows the input's device (no CPU-only constant): forward and the jets of a
    ChebyKAN, bare or behind periodic features, run on the `meta` device."""
    model = build_model({"name": "chebykan", "width": [2, 4, 1], "periodic": periodic}, dtype=F64).to("meta")
    x = torch.empty(5, 2, dtype=F64, device="meta")
    assert model(x).device.type == "meta"
    for mode, p in (("none", 0), ("laplacian", 1), ("diag", 2), ("full", 3)):
        j = model.jet(x, mode)
        assert j.second.device.type == "meta" and j.second.shape == (5, 1, p)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_jet_equals_cpu():
    """On CUDA the same code gives the same jet as on the CPU (plain torch, no device branch)."""
    model = ChebyKAN([3, 5, 2], degree=5, generator=gen(19), dtype=F64)
    x = points(32, 3, seed=20)
    cpu = model.jet(x, "full")
    gpu = model.to("cuda").jet(x.cuda(), "full")
    for name in ("value", "grad", "second"):
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name), rtol=1e-12, atol=1e-12)
