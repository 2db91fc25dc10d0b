"""Named derivatives of the solution, as a residual reads them: `u.d("x", "x")`, `u["v"].d("t")`.

A `Fields` object wraps one `Jet` (value, gradient and second-derivative channels pushed forward
through the network in one pass) with the problem's variable and output names. Derivatives of
order three and more (KdV's u_xxx, a beam's u_xxxx) are taken by autograd on top of the jet's
second-derivative channels, with the graph kept so that they train like the rest; the problem
declares `order = 3` (or 4) so that the points require grad before the jet is taken. Under a
torch.func transform (Levenberg-Marquardt's per-point Jacobian, `kanpde.pde.jacobian`), where
autograd.grad cannot run, they are forward-mode derivatives instead: `torch.func.jacfwd` of the
jet's channel as a function of one point, vmapped over the points, from the `jet_fn` that made
the jet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kanpde.nn.derivatives import Jet, pairs


class Fields:
    """Named derivatives of u (or of one component of it) at N points.

    Args:
        jet: value (N, m), grad (N, m, d), second channels (N, m, P).
        variables: names of the d coordinates, e.g. ("x", "y") or ("x", "t").
        outputs: names of the m components, e.g. ("u",) or ("u", "v", "p").
        x: (N, d) the points the jet was taken at; needed (requiring grad, or with `jet_fn`)
            for derivatives of order three and more.
        jet_fn: maps points (n, d) to their jet as `jet` was made; given, derivatives of order
            three and more are taken from it in forward mode (for use under torch.func).
    """

    def __init__(self, jet: Jet, variables: Sequence[str], outputs: Sequence[str] = ("u",), x: Tensor | None = None,
                 jet_fn: Callable[[Tensor], Jet] | None = None):
        self.jet, self.variables, self.outputs, self.x = jet, tuple(variables), tuple(outputs), x
        self.jet_fn = jet_fn
        if jet.value.shape[1] != len(self.outputs):
            raise ValueError(f"the model has {jet.value.shape[1]} outputs, the problem names {len(self.outputs)}: "
                             f"{self.outputs}")

    @property
    def value(self) -> Tensor:
        """(N, m) u."""
        return self.jet.value

    @property
    def grad(self) -> Tensor:
        """(N, m, d) du_c/dx_a."""
        return self.jet.grad

    def __getitem__(self, name: str) -> Fields:
        """The fields of one output component, e.g. u["p"]: value (N, 1)."""
        if name not in self.outputs:
            raise KeyError(f"no output {name!r}; this problem's outputs are {self.outputs}")
        c = self.outputs.index(name)
        part_fn = None if self.jet_fn is None else (lambda x, fn=self.jet_fn: _component(fn(x), c))
        return Fields(_component(self.jet, c), self.variables, (name,), self.x, part_fn)

    def _axis(self, name: str) -> int:
        if name not in self.variables:
            raise KeyError(f"no variable {name!r}; this problem's variables are {self.variables}")
        return self.variables.index(name)

    def _channel(self, a: int, b: int) -> int | None:
        """The jet's second-derivative channel holding u_{x_a x_b}, or None."""
        chans = pairs(self.jet.mode, len(self.variables))
        a, b = min(a, b), max(a, b)
        return chans.index((a, b)) if (a, b) in chans else None

    def d(self, *names: str, component: str | None = None) -> Tensor:
        """Derivative by variable names: d("x") = u_x, d("x", "x") = u_xx, d("x", "y"), and of any
        higher order, d("x", "x", "x") = u_xxx (autograd on top of the jet; see module docstring).

        Args:
            names: one variable name per differentiation.
            component: an output name to read only that component.

        Returns:
            (N, m), or (N, 1) with `component`.
        """
        if component is not None:
            return self[component].d(*names)
        if not names:
            return self.value
        axes = [self._axis(n) for n in names]
        if len(axes) == 1:
            return self.jet.grad[..., axes[0]]
        for i in range(len(axes)):  # start from a second-derivative channel the jet has
            for j in range(i + 1, len(axes)):
                c = self._channel(axes[i], axes[j])
                if c is not None:
                    rest = axes[:i] + axes[i + 1 : j] + axes[j + 1 :]
                    return self._higher(lambda jet, c=c: jet.second[..., c], rest, names)
        if len(axes) == 2 and self.jet.mode != "none":
            raise ValueError(f"u_{''.join(names)} needs second = 'full' (or 'diag' for pure second "
                             f"derivatives); this problem declares second = {self.jet.mode!r}")
        return self._higher(lambda jet, a=axes[0]: jet.grad[..., a], axes[1:], names)

    def _higher(self, select: Callable[[Jet], Tensor], axes: list[int], names: tuple[str, ...]) -> Tensor:
        """d/dx_{axes[-1]} ... d/dx_{axes[0]} of select(jet) (N, m): by autograd with the graph
        kept, or in forward mode from `jet_fn` where one was given."""
        base = select(self.jet)
        if not axes:
            return base
        if self.jet_fn is not None and self.x is not None:
            return _forward_higher(lambda x: select(self.jet_fn(x)), self.x, axes)
        if self.x is None or not self.x.requires_grad:
            raise ValueError(f"u_{''.join(names)} is of order {len(names)}: declare order = {len(names)} "
                             "on the problem so that its points carry a graph")
        for a in axes:
            cols = []
            for c in range(base.shape[1]):
                (g,) = torch.autograd.grad(base[:, c].sum(), self.x, create_graph=True, allow_unused=True)
                cols.append(torch.zeros_like(base[:, c]) if g is None else g[:, a])
            base = torch.stack(cols, dim=1)
        return base

    @property
    def laplacian(self) -> Tensor:
        """(N, m) sum_a u_{x_a x_a} over all variables (a spatial Laplacian in a time-dependent
        problem is `sum(u.d(v, v) for v in space)`)."""
        if self.jet.mode == "laplacian":
            return self.jet.second[..., 0]
        if self.jet.mode == "none":
            raise ValueError("the Laplacian needs second = 'laplacian', 'diag' or 'full'")
        return sum(self.d(v, v) for v in self.variables)

    def normal(self, normal: Tensor) -> Tensor:
        """(N, m) du/dn = grad u . n for unit normals n (N, d)."""
        return (self.jet.grad * normal.unsqueeze(1)).sum(dim=-1)


def _component(jet: Jet, c: int) -> Jet:
    """The jet of output component c alone: value (N, 1), grad (N, 1, d), second (N, 1, P)."""
    return Jet(jet.value[:, c : c + 1], jet.grad[:, c : c + 1], jet.second[:, c : c + 1], jet.mode)


def _forward_higher(base_fn: Callable[[Tensor], Tensor], x: Tensor, axes: list[int]) -> Tensor:
    """d/dx_{axes[-1]} ... d/dx_{axes[0]} of base_fn at each of the points x (N, d), where
    base_fn maps (n, d) -> (n, m) point by point: nested `torch.func.jacfwd` at one point,
    vmapped over the N points. Returns (N, m)."""
    def at(fn, a):
        return lambda p: torch.func.jacfwd(fn)(p)[:, a]  # (m, d) -> (m,)

    fn = lambda p: base_fn(p.unsqueeze(0))[0]  # (d,) -> (m,)
    for a in axes:
        fn = at(fn, a)
    return torch.func.vmap(fn)(x)
