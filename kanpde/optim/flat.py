"""The parameters of a full-batch optimiser as one flat vector: its gradient, steps along a
direction, and the line search's objective along it (what L-BFGS and the dense quasi-Newton
methods share)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class FlatParams:
    """A list of parameters seen as one vector of their n elements in order.

    Args:
        params: the tensors.
        dtype: the dtype the flat gradient is returned in (None: the parameters').
    """

    def __init__(self, params: list[Tensor], dtype: torch.dtype | None = None):
        self.params, self.dtype = params, dtype

    def grad(self) -> Tensor:
        """(n,) the gradient, zeros where a parameter has none."""
        g = torch.cat([p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in self.params])
        return g if self.dtype is None else g.to(self.dtype)

    def add_(self, t: float, d: Tensor) -> None:
        """Parameters += t d, d (n,)."""
        offset = 0
        for p in self.params:
            n = p.numel()
            p.add_(d[offset : offset + n].view_as(p).to(p.dtype), alpha=t)
            offset += n

    def set_(self, values: list[Tensor]) -> None:
        for p, v in zip(self.params, values):
            p.copy_(v)

    def clone(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.params]

    def along(self, closure: Callable[[], Tensor]) -> Callable[[list[Tensor], float, Tensor], tuple[float, Tensor]]:
        """The objective torch's `_strong_wolfe` takes: (x0, t, d) -> (loss, (n,) gradient) at
        x0 + t d, the parameters put back to x0 afterwards."""
        def objective(x0: list[Tensor], t: float, d: Tensor) -> tuple[float, Tensor]:
            self.add_(t, d)
            value = float(closure())
            grad = self.grad()
            self.set_(x0)
            return value, grad

        return objective
