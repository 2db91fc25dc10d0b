"""The Helmholtz equation on [-1, 1]^2 (McClenny and Braga-Neto 2020; RBA-PINN; jaxKAN)."""

from __future__ import annotations

import math
from typing import final

import torch

from kanpde.pde.conditions import Dirichlet
from kanpde.pde.domains import Box
from kanpde.pde.problem import PDEProblem
from kanpde.registry import register_problem
from kanpde.validate import ConfigError, check_int, check_number

PI = math.pi


@final
@register_problem("helmholtz")
class Helmholtz(PDEProblem):
    """u_xx + u_yy + k^2 u = f on [-1, 1]^2, u = 0 on the boundary;
    exact solution u = sin(a1 pi x) sin(a2 pi y), f = (k^2 - (a1^2 + a2^2) pi^2) u; a1 = 1, a2 = 4, k = 1.
    With `hard`, u = (1 - x^2)(1 - y^2) N imposes the boundary data exactly.
    """

    def __init__(self, k: float = 1.0, a1: int = 1, a2: int = 4, n_interior: int = 4000, n_boundary: int = 800,
                 sampling: str = "sobol", n_test: int = 10_000, hard: bool = True):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.k = check_number(k, "problem.k", finite=True)
        self.a1 = check_int(a1, "problem.a1", minimum=1)
        self.a2 = check_int(a2, "problem.a2", minimum=1)
        if not isinstance(hard, bool):
            raise ConfigError(f"problem.hard must be true or false, got {hard!r}")
        self.hard = hard
        self.domain = Box([-1.0, -1.0], [1.0, 1.0])

    def residual(self, x, u):
        source = (self.k**2 - (self.a1**2 + self.a2**2) * PI**2) * self.exact(x)
        return u.laplacian + self.k**2 * u.value - source

    def conditions(self):
        return {} if self.hard else {"boundary": Dirichlet()}

    def constraint(self, x):
        if not self.hard:
            return None
        b = (1 - x[:, :1] ** 2) * (1 - x[:, 1:] ** 2)
        return torch.zeros_like(b), b

    def exact(self, x):
        return torch.sin(self.a1 * PI * x[:, :1]) * torch.sin(self.a2 * PI * x[:, 1:])
