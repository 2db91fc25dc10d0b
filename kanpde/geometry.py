"""Domains and point sampling.

A domain samples its interior and its boundary separately, on a mesh or uniformly at random,
always from an explicit `torch.Generator` so a run is reproducible. Points are made on the CPU in
float64 and converted by the caller, so the same seed gives the same points on every device.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from kanpde.validate import ConfigError, check_choice, check_int

SAMPLINGS = ("random", "mesh")


class Domain(abc.ABC):
    """A region of R^d with a boundary."""

    dim: int

    @abc.abstractmethod
    def interior(self, n: int, sampling: str, generator: torch.Generator) -> Tensor:
        """(n', d) points inside; n' = n for random sampling, the nearest full mesh otherwise."""

    @abc.abstractmethod
    def boundary(self, n: int, sampling: str, generator: torch.Generator) -> Tensor:
        """(n', d) points on the boundary."""

    @abc.abstractmethod
    def bounding_box(self) -> tuple[Tensor, Tensor]:
        """(lower (d,), upper (d,)) of a box holding the domain."""


class Rectangle(Domain):
    """The box [lower_1, upper_1] x ... x [lower_d, upper_d].

    Args:
        lower: (d,) lower corner.
        upper: (d,) upper corner, componentwise > lower.
    """

    def __init__(self, lower: list[float], upper: list[float]):
        self.lower = torch.as_tensor(lower, dtype=torch.float64)
        self.upper = torch.as_tensor(upper, dtype=torch.float64)
        if self.lower.shape != self.upper.shape or not bool((self.lower < self.upper).all()):
            raise ConfigError(f"a rectangle needs lower < upper componentwise, got {lower}, {upper}")
        self.dim = self.lower.numel()

    def bounding_box(self) -> tuple[Tensor, Tensor]:
        return self.lower, self.upper

    def _scale(self, unit: Tensor) -> Tensor:
        return self.lower + unit * (self.upper - self.lower)

    def interior(self, n: int, sampling: str, generator: torch.Generator) -> Tensor:
        check_int(n, "n_interior", minimum=1)
        check_choice(sampling, "sampling", SAMPLINGS)
        if sampling == "random":
            return self._scale(torch.rand(n, self.dim, generator=generator, dtype=torch.float64))
        m = max(1, round(n ** (1 / self.dim)))
        centres = (torch.arange(m, dtype=torch.float64) + 0.5) / m  # cell centres, off the boundary
        return self._scale(mesh_points([centres] * self.dim))

    def boundary(self, n: int, sampling: str, generator: torch.Generator) -> Tensor:
        """Points spread evenly over the 2d faces (n / 2d on each; one per face when d = 1)."""
        check_int(n, "n_boundary", minimum=2 * self.dim)
        check_choice(sampling, "sampling", SAMPLINGS)
        per_face = n // (2 * self.dim)
        faces = []
        for axis in range(self.dim):
            for side in (0.0, 1.0):
                if self.dim == 1:
                    face = torch.zeros(1, 0, dtype=torch.float64)
                elif sampling == "random":
                    face = torch.rand(per_face, self.dim - 1, generator=generator, dtype=torch.float64)
                else:
                    m = max(1, round(per_face ** (1 / (self.dim - 1))))
                    # Lower edge in, upper edge out; in 2-D, mirroring every other face walks
                    # the boundary round, so each corner appears exactly once.
                    ticks = torch.linspace(0, 1, m + 1, dtype=torch.float64)[:-1]
                    face = mesh_points([ticks] * (self.dim - 1))
                    face = 1.0 - face if (side == 1.0) != (axis % 2 == 0) else face
                fixed = torch.full((len(face), 1), side, dtype=torch.float64)
                faces.append(torch.cat([face[:, :axis], fixed, face[:, axis:]], dim=1))
        return self._scale(torch.cat(faces))

    def mesh(self, n_per_axis: int) -> Tensor:
        """(n_per_axis ** d, d) grid including the boundary, for plots and records."""
        ticks = torch.linspace(0, 1, n_per_axis, dtype=torch.float64)
        return self._scale(mesh_points([ticks] * self.dim))


def mesh_points(ticks: list[Tensor]) -> Tensor:
    """Cartesian product of 1-D tick vectors, first axis slowest: (prod len, len(ticks))."""
    if not ticks:
        return torch.zeros(1, 0, dtype=torch.float64)
    grids = torch.meshgrid(*ticks, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def uniform_in_box(lower: Tensor, upper: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """(n, d) uniform points in a box, e.g. a test set."""
    unit = torch.rand(n, lower.numel(), generator=generator, dtype=torch.float64)
    return lower + unit * (upper - lower)
