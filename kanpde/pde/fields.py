"""Named derivatives of the solution, as a residual reads them: `u.d("x", "x")`, `u["v"].d("t")`.

A `Fields` object wraps one `Jet` (value, gradient and second-derivative channels pushed forward
through the network in one pass) with the problem's variable and output names. Derivatives of
order three and more (KdV's u_xxx, a beam's u_xxxx) are taken by autograd on top of the jet's
second-derivative channels, with the graph kept so that they train like the rest; the problem
declares `order = 3` (or 4) so that the points require grad before the jet is taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kanpde.nn.derivatives import Jet, pairs


class Fields:
    """Named derivatives of u (or of one component of it) at N points.

    Args:
        jet: value (N, m), grad (N, m, d), second channels (N, m, P).
        variables: names of the d coordinates, e.g. ("x", "y") or ("x", "t").
        outputs: names of the m components, e.g. ("u",) or ("u", "v", "p").
        x: (N, d) the points the jet was taken at; needed (requiring grad) for derivatives of
            order three and more.
    """

    def __init__(self, jet: Jet, variables: Sequence[str], outputs: Sequence[str] = ("u",), x: Tensor | None = None):
        self.jet, self.variables, self.outputs, self.x = jet, tuple(variables), tuple(outputs), x
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
        j = self.jet
        part = Jet(j.value[:, c : c + 1], j.grad[:, c : c + 1], j.second[:, c : c + 1], j.mode)
        return Fields(part, self.variables, (name,), self.x)

    def _axis(self, name: str) -> int:
        if name not in self.variables:
            raise KeyError(f"no variable {name!r}; this problem's variables are {self.variables}")
        return self.variables.index(name)

    def _second(self, a: int, b: int) -> Tensor | None:
        chans = pairs(self.jet.mode, len(self.variables))
        a, b = min(a, b), max(a, b)
        return self.jet.second[..., chans.index((a, b))] if (a, b) in chans else None

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
                base = self._second(axes[i], axes[j])
                if base is not None:
                    rest = axes[:i] + axes[i + 1 : j] + axes[j + 1 :]
                    return self._higher(base, rest, names)
        if len(axes) == 2 and self.jet.mode != "none":
            raise ValueError(f"u_{''.join(names)} needs second = 'full' (or 'diag' for pure second "
                             f"derivatives); this problem declares second = {self.jet.mode!r}")
        return self._higher(self.jet.grad[..., axes[0]], axes[1:], names)

    def _higher(self, base: Tensor, axes: list[int], names: tuple[str, ...]) -> Tensor:
        """d/dx_{axes[-1]} ... d/dx_{axes[0]} of base (N, m), by autograd with the graph kept."""
        if not axes:
            return base
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
