"""Poisson equations: the KAN paper's on [-1, 1]^2 (arXiv 2404.19756, sec. 3.4), in 3-D, and on the L-shape."""

from __future__ import annotations

import abc
import math
from typing import final

import torch
from torch import Tensor, nn

from kanpde.pde.domains import Box
from kanpde.pde.conditions import Dirichlet
from kanpde.pde.csg import Difference
from kanpde.pde.fields import Fields
from kanpde.pde.memo import at_points
from kanpde.pde.problem import PDEProblem
from kanpde.pde.references.poisson_fd import lshape
from kanpde.pde.references.settings import check_overrides, reference
from kanpde.registry import register_problem
from kanpde.validate import ConfigError, check_int, check_number

PI = math.pi


class _Poisson2D(PDEProblem):
    """u_xx + u_yy = f on [-1, 1]^2, u = 0 on the boundary; loss alpha * mean(r^2) + mean(u_b^2)."""

    second = "laplacian"

    def __init__(self, alpha: float, n_interior: int, n_boundary: int, sampling: str, n_test: int):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.alpha = check_number(alpha, "problem.alpha", positive=True, finite=True)
        self.domain = Box([-1.0, -1.0], [1.0, 1.0])

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

    @at_points
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

    @at_points
    def source(self, x: Tensor) -> Tensor:
        return -2 * PI**2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, :1]) * torch.sin(PI * x[:, 1:])


@final
@register_problem("poisson3d")
class Poisson3D(PDEProblem):
    """Poisson's equation in 3-D (PINNacle's Poisson-ND family, d = 3).

    Domain [0, 1]^3;  -(u_xx + u_yy + u_zz) = (pi^2 / 4) sum_i sin(pi x_i / 2);
    u = g on the boundary, g from the exact solution u = sum_i sin(pi x_i / 2).
    """

    def __init__(self, n_interior: int = 4000, n_boundary: int = 1200, sampling: str = "sobol", n_test: int = 10_000):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.domain = Box([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])

    def residual(self, x, u):
        return -u.laplacian - self.source(x)

    @at_points
    def source(self, x):
        return PI**2 / 4 * torch.sin(PI * x / 2).sum(dim=1, keepdim=True)

    def conditions(self):
        return {"boundary": Dirichlet(self.exact)}

    def exact(self, x):
        return torch.sin(PI * x / 2).sum(dim=1, keepdim=True)


class _CornerCoefficients(nn.Module):
    """The coefficients (c_1, ..., c_k) of the L-shape's corner singular functions, trained with u."""

    def __init__(self, k: int, dtype: torch.dtype):
        super().__init__()
        self.coef = nn.Parameter(torch.zeros(k, dtype=dtype))

    def forward(self) -> Tensor:
        return self.coef


def corner_functions(x: Tensor, k: int) -> Tensor:
    """(N, k) the singular functions r^(2j/3) sin(2j phi / 3), j = 1..k, at x (N, 2), phi the angle
    from the edge x = 0, y > 0 into the L-shape (0 .. 3 pi / 2): harmonic, zero on both re-entrant
    edges; the solution near the corner is sum_j c_j of them plus a smooth part."""
    a, b = x[:, :1], x[:, 1:]
    r = (a * a + b * b + 1e-300).sqrt()
    phi = torch.remainder(torch.atan2(b, a) - PI / 2, 2 * PI)
    j = torch.arange(1, k + 1, dtype=x.dtype, device=x.device)
    return r ** (2 * j / 3) * torch.sin(2 * j * phi / 3)


@final
@register_problem("poisson_lshape")
class PoissonLShape(PDEProblem):
    """Poisson's equation on the L-shaped domain (DeepXDE's example).

    Domain [-1, 1]^2 minus [0, 1]^2;  -(u_xx + u_yy) = 1;  u = 0 on the boundary.
    No closed form (u ~ r^(2/3) sin(2 theta / 3) at the re-entrant corner); reference: 5-point
    finite differences on a fine grid with the corner singularity's error term removed
    (`kanpde.pde.references.poisson_fd`).
    With `hard`, u = (1 - x^2)(1 - y^2)(r - x - y) N, r = |(x, y)|: the last factor (an
    R-function) vanishes exactly on the two re-entrant edges and is positive elsewhere in the L.
    With `enrich` = k > 0 (needs `hard`), u = (1 - x^2)(1 - y^2) sum_j c_j S_j + (the above), S_j
    the corner's first k singular functions (`corner_functions`), c_j trained with the network:
    the network is left the smooth remainder, which splines and tanh layers approximate well.
    """

    def __init__(self, n_interior: int = 4000, n_boundary: int = 800, sampling: str = "sobol", n_test: int = 10_000,
                 hard: bool = True, enrich: int = 2, reference: dict | None = None):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        if not isinstance(hard, bool):
            raise ConfigError(f"problem.hard must be true or false, got {hard!r}")
        self.hard = hard
        self.enrich = check_int(enrich, "problem.enrich", minimum=0, maximum=6)
        if self.enrich and not hard:
            raise ConfigError(f"problem.enrich={self.enrich} needs problem.hard=true (the singular part is "
                              "part of the output transform); use problem.enrich=0 with hard=false")
        self.ref_settings = check_overrides(reference, lshape, {})
        self.domain = Difference(Box([-1.0, -1.0], [1.0, 1.0]), Box([0.0, 0.0], [1.0, 1.0]))

    def init_unknowns(self, generator, dtype):
        return _CornerCoefficients(self.enrich, dtype) if self.enrich else None

    def residual(self, x, u):
        return u.laplacian + 1.0

    def conditions(self):
        return {} if self.hard else {"boundary": Dirichlet()}

    def constraint(self, x):
        if not self.hard:
            return None
        a, b = x[:, :1], x[:, 1:]
        r = (a * a + b * b + 1e-300).sqrt()  # finite gradient at the corner itself
        outer = (1 - a * a) * (1 - b * b)
        distance = outer * (r - a - b)
        if not self.enrich:
            return torch.zeros_like(distance), distance
        coef = self.unknowns() if self.unknowns is not None else x.new_zeros(self.enrich)  # before setup: none yet
        singular = corner_functions(x, self.enrich) @ coef.to(x)[:, None]  # (N, 1)
        return outer * singular, distance

    def unknown_metrics(self):
        if self.unknowns is None:
            return {}
        return {f"c{j + 1}": float(c) for j, c in enumerate(self.unknowns().detach())}

    def make_reference(self):
        return reference("poisson_lshape", lshape, {}, self.ref_settings)
