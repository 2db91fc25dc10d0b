"""Linear evolution problems with exact solutions: heat, advection and wave equations in 1-D."""

from __future__ import annotations

import math
from typing import final

import torch
from torch import Tensor

from kanpde.pde.conditions import Dirichlet, Initial, InitialVelocity, Periodic
from kanpde.pde.evolution import Evolution1D
from kanpde.registry import register_problem
from kanpde.validate import check_number

PI = math.pi


@final
@register_problem("heat")
class Heat(Evolution1D):
    """The heat equation with one decaying mode.

    Domain x in [0, 1], t in [0, 1];  u_t = kappa u_xx;
    u(x, 0) = sin(pi x);  u(0, t) = u(1, t) = 0;
    exact solution u = exp(-kappa pi^2 t) sin(pi x), kappa = 0.1 by default.
    """

    x_range = (0.0, 1.0)
    dirichlet_ends = True

    def __init__(self, kappa: float = 0.1, n_interior: int = 2000, n_boundary: int = 200, n_initial: int = 200,
                 sampling: str = "sobol", n_test: int = 10_000, hard: bool = False):
        super().__init__(n_interior, n_boundary, n_initial, sampling, n_test, hard)
        self.kappa = check_number(kappa, "problem.kappa", positive=True, finite=True)

    def residual(self, x, u):
        return u.d("t") - self.kappa * u.d("x", "x")

    def initial(self, x):
        return torch.sin(PI * x[:, :1])

    def conditions(self):
        return {} if self.hard else {"initial": Initial(self.initial, n=self.n_initial), "boundary": Dirichlet()}

    def exact(self, x):
        return torch.exp(-self.kappa * PI**2 * x[:, 1:2]) * torch.sin(PI * x[:, :1])


@final
@register_problem("advection")
class Advection(Evolution1D):
    """Linear advection (Krishnapriyan et al. 2021, "failure modes" of PINNs).

    Domain x in [0, 2 pi) periodic, t in [0, 1];  u_t + beta u_x = 0;  u(x, 0) = sin(x);
    exact solution u = sin(x - beta t); beta = 30 by default (plain PINNs fail above ~10).
    """

    x_range = (0.0, 2 * PI)

    def __init__(self, beta: float = 30.0, n_interior: int = 4000, n_boundary: int = 200, n_initial: int = 400,
                 sampling: str = "sobol", n_test: int = 10_000, hard: bool = True):
        super().__init__(n_interior, n_boundary, n_initial, sampling, n_test, hard)
        self.beta = check_number(beta, "problem.beta", finite=True)

    def residual(self, x, u):
        return u.d("t") + self.beta * u.d("x")

    def initial(self, x):
        return torch.sin(x[:, :1])

    def conditions(self):
        periodic = {"periodic": Periodic("x", derivatives=1)}
        return periodic if self.hard else {"initial": Initial(self.initial, n=self.n_initial), **periodic}

    def exact(self, x):
        return torch.sin(x[:, :1] - self.beta * x[:, 1:2])


@final
@register_problem("wave")
class Wave(Evolution1D):
    """The 1-D wave equation (PINNacle's Wave1D-C).

    Domain x in [0, 1], t in [0, 1];  u_tt = c^2 u_xx, c = 2;
    u(x, 0) = sin(pi x) + 0.5 sin(4 pi x);  u_t(x, 0) = 0;  u(0, t) = u(1, t) = 0;
    exact solution u = sin(pi x) cos(2 pi t) + 0.5 sin(4 pi x) cos(8 pi t).
    With `hard`, u = u0(x) + t^2 x (1 - x) N imposes all three conditions exactly.
    """

    x_range = (0.0, 1.0)
    dirichlet_ends = True
    time_power = 2

    def __init__(self, c: float = 2.0, n_interior: int = 4000, n_boundary: int = 200, n_initial: int = 200,
                 sampling: str = "sobol", n_test: int = 10_000, hard: bool = True):
        super().__init__(n_interior, n_boundary, n_initial, sampling, n_test, hard)
        self.c = check_number(c, "problem.c", positive=True, finite=True)

    def residual(self, x, u):
        return u.d("t", "t") - self.c**2 * u.d("x", "x")

    def initial(self, x):
        return torch.sin(PI * x[:, :1]) + 0.5 * torch.sin(4 * PI * x[:, :1])

    def conditions(self):
        if self.hard:
            return {}
        return {"initial": Initial(self.initial, n=self.n_initial),
                "velocity": InitialVelocity(n=self.n_initial), "boundary": Dirichlet()}

    def exact(self, x: Tensor) -> Tensor:
        a, t = x[:, :1], x[:, 1:2]
        w = PI * self.c  # the exact solution's frequencies are c pi and 4 c pi
        return torch.sin(PI * a) * torch.cos(w * t) + 0.5 * torch.sin(4 * PI * a) * torch.cos(4 * w * t)
