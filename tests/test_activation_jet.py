"""The MLP activation's fused jet pass (`kanpde.nn.activation_jet`, csrc/mlp_jet.cpp) against its
torch form: values, first-order gradients (gradcheck), differentiable backwards (gradgradcheck,
create_graph through a whole MLP), torch.func transforms, float32, and extreme inputs."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from kanpde.nn import activation_jet as aj
from kanpde.nn import kernel
from kanpde.nn.mlp import MLP

F64 = torch.float64
CHANNELS = {"none": 0, "laplacian": 1, "diag": 3, "full": 6}  # P for d = 3
needs_kernel = pytest.mark.skipif(kernel.library() is None, reason="the C++ kernel cannot be built here")


def inputs(mode: str, dtype=F64, n: int = 37, width: int = 5, seed: int = 0):
    """Random (y (R, n, width), bias (width,)) with d = 3 and the mode's P, some z far out."""
    r = torch.Generator().manual_seed(seed)
    y = torch.randn(1 + 3 + CHANNELS[mode], n, width, generator=r, dtype=dtype)
    y[0, :3] *= 30  # tanh and sigmoid saturated: the branch-free exp's clamps
    return y, torch.randn(width, generator=r, dtype=dtype)


@needs_kernel
@pytest.mark.parametrize("activation", sorted(aj.ACTIVATIONS))
@pytest.mark.parametrize("mode", sorted(CHANNELS))
def test_fused_pass_equals_torch_form_and_passes_gradcheck(activation, mode):
    y, b = inputs(mode)
    fused = aj._ActivationJet.apply(y, b, activation, mode, 3)
    torch.testing.assert_close(fused, aj.torch_activation_jet(y, b, activation, mode, 3), rtol=1e-12, atol=1e-13)
    y, b = inputs(mode, n=4, width=3, seed=1)
    y, b = y.clone().requires_grad_(), b.clone().requires_grad_()
    assert gradcheck(lambda y, b: aj._ActivationJet.apply(y, b, activation, mode, 3), (y, b))
    assert gradgradcheck(lambda y, b: aj._ActivationJet.apply(y, b, activation, mode, 3), (y, b))


@needs_kernel
@pytest.mark.parametrize("activation", sorted(aj.ACTIVATIONS))
def test_float32_fused_pass(activation):
    y, b = inputs("diag", torch.float32)
    torch.testing.assert_close(aj._ActivationJet.apply(y, b, activation, "diag", 3),
                               aj.torch_activation_jet(y, b, activation, "diag", 3), rtol=2e-6, atol=2e-6)


@needs_kernel
def test_tanh_and_sigmoid_at_extremes_and_nan():
    """Tiny, huge and infinite z give libm's values; NaN stays NaN (divergence must show)."""
    z = torch.tensor([0.0, 1e-300, -1e-12, 3e-9, 0.4, -19.0, 40.0, 800.0, -800.0, float("inf"), -float("inf"), float("nan")],
                     dtype=F64)
    y = torch.cat([z[None], torch.zeros(1, z.numel(), dtype=F64)])[:, :, None]  # d = 1, P = 0
    for activation, ref in (("tanh", torch.tanh(z)), ("silu", torch.nn.functional.silu(z))):
        value = aj._ActivationJet.apply(y, torch.zeros(1, dtype=F64), activation, "none", 1)[0, :, 0]
        finite = torch.isfinite(ref)
        torch.testing.assert_close(value[finite], ref[finite], rtol=1e-15, atol=1e-300)
        assert value[-1].isnan()
    value = aj._ActivationJet.apply(y, torch.zeros(1, dtype=F64), "tanh", "none", 1)[0, :, 0]
    assert value[-3:-1].tolist() == [1.0, -1.0]


def test_mlp_jet_same_on_torch_path_and_fused():
    """The whole MLP's jet and parameter gradients, the kernel off (the CUDA route) and on."""
    model = MLP([2, 9, 9, 1], generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.rand(23, 2, dtype=F64, generator=torch.Generator().manual_seed(1))

    def run():
        jet = model.jet(x, "laplacian")
        loss = (jet.second**2).sum() + (jet.grad**2).sum() + jet.value.sum()
        return [loss.detach(), *torch.autograd.grad(loss, list(model.parameters()))]

    with kernel.switched(False):
        ref = run()
    for a, b in zip(run(), ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_create_graph_through_the_mlp_jet_equals_torch_path():
    """A user's autograd.grad(create_graph=True) of the jet's value w.r.t. x, then a parameter
    gradient of that: the fused backward hands over to its torch form, same numbers."""
    model = MLP([2, 7, 1], activation="silu", generator=torch.Generator().manual_seed(2), dtype=F64)

    def run():
        x = torch.rand(13, 2, dtype=F64, generator=torch.Generator().manual_seed(3)).requires_grad_()
        jet = model.jet(x, "laplacian")
        (gx,) = torch.autograd.grad(jet.second.sum(), x, create_graph=True)
        return torch.autograd.grad((gx**2).sum() + jet.value.sum(), list(model.parameters()))

    with kernel.switched(False):
        ref = run()
    assert all(r.abs().max() > 0 for r in ref)
    for a, b in zip(run(), ref):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def test_torch_func_takes_the_torch_form():
    """Under torch.func the fused pass must not run (ctypes cannot read wrapped tensors): the
    jet's parameter gradient by torch.func.grad equals autograd's."""
    model = MLP([2, 6, 1], generator=torch.Generator().manual_seed(4), dtype=F64)
    x = torch.rand(5, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def laplacian_sum(p):
        jet = torch.func.functional_call(model, p, (x,), {"mode": "laplacian"}, strict=True)
        return jet.second.sum() + jet.value.sum()

    model.forward, plain = model.jet, model.forward  # functional_call calls forward
    try:
        grads = torch.func.grad(laplacian_sum)(params)
    finally:
        model.forward = plain
    jet = model.jet(x, "laplacian")
    ref = torch.autograd.grad(jet.second.sum() + jet.value.sum(), list(model.parameters()))
    for name, g in zip(params, ref):
        torch.testing.assert_close(grads[name], g, rtol=1e-12, atol=1e-13)
