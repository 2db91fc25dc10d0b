"""Nonlinear evolution problems with reference solutions: Burgers, Allen-Cahn and KdV in 1-D.

Their references come from classical solvers in `kanpde.pde.references` (Cole-Hopf quadrature
for Burgers, Fourier pseudo-spectral with ETDRK4 for Allen-Cahn and KdV), computed once and
cached in HDF5 keyed by their settings; `problem.reference={...}` changes the solver's settings
(e.g. its resolution).
"""

from __future__ import annotations

import math
from typing import final

import torch

from kanpde.pde.conditions import Dirichlet, Initial, Periodic
from kanpde.pde.evolution import Evolution1D
from kanpde.pde.references.burgers import burgers
from kanpde.pde.references.settings import check_overrides, reference
from kanpde.pde.references.spectral import allen_cahn, kdv
from kanpde.registry import register_problem
from kanpde.validate import ConfigError, check_number

PI = math.pi


@final
@register_problem("burgers")
class Burgers(Evolution1D):
    """Viscous Burgers equation (Raissi et al. 2019; PINNacle's Burgers1D).

    Domain x in [-1, 1], t in [0, 1];  u_t + u u_x = nu u_xx, nu = 0.01 / pi;
    u(x, 0) = -sin(pi x);  u(-1, t) = u(1, t) = 0.  A shock forms at x = 0 near t = 0.3.
    Reference: the Cole-Hopf solution by Gauss-Hermite quadrature on a 257 x 101 grid.
    """

    dirichlet_ends = True

    def __init__(self, nu: float = 0.01 / PI, n_interior: int = 4000, n_boundary: int = 200, n_initial: int = 200,
                 sampling: str = "sobol", n_test: int = 10_000, hard: bool = True, reference: dict | None = None):
        super().__init__(n_interior, n_boundary, n_initial, sampling, n_test, hard)
        self.nu = check_number(nu, "problem.nu", positive=True, finite=True)
        self.ref_settings = check_overrides(reference, burgers, {"nu": self.nu})

    def residual(self, x, u):
        return u.d("t") + u.value * u.d("x") - self.nu * u.d("x", "x")

    def initial(self, x):
        return -torch.sin(PI * x[:, :1])

    def conditions(self):
        return {} if self.hard else {"initial": Initial(self.initial, n=self.n_initial), "boundary": Dirichlet()}

    def make_reference(self):
        return reference("burgers", burgers, {"nu": self.nu}, self.ref_settings)


@final
@register_problem("allen_cahn")
class AllenCahn(Evolution1D):
    """Allen-Cahn equation (Wang et al. 2022, causal training; jaxpi; PirateNets).

    Domain x in [-1, 1) periodic, t in [0, 1];  u_t = eps u_xx - a u^3 + a u, eps = 1e-4, a = 5;
    u(x, 0) = x^2 cos(pi x);  u and u_x periodic (u0's u_x is not: a kink at x = +-1 that the
    solution smooths at once; `fade` > 0 lets the hard transform follow, `kanpde.pde.evolution`).
    Reference: Fourier pseudo-spectral in x, ETDRK4 in t.
    """

    def __init__(self, eps: float = 1e-4, a: float = 5.0, n_interior: int = 4000, n_boundary: int = 200,
                 n_initial: int = 400, sampling: str = "sobol", n_test: int = 10_000, hard: bool = True,
                 fade: float = 0.0, reference: dict | None = None):
        super().__init__(n_interior, n_boundary, n_initial, sampling, n_test, hard)
        self.fade = check_number(fade, "problem.fade", minimum=0.0, finite=True)
        if self.fade > 0 and not self.hard:
            raise ConfigError(f"problem.fade={fade!r} shapes the hard initial data: it needs problem.hard=true")
        self.eps = check_number(eps, "problem.eps", positive=True, finite=True)
        self.a = check_number(a, "problem.a", finite=True)
        self.ref_settings = check_overrides(reference, allen_cahn, {"eps": self.eps, "a": self.a})

    def residual(self, x, u):
        v = u.value
        return u.d("t") - self.eps * u.d("x", "x") + self.a * (v**3 - v)

    def initial(self, x):
        s = x[:, :1]
        return s**2 * torch.cos(PI * s)

    def conditions(self):
        periodic = {"periodic": Periodic("x", derivatives=1)}
        return periodic if self.hard else {"initial": Initial(self.initial, n=self.n_initial), **periodic}

    def make_reference(self):
        return reference("allen_cahn", allen_cahn, {"eps": self.eps, "a": self.a}, self.ref_settings)


@final
@register_problem("kdv")
class KdV(Evolution1D):
    """Korteweg-de Vries equation (Zabusky and Kruskal 1965; jaxpi; PirateNets).

    Domain x in [-1, 1) periodic, t in [0, 1];  u_t + u u_x + delta^2 u_xxx = 0, delta = 0.022;
    u(x, 0) = cos(pi x);  u, u_x and u_xx periodic.  u_xxx is a third derivative: autograd on
    top of the jet's u_xx (order = 3; forward mode under torch.func, `kanpde.pde.fields`).
    Reference: Fourier pseudo-spectral in x, ETDRK4 in t.
    """

    order = 3

    def __init__(self, delta: float = 0.022, n_interior: int = 4000, n_boundary: int = 200, n_initial: int = 400,
                 sampling: str = "sobol", n_test: int = 10_000, hard: bool = True, reference: dict | None = None):
        super().__init__(n_interior, n_boundary, n_initial, sampling, n_test, hard)
        self.delta = check_number(delta, "problem.delta", positive=True, finite=True)
        self.ref_settings = check_overrides(reference, kdv, {"delta": self.delta})

    def residual(self, x, u):
        return u.d("t") + u.value * u.d("x") + self.delta**2 * u.d("x", "x", "x")

    def initial(self, x):
        return torch.cos(PI * x[:, :1])

    def conditions(self):
        periodic = {"periodic": Periodic("x", derivatives=2)}
        return periodic if self.hard else {"initial": Initial(self.initial, n=self.n_initial), **periodic}

    def make_reference(self):
        return reference("kdv", kdv, {"delta": self.delta}, self.ref_settings)
