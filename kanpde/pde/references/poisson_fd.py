"""Poisson's equation on the L-shaped domain [-1, 1]^2 minus [0, 1]^2 by 5-point finite differences."""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sparse
from scipy.sparse.linalg import spsolve

from kanpde.pde.references.base import Reference

# Leading exponents of the discretisation error near the 270-degree corner: the solution behaves like
# r^(2/3) sin(2 theta / 3) there, which pollutes the O(h^2) expansion with an O(h^(4/3)) term.
ERROR_EXPONENTS = (4.0 / 3.0, 2.0)

Field = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _grid_size(n, name="n"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 5 or n % 2 == 0:
        raise ValueError(f"{name}: got {n!r}; must be an odd integer >= 5 (so that x = 0 and y = 0 are grid lines)")
    return int(n)


def lshape_masks(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid and node classes of the L-shape on an n x n uniform grid of [-1, 1]^2.

    Returns:
        ``(x, closed, interior)``: x the n coordinates (shared by both axes), ``closed`` (n, n) True at
        nodes of the closed L-shape, ``interior`` (n, n) True at the nodes strictly inside it (the
        unknowns). Arrays are indexed [i, j] = (x_i, y_j).
    """
    n = _grid_size(n)
    x = np.linspace(-1.0, 1.0, n)
    half = (n - 1) // 2  # index of x = 0
    closed = np.ones((n, n), dtype=bool)
    closed[half + 1:, half + 1:] = False  # the removed square's open interior
    interior = np.zeros((n, n), dtype=bool)
    interior[1:-1, 1:-1] = True
    interior[half:, half:] = False
    return x, closed, interior


def solve_dirichlet(f: Field, g: Field, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Solve -lap u = f in the L-shape, u = g on its boundary, by 5-point finite differences.

    Uniform grid of spacing h = 2 / (n - 1); the sparse symmetric system is solved directly (SuperLU
    with minimum-degree ordering on A^T + A). Second-order accurate for smooth solutions.

    Args:
        f: source f(x, y), vectorised over arrays of equal shape.
        g: boundary data g(x, y), vectorised; only used at boundary nodes.
        n: grid points per axis, odd, >= 5.

    Returns:
        ``(x, u)``: x of shape (n,), u of shape (n, n) indexed [i, j] = (x_i, y_j), NaN outside the L.
    """
    x, closed, interior = lshape_masks(n)
    h = x[1] - x[0]
    xx, yy = np.meshgrid(x, x, indexing="ij")
    u = np.zeros((n, n))
    boundary = closed & ~interior
    u[boundary] = np.broadcast_to(np.asarray(g(xx[boundary], yy[boundary]), dtype=np.float64), (boundary.sum(),))
    index = np.full((n, n), -1)
    count = int(interior.sum())
    index[interior] = np.arange(count)
    ii, jj = np.nonzero(interior)
    rhs = h * h * np.broadcast_to(np.asarray(f(xx[interior], yy[interior]), dtype=np.float64), (count,)).copy()
    rows, cols, vals = [np.arange(count)], [np.arange(count)], [np.full(count, 4.0)]
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb = index[ii + di, jj + dj]
        known = nb < 0
        rows.append(index[ii, jj][~known])
        cols.append(nb[~known])
        vals.append(np.full(int((~known).sum()), -1.0))
        rhs[known] += u[ii[known] + di, jj[known] + dj]
    a = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count))
    u[interior] = spsolve(a, rhs, permc_spec="MMD_AT_PLUS_A")
    u[~closed] = np.nan
    return x, u


def richardson(coarse: np.ndarray, middle: np.ndarray, fine: np.ndarray,
               exponents: tuple[float, ...] = ERROR_EXPONENTS) -> np.ndarray:
    """Eliminate the error terms h^p, p in ``exponents``, from values on grids h, h/2, h/4, ... (same nodes)."""
    levels = [coarse, middle, fine]
    for p in exponents:
        r = 2.0**p
        levels = [(r * b - a) / (r - 1.0) for a, b in zip(levels, levels[1:])]
    return levels[-1]


def _one(x, y):
    return np.ones_like(x)


def _zero(x, y):
    return np.zeros_like(x)


def lshape(n: int = 257, richardson_levels: int = 3) -> Reference:
    """Poisson's equation -lap u = 1 on the L-shape (-1, 1)^2 minus [0, 1)^2, u = 0 on its boundary.

    5-point finite differences on uniform grids (``solve_dirichlet``). The re-entrant corner makes
    u ~ r^(2/3) sin(2 theta / 3) near the origin, so the plain scheme converges only like h^(4/3)
    (relative L2 error ~ 1e-4 at n = 1025). With ``richardson_levels = 3`` the problem is solved on the
    n-point grid and on the two finer ones of 2n - 1 and 4n - 3 points, and the h^(4/3) and h^2 error
    terms are eliminated by Richardson extrapolation on the n-point grid's nodes. Estimated error at the
    defaults (n = 257, finest grid 1025): relative L2 ~ 1e-6, largest next to the corner; see the
    report in the tests for how this was measured. Solves take ~ 15 s at the defaults.

    Args:
        n: grid points per axis of the result, odd, >= 5.
        richardson_levels: 1 (plain finite differences on the n-point grid) or 3 (extrapolated).

    Returns:
        Reference with variables ("x", "y"), outputs ("u",), values of shape (1, n, n), NaN at the
        nodes of the open square (0, 1)^2 outside the domain.
    """
    n = _grid_size(n)
    if richardson_levels not in (1, 3) or isinstance(richardson_levels, bool):
        raise ValueError(f"richardson_levels: got {richardson_levels!r}; must be 1 or 3")
    x, u = solve_dirichlet(_one, _zero, n)
    if richardson_levels == 3:
        u2 = solve_dirichlet(_one, _zero, 2 * n - 1)[1][::2, ::2]
        u4 = solve_dirichlet(_one, _zero, 4 * n - 3)[1][::4, ::4]
        u = richardson(u, u2, u4)
    settings = dict(solver="finite-differences/5-point", n=n, richardson_levels=int(richardson_levels),
                    richardson_exponents=list(ERROR_EXPONENTS) if richardson_levels == 3 else [])
    return Reference(("x", "y"), (x, x.copy()), u[None], ("u",), settings)
