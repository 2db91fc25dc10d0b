"""What the solver minimises: the abstract contract between a problem and the trainer.

A `Problem` samples its training data once, turns a model and that data into named, weighted
loss terms, and measures a model on held-out test data. The physics-informed kind,
`kanpde.pde.problem.PDEProblem`, builds this from a domain, a residual and conditions; a
supervised problem (a data fit, e.g. the mobility-edge classifiers) subclasses `Problem`
directly. A problem may own trainable unknowns besides the model's (an inverse problem's
coefficients): `setup` creates them from an explicit generator, `parameters` lists them.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

Data = dict[str, "Tensor | Data"]  # tensors, or named groups of tensors (a condition's points)


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
        """(N, d) inputs of the network that grid updates follow."""

    def setup(self, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> None:
        """Create the problem's own trainable unknowns (none by default)."""

    def parameters(self) -> list[nn.Parameter]:
        """The problem's own trainable parameters, trained with the model's."""
        return []

    def resample(self, data: Data, generator: torch.Generator) -> Data:
        """Fresh collocation points (a stage's `resample_every`); by default the same data."""
        return data


def move(data: Data, device: torch.device | str, dtype: torch.dtype | None = None) -> Data:
    """`data` with every floating tensor on `device` (and in `dtype`), groups included."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = move(value, device, dtype)
        elif value.is_floating_point() and dtype is not None:
            out[key] = value.to(device, dtype)
        else:
            out[key] = value.to(device)
    return out
