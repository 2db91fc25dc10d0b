"""Multilayer perceptron baseline with the same width-list interface as the KAN.

Derivatives w.r.t. the input are pushed forward like the KAN's (`jet`): through z = W h + b they
are multiplied by W, through a = sigma(z) by the chain rule
(da = sigma'(z) dz, d2a_p = sigma''(z) dz^T Q_p dz + sigma'(z) d2z_p), so both models train on
their fastest path. The value and derivative channels travel stacked, (1 + d + P, N, width), so
each layer's weight multiplies all of them in one matrix product (and its backward in two), the
products an MLP's jet cannot do without; the activation's chain rule is one fused pass
(`kanpde.nn.activation_jet`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from kanpde.nn.activation_jet import ACTIVATIONS, activation_jet
from kanpde.nn.derivatives import Jet, input_jet
from kanpde.validate import check_choice, check_width


@dataclass
class MLPConfig:
    """Constructor arguments of an MLP; config keys are these names."""

    width: list[int] = field(default_factory=lambda: [2, 100, 100, 100, 1])
    activation: str = "tanh"


class MLP(nn.Module):
    """Fully connected network, Glorot-uniform weights and zero biases.

    Args:
        width: layer widths, input first, e.g. [2, 100, 100, 100, 1].
        activation: one of `ACTIVATIONS` (tanh, silu, sin), applied after every hidden layer.
        generator: source of the initial weights.
        dtype: parameter precision.
    """

    def __init__(
        self,
        width: list[int] = (2, 100, 100, 100, 1),
        activation: str = "tanh",
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        width = check_width(width, "model.width")
        check_choice(activation, "model.activation", tuple(ACTIVATIONS))
        self.config = MLPConfig(list(width), activation)
        self._act = ACTIVATIONS[activation]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(width[:-1], width[1:]):
            bound = math.sqrt(6.0 / (a + b))
            w = (torch.rand(a, b, generator=generator, dtype=dtype) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))  # (n_in, n_out)
            self.biases.append(nn.Parameter(torch.zeros(b, dtype=dtype)))

    def forward(self, x: Tensor) -> Tensor:
        """(N, width[0]) -> (N, width[-1])."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if i < last:
                x = self._act(x)[0]
        return x

    def jet(self, x: Tensor, mode: str = "laplacian") -> Jet:
        """Value, input gradient and second derivatives in one forward pass.

        Args:
            x: (N, d) points.
            mode: second-derivative layout, see `kanpde.nn.derivatives`.

        Returns:
            Jet with value (N, m), grad (N, m, d), second (N, m, P).
        """
        return self.push(input_jet(x, mode))

    def push(self, h: Jet) -> Jet:
        """Push a jet of the network's inputs through it (see `KAN.push`).

        Args:
            h: jet with value (N, width[0]), grad (N, width[0], d), second (N, width[0], P).

        Returns:
            Jet with value (N, m), grad (N, m, d), second (N, m, P).
        """
        d = h.grad.shape[-1]
        # Channel first, stacked: (R, N, n), value, then d gradient, then P second channels.
        x = torch.cat([h.value[None], h.grad.permute(2, 0, 1), h.second.permute(2, 0, 1)])
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            y = x @ w  # one (R N, n_in) @ (n_in, n_out) product
            if i == last:
                return Jet(y[0] + b, y[1 : 1 + d].permute(1, 2, 0), y[1 + d :].permute(1, 2, 0), h.mode)
            x = activation_jet(y, b, self.config.activation, h.mode, d)

    def constructor_args(self) -> dict:
        return asdict(self.config)
