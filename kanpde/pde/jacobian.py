"""The residual vector's term scaling, and its Jacobian w.r.t. the trainable parameters point by point.

Every row of `PDEProblem.residual_vector` depends on one sampled point only (an interior point,
a boundary point, a periodic pair, an observation), so its Jacobian J (R x P) is a stack of
per-point gradients: `torch.func.vmap` over the points of `torch.func.jacrev` of the residual
at one point. That costs
about as much as a few batched forward-backward passes, where a generic Jacobian of an opaque
r(theta) needs min(R, P) passes: on the paper's Poisson problem (KAN [2, 10, 1], R = 10,800;
one thread, AMD EPYC) 0.3 s at G = 5 (P = 281) and 2.0 s at G = 40 (P = 1331), against 46-73 s
at G = 5 for the generic routes (`kanpde.optim.jacobian`).

Under torch.func the C++ kernel is bypassed (`kanpde.nn.kernel.under_functorch`): the jets run
on the model's torch path, the same numbers. It needs forward-propagated jets throughout: a
model with `push` (KAN without symbolic edges or multiplication nodes, MLP); derivatives of order
three and more are forward-mode derivatives of the jet there (`kanpde.pde.fields`);
`pointwise_ok` says whether that holds, and `kanpde.optim.jacobian.jacobian`
(generic) is the fallback. A hard constraint's closed forms A, B are differentiated by torch.func
there (`kanpde.nn.derivatives.func_jet`), since autograd.grad cannot run inside the transform.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kanpde.pde import weighting
from kanpde.problem import Data
from kanpde.validate import ConfigError

CHUNK = 1024  # points per vmap chunk: bounds the per-point graphs' memory (fastest of 512-4096 here)


class _Trainables(nn.Module):
    """The model and an inverse problem's unknowns as one module, so that `functional_call` can
    swap all their parameters; `forward(fn, *args)` runs fn with them swapped."""

    def __init__(self, model: nn.Module, unknowns: nn.Module | None):
        super().__init__()
        self.model = model
        self.unknowns = unknowns

    def forward(self, fn, *args):
        return fn(*args)


def residual_scale(name: str, weight: float, n: int) -> float:
    """sqrt(w / n): the factor that makes a term's n residuals' sum of squares its loss w mean(r^2)."""
    if not weight >= 0:
        raise ConfigError(f"loss weight of term {name!r} must be >= 0 for a residual vector, got {weight!r}")
    return math.sqrt(weight / n)


def pointwise_ok(problem, model: nn.Module) -> bool:
    """Whether `residual_jacobian` can take the per-point route for this problem and model."""
    fast = hasattr(model, "push") and getattr(model, "fast_jet", True)
    return fast


def residual_jacobian(problem, model: nn.Module, data: Data, chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """The residual vector and its Jacobian, per point (see the module docstring).

    Args:
        problem: a `kanpde.pde.problem.PDEProblem` (after `setup`, for its unknowns).
        model: the network; `pointwise_ok(problem, model)` must hold.
        data: its training data (`problem.sample`).
        chunk: points per vmap chunk.

    Returns:
        r (R,) as `problem.residual_vector(model, data)` (detached), and J (R, P) float64,
        J[i, j] = d r_i / d theta_j, the columns following `list(model.parameters()) +
        problem.parameters()`, each parameter flattened.
    """
    if not pointwise_ok(problem, model):
        raise ValueError(f"{type(problem).__name__} with {type(model).__name__}: no per-point Jacobian "
                         "(a model without forward jets); use the generic one")
    both = _Trainables(model, problem.unknowns)
    names = [k for k, _ in both.named_parameters()]
    params = {k: p.detach() for k, p in both.named_parameters()}
    conditions = problem.conditions()

    def interior(ps, x):  # the residual terms at one interior point x (d,): {term: (k,)}
        def fn(x):
            res = problem.residual(x, problem.fields(model, x, True))
            return {k: v.reshape(-1) for k, v in (res if isinstance(res, dict) else {"pde": res}).items()}
        out = torch.func.functional_call(both, ps, (fn, x.unsqueeze(0)))
        return out, out

    def condition(name):
        def rows(ps, points):  # one condition's residuals at one sampled point: (k,)
            def fn(points):
                return conditions[name].residuals(problem.evaluator(model, True), points).reshape(-1)
            out = torch.func.functional_call(both, ps, (fn, {k: v.unsqueeze(0) for k, v in points.items()}))
            return out, out
        return rows

    def per_point(fn, points) -> tuple[dict, dict]:
        jac = torch.func.vmap(torch.func.jacrev(fn, has_aux=True), in_dims=(None, 0), chunk_size=chunk)
        return jac(params, points)

    terms: dict[str, tuple[Tensor, Tensor]] = {}  # name: (values (n, k), jacobian (n, k, P))
    grads, values = per_point(interior, data["interior"])
    m = data.get(weighting.KEY)  # (N,) point weights of the interior residuals, if any
    for term, value in values.items():
        jac = _flat(grads[term], names)
        if m is not None:
            value, jac = value * m.to(value)[:, None], jac * m.to(jac)[:, None, None]
        terms[term] = (value, jac)
    for name in conditions:
        grads, value = per_point(condition(name), data[name])
        terms[name] = (value, _flat(grads, names))
    rs, js = [], []
    for name, (value, jac) in terms.items():
        if value.numel():
            w = problem.term_weight(name, name not in conditions) * weighting.term_factor(data, name)
            scale = residual_scale(name, w, value.numel())
            rs.append(value.reshape(-1) * scale)
            js.append(jac.reshape(value.numel(), -1) * scale)
    return torch.cat(rs).detach(), torch.cat(js).to(torch.float64).detach()


def _flat(grads: dict[str, Tensor], names: list[str]) -> Tensor:
    """(n, k, P) from per-parameter gradients {name: (n, k, *shape)} in the order of `names`."""
    n, k = next(iter(grads.values())).shape[:2]
    return torch.cat([grads[name].reshape(n, k, -1) for name in names], dim=2)
