"""Poisson equations on [-1, 1]^2 with zero Dirichlet data (KAN paper, arXiv 2404.19756, sec. 3.4)."""

from __future__ import annotations

import abc
import math
from typing import final

import torch
from torch import Tensor

from kanpde.geometry import Rectangle
from kanpde.problem import Dirichlet, Fields, PDEProblem
from kanpde.registry import register_problem
from kanpde.validate import check_number

PI = math.pi


class _Poisson2D(PDEProblem):
    """u_xx + u_yy = f on [-1, 1]^2, u = 0 on the boundary; loss alpha * mean(r^2) + mean(u_b^2)."""

    variables = ("x", "y")
    second = "laplacian"

    def __init__(self, alpha: float, n_interior: int, n_boundary: int, sampling: str, n_test: int):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.alpha = check_number(alpha, "problem.alpha", positive=True)
        self.domain = Rectangle([-1.0, -1.0], [1.0, 1.0])

    @abc.abstractmethod
    def source(self, x: Tensor) -> Tensor:
        """(N, 1) f at x (N, 2)."""

    def residual(self, x: Tensor, u: Fields) -> Tensor:
        return u.laplacian - self.source(x)

    def conditions(self) -> dict:
        return {"boundary": Dirichlet()}

    def weights(self) -> dict[str, float]:
        return {"pde": self.alpha, "boundary": 1.0}


@final
@register_problem("poisson")
class Poisson(_Poisson2D):
    """The paper's Poisson problem (sec. 3.4, Figure 3.3).

    Domain [-1, 1]^2;  u_xx + u_yy = f,
    f = -pi^2 (1 + 4 y^2) sin(pi x) sin(pi y^2) + 2 pi sin(pi x) cos(pi y^2);
    u = 0 on the boundary;  exact solution u = sin(pi x) sin(pi y^2).
    Loss alpha * mean(residual^2) + mean(u^2 on the boundary), alpha = 0.01,
    10,000 interior and 800 boundary points.
    """

    def __init__(self, alpha: float = 0.01, n_interior: int = 10_000, n_boundary: int = 800,
                 sampling: str = "random", n_test: int = 10_000):
        super().__init__(alpha, n_interior, n_boundary, sampling, n_test)

    def source(self, x: Tensor) -> Tensor:
        a, b = x[:, :1], x[:, 1:]
        return (-PI**2 * (1 + 4 * b**2) * torch.sin(PI * a) * torch.sin(PI * b**2)
                + 2 * PI * torch.sin(PI * a) * torch.cos(PI * b**2))

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, :1]) * torch.sin(PI * x[:, 1:] ** 2)


@final
@register_problem("poisson_sinsin")
class PoissonSinSin(_Poisson2D):
    """pykan's tutorial Poisson problem.

    Domain [-1, 1]^2;  u_xx + u_yy = f,  f = -2 pi^2 sin(pi x) sin(pi y);
    u = 0 on the boundary;  exact solution u = sin(pi x) sin(pi y).
    Loss alpha * mean(residual^2) + mean(u^2 on the boundary), on a mesh.
    """

    def __init__(self, alpha: float = 0.01, n_interior: int = 2_601, n_boundary: int = 204,
                 sampling: str = "mesh", n_test: int = 10_000):
        super().__init__(alpha, n_interior, n_boundary, sampling, n_test)

    def source(self, x: Tensor) -> Tensor:
        return -2 * PI**2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, :1]) * torch.sin(PI * x[:, 1:])
