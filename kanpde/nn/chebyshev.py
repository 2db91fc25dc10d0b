"""Chebyshev-polynomial KAN, cPIKAN (Shukla et al. 2024, "A comprehensive and FAIR comparison
between MLP and KAN representations for differential equations and operator networks",
arXiv 2406.02917; after SS et al., "Chebyshev Polynomial-Based Kolmogorov-Arnold Networks",
arXiv 2405.07200).

Every edge i -> o of a layer carries a polynomial in the squashed input,

    phi_io(x) = sum_{k=0..K} c_iko T_k(tanh(x)),

and node o sums its incoming edges (T_0 = 1, so the c_i0o act as the bias: there is none apart).
tanh maps any input into (-1, 1), where the Chebyshev polynomials live and stay bounded
(|T_k| <= 1); it is the usual cPIKAN / ChebyKAN choice. There is no layer normalisation:
tanh already bounds every layer's basis, and a normalisation would couple the nodes of a layer
(its jet would need the derivatives of a mean and a variance). A problem's inputs arrive already
scaled onto [-1, 1]^d (`kanpde.pde.solution`), where tanh is still far from saturating.

A layer evaluates, once per layer and for all its inputs, the bases T_k(s) by the three-term
recurrence T_{k+1} = 2 s T_k - T_{k-1} and, differentiating it, T'_{k+1} = 2 T_k + 2 s T'_k - T'_{k-1},
T''_{k+1} = 4 T'_k + 2 s T''_k - T''_{k-1}; the chain rule through s = tanh(x) gives the features
f_k = T_k(s), f_k' = T_k'(s) s', f_k'' = T_k''(s) s'^2 + T_k'(s) s''. Then one matmul with the
coefficients (n_in (K+1), n_out) contracts them (efficient-kan style), value, gradient and
second-derivative channels stacked along the batch, exactly as the B-spline KAN's dense path:
for y_o = sum_i phi_io(h_i), dy_o = sum_i phi_io' dh_i and
d2y_op = sum_i phi_io'' (dh_i^T Q_p dh_i) + phi_io' d2h_ip.

Everything is plain torch (no CPU kernel, no device branch); training code treats it as a
model without a grid (`isinstance(model, KAN)` is false, so grid updates, grid extension and the
KAN sparsity regulariser skip it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from kanpde.nn.derivatives import Jet, input_jet, quadratic
from kanpde.validate import check_int, check_number, check_width


def chebyshev_jet(s: Tensor, degree: int, derivatives: int = 0) -> list[Tensor]:
    """T_k(s), k = 0..degree, and their first `derivatives` derivatives in s.

    Args:
        s: (...) points, normally in [-1, 1].
        degree: K >= 0.
        derivatives: 0, 1 or 2.

    Returns:
        1 + derivatives tensors (..., K+1): T_k(s), T_k'(s), T_k''(s).
    """
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    t, t1, t2 = [one, s], [zero, one], [zero, zero]
    for k in range(1, degree):
        t.append(2 * s * t[k] - t[k - 1])
        if derivatives >= 1:
            t1.append(2 * t[k] + 2 * s * t1[k] - t1[k - 1])
        if derivatives >= 2:
            t2.append(4 * t1[k] + 2 * s * t2[k] - t2[k - 1])
    out = [t, t1, t2][: derivatives + 1]
    return [torch.stack(c[: degree + 1], dim=-1) for c in out]


def features(x: Tensor, degree: int, derivatives: int = 0) -> list[Tensor]:
    """f_k(x) = T_k(tanh x) and its derivatives in x, k = 0..degree.

    Args:
        x: (N, n_in) layer inputs.
        degree: K >= 0.
        derivatives: 0, 1 or 2.

    Returns:
        1 + derivatives tensors (N, n_in, K+1): f_k, f_k', f_k''.
    """
    s = torch.tanh(x)
    t = chebyshev_jet(s, degree, derivatives)  # each (N, n_in, K+1)
    if derivatives == 0:
        return t
    s1 = (1 - s * s).unsqueeze(-1)  # (N, n_in, 1): tanh'
    out = [t[0], t[1] * s1]
    if derivatives == 2:
        s2 = -2 * s.unsqueeze(-1) * s1  # tanh''
        out.append(t[2] * s1 * s1 + t[1] * s2)
    return out


class ChebyLayer(nn.Module):
    """One cPIKAN layer: n_in x n_out edges phi_io(x) = sum_k c_iko T_k(tanh x).

    Args:
        in_dim: number of inputs.
        out_dim: number of outputs.
        degree: K, the highest polynomial degree.
        init_scale: coefficients start normal with standard deviation init_scale / sqrt(n_in (K+1)),
            so a node's initial output is O(init_scale) (each |T_k| <= 1).
        generator: source of the initial coefficients (None: torch's default generator).
        dtype: parameter precision.

    Attributes:
        coef: parameter (n_in, K+1, n_out), c_iko.
    """

    def __init__(self, in_dim: int, out_dim: int, degree: int = 5, init_scale: float = 1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_dim, self.out_dim, self.degree = in_dim, out_dim, degree
        std = init_scale / math.sqrt(in_dim * (degree + 1))
        coef = torch.randn(in_dim, degree + 1, out_dim, generator=generator, dtype=dtype) * std
        self.coef = nn.Parameter(coef)  # (n_in, K+1, n_out)

    def forward(self, x: Tensor) -> Tensor:
        """(N, n_in) -> (N, n_out)."""
        f = features(x, self.degree)[0]  # (N, n_in, K+1)
        return f.reshape(x.shape[0], -1) @ self.coef.reshape(-1, self.out_dim)

    def edges(self, x: Tensor) -> Tensor:
        """Every edge function phi_io(x_i): (N, n_in) -> (N, n_in, n_out)."""
        return torch.einsum("nik,iko->nio", features(x, self.degree)[0], self.coef)

    def jet(self, h: Jet) -> Jet:
        """Push a jet of this layer's inputs through it.

        Args:
            h: jet with value (N, n_in), grad (N, n_in, d), second (N, n_in, P).

        Returns:
            jet with value (N, n_out), grad (N, n_out, d), second (N, n_out, P).
        """
        x = h.value
        n, d, p = x.shape[0], h.grad.shape[-1], h.second.shape[-1]
        f = features(x, self.degree, 2 if p else 1)  # (N, n_in, K+1) each
        g = h.grad.permute(2, 0, 1).unsqueeze(-1)  # (d, N, n_in, 1)
        chans = [f[0].unsqueeze(0), f[1] * g]
        if p:
            m2 = quadratic(h.grad, h.mode).permute(2, 0, 1).unsqueeze(-1)  # (P, N, n_in, 1)
            s = h.second.permute(2, 0, 1).unsqueeze(-1)  # (P, N, n_in, 1)
            chans.append(f[2] * m2 + f[1] * s)
        feats = torch.cat(chans)  # (1 + d + P, N, n_in, K+1)
        out = feats.reshape((1 + d + p) * n, -1) @ self.coef.reshape(-1, self.out_dim)
        out = out.reshape(1 + d + p, n, self.out_dim)
        return Jet(out[0], out[1 : 1 + d].permute(1, 2, 0), out[1 + d :].permute(1, 2, 0), h.mode)


@dataclass
class ChebyKANConfig:
    """Constructor arguments of a ChebyKAN; config keys are these names."""

    width: list[int] = field(default_factory=lambda: [2, 8, 8, 1])
    degree: int = 5
    init_scale: float = 1.0


class ChebyKAN(nn.Module):
    """A stack of cPIKAN layers of widths `width` (e.g. [2, 8, 8, 1]); see the module docstring.

    Args:
        width: layer widths, input first.
        degree: K >= 0, the Chebyshev degree of every edge.
        init_scale: >= 0, scale of the initial coefficients (see `ChebyLayer`).
        generator: source of the initial coefficients.
        dtype: parameter precision.

    Attributes:
        cheb_layers: the `ChebyLayer`s. (Not `layers`: code that finds `model.layers` takes the
            model for a B-spline KAN with a grid.)
    """

    def __init__(
        self,
        width: list[int] = (2, 8, 8, 1),
        degree: int = 5,
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        width = check_width(width, "model.width")
        degree = check_int(degree, "model.degree", minimum=0)
        init_scale = check_number(init_scale, "model.init_scale", minimum=0.0)
        self.config = ChebyKANConfig(list(width), degree, init_scale)
        self.cheb_layers = nn.ModuleList(
            ChebyLayer(a, b, degree, init_scale, generator, dtype) for a, b in zip(width[:-1], width[1:])
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, width[0]) -> (N, width[-1])."""
        for layer in self.cheb_layers:
            x = layer(x)
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
        for layer in self.cheb_layers:
            h = layer.jet(h)
        return h

    def constructor_args(self) -> dict:
        return asdict(self.config)
