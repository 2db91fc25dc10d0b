"""The solution a problem trains: the network behind an input scaling and an output transform.

    u(x) = A(x) + B(x) * N(s * (x - c))

* The input scaling maps the domain's bounding box onto [-1, 1]^d, where a KAN's grid and an
  MLP's activations live; it is left out when the box already is [-1, 1]^d.
* The output transform (a hard constraint) imposes conditions exactly: B vanishes where the
  condition holds and A takes the prescribed values there, e.g. u = u0(x) + x (1 - x) t N for
  an initial value and zero Dirichlet data. A and B are closed-form functions of x given by the
  problem (`PDEProblem.constraint`).

`Solution` is a module over the network (it holds no parameters of its own), so `forward` and
`jet` are what the residual, the conditions and the metrics see; its `jet` pushes the scaling's
jet through the network (`KAN.push`, `MLP.push`) and applies the product rule for the transform,
so everything stays on the forward-propagated fast path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from kanpde.nn import kernel
from kanpde.nn.derivatives import Jet, autograd_jet, func_jet, input_jet, quadratic

Constraint = Callable[[Tensor], tuple[Tensor, Tensor]]


class Solution(nn.Module):
    """u(x) = A(x) + B(x) N(s (x - c)); see the module docstring.

    Args:
        net: the network N, (N, d) -> (N, m).
        lower: (d,) bounding-box corner mapped to -1 (None: no scaling).
        upper: (d,) corner mapped to +1.
        constraint: x (N, d) -> (A (N, m), B (N, m)), or None.
    """

    def __init__(self, net: nn.Module, lower: Tensor | None = None, upper: Tensor | None = None,
                 constraint: Constraint | None = None):
        super().__init__()
        self.net, self.constraint = net, constraint
        if lower is None:
            self.centre = self.scale = None
        else:
            self.centre = (lower + upper) / 2
            self.scale = 2 / (upper - lower)

    def inputs(self, x: Tensor) -> Tensor:
        """(N, d) the network's inputs for points x (N, d)."""
        if self.scale is None:
            return x
        return (x - self.centre.to(x)) * self.scale.to(x)

    def forward(self, x: Tensor) -> Tensor:
        """(N, d) -> (N, m)."""
        y = self.net(self.inputs(x))
        if self.constraint is None:
            return y
        a, b = self.constraint(x)
        return a + b * y

    def jet(self, x: Tensor, mode: str = "laplacian") -> Jet:
        """Value, gradient and second derivatives: (N, m), (N, m, d), (N, m, P)."""
        if not (hasattr(self.net, "push") and getattr(self.net, "fast_jet", True)):
            with torch.enable_grad():
                return autograd_jet(self, x, mode)
        h = input_jet(x, mode)
        if self.scale is not None:
            s = self.scale.to(x)
            h = Jet(self.inputs(x), h.grad * s[:, None], h.second, mode)  # d(x_hat_i)/dx_a = s_i delta_ia
        j = self.net.push(h)
        if self.constraint is None:
            return j
        m = j.value.shape[1]
        closed = func_jet if kernel.under_functorch() else autograd_jet  # autograd.grad fails under torch.func
        ab = closed(lambda z: torch.cat(self.constraint(z), dim=1), x, mode)  # closed forms
        a = Jet(ab.value[:, :m], ab.grad[:, :m], ab.second[:, :m], mode)
        b = Jet(ab.value[:, m:], ab.grad[:, m:], ab.second[:, m:], mode)
        # product rule; the cross term grad B^T Q_p grad N by polarisation of the quadratic form
        cross = (quadratic(b.grad + j.grad, mode) - quadratic(b.grad - j.grad, mode)) / 4
        return Jet(a.value + b.value * j.value,
                   a.grad + b.grad * j.value[..., None] + b.value[..., None] * j.grad,
                   a.second + b.second * j.value[..., None] + b.value[..., None] * j.second + 2 * cross,
                   mode)
