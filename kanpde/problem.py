"""What the solver minimises: problems, their conditions, and the derivative fields they read.

`Problem` is the abstract contract the trainer and the run record rely on: sample training data
once, turn a model and that data into named, weighted loss terms, and measure a model on held-out
test data. `PDEProblem` is the physics-informed kind: a domain, a residual written with named
derivatives (`Fields`), and boundary/initial conditions, each a `Condition` with its own points.
A supervised problem (a data fit, e.g. the mobility-edge classifiers) subclasses `Problem`
directly.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor, nn

from kanpde.derivatives import Jet, jet, pairs
from kanpde.geometry import SAMPLINGS, Domain, uniform_in_box
from kanpde.validate import check_choice, check_int

Data = dict[str, Tensor]


class Fields:
    """Named derivatives of u at N points, read from a `Jet`.

    Args:
        jet: value (N, m), grad (N, m, d), second channels (N, m, P).
        variables: names of the d coordinates, e.g. ("x", "y") or ("t", "x").
    """

    def __init__(self, jet: Jet, variables: tuple[str, ...]):
        self.jet, self.variables = jet, variables

    @property
    def value(self) -> Tensor:
        """(N, m) u."""
        return self.jet.value

    @property
    def grad(self) -> Tensor:
        """(N, m, d) du/dx_a."""
        return self.jet.grad

    def _axis(self, name: str) -> int:
        if name not in self.variables:
            raise KeyError(f"no variable {name!r}; this problem's variables are {self.variables}")
        return self.variables.index(name)

    def d(self, *names: str) -> Tensor:
        """(N, m) derivative by variable names: d("x") = u_x, d("x", "x") = u_xx, d("x", "y")."""
        if len(names) == 1:
            return self.jet.grad[..., self._axis(names[0])]
        if len(names) != 2:
            raise ValueError("derivatives of order 1 or 2 are available")
        a, b = sorted(self._axis(n) for n in names)
        chans = pairs(self.jet.mode, len(self.variables))
        if (a, b) not in chans:
            raise ValueError(
                f"u_{''.join(names)} needs second = 'full' (or 'diag' for pure second derivatives); "
                f"this problem declares second = {self.jet.mode!r}"
            )
        return self.jet.second[..., chans.index((a, b))]

    @property
    def laplacian(self) -> Tensor:
        """(N, m) sum_a u_{x_a x_a}."""
        if self.jet.mode == "laplacian":
            return self.jet.second[..., 0]
        if self.jet.mode == "none":
            raise ValueError("the Laplacian needs second = 'laplacian', 'diag' or 'full'")
        return sum(self.d(v, v) for v in self.variables)


class Problem(abc.ABC):
    """Anything the solver can minimise. Subclasses are final and registered by name."""

    in_dim: int
    out_dim: int
    variables: tuple[str, ...]

    @abc.abstractmethod
    def sample(self, generator: torch.Generator) -> Data:
        """Training data, drawn once per run (float64, CPU; the trainer moves it)."""

    @abc.abstractmethod
    def losses(self, model: nn.Module, data: Data, fast: bool = True) -> dict[str, Tensor]:
        """Weighted loss terms (scalars) whose sum is minimised."""

    @abc.abstractmethod
    def test_data(self, generator: torch.Generator) -> Data:
        """Held-out data for `metrics`."""

    @abc.abstractmethod
    def metrics(self, model: nn.Module, test: Data) -> dict[str, float]:
        """Error measures of `model` on the test data."""

    @abc.abstractmethod
    def grid_samples(self, data: Data) -> Tensor:
        """(N, d) inputs that grid updates follow."""


class Condition(abc.ABC):
    """A constraint on part of the domain with its own points and loss."""

    @abc.abstractmethod
    def points(self, domain: Domain, n: int, sampling: str, generator: torch.Generator) -> Tensor:
        """(n', d) points where the condition holds."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, x: Tensor, fast: bool) -> Tensor:
        """Scalar mean squared violation at x (N, d)."""


class Dirichlet(Condition):
    """u = g on the boundary; g(x: (N, d)) -> (N, m), zero when not given."""

    def __init__(self, value: Callable[[Tensor], Tensor] | None = None):
        self.value = value

    def points(self, domain: Domain, n: int, sampling: str, generator: torch.Generator) -> Tensor:
        return domain.boundary(n, sampling, generator)

    def loss(self, model: nn.Module, x: Tensor, fast: bool) -> Tensor:
        u = model(x)
        target = self.value(x) if self.value is not None else torch.zeros_like(u)
        return ((u - target) ** 2).mean()


class PDEProblem(Problem):
    """A physics-informed problem: residual on interior points plus conditions.

    Subclasses set `domain`, `variables`, `second` (which second derivatives the residual reads:
    "none", "laplacian", "diag" or "full") and define `residual`, `conditions` and, when known,
    `exact`. The loss is  weights["pde"] * mean(residual^2) + sum_c weights[c] * loss_c.

    Args:
        n_interior: interior collocation points.
        n_boundary: points for each condition.
        sampling: "random" (uniform) or "mesh".
        n_test: random test points for the metrics.
    """

    domain: Domain
    second: str = "laplacian"

    def __init__(self, n_interior: int, n_boundary: int, sampling: str, n_test: int):
        self.n_interior = check_int(n_interior, "problem.n_interior", minimum=1)
        self.n_boundary = check_int(n_boundary, "problem.n_boundary", minimum=1)
        self.sampling = check_choice(sampling, "problem.sampling", SAMPLINGS)
        self.n_test = check_int(n_test, "problem.n_test", minimum=1)

    @property
    def in_dim(self) -> int:
        return self.domain.dim

    out_dim = 1

    @abc.abstractmethod
    def residual(self, x: Tensor, u: Fields) -> Tensor:
        """(N, m) PDE residual at interior points x (N, d)."""

    @abc.abstractmethod
    def conditions(self) -> dict[str, Condition]:
        """Named boundary/initial conditions."""

    @abc.abstractmethod
    def weights(self) -> dict[str, float]:
        """Loss weight per term: "pde" and each condition's name."""

    def exact(self, x: Tensor) -> Tensor | None:
        """(N, m) the exact solution at x (N, d), or None when unknown."""
        return None

    def sample(self, generator: torch.Generator) -> Data:
        data = {"interior": self.domain.interior(self.n_interior, self.sampling, generator)}
        for name, cond in self.conditions().items():
            data[name] = cond.points(self.domain, self.n_boundary, self.sampling, generator)
        return data

    def grid_samples(self, data: Data) -> Tensor:
        return data["interior"]

    def fields(self, model: nn.Module, x: Tensor, fast: bool = True) -> Fields:
        """The derivatives the residual needs, on the model's fastest path when `fast`."""
        return Fields(jet(model, x, self.second, fast), self.variables)

    def losses(self, model: nn.Module, data: Data, fast: bool = True) -> dict[str, Tensor]:
        w = self.weights()
        x = data["interior"]
        res = self.residual(x, self.fields(model, x, fast))
        terms = {"pde": w["pde"] * (res**2).mean()}
        for name, cond in self.conditions().items():
            terms[name] = w[name] * cond.loss(model, data[name], fast)
        return terms

    def test_data(self, generator: torch.Generator) -> Data:
        """Random test points x (N, d), with the exact u (N, m) and grad_u (N, m, d) if known."""
        lower, upper = self.domain.bounding_box()
        x = uniform_in_box(lower, upper, self.n_test, generator)
        if self.exact(x[:1]) is None:
            return {"x": x}
        u, grad = self.exact_jet(x)
        return {"x": x, "u": u, "grad_u": grad}

    def exact_jet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact (N, m) values and (N, m, d) gradients, the gradient by autograd of `exact`."""
        x = x.detach().requires_grad_(True)
        u = self.exact(x)
        if u is None:
            raise ValueError(f"{type(self).__name__} has no exact solution")
        grads = [torch.autograd.grad(u[:, c].sum(), x, retain_graph=True)[0] for c in range(u.shape[1])]
        return u.detach(), torch.stack(grads, dim=1)

    def metrics(self, model: nn.Module, test: Data) -> dict[str, float]:
        """L2 error squared (mean squared error), H1 error squared (plus the mean squared
        gradient error), relative L2 and max error on the test points; {} without `exact`."""
        if "u" not in test:
            return {}
        x, ue, ge = test["x"], test["u"].double(), test["grad_u"].double()
        j = jet(model, x.to(next(model.parameters()).dtype), "none", fast=True)
        u, g = j.value.detach().double(), j.grad.detach().double()
        err2 = ((u - ue) ** 2).sum(dim=1)  # (N,)
        gerr2 = ((g - ge) ** 2).sum(dim=(1, 2))
        return {
            "l2_sq": float(err2.mean()),
            "h1_sq": float((err2 + gerr2).mean()),
            "rel_l2": float((err2.sum() / (ue**2).sum()).sqrt()),
            "max_err": float((u - ue).abs().max()),
        }

