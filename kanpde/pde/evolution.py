"""The common frame of 1-D evolution problems: u(x, t) on [a, b] x [0, T].

`Evolution1D` holds the options every such problem has (interior, boundary and initial point
counts, sampling, test points, and whether the initial (and boundary) data are imposed exactly
by an output transform) and the pieces they share: the initial-value function, and the
transform u = u0(x) + t^k B(x) N(x, t) with B vanishing on the Dirichlet ends.

With a fade time tau > 0 the transform is instead u = e^(-t/tau) u0(x) + (1 - e^(-t/tau)) B(x) N:
still u0 at t = 0, but the network alone once t >> tau. That is for initial data the
solution leaves at once: Allen-Cahn's u0 = x^2 cos(pi x) has u_x(-1) = 2, u_x(1) = -2, a kink
in the periodic extension that diffusion removes for t > 0, while u0 + t N keeps it for ever
(the MLP recipe's error stalled at max |u - u_ref| = 6.3e-3, at the ends, whatever the loss).
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from kanpde.pde.domains import Interval
from kanpde.pde.problem import PDEProblem
from kanpde.pde.timedomain import TimeDomain
from kanpde.validate import ConfigError, check_int


class Evolution1D(PDEProblem):
    """u(x, t) on [a, b] x [0, t_end]; variables ("x", "t").

    Args:
        n_interior: interior collocation points.
        n_boundary: points on the two ends (or periodic pairs).
        n_initial: points on the initial slice.
        sampling: random, mesh, sobol or lhs.
        n_test: test points (against the exact or reference solution).
        hard: impose the initial data (and zero Dirichlet ends, where the problem has them)
            exactly by an output transform instead of loss terms.
    """

    second = "diag"
    x_range: tuple[float, float] = (-1.0, 1.0)
    t_end: float = 1.0
    dirichlet_ends: bool = False  # zero Dirichlet data at both ends (imposed by `hard` too)
    time_power: int = 1  # u = u0 + t^k B N; k = 2 also imposes u_t(x, 0) = 0
    fade: float = 0.0  # tau > 0: u = e^(-t/tau) u0 + (1 - e^(-t/tau)) B N instead (time_power 1 only)

    def __init__(self, n_interior: int, n_boundary: int, n_initial: int, sampling: str, n_test: int, hard: bool):
        super().__init__(n_interior, n_boundary, sampling, n_test)
        self.n_initial = check_int(n_initial, "problem.n_initial", minimum=1)
        if not isinstance(hard, bool):
            raise ConfigError(f"problem.hard must be true or false, got {hard!r}")
        self.hard = hard
        self.domain = TimeDomain(Interval(*self.x_range), 0.0, self.t_end)

    @abc.abstractmethod
    def initial(self, x: Tensor) -> Tensor:
        """(N, 1) u(x, 0) at space-time points x (N, 2) (the t column is ignored)."""

    def constraint(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        if not self.hard:
            return None
        t = x[:, 1:2]
        if self.fade > 0:
            keep = torch.exp(-t / self.fade)
            a, b = keep * self.initial(x), 1 - keep
        else:
            a, b = self.initial(x), t**self.time_power
        if self.dirichlet_ends:
            a0, b0 = self.x_range
            b = b * (x[:, :1] - a0) * (b0 - x[:, :1]) * (4 / (b0 - a0) ** 2)
        return a, b
