"""Space-time domains: a spatial domain times a time interval [t0, t1], time the last variable.

Parts: "initial" (the closed spatial domain at t = t0, normal -e_t), "final" (t = t1), and the
lateral boundary, the spatial boundary times [t0, t1] with the spatial normals; `where=None`
means the lateral boundary, and the spatial parts' names ("left", "x_min", "circle", ...) select
pieces of it. Initial conditions say `where="initial"`.
"""

from __future__ import annotations

import torch

from kanpde.pde.domains import Box, Domain, Where
from kanpde.pde.sampling import SAMPLINGS, unit_ticks
from kanpde.validate import ConfigError, check_choice, check_int

SLICES = ("initial", "final")


class TimeDomain(Domain):
    """space x [t0, t1].

    Args:
        space: the spatial domain (d_s dimensions).
        t0: start time.
        t1: end time, > t0.
        time: the time variable's name.
    """

    def __init__(self, space: Domain, t0: float, t1: float, time: str = "t"):
        if not t1 > t0:
            raise ConfigError(f"a time interval needs t1 > t0, got [{t0}, {t1}]")
        if time in space.variables:
            raise ConfigError(f"time variable {time!r} is also a space variable of {space.variables}")
        self.space, self.t0, self.t1 = space, float(t0), float(t1)
        self.dim, self.variables = space.dim + 1, (*space.variables, time)

    def bounding_box(self):
        lower, upper = self.space.bounding_box()
        return (torch.cat([lower, lower.new_tensor([self.t0])]), torch.cat([upper, upper.new_tensor([self.t1])]))

    def sdf(self, x):
        t = x[:, -1]
        return torch.maximum(self.space.sdf(x[:, :-1]), torch.maximum(self.t0 - t, t - self.t1))

    def pieces(self):
        return self.space.pieces()

    def part_names(self):
        return [*SLICES, *self.space.part_names()]

    def _times(self, n, sampling, generator):
        return self.t0 + (self.t1 - self.t0) * unit_ticks(n, sampling, generator)

    def interior(self, n, sampling, generator):
        check_int(n, "number of interior points", minimum=1)
        check_choice(sampling, "sampling", SAMPLINGS)
        if isinstance(self.space, Box):  # one box: joint (quasi-)random points or a full mesh
            lower, upper = self.bounding_box()
            return Box(lower, upper, self.variables).interior(n, sampling, generator)
        if sampling == "mesh":
            n_t = max(1, round(n ** (1 / self.dim)))
            xs = self.space.interior(max(1, n // n_t), "mesh", generator)
            return _product(xs, self._times(n_t, "mesh", generator))
        xs = self.space.interior(n, sampling, generator)
        return torch.cat([xs, self._times(len(xs), sampling, generator)[:, None]], dim=1)

    def boundary(self, n, sampling, generator, where: Where = None):
        check_int(n, "number of boundary points", minimum=1)
        check_choice(sampling, "sampling", SAMPLINGS)
        if isinstance(where, str) and where in SLICES:
            xs = self.space.interior(n, sampling, generator)
            t = self.t0 if where == "initial" else self.t1
            x = torch.cat([xs, torch.full((len(xs), 1), t, dtype=torch.float64)], dim=1)
            normal = torch.zeros_like(x)
            normal[:, -1] = -1.0 if where == "initial" else 1.0
            return x, normal
        if isinstance(where, (list, tuple)) and any(w in SLICES for w in where):
            raise ConfigError(f"where={list(where)!r}: the initial and final slices are parts of their own")
        predicate = None
        if callable(where):  # a predicate sees space-time points
            predicate, where = where, None
        if sampling == "mesh":
            if self.space.dim == 1:
                xs, ns = self.space.boundary(2, "mesh", generator, where)
                n_t = max(1, n // len(xs))
            else:
                n_t = max(1, round(n ** (1 / self.dim)))
                xs, ns = self.space.boundary(max(1, n // n_t), "mesh", generator, where)
            x, normal = _product(xs, self._times(n_t, "mesh", generator)), _product(ns, torch.zeros(n_t))
        else:
            xs, ns = self.space.boundary(n, sampling, generator, where)
            t = self._times(len(xs), sampling, generator)
            x, normal = torch.cat([xs, t[:, None]], dim=1), torch.cat([ns, torch.zeros(len(xs), 1)], dim=1)
        if predicate is not None:
            keep = predicate(x).reshape(-1).bool()
            x, normal = x[keep], normal[keep]
        return x, normal


def _product(space_points, times):
    """Every space point at every time, time slowest: (len(times) * N, d_s + 1)."""
    n = len(space_points)
    return torch.cat([space_points.repeat(len(times), 1), times.to(torch.float64).repeat_interleave(n)[:, None]], dim=1)
