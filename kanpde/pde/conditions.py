"""Conditions: declarative constraints on part of a domain, each with its own points and loss.

Each condition samples its points once per run (`sample`: a dict of tensors, "x" (n, d) always,
plus "normal", "target", "pair" where it needs them) and turns the solution at those points into
violations (`residuals`, (n,) or (n, k)), whose mean square is its loss (`loss`): a
least-squares optimiser (`kanpde.optim`) reads the residuals, the others the loss. Where it holds is a `where` (see `kanpde.pde.domains`):
a part name, a list of names, or a predicate. Values are functions of the points, x (N, d) ->
(N, m) (or (N,) for one component), or None for zero.

    Dirichlet(value, where)                u = g
    Neumann(value, where)                  du/dn = g            (outward normal)
    Robin(alpha, beta, value, where)       alpha u + beta du/dn = g
    Periodic(variable, derivatives)        u and its first `derivatives` derivatives along
                                           `variable` agree on the two opposite faces
    Initial(value)                         u(x, t0) = u0(x)
    InitialVelocity(value, variable="t")   u_t(x, t0) = v0(x)
    Observations(value, n, noise)          u = data at scattered points (an inverse problem's data)

`component` restricts a condition to one output of a system (component="p") or to several
(component=("u", "v")).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
from torch import Tensor

from kanpde.pde.domains import Domain, Where
from kanpde.pde.fields import Fields
from kanpde.validate import ConfigError, check_int, check_number

Value = Callable[[Tensor], Tensor] | float | None


class Evaluator(abc.ABC):
    """What a condition sees of the solution (`kanpde.pde.problem.PDEProblem.evaluator`)."""

    variables: tuple[str, ...]
    outputs: tuple[str, ...]

    @abc.abstractmethod
    def __call__(self, x: Tensor) -> Tensor:
        """(N, m) u at x (N, d)."""

    @abc.abstractmethod
    def fields(self, x: Tensor, second: str = "none") -> Fields:
        """Named derivatives at x (N, d); second-derivative channels per `second`."""


class Condition(abc.ABC):
    """A constraint with its own points. Subclasses define `residuals` (and `sample` where the
    boundary part's points and normals are not what they need); `loss` is their mean square.

    Attributes:
        where: the boundary part it holds on.
        component: the output(s) it constrains: a name, a tuple of names, None for all.
        n: its number of points (None: the problem's n_boundary).
    """

    where: Where = None
    component: str | tuple[str, ...] | None = None
    n: int | None = None

    def sample(self, domain: Domain, n: int, sampling: str, generator: torch.Generator) -> dict[str, Tensor]:
        """{"x": (n', d), "normal": (n', d)} on the part `where` names."""
        x, normal = domain.boundary(n, sampling, generator, self.where)
        return {"x": x, "normal": normal}

    @abc.abstractmethod
    def residuals(self, u: Evaluator, points: dict[str, Tensor]) -> Tensor:
        """(n,) or (n, k) violations at the sampled points, scaled so that `loss` is their mean square."""

    def loss(self, u: Evaluator, points: dict[str, Tensor]) -> Tensor:
        """Scalar mean squared violation at the sampled points: mean(residuals^2)."""
        return self.residuals(u, points).pow(2).mean()

    def _pick(self, u: Evaluator, values: Tensor) -> Tensor:
        """(N, k) the constrained components of (N, m) values (all of them for None)."""
        if self.component is None:
            return values
        names = [self.component] if isinstance(self.component, str) else list(self.component)
        for name in names:
            if name not in u.outputs:
                raise ConfigError(f"condition component {name!r} is not an output; allowed: {', '.join(u.outputs)}")
        return values[:, [u.outputs.index(n) for n in names]]


def evaluate(value: Value, x: Tensor, like: Tensor) -> Tensor:
    """A condition's value at x (N, d) in the shape of `like` (N, k): a number, a function's
    (N, k) or (N,) output, or zero for None."""
    if value is None:
        return torch.zeros_like(like)
    if isinstance(value, (int, float)):
        return torch.full_like(like, float(value))
    out = value(x)
    out = out.reshape(-1, 1) if out.ndim == 1 else out
    return out.to(like).expand_as(like)


class Dirichlet(Condition):
    """u = g on `where` (default: the whole boundary)."""

    def __init__(self, value: Value = None, where: Where = None, component: str | None = None, n: int | None = None):
        self.value, self.where, self.component, self.n = value, where, component, n

    def residuals(self, u, points):
        x = points["x"]
        got = self._pick(u, u(x))
        return got - evaluate(self.value, x, got)


class Neumann(Condition):
    """du/dn = g on `where`, n the outward unit normal (from the jet's gradient)."""

    def __init__(self, value: Value = None, where: Where = None, component: str | None = None, n: int | None = None):
        self.value, self.where, self.component, self.n = value, where, component, n

    def residuals(self, u, points):
        x = points["x"]
        dn = self._pick(u, u.fields(x).normal(points["normal"]))
        return dn - evaluate(self.value, x, dn)


class Robin(Condition):
    """alpha u + beta du/dn = g on `where`."""

    def __init__(self, alpha: float, beta: float, value: Value = None, where: Where = None,
                 component: str | None = None, n: int | None = None):
        self.alpha = check_number(alpha, "Robin alpha")
        self.beta = check_number(beta, "Robin beta")
        self.value, self.where, self.component, self.n = value, where, component, n

    def residuals(self, u, points):
        x = points["x"]
        f = u.fields(x)
        lhs = self._pick(u, self.alpha * f.value + self.beta * f.normal(points["normal"]))
        return lhs - evaluate(self.value, x, lhs)


class Periodic(Condition):
    """u(x with v = lower) = u(x with v = upper) along variable v, and its first `derivatives`
    derivatives along v (0, 1 or 2), on points paired across the two faces.

    The loss is the sum over the T = 1 + derivatives matched quantities of each one's mean squared
    mismatch; the residuals are the T mismatches side by side, (n, T k), times sqrt(T), so that
    their mean square is that sum."""

    def __init__(self, variable: str, derivatives: int = 1, component: str | None = None, n: int | None = None):
        self.variable = variable
        self.derivatives = check_int(derivatives, "Periodic derivatives", minimum=0, maximum=2)
        self.component, self.n = component, n

    def sample(self, domain, n, sampling, generator):
        if self.variable not in domain.variables:
            raise ConfigError(f"periodic variable {self.variable!r} is not a variable of this domain; "
                              f"allowed: {', '.join(domain.variables)}")
        axis = domain.variables.index(self.variable)
        x, _ = domain.boundary(n, sampling, generator, f"{self.variable}_min")
        pair = x.clone()
        pair[:, axis] = domain.bounding_box()[1][axis]
        return {"x": x, "pair": pair}

    def residuals(self, u, points):
        a, b = points["x"], points["pair"]
        if self.derivatives == 0:
            return self._pick(u, u(a)) - self._pick(u, u(b))
        second = "diag" if self.derivatives == 2 else "none"
        fa, fb = u.fields(a, second), u.fields(b, second)
        v = self.variable
        gaps = [self._pick(u, fa.value) - self._pick(u, fb.value)]  # T tensors (n, k)
        for names in [(v,), (v, v)][: self.derivatives]:
            gaps.append(self._pick(u, fa.d(*names)) - self._pick(u, fb.d(*names)))
        return torch.cat(gaps, dim=1) * math.sqrt(len(gaps))


class Initial(Dirichlet):
    """u(x, t0) = u0(x) on a time domain's initial slice; u0 sees the space-time points (N, d)."""

    def __init__(self, value: Value = None, component: str | None = None, n: int | None = None):
        super().__init__(value, "initial", component, n)


class InitialVelocity(Condition):
    """u_t(x, t0) = v0(x) on the initial slice (a wave equation's second initial condition)."""

    def __init__(self, value: Value = None, variable: str = "t", component: str | None = None, n: int | None = None):
        self.value, self.variable, self.where, self.component, self.n = value, variable, "initial", component, n

    def residuals(self, u, points):
        x = points["x"]
        ut = self._pick(u, u.fields(x).d(self.variable))
        return ut - evaluate(self.value, x, ut)


class Observations(Condition):
    """u = data at n scattered points inside the domain: the values of `value` (e.g. the exact
    solution) with Gaussian noise of relative size `noise` (times the values' RMS), drawn from
    the run's generator; or fixed arrays via `from_arrays`.

    Args:
        value: x (N, d) -> (N, m) the noise-free data.
        n: number of observations.
        noise: relative noise level, >= 0.
        where: None (interior points) or a boundary part / slice name ("final": observations at t1).
        sampling: how the observation points are placed ("random", "sobol", "lhs", "mesh").
    """

    def __init__(self, value: Callable[[Tensor], Tensor], n: int = 100, noise: float = 0.0, where: Where = None,
                 component: str | None = None, sampling: str = "random"):
        self.value, self.where, self.component = value, where, component
        self.n = check_int(n, "number of observations", minimum=1)
        self.noise = check_number(noise, "observation noise", minimum=0.0)
        self.sampling = sampling
        self._fixed: tuple[Tensor, Tensor] | None = None

    @classmethod
    def from_arrays(cls, x: Tensor, values: Tensor, component: str | None = None) -> Observations:
        """Observations at given points x (N, d) with given values (N, m) (e.g. loaded from a file)."""
        obs = cls(lambda z: z, n=len(x), component=component)
        obs._fixed = (torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(values, dtype=torch.float64).reshape(len(x), -1))
        return obs

    def sample(self, domain, n, sampling, generator):
        if self._fixed is not None:
            return {"x": self._fixed[0], "target": self._fixed[1]}
        if self.where is None:
            x = domain.interior(self.n, self.sampling, generator)
        else:
            x = domain.boundary(self.n, self.sampling, generator, self.where)[0]
        clean = self.value(x).reshape(len(x), -1).to(torch.float64)
        scale = clean.pow(2).mean().sqrt()
        noisy = clean + self.noise * scale * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
        return {"x": x, "target": noisy}

    def residuals(self, u, points):
        got = self._pick(u, u(points["x"]))
        return got - points["target"].to(got)
