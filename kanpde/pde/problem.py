"""Physics-informed problems: a domain, a residual written with named derivatives, conditions.

A subclass states the maths and nothing else:

    domain      a `kanpde.pde.domains.Domain` (its variables name the residual's derivatives)
    outputs     names of the solution's components, ("u",) or e.g. ("u", "v", "p")
    second      which second derivatives the residual reads: "none", "laplacian", "diag", "full"
    order       the highest derivative order it reads (3 or 4: autograd on top of the jet, forward
                mode under torch.func)
    residual    (x, u: Fields) -> (N, k) residual, or {name: (N, k)} for several equations
    conditions  {name: Condition}
    weights     {term: weight} (default 1 for every term; "pde" for all residual terms)
    exact       the exact solution, or `reference` a classical solver's (kanpde.pde.references)
    constraint  (A, B) of a hard constraint u = A + B N, when the problem imposes one
    init_unknowns  the trainable unknowns of an inverse problem (a module of parameters)

The loss is  sum_k w_k mean(residual_k^2) + sum_c w_c loss_c  (`losses`); the same terms as one
vector r whose sum of squares is that loss, each term's residuals times sqrt(w / n), is
`residual_vector`, what a least-squares optimiser (`kanpde.optim`) works on.  Metrics compare the solution with
the exact or reference solution on held-out points: l2_sq (mean squared error), rel_l2, max_err,
h1_sq where the exact gradient is known, rel_l2_<component> for systems, and for each unknown
its recovered value and error.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import torch
from torch import Tensor, nn

from kanpde.nn.derivatives import jet
from kanpde.nn.kernel import under_functorch
from kanpde.pde.conditions import Condition, Evaluator
from kanpde.pde.domains import Domain
from kanpde.pde.fields import Fields
from kanpde.pde import weighting
from kanpde.pde.jacobian import residual_jacobian, residual_scale
from kanpde.pde.sampling import SAMPLINGS
from kanpde.pde.solution import Solution
from kanpde.problem import Data, Problem
from kanpde.validate import check_choice, check_int

MAX_MESH_POINTS = 200_000  # the recorded solution mesh in 3-D and up is coarser than eval_mesh^d


class _Evaluator(Evaluator):
    def __init__(self, problem: PDEProblem, solution: nn.Module, fast: bool):
        self.problem, self.solution, self.fast = problem, solution, fast
        self.variables, self.outputs = problem.variables, problem.outputs

    def __call__(self, x):
        return self.solution(x)

    def fields(self, x, second="none"):
        return _fields(self.solution, x, second, self.fast, self.variables, self.outputs)


def _fields(solution: nn.Module, x: Tensor, second: str, fast: bool, variables, outputs) -> Fields:
    """Fields of the solution at x (N, d). Under a torch.func transform (where autograd.grad
    cannot run) they carry the jet's maker, for higher derivatives in forward mode."""
    jet_fn = (lambda p: jet(solution, p, second, fast)) if under_functorch() else None
    return Fields(jet(solution, x, second, fast), variables, outputs, x, jet_fn)


class PDEProblem(Problem):
    """See the module docstring.

    Args:
        n_interior: interior collocation points.
        n_boundary: points for each condition that does not set its own number.
        sampling: one of `kanpde.pde.sampling.SAMPLINGS` (random, mesh, sobol, lhs).
        n_test: held-out test points for the metrics.
    """

    domain: Domain
    outputs: tuple[str, ...] = ("u",)
    second: str = "laplacian"
    order: int = 2
    scale_inputs: bool = True  # map the domain's bounding box onto [-1, 1]^d in front of the network
    unknowns: nn.Module | None = None

    def __init__(self, n_interior: int, n_boundary: int, sampling: str, n_test: int):
        self.n_interior = check_int(n_interior, "problem.n_interior", minimum=1)
        self.n_boundary = check_int(n_boundary, "problem.n_boundary", minimum=1)
        self.sampling = check_choice(sampling, "problem.sampling", SAMPLINGS)
        self.n_test = check_int(n_test, "problem.n_test", minimum=1)
        self._reference = None

    @property
    def variables(self) -> tuple[str, ...]:
        return self.domain.variables

    @property
    def in_dim(self) -> int:
        return self.domain.dim

    @property
    def out_dim(self) -> int:
        return len(self.outputs)

    # --- what a subclass states -------------------------------------------------------------

    @abc.abstractmethod
    def residual(self, x: Tensor, u: Fields) -> Tensor | dict[str, Tensor]:
        """(N, k) PDE residual at interior points x (N, d), or {name: (N, k)}."""

    @abc.abstractmethod
    def conditions(self) -> dict[str, Condition]:
        """Named boundary/initial/data conditions."""

    def weights(self) -> dict[str, float]:
        """Loss weight per term (missing terms: "pde"'s weight for residuals, else 1)."""
        return {}

    def exact(self, x: Tensor) -> Tensor | None:
        """(N, m) the exact solution at x (N, d), or None when unknown."""
        return None

    def make_reference(self):
        """The classical solver's solution (`kanpde.pde.references.base.Reference`), or None."""
        return None

    def constraint(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """(A (N, m), B (N, m)) of a hard constraint u = A + B N at x (N, d), or None."""
        return None

    def init_unknowns(self, generator: torch.Generator, dtype: torch.dtype) -> nn.Module | None:
        """The inverse problem's trainable unknowns, or None."""
        return None

    def unknown_metrics(self) -> dict[str, float]:
        """Recovered unknowns and their errors (inverse problems)."""
        return {}

    # --- what the trainer and the run record use ----------------------------------------------

    def reference(self):
        """The reference solution, computed (or read from its cache) once per problem object."""
        if self._reference is None:
            self._reference = self.make_reference()
        return self._reference

    def setup(self, generator, dtype, device):
        unknowns = self.init_unknowns(generator, dtype)
        self.unknowns = None if unknowns is None else unknowns.to(device)

    def parameters(self):
        return [] if self.unknowns is None else list(self.unknowns.parameters())

    def solution(self, model: nn.Module) -> nn.Module:
        """The model behind the input scaling and the hard constraint, or the model itself."""
        lower, upper = self.domain.bounding_box()
        unit = bool((lower == -1).all() and (upper == 1).all())
        probe = self.constraint(torch.zeros(1, self.in_dim, dtype=torch.float64))
        if (unit or not self.scale_inputs) and probe is None:
            return model
        scaled = self.scale_inputs and not unit
        return Solution(model, lower if scaled else None, upper if scaled else None,
                        self.constraint if probe is not None else None)

    def evaluator(self, model: nn.Module, fast: bool = True) -> Evaluator:
        return _Evaluator(self, self.solution(model), fast)

    def sample(self, generator: torch.Generator) -> Data:
        data: Data = {"interior": self.domain.interior(self.n_interior, self.sampling, generator)}
        for name, cond in self.conditions().items():
            data[name] = cond.sample(self.domain, cond.n or self.n_boundary, self.sampling, generator)
        return data

    def resample(self, data: Data, generator: torch.Generator) -> Data:
        x = self.domain.interior(self.n_interior, self.sampling, generator)
        return {**data, "interior": x.to(data["interior"])}

    def grid_samples(self, data: Data) -> Tensor:
        sol = self.solution(nn.Identity())
        return sol.inputs(data["interior"]) if isinstance(sol, Solution) else data["interior"]

    def fields(self, model: nn.Module, x: Tensor, fast: bool = True) -> Fields:
        """The derivatives the residual needs at x (N, d), on the model's fastest path when `fast`."""
        if self.order > 2 and not under_functorch():
            x = x.detach().requires_grad_(True)
        return _fields(self.solution(model), x, self.second, fast, self.variables, self.outputs)

    def term_weight(self, name: str, residual: bool) -> float:
        """A loss term's weight: its entry in `weights`, else "pde"'s for a residual term, else 1."""
        w = self.weights()
        return w.get(name, w.get("pde", 1.0)) if residual else w.get(name, 1.0)

    def weighted_residuals(self, model: nn.Module, data: Data, fast: bool = True) -> dict[str, tuple[float, Tensor]]:
        """Every loss term's weight w and residuals r, the term being w mean(r^2): the PDE
        residual(s) at the interior points, (N, k), times their point weights if the data has
        them, and each condition's (`Condition.residuals`); w includes the data's balancing
        term weights, if any (`kanpde.pde.weighting`)."""
        x = data["interior"]
        res = self.residual(x, self.fields(model, x, fast))
        res = res if isinstance(res, dict) else {"pde": res}
        terms = {k: (self.term_weight(k, True) * weighting.term_factor(data, k), weighting.apply(r, data))
                 for k, r in res.items()}
        u = self.evaluator(model, fast)
        for name, cond in self.conditions().items():
            terms[name] = (self.term_weight(name, False) * weighting.term_factor(data, name),
                           cond.residuals(u, data[name]))
        return terms

    def losses(self, model: nn.Module, data: Data, fast: bool = True) -> dict[str, Tensor]:
        return {k: w * r.pow(2).mean() for k, (w, r) in self.weighted_residuals(model, data, fast).items()}

    def residual_vector(self, model: nn.Module, data: Data, fast: bool = True) -> Tensor:
        """All loss terms as one vector r, differentiable w.r.t. the model's parameters (and an
        inverse problem's unknowns), with sum(r^2) = sum(losses(...).values()).

        Returns:
            (R,): each term's residuals, flattened, times sqrt(w / n) for its weight w and its
            n entries, in the order of `losses`.
        """
        parts = [r.reshape(-1) * residual_scale(name, w, r.numel())
                 for name, (w, r) in self.weighted_residuals(model, data, fast).items() if r.numel()]
        return torch.cat(parts)

    def residual_jacobian(self, model: nn.Module, data: Data) -> tuple[Tensor, Tensor]:
        """`residual_vector` (R,) and its Jacobian (R, P) w.r.t. `list(model.parameters()) +
        self.parameters()`, point by point (`kanpde.pde.jacobian`; needs `pointwise_ok`)."""
        return residual_jacobian(self, model, data)

    def test_data(self, generator: torch.Generator) -> Data:
        """Held-out points x (N, d) with the exact u (N, m) and grad_u (N, m, d), or the reference
        u at a random subset of its grid points, or x alone."""
        x = self.domain.interior(self.n_test, "random", generator)
        if self.exact(x[:1]) is not None:
            u, grad = self.exact_jet(x)
            return {"x": x, "u": u, "grad_u": grad}
        ref = self.reference()
        if ref is None:
            return {"x": x}
        pts, vals = ref.points()
        pick = torch.randperm(len(pts), generator=generator)[: self.n_test]
        return {"x": torch.from_numpy(pts)[pick], "u": torch.from_numpy(vals)[pick]}

    def exact_jet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact (N, m) values and (N, m, d) gradients, the gradient by autograd of `exact`."""
        x = x.detach().requires_grad_(True)
        u = self.exact(x)
        if u is None:
            raise ValueError(f"{type(self).__name__} has no exact solution")
        grads = [torch.autograd.grad(u[:, c].sum(), x, retain_graph=True, allow_unused=True)[0]
                 for c in range(u.shape[1])]
        grads = [torch.zeros_like(x) if g is None else g for g in grads]
        return u.detach(), torch.stack(grads, dim=1)

    def metrics(self, model: nn.Module, test: Data) -> dict[str, float]:
        out = dict(self.unknown_metrics())
        if "u" not in test:
            return out
        x, ue = test["x"], test["u"].double()
        p = next(model.parameters())
        x = x.to(p.device, p.dtype)
        if "grad_u" in test:
            j = jet(self.solution(model), x, "none", fast=True)
            u, g = j.value.detach().double(), j.grad.detach().double()
        else:
            with torch.no_grad():
                u = self.solution(model)(x).double()
        err2 = ((u - ue) ** 2).sum(dim=1)  # (N,)
        out.update({"l2_sq": float(err2.mean()), "rel_l2": float((err2.sum() / (ue**2).sum()).sqrt()),
                    "max_err": float((u - ue).abs().max())})
        if "grad_u" in test:
            out["h1_sq"] = float((err2 + ((g - test["grad_u"].double()) ** 2).sum(dim=(1, 2))).mean())
        if self.out_dim > 1:
            for c, name in enumerate(self.outputs):
                norm = float((ue[:, c] ** 2).sum().sqrt())
                diff = float(((u[:, c] - ue[:, c]) ** 2).sum().sqrt())
                out[f"rel_l2_{name}"] = diff / norm if norm > 0 else math.nan
        return out

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        """(N, m) the solution at x (N, d), float64 on the CPU, no graph."""
        p = next(model.parameters())
        with torch.no_grad():
            return self.solution(model)(x.to(p.device, p.dtype)).double().cpu()

    def record_fields(self, model: nn.Module, n: int) -> dict[str, np.ndarray]:
        """The solution on an n^d mesh of the bounding box (coarser in 3-D and up): x, inside,
        u_pred, and u_exact or u_ref where known (NaN outside the domain)."""
        n = min(n, max(2, math.floor(MAX_MESH_POINTS ** (1 / self.in_dim))))
        x = self.domain.mesh(n)
        inside = self.domain.contains(x)
        fields = {"x": x.numpy(), "inside": inside.numpy(), "u_pred": self.predict(model, x).numpy()}
        exact = self.exact(x)
        if exact is not None:
            fields["u_exact"] = exact.detach().numpy()
        elif (ref := self.reference()) is not None:
            fields["u_ref"] = ref(x.numpy())
        return fields
