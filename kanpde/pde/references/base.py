"""The common result type of the reference solvers: values on a tensor grid, with interpolation."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Reference:
    """A reference solution sampled on a tensor grid.

    Attributes:
        variables: axis names in order, e.g. ``("x", "t")``; time, where present, is last.
        axes: one strictly increasing 1-D float64 array of coordinates per variable, lengths n_1..n_d.
        values: array of shape (m, n_1, ..., n_d), float64; NaN at grid points outside the domain.
        outputs: names of the m components, e.g. ``("u",)`` or ``("u", "v", "p")``.
        settings: what made it (solver name, resolution, parameters); JSON-serialisable.
    """

    variables: tuple[str, ...]
    axes: tuple[np.ndarray, ...]
    values: np.ndarray
    outputs: tuple[str, ...]
    settings: dict
    _interp: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self):
        axes = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in self.axes)
        values = np.ascontiguousarray(self.values, dtype=np.float64)
        object.__setattr__(self, "variables", tuple(str(v) for v in self.variables))
        object.__setattr__(self, "outputs", tuple(str(o) for o in self.outputs))
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "settings", dict(self.settings))
        if len(axes) != len(self.variables) or not axes:
            raise ValueError(f"axes: got {len(axes)} axes for variables {self.variables}; need one per variable")
        for name, a in zip(self.variables, axes):
            if a.ndim != 1 or a.size < 2 or not np.all(np.diff(a) > 0):
                raise ValueError(f"axis {name!r}: must be 1-D, strictly increasing, with at least 2 points")
        shape = (len(self.outputs), *(a.size for a in axes))
        if values.shape != shape:
            raise ValueError(f"values: shape {values.shape} does not match (outputs, *axes) = {shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape (n_1, ..., n_d)."""
        return self.values.shape[1:]

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid points inside the domain and the values there.

        Returns:
            ``(x, y)``: x of shape (N, d), the coordinates of the grid points whose values are not NaN
            (C order over the grid, last axis fastest); y of shape (N, m), their values.
        """
        mesh = np.stack(np.meshgrid(*self.axes, indexing="ij"), axis=-1).reshape(-1, len(self.axes))
        vals = self.values.reshape(len(self.outputs), -1).T
        inside = ~np.isnan(vals).any(axis=1)
        return mesh[inside], vals[inside]

    def _interpolators(self):
        if not self._interp:
            from scipy.interpolate import NdBSpline, RegularGridInterpolator, make_interp_spline

            grid_values = np.moveaxis(self.values, 0, -1)
            holes = np.isnan(grid_values).any(axis=-1)
            kw = dict(bounds_error=False, fill_value=np.nan)
            if holes.any():
                # scipy's cubic splines are global, so one NaN would spread along whole grid lines:
                # use local cubic stencils free of NaN instead (see _local_cubic), piecewise-linear
                # interpolation of the zero-filled values where there is none, and mark a point outside
                # wherever a corner of its cell is NaN
                filled = np.where(np.isnan(grid_values), 0.0, grid_values)
                self._interp.append(RegularGridInterpolator(self.axes, filled, method="linear", **kw))
                self._interp.append(RegularGridInterpolator(self.axes, holes.astype(float), method="linear", **kw))
                self._interp.append((grid_values.reshape(-1, len(self.outputs)), holes.ravel()))
            elif min(a.size for a in self.axes) >= 4:
                # exact tensor-product not-a-knot cubic spline, built axis by axis (scipy's
                # RegularGridInterpolator "cubic" solves its system iteratively, to ~1e-6 only)
                coef, knots = grid_values, []
                for k, a in enumerate(self.axes):
                    spline = make_interp_spline(a, coef, k=3, axis=k)
                    coef = np.moveaxis(spline.c, 0, k)
                    knots.append(spline.t)
                self._interp.append(NdBSpline(tuple(knots), coef, 3, extrapolate=False))
            else:
                self._interp.append(RegularGridInterpolator(self.axes, grid_values, method="linear", **kw))
        return self._interp

    def _local_cubic(self, x: np.ndarray, flat_values: np.ndarray, flat_holes: np.ndarray) -> np.ndarray:
        """Tensor-product 4-point Lagrange interpolation (error O(h^4)) from a NaN-free stencil.

        Per axis the stencil is the 4 nodes around the point's cell, or that window shifted by one node
        either way; the first NaN-free combination (centred first) is used. NaN where there is none.
        """
        y = np.full((len(x), flat_values.shape[1]), np.nan)
        if min(a.size for a in self.axes) < 4:
            return y
        per_axis = []  # per axis: list over candidate windows of (start index, weights (N, 4))
        for k, a in enumerate(self.axes):
            cell = np.clip(np.searchsorted(a, x[:, k], side="right") - 1, 0, a.size - 2)
            options = []
            for shift in (-1, -2, 0):
                start = np.clip(cell + shift, 0, a.size - 4)
                nodes = a[start[:, None] + np.arange(4)]
                w = np.ones((len(x), 4))
                for i in range(4):
                    for j in range(4):
                        if i != j:
                            w[:, i] *= (x[:, k] - nodes[:, j]) / (nodes[:, i] - nodes[:, j])
                options.append((start, w))
            per_axis.append(options)
        todo = np.ones(len(x), dtype=bool)
        for combo in itertools.product(*per_axis):
            acc = np.zeros_like(y)
            bad = np.zeros(len(x), dtype=bool)
            for offsets in itertools.product(range(4), repeat=len(self.axes)):
                index = np.ravel_multi_index(tuple(s + o for (s, _), o in zip(combo, offsets)), self.shape)
                weight = np.prod([w[:, o] for (_, w), o in zip(combo, offsets)], axis=0)
                bad |= flat_holes[index]
                acc += weight[:, None] * np.nan_to_num(flat_values[index])
            use = todo & ~bad
            y[use] = acc[use]
            todo &= bad
            if not todo.any():
                break
        return y

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Interpolate the reference at arbitrary points.

        Cubic tensor-product (not-a-knot) spline interpolation, exact at the nodes, where every axis
        has at least 4 points and the grid has no NaN; on a grid with NaN (a non-box domain), local
        4-point-per-axis Lagrange interpolation from a NaN-free stencil, or piecewise linear where
        there is none (next to re-entrant corners).
        NaN outside the grid's box or the domain (wherever a corner of the point's cell is NaN).

        Args:
            x: points of shape (N, d), columns in the order of ``variables``.

        Returns:
            Values of shape (N, m).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.axes):
            raise ValueError(f"x: shape {x.shape}; expected (N, {len(self.axes)}) for variables {self.variables}")
        interp = self._interpolators()
        y = np.asarray(interp[0](x), dtype=np.float64).reshape(len(x), len(self.outputs))
        if len(interp) == 3:
            inside = ~(interp[1](x) > 1e-12)  # also False outside the box, where the mask is NaN
            cubic = self._local_cubic(x, *interp[2])
            y = np.where(np.isnan(cubic), y, cubic)
            y[~inside] = np.nan
        return y
