"""Inverse problems: a coefficient of the PDE is unknown and trained with the solution from noisy
observations of u. The unknowns are the problem's own parameters (`init_unknowns`); their
recovered values and errors are metrics (`unknown_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import final

import torch
from torch import nn

from kanpde.nn.derivatives import jet
from kanpde.nn.mlp import MLP
from kanpde.pde.conditions import Dirichlet, Initial, Observations
from kanpde.pde.domains import Interval
from kanpde.pde.evolution import Evolution1D
from kanpde.pde.memo import at_points
from kanpde.pde.problem import PDEProblem
from kanpde.registry import register_problem
from kanpde.validate import ConfigError, check_int, check_number, check_width

PI = math.pi


class _Scalar(nn.Module):
    """A positive scalar c = exp(theta), theta trained."""

    def __init__(self, start: float, dtype: torch.dtype):
        super().__init__()
        self.log_value = nn.Parameter(torch.tensor(math.log(start), dtype=dtype))

    def forward(self) -> torch.Tensor:
        return self.log_value.exp()


@final
@register_problem("heat_inverse")
class HeatInverse(Evolution1D):
    """The heat equation with an unknown constant diffusivity (DeepXDE's inverse diffusion).

    Domain x in [0, 1], t in [0, 1];  u_t = kappa u_xx with kappa unknown (true 0.1, training
    starts from kappa0 = 0.05);  u(x, 0) = sin(pi x);  u(0, t) = u(1, t) = 0;
    data: u at n_obs random space-time points with Gaussian noise of `noise` times the data's RMS.
    Exact u = exp(-kappa pi^2 t) sin(pi x).
    """

    x_range = (0.0, 1.0)
    dirichlet_ends = True

    def __init__(self, kappa: float = 0.1, kappa0: float = 0.05, n_obs: int = 100, noise: float = 0.01,
                 n_interior: int = 2000, n_boundary: int = 200, n_initial: int = 200, sampling: str = "sobol",
                 n_test: int = 10_000, hard: bool = False):
        super().__init__(n_interior, n_boundary, n_initial, sampling, n_test, hard)
        self.kappa = check_number(kappa, "problem.kappa", positive=True, finite=True)
        self.kappa0 = check_number(kappa0, "problem.kappa0", positive=True, finite=True)
        self.n_obs = check_int(n_obs, "problem.n_obs", minimum=1)
        self.noise = check_number(noise, "problem.noise", minimum=0.0, finite=True)

    def init_unknowns(self, generator, dtype):
        return _Scalar(self.kappa0, dtype)

    def residual(self, x, u):
        return u.d("t") - self.unknowns() * u.d("x", "x")

    def initial(self, x):
        return torch.sin(PI * x[:, :1])

    def conditions(self):
        data = {"data": Observations(self.exact, n=self.n_obs, noise=self.noise)}
        if self.hard:
            return data
        return {"initial": Initial(self.initial, n=self.n_initial), "boundary": Dirichlet(), **data}

    def exact(self, x):
        return torch.exp(-self.kappa * PI**2 * x[:, 1:2]) * torch.sin(PI * x[:, :1])

    def unknown_metrics(self):
        if self.unknowns is None:
            return {}
        k = float(self.unknowns().detach())
        return {"kappa": k, "kappa_true": self.kappa, "kappa_rel_err": abs(k - self.kappa) / self.kappa}


class _Field(nn.Module):
    """a(x) = exp(N(x)) with N a small tanh MLP [1, *hidden, 1] (positive by construction)."""

    def __init__(self, hidden: list[int], generator, dtype):
        super().__init__()
        self.net = MLP([1, *hidden, 1], "tanh", generator=generator, dtype=dtype)

    def jet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a (N, 1), a' (N, 1)) at x (N, 1)."""
        j = jet(self.net, x, "none")
        a = j.value.exp()
        return a, a * j.grad[..., 0]


@final
@register_problem("diffusion_inverse")
class DiffusionInverse(PDEProblem):
    """A diffusion coefficient field from observations of the solution.

    Domain [0, 1];  -(a(x) u')' = f with a unknown, u(0) = u(1) = 0;
    true a(x) = 1 + 0.5 sin(2 pi x), u = sin(pi x), f = -(a u')' from them;
    data: u at n_obs random points with Gaussian noise of `noise` times the data's RMS.
    a is a second network (exp of a [1, *a_hidden, 1] tanh MLP), trained with u.
    """

    second = "diag"

    def __init__(self, n_obs: int = 200, noise: float = 0.01, a_hidden: Sequence[int] = (8,),
                 n_interior: int = 400, n_boundary: int = 2, sampling: str = "sobol", n_test: int = 1000):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        if isinstance(a_hidden, (str, bytes)) or not isinstance(a_hidden, Sequence) or not a_hidden:
            raise ConfigError(f"problem.a_hidden must be a non-empty list of hidden widths, got {a_hidden!r}")
        self.a_hidden = check_width([1, *a_hidden, 1], "problem.a_hidden")[1:-1]
        self.n_obs = check_int(n_obs, "problem.n_obs", minimum=1)
        self.noise = check_number(noise, "problem.noise", minimum=0.0, finite=True)
        self.domain = Interval(0.0, 1.0)

    @staticmethod
    def true_a(x):
        return 1 + 0.5 * torch.sin(2 * PI * x)

    @at_points
    def source(self, x):
        # -(a u')' with a = 1 + 0.5 sin(2 pi x), u = sin(pi x)
        a, da = self.true_a(x), PI * torch.cos(2 * PI * x)
        du, d2u = PI * torch.cos(PI * x), -PI**2 * torch.sin(PI * x)
        return -(da * du + a * d2u)

    def init_unknowns(self, generator, dtype):
        return _Field(self.a_hidden, generator, dtype)

    def residual(self, x, u):
        a, da = self.unknowns.jet(x)
        return da * u.d("x") + a * u.d("x", "x") + self.source(x)

    def conditions(self):
        return {"boundary": Dirichlet(), "data": Observations(self.exact, n=self.n_obs, noise=self.noise)}

    def exact(self, x):
        return torch.sin(PI * x)

    def unknown_metrics(self):
        if self.unknowns is None:
            return {}
        p = next(self.unknowns.parameters())
        x = torch.linspace(0, 1, 201, dtype=torch.float64)[:, None].to(p.device, p.dtype)
        with torch.no_grad():
            a = self.unknowns.jet(x)[0].double()
        true = self.true_a(x.double())
        return {"a_rel_l2": float((a - true).norm() / true.norm()), "a_max_err": float((a - true).abs().max())}
