"""A 1-D Poisson problem: the README's example of adding a problem."""

import math
from typing import final

import torch

from kanpde.pde.domains import Box
from kanpde.pde.conditions import Dirichlet
from kanpde.pde.problem import PDEProblem
from kanpde.registry import register_problem


@final
@register_problem("sine1d")
class Sine1D(PDEProblem):
    """u_xx = -pi^2 sin(pi x) on [0, 1], u(0) = u(1) = 0; exact u = sin(pi x)."""

    second = "diag"  # which second derivatives the residual reads

    def __init__(self, n_interior: int = 200, n_boundary: int = 2, sampling: str = "random", n_test: int = 1000):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.domain = Box([0.0], [1.0])

    def residual(self, x, u):
        return u.d("x", "x") + math.pi**2 * torch.sin(math.pi * x)

    def conditions(self):
        return {"boundary": Dirichlet()}

    def weights(self):
        return {"pde": 1.0, "boundary": 1.0}

    def exact(self, x):
        return torch.sin(math.pi * x)
