"""Kolmogorov-Arnold Network: B-spline edge functions with a SiLU residual (arXiv 2404.19756, sec. 2).

Each edge of a layer carries phi(x) = w_b silu(x) + sum_j c_j B_j(x) (eq. 2.10, with the spline
scale folded into the coefficients); node j sums its incoming edges and adds a bias. A layer
evaluates the bases of all its edges at once and contracts them with one matmul: features
[silu(x_i), B_1(x_i), ..., B_{G+k}(x_i)] per input i, (N, n_in (G+k+1)), times the weights
(n_in (G+k+1), n_out).

Derivatives w.r.t. the network input are pushed forward through the same matmul (`jet`): for
y = sum_i phi_i(h_i), dy = sum_i phi_i'(h_i) dh_i and
d2y_p = sum_i phi_i''(h_i) (dh_i^T Q_p dh_i) + phi_i'(h_i) d2h_{i,p}, so value, gradient and
second-derivative channels are stacked along the batch and share one matmul per layer.

Knots are a buffer (they move with `.to()` and live in `state_dict`); the grid-changing
operations (update from samples, extension) are functions in `kanpde.grid`, not methods here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kanpde.bspline import (
    basis,
    basis_jet,
    cell_polynomials,
    make_uniform_knots,
    power_jet,
    scatter_local,
    uniform_cells,
    uniform_basis_matrix,
    uniform_local_jet,
)
from kanpde.derivatives import Jet, input_jet, quadratic, silu_jet
from kanpde.validate import check_int, check_interval, check_number, check_width


class KANLayer(nn.Module):
    """One KAN layer: n_in x n_out learnable edge functions.

    Args:
        in_dim: number of inputs.
        out_dim: number of outputs.
        grid_size: G, intervals of the spline grid.
        order: k, spline order.
        grid_range: initial grid interval [a, b], the same for every input.
        noise_scale: spline coefficients start uniform in +-noise_scale / 2 (pykan: noise / G).
        base_scale: base weights start uniform in +-base_scale / sqrt(in_dim).
        generator: source of the initial random values (None: torch's default generator).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        base_scale: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_dim, self.out_dim, self.order = in_dim, out_dim, order
        lo = torch.full((in_dim,), float(grid_range[0]), dtype=dtype)
        hi = torch.full((in_dim,), float(grid_range[1]), dtype=dtype)
        self.register_buffer("knots", make_uniform_knots(lo, hi, grid_size, order))  # (n_in, G+2k+1)
        # Polynomial form of the local bases; a buffer so it follows .to() (not saved: derived).
        self.register_buffer("poly_matrix", uniform_basis_matrix(order).to(lo.dtype), persistent=False)
        # True while every input's knots are equally spaced: enables the local-basis fast path.
        self.uniform = True
        n_basis = grid_size + order
        coef = (torch.rand(in_dim, n_basis, out_dim, generator=generator, dtype=dtype) - 0.5)
        self.coef = nn.Parameter(coef * noise_scale / grid_size)  # (n_in, G+k, n_out)
        w = torch.rand(in_dim, out_dim, generator=generator, dtype=dtype) * 2 - 1
        self.base_weight = nn.Parameter(w * base_scale / math.sqrt(in_dim))  # (n_in, n_out)
        self.bias = nn.Parameter(torch.zeros(out_dim, dtype=dtype))  # (n_out,)

    @property
    def grid_size(self) -> int:
        return self.knots.shape[1] - 1 - 2 * self.order

    def _bases(self, x: Tensor, derivatives: int) -> Tensor:
        """Dense bases and their x-derivatives: (1 + derivatives, N, n_in, G+k)."""
        if self.uniform:
            start, local = uniform_local_jet(x, self.knots, self.order, derivatives)
            return scatter_local(start, torch.stack(local), self.coef.shape[1])
        if derivatives == 0:
            return basis(x, self.knots, self.order).unsqueeze(0)
        return torch.stack(basis_jet(x, self.knots, self.order)[: derivatives + 1])

    def _per_edge(self, n_points: int, n_chan: int) -> bool:
        """Whether evaluating each edge's function first moves less data than dense features.

        Per edge: a gathered (N, n_in, k+1, n_out) cell polynomial; dense: (C, N, n_in, G+k+1)
        features. Only on uniform grids, where a point's cell is found by one division.
        """
        per_edge = self.out_dim * (self.order + 1 + n_chan)
        dense = 2 * n_chan * (self.coef.shape[1] + 1)
        return self.uniform and per_edge <= dense

    def edge_jet(self, x: Tensor, derivatives: int) -> Tensor:
        """Every edge function phi_ij and its derivatives at x_i.

        Args:
            x: (N, n_in).
            derivatives: 0, 1 or 2.

        Returns:
            (1 + derivatives, N, n_in, n_out): phi_ij(x_i), phi_ij'(x_i), phi_ij''(x_i).
        """
        silu = torch.stack(silu_jet(x)[: derivatives + 1])  # (R, N, n_in)
        base = silu.unsqueeze(-1) * self.base_weight  # (R, N, n_in, n_out)
        if self.uniform:
            cell, u, h = uniform_cells(x, self.knots)
            poly = cell_polynomials(self.coef, self.order, self.poly_matrix)  # (n_in, cells, k+1, n_out)
            rows = cell + torch.arange(self.in_dim, device=x.device) * poly.shape[1]  # (N, n_in)
            gathered = poly.reshape(-1, self.order + 1, self.out_dim)[rows]  # (N, n_in, k+1, n_out)
            powers = power_jet(u, h, self.order, derivatives)  # (R, N, n_in, k+1)
            # Broadcast-and-sum, not einsum: einsum turns this into N n_in tiny matmuls.
            return base + (powers.unsqueeze(-1) * gathered).sum(dim=-2)
        return base + torch.einsum("rnik,iko->rnio", self._bases(x, derivatives), self.coef)

    def spline(self, x: Tensor) -> Tensor:
        """Spline part of every edge, sum_j c_j B_j(x_i): (N, n_in) -> (N, n_in, n_out)."""
        return torch.einsum("nik,iko->nio", self._bases(x, 0)[0], self.coef)

    def edges(self, x: Tensor) -> Tensor:
        """Every edge function phi_ij(x_i): (N, n_in) -> (N, n_in, n_out)."""
        return self.edge_jet(x, 0)[0]

    def _dense(self, x: Tensor, derivatives: int) -> Tensor:
        """Features [silu^(r)(x_i), B_j^(r)(x_i)]: (1 + derivatives, N, n_in, G+k+1)."""
        silu = torch.stack(silu_jet(x)[: derivatives + 1]).unsqueeze(-1)
        return torch.cat([silu, self._bases(x, derivatives)], dim=-1)

    def _weight(self) -> Tensor:
        """(n_in (G+k+1), n_out): rows [w_b, c_1 .. c_{G+k}] per input, matching `_dense`."""
        return torch.cat([self.base_weight.unsqueeze(1), self.coef], dim=1).reshape(-1, self.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(N, n_in) -> (N, n_out)."""
        if self._per_edge(x.shape[0], 1):
            return self.edge_jet(x, 0)[0].sum(dim=1) + self.bias
        return self._dense(x, 0)[0].reshape(x.shape[0], -1) @ self._weight() + self.bias

    def jet(self, h: Jet) -> Jet:
        """Push a jet of this layer's inputs through it.

        With y_o = sum_i phi_io(h_i): dy_o/dx_a = sum_i phi_io' dh_ia and
        d2y_op = sum_i phi_io'' (dh_i^T Q_p dh_i) + phi_io' d2h_ip.

        Args:
            h: jet with value (N, n_in), grad (N, n_in, d), second (N, n_in, P).

        Returns:
            jet with value (N, n_out), grad (N, n_out, d), second (N, n_out, P).
        """
        x = h.value
        n, d, p = x.shape[0], h.grad.shape[-1], h.second.shape[-1]
        if p:  # multiplier of phi'' per input and channel: (N, n_in, P)
            m2 = quadratic(h.grad, h.mode)
        if self._per_edge(n, 1 + d + p):
            e = self.edge_jet(x, 2 if p else 1)  # (R, N, n_in, n_out)
            value = e[0].sum(dim=1) + self.bias
            grad = (e[1].unsqueeze(-1) * h.grad.unsqueeze(2)).sum(dim=1)  # (N, n_out, d)
            if not p:
                return Jet(value, grad, grad.new_zeros(n, self.out_dim, 0), h.mode)
            second = (e[1].unsqueeze(-1) * h.second.unsqueeze(2) + e[2].unsqueeze(-1) * m2.unsqueeze(2)).sum(dim=1)
            return Jet(value, grad, second, h.mode)
        f = self._dense(x, 2 if p else 1)  # (R, N, n_in, K1)
        m1 = torch.cat([h.grad, h.second], dim=-1).permute(2, 0, 1).unsqueeze(-1)  # (d + P, N, n_in, 1)
        chans = [f[0].unsqueeze(0), f[1].unsqueeze(0) * m1]
        if p:
            chans[1][d:] += f[2].unsqueeze(0) * m2.permute(2, 0, 1).unsqueeze(-1)
        feats = torch.cat(chans)  # (1 + d + P, N, n_in, K1)
        out = (feats.reshape((1 + d + p) * n, -1) @ self._weight()).reshape(1 + d + p, n, self.out_dim)
        return Jet(out[0] + self.bias, out[1 : 1 + d].permute(1, 2, 0), out[1 + d :].permute(1, 2, 0), h.mode)


@dataclass
class KANConfig:
    """Constructor arguments of a KAN; config keys are these names."""

    width: list[int] = field(default_factory=lambda: [2, 10, 1])
    grid: int = 5
    order: int = 3
    grid_range: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    noise_scale: float = 0.1
    base_scale: float = 1.0


class KAN(nn.Module):
    """A stack of KAN layers of widths `width` (e.g. [2, 10, 1]).

    Args: see `KANConfig`; `generator` seeds the initial parameters, `dtype` their precision.
    """

    def __init__(
        self,
        width: list[int] = (2, 10, 1),
        grid: int = 5,
        order: int = 3,
        grid_range: list[float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        base_scale: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        width = check_width(width, "model.width")
        check_int(grid, "model.grid", minimum=1)
        check_int(order, "model.order", minimum=1, maximum=7)
        check_interval(grid_range, "model.grid_range")
        check_number(noise_scale, "model.noise_scale", minimum=0.0)
        check_number(base_scale, "model.base_scale", minimum=0.0)
        self.config = KANConfig(list(width), grid, order, [float(v) for v in grid_range],
                                float(noise_scale), float(base_scale))
        self.layers = nn.ModuleList(
            KANLayer(a, b, grid, order, tuple(grid_range), noise_scale, base_scale, generator, dtype)
            for a, b in zip(width[:-1], width[1:])
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, width[0]) -> (N, width[-1])."""
        for layer in self.layers:
            x = layer(x)
        return x

    def jet(self, x: Tensor, mode: str = "laplacian") -> Jet:
        """Value, input gradient and second derivatives in one forward pass.

        Args:
            x: (N, d) points.
            mode: second-derivative layout, see `kanpde.derivatives`.

        Returns:
            Jet with value (N, m), grad (N, m, d), second (N, m, P).
        """
        h = input_jet(x, mode)
        for layer in self.layers:
            h = layer.jet(h)
        return h

    def constructor_args(self) -> dict:
        """Arguments that rebuild this model's shapes (the grid size tracks extensions)."""
        args = asdict(self.config)
        args["grid"] = self.layers[0].grid_size
        return args

