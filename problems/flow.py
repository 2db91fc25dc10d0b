"""Steady incompressible Navier-Stokes flows in 2-D: Kovasznay flow (exact) and the lid-driven
cavity (reference). Outputs (u, v, p); residuals, one loss term each:

    momentum_x   u u_x + v u_y + p_x - (u_xx + u_yy) / Re
    momentum_y   u v_x + v v_y + p_y - (v_xx + v_yy) / Re
    continuity   u_x + v_y
"""

from __future__ import annotations

import math
from typing import final

import torch

from kanpde.pde.conditions import Dirichlet, Observations
from kanpde.pde.domains import Box
from kanpde.pde.problem import PDEProblem
from kanpde.pde.references.cavity import cavity
from kanpde.pde.references.settings import check_overrides, reference
from kanpde.registry import register_problem
from kanpde.validate import check_number

PI = math.pi


class _SteadyNS(PDEProblem):
    outputs = ("u", "v", "p")
    second = "laplacian"

    def __init__(self, re: float, n_interior: int, n_boundary: int, sampling: str, n_test: int):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.re = check_number(re, "problem.re", positive=True, finite=True)

    def residual(self, x, f):
        u, v, p = f["u"], f["v"], f["p"]
        uu, vv = u.value, v.value
        return {
            "momentum_x": uu * u.d("x") + vv * u.d("y") + p.d("x") - u.laplacian / self.re,
            "momentum_y": uu * v.d("x") + vv * v.d("y") + p.d("y") - v.laplacian / self.re,
            "continuity": u.d("x") + v.d("y"),
        }


@final
@register_problem("kovasznay")
class Kovasznay(_SteadyNS):
    """Kovasznay flow (Kovasznay 1948; DeepXDE's example), Re = 20.

    Domain [-0.5, 1] x [-0.5, 1.5];  steady Navier-Stokes (module docstring);
    u = 1 - e^{l x} cos(2 pi y),  v = l / (2 pi) e^{l x} sin(2 pi y),  p = (1 - e^{2 l x}) / 2,
    l = Re / 2 - sqrt(Re^2 / 4 + 4 pi^2);  u, v from the exact solution on the whole boundary,
    p on the outlet x = 1.
    """

    def __init__(self, re: float = 20.0, n_interior: int = 4000, n_boundary: int = 800, sampling: str = "sobol",
                 n_test: int = 10_000):
        super().__init__(re, n_interior, n_boundary, sampling, n_test)
        self.lam = self.re / 2 - math.sqrt(self.re**2 / 4 + 4 * PI**2)
        self.domain = Box([-0.5, -0.5], [1.0, 1.5])

    def conditions(self):
        return {"boundary": Dirichlet(lambda x: self.exact(x)[:, :2], component=("u", "v")),
                "outlet": Dirichlet(lambda x: self.exact(x)[:, 2:], where="x_max", component="p")}

    def exact(self, x):
        a, b, l = x[:, :1], x[:, 1:], self.lam
        e = torch.exp(l * a)
        return torch.cat([1 - e * torch.cos(2 * PI * b), l / (2 * PI) * e * torch.sin(2 * PI * b),
                          (1 - e * e) / 2], dim=1)


@final
@register_problem("cavity")
class Cavity(_SteadyNS):
    """The lid-driven cavity, Re = 100 (Ghia, Ghia and Shin 1982).

    Domain (0, 1)^2;  steady Navier-Stokes (module docstring);  lid u = 1, v = 0 at y = 1;
    u = v = 0 on the other walls;  p = 0 at the corner (0, 0).
    Reference: streamfunction-vorticity finite differences, Newton, Richardson-extrapolated to a
    257 x 257 grid (`kanpde.pde.references.cavity`; p pinned at p(0, 0) = 0).
    """

    def __init__(self, re: float = 100.0, n_interior: int = 4000, n_boundary: int = 800, sampling: str = "sobol",
                 n_test: int = 10_000, reference: dict | None = None):
        super().__init__(re, n_interior, n_boundary, sampling, n_test)
        self.ref_settings = check_overrides(reference, cavity, {"re": self.re})
        self.domain = Box([0.0, 0.0], [1.0, 1.0])

    def conditions(self):
        corner = torch.zeros(1, 2, dtype=torch.float64)
        return {"lid": Dirichlet(lambda x: torch.cat([torch.ones_like(x[:, :1]), torch.zeros_like(x[:, :1])], dim=1),
                                 where="top", component=("u", "v")),
                "walls": Dirichlet(where=["left", "right", "bottom"], component=("u", "v")),
                "pressure": Observations.from_arrays(corner, torch.zeros(1, 1, dtype=torch.float64), component="p")}

    def make_reference(self):
        return reference("cavity", cavity, {"re": self.re}, self.ref_settings)
