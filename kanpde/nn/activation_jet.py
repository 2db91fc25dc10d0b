"""An MLP layer's activation applied to a jet, in the channel-first layout the MLP pushes.

A jet of a layer's pre-activations is one tensor y of shape (R, N, width), R = 1 + d + P: channel
0 the value (without the bias b), channels 1..d the gradient, then the P second-derivative
channels. With z = y_0 + b and s_r = sigma^(r)(z), the activation's jet is

    out_0 = s0,   out_a = s1 y_a,   out_p = s2 q_p(y_1..d) + s1 y_p,

q_p = dz^T Q_p dz the second-derivative mode's quadratic (`kanpde.nn.derivatives.quadratic`).

In torch ops that is a dozen passes over (N, width) arrays forwards and as many backwards, each
allocating a full-size temporary, which cost the MLP about as much as its matrix products. On
the CPU `activation_jet` instead runs one fused pass each way (`csrc/mlp_jet.cpp`, in the
kernel's library, `kanpde.nn.kernel`), the transcendental part (tanh z; sigmoid z; sin z, cos z)
still by torch's vectorised functions. Where the kernel is off or cannot run (CUDA, a torch.func
transform, torch.compile, `KANPDE_KERNEL=0`) the same sums run in torch ops (`torch_activation_jet`),
and a backward that builds a graph (`create_graph=True`) differentiates those: derivatives of any
order are exact either way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from kanpde.nn import kernel
from kanpde.nn.derivatives import pairs, quadratic, silu_jet


def _tanh_jet(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    t = torch.tanh(z)
    d1 = 1 - t * t
    return t, d1, -2 * t * d1


def _sin_jet(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sin(z)
    return s, torch.cos(z), -s


# sigma, sigma', sigma'' elementwise, by name.
ACTIVATIONS: dict[str, Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]] = {
    "tanh": _tanh_jet, "silu": silu_jet, "sin": _sin_jet}
_CODES = {"tanh": 0, "silu": 1, "sin": 2}  # csrc/mlp_jet.cpp's Activation


def _base(activation: str, y: Tensor, bias: Tensor) -> Tensor:
    """The kernel's `base` rows (B, N, width) for pre-activations y (R, N, width): an empty buffer
    the forward fills (tanh: tanh z; silu: sigmoid z), or sin z and cos z by torch."""
    if activation == "sin":
        z = y[0] + bias
        return torch.stack([torch.sin(z), torch.cos(z)])
    return y.new_empty(1, *y.shape[1:])


def terms(mode: str, d: int) -> Tensor:
    """(T, 3) int64 rows (p, a, b): q_p sums y_{1+a} y_{1+b} over p's rows (sorted by p)."""
    if mode == "laplacian":
        rows = [(0, a, a) for a in range(d)]
    else:
        rows = [(p, a, b) for p, (a, b) in enumerate(pairs(mode, d))]
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)


def torch_activation_jet(y: Tensor, bias: Tensor, activation: str, mode: str, d: int) -> Tensor:
    """The activation's jet in differentiable torch ops.

    Args:
        y: (R, N, width) pre-activation jet without the bias, R = 1 + d + P.
        bias: (width,).
        activation: a key of ACTIVATIONS.
        mode: the second-derivative mode of the P channels.
        d: the gradient channels.

    Returns:
        (R, N, width): value, gradient and second-derivative channels of sigma(y_0 + bias).
    """
    a0, a1, a2 = ACTIVATIONS[activation](y[0] + bias)
    g, s = y[1 : 1 + d], y[1 + d :]
    parts = [a0[None], a1 * g]
    if s.shape[0]:
        parts.append(a2 * quadratic(g, mode, dim=0) + a1 * s)
    return torch.cat(parts)


class _ActivationJet(torch.autograd.Function):
    """`torch_activation_jet` by the fused C++ pass. Old-style (forward takes ctx) on purpose, as
    `kernel._LayerJet`: torch.func refuses it loudly instead of handing ctypes wrapped tensors."""

    @staticmethod
    def forward(ctx, y, bias, activation, mode, d):
        rows = terms(mode, d)
        bias = bias.contiguous()
        base = _base(activation, y, bias)
        dims = kernel.dims_tensor(y[0].numel(), y.shape[-1], d, y.shape[0] - 1 - d, _CODES[activation], rows.shape[0])
        out = torch.empty_like(y)
        kernel.call(f"mlp_act_forward_{kernel.SUFFIX[y.dtype]}", dims, y, bias, base, rows, out)
        ctx.save_for_backward(y, bias, base, rows, dims)
        ctx.activation, ctx.mode, ctx.d = activation, mode, d
        return out

    @staticmethod
    def backward(ctx, gout):
        y, bias, base, rows, dims = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward, in torch ops
            wanted = [t for t, need in zip((y, bias), ctx.needs_input_grad) if need]
            with torch.enable_grad():
                out = torch_activation_jet(y, bias, ctx.activation, ctx.mode, ctx.d)
                grads = iter(torch.autograd.grad(out, wanted, gout, create_graph=True))
            return *(next(grads) if need else None for need in ctx.needs_input_grad[:2]), None, None, None
        gy = torch.empty_like(y)
        kernel.call(f"mlp_act_backward_{kernel.SUFFIX[y.dtype]}", dims, y, bias, base, rows, gout.contiguous(), gy)
        gb = gy[0].reshape(-1, y.shape[-1]).sum(dim=0) if ctx.needs_input_grad[1] else None
        return gy, gb, None, None, None


def activation_jet(y: Tensor, bias: Tensor, activation: str, mode: str, d: int) -> Tensor:
    """The activation's jet (see the module docstring), by the fused pass where it can run.

    Args and returns as `torch_activation_jet`.
    """
    if not kernel.usable(y, 1) or y.dtype != bias.dtype:
        return torch_activation_jet(y, bias, activation, mode, d)
    return _ActivationJet.apply(y.contiguous(), bias, activation, mode, d)
