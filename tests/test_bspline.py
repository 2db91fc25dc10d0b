"""B-spline bases (kanpde.nn.bspline) against a scalar Cox-de Boor, finite differences and autograd."""

from __future__ import annotations

import math

import pytest
import torch

from kanpde.nn.bspline import (
    basis,
    basis_jet,
    cell_polynomials,
    make_uniform_knots,
    power_jet,
    scatter_local,
    uniform_basis_matrix,
    uniform_cells,
    uniform_local_jet,
)

F64 = torch.float64


def scalar_bspline(x: float, t: list[float], j: int, k: int) -> float:
    """B_{j,k}(x) by the textbook Cox-de Boor recursion on plain floats (half-open cells)."""
    if k == 0:
        return 1.0 if t[j] <= x < t[j + 1] else 0.0
    left = (x - t[j]) / (t[j + k] - t[j]) * scalar_bspline(x, t, j, k - 1)
    right = (t[j + k + 1] - x) / (t[j + k + 1] - t[j + 1]) * scalar_bspline(x, t, j + 1, k - 1)
    return left + right


def random_knots(n_in: int, n_knots: int, seed: int) -> torch.Tensor:
    """(n_in, n_knots) strictly increasing non-uniform knots: cumulative sums of gaps in [0.2, 1.2]."""
    g = torch.Generator().manual_seed(seed)
    gaps = 0.2 + torch.rand(n_in, n_knots - 1, generator=g, dtype=F64)
    start = torch.rand(n_in, 1, generator=g, dtype=F64) * 2 - 3
    return torch.cat([start, start + gaps.cumsum(dim=1)], dim=1)


def points_around(knots: torch.Tensor, n: int, seed: int, margin: float = 0.5) -> torch.Tensor:
    """(n, n_in) random points covering each input's knot span and `margin` beyond both ends."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = knots[:, 0] - margin, knots[:, -1] + margin
    return lo + torch.rand(n, knots.shape[0], generator=g, dtype=F64) * (hi - lo)


def away_from_knots(x: torch.Tensor, knots: torch.Tensor, gap: float) -> torch.Tensor:
    """Boolean (N, n_in): points farther than `gap` from every knot of their input."""
    return ((x.unsqueeze(-1) - knots.unsqueeze(0)).abs() > gap).all(dim=-1)


def test_make_uniform_knots_values():
    """Uniform knots are lower + h * (-k, ..., G + k) with h = (upper - lower) / G, per input."""
    lo = torch.tensor([-1.0, 0.5], dtype=F64)
    hi = torch.tensor([1.0, 2.5], dtype=F64)
    knots = make_uniform_knots(lo, hi, grid_size=4, order=3)
    expected = torch.tensor(
        [[-1.0 + 0.5 * i for i in range(-3, 8)], [0.5 + 0.5 * i for i in range(-3, 8)]], dtype=F64
    )
    torch.testing.assert_close(knots, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
def test_basis_matches_scalar_cox_de_boor(order):
    """`basis` equals the scalar recursion on random non-uniform knots, inside and outside the span."""
    n_in, grid = 2, 5
    knots = random_knots(n_in, grid + 2 * order + 1, seed=10 + order)
    x = points_around(knots, 60, seed=20 + order)
    # Exact knot positions exercise the half-open cell convention.
    x = torch.cat([x, knots[:, ::2].T.contiguous()])
    got = basis(x, knots, order)
    n_basis = grid + order
    expected = torch.tensor(
        [
            [[scalar_bspline(float(x[n, i]), knots[i].tolist(), j, order) for j in range(n_basis)]
             for i in range(n_in)]
            for n in range(x.shape[0])
        ],
        dtype=F64,
    )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)
    assert float(expected.abs().sum()) > 10  # the comparison is not between zeros


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("uniform", [True, False])
def test_partition_of_unity(order, uniform):
    """Sum of the bases is 1 on the closed span [knots[k], knots[-k-1]] and drops to 0 outside."""
    grid = 6
    if uniform:
        knots = make_uniform_knots(torch.tensor([-1.0, 0.0], dtype=F64),
                                   torch.tensor([1.0, 3.0], dtype=F64), grid, order)
    else:
        knots = random_knots(2, grid + 2 * order + 1, seed=order)
    a, b = knots[:, order], knots[:, -order - 1]
    u = torch.linspace(0, 1, 101, dtype=F64).unsqueeze(1)
    inside = a + u * (b - a)  # includes both ends
    total = basis(inside, knots, order).sum(dim=-1)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-13)
    outside = torch.stack([knots[:, 0] - 0.1, knots[:, -1], knots[:, -1] + 0.1])
    assert float(basis(outside, knots, order).abs().max()) == 0.0


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_basis_jet_matches_finite_differences(order):
    """First and second derivatives of `basis_jet` match central differences away from knots."""
    knots = random_knots(2, 5 + 2 * order + 1, seed=30 + order)
    x = points_around(knots, 200, seed=40 + order, margin=0.3)
    eps = 1e-5
    keep = away_from_knots(x, knots, gap=10 * eps)
    b, db, d2b = basis_jet(x, knots, order)
    plus, minus = basis_jet(x + eps, knots, order), basis_jet(x - eps, knots, order)
    fd1 = (plus[0] - minus[0]) / (2 * eps)
    fd2 = (plus[1] - minus[1]) / (2 * eps)
    torch.testing.assert_close(b, basis(x, knots, order), rtol=0, atol=0)
    torch.testing.assert_close(db[keep], fd1[keep], rtol=0, atol=1e-6)
    torch.testing.assert_close(d2b[keep], fd2[keep], rtol=0, atol=1e-5)
    assert float(db[keep].abs().max()) > 0.1
    if order >= 2:
        assert float(d2b[keep].abs().max()) > 0.1
    else:
        assert float(d2b.abs().max()) == 0.0


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_basis_jet_matches_autograd(order):
    """`basis_jet` derivatives equal torch.autograd derivatives of `basis` (exact piecewise polynomials)."""
    knots = random_knots(2, 4 + 2 * order + 1, seed=50 + order)
    x = points_around(knots, 50, seed=60 + order).requires_grad_(True)
    b = basis(x, knots, order)
    d1, d2 = torch.zeros_like(b), torch.zeros_like(b)
    for j in range(b.shape[-1]):
        (g,) = torch.autograd.grad(b[..., j].sum(), x, create_graph=True)
        d1[..., j] = g.detach()
        if g.requires_grad:  # order 1: the derivative is piecewise constant, no graph left
            (g2,) = torch.autograd.grad(g.sum(), x, retain_graph=True)
            d2[..., j] = g2
    _, db, d2b = basis_jet(x.detach(), knots, order)
    scale = float(db.abs().max())
    torch.testing.assert_close(db, d1, rtol=0, atol=1e-12 * scale)
    torch.testing.assert_close(d2b, d2, rtol=0, atol=1e-11 * max(1.0, float(d2b.abs().max())))


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_uniform_local_jet_equals_basis_jet(order):
    """Local uniform-grid bases scattered to the dense layout equal `basis_jet`, everywhere.

    Points cover the inner grid, the k outer cells on each side and beyond the knot span.
    """
    grid = 5
    lo = torch.tensor([-1.0, 0.0, -3.0], dtype=F64)
    hi = torch.tensor([1.0, 0.7, 5.0], dtype=F64)
    knots = make_uniform_knots(lo, hi, grid, order)
    x = points_around(knots, 300, seed=70 + order, margin=0.6)
    x = x[away_from_knots(x, knots, 1e-9).all(dim=1)]
    h = (hi - lo) / grid
    outer = torch.stack([knots[:, 0] + 0.3 * h, knots[:, order] - 0.5 * h,
                         knots[:, -1] - 0.25 * h, knots[:, -order - 1] + 0.5 * h])
    outside = torch.stack([knots[:, 0] - 1e-3, knots[:, -1] + 1e-3, knots[:, -1] + 2.0, knots[:, 0] - 7.0])
    x = torch.cat([x, outer, outside])
    n_basis = grid + order
    start, local = uniform_local_jet(x, knots, order, derivatives=2)
    assert len(local) == 3
    dense = scatter_local(start, torch.stack(local), n_basis)
    for got, want in zip(dense, basis_jet(x, knots, order)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-11 * max(1.0, float(want.abs().max())))
    assert float(dense[:, -4:].abs().max()) == 0.0  # the 4 outside points: all zero
    assert float(dense[0, -8:-4].sum(dim=-1).min()) > 1e-5  # outer cells: non-zero bases


def test_uniform_local_jet_values_only():
    """With derivatives=0 only the values are returned, equal to `basis`."""
    knots = make_uniform_knots(torch.tensor([-1.0], dtype=F64), torch.tensor([1.0], dtype=F64), 4, 3)
    x = torch.linspace(-2.5, 2.5, 41, dtype=F64).unsqueeze(1)
    start, local = uniform_local_jet(x, knots, 3, derivatives=0)
    assert len(local) == 1
    torch.testing.assert_close(scatter_local(start, local[0], 7), basis(x, knots, 3), rtol=0, atol=1e-14)


def test_uniform_basis_matrix_cubic_by_hand():
    """The cubic cell polynomials are (1-u)^3/6, (3u^3-6u^2+4)/6, (-3u^3+3u^2+3u+1)/6, u^3/6."""
    expected = torch.tensor([[1, -3, 3, -1], [4, 0, -6, 3], [1, 3, 3, -3], [0, 0, 0, 1]], dtype=F64) / 6
    torch.testing.assert_close(uniform_basis_matrix(3), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_uniform_basis_matrix_matches_local_recursion(order):
    """sum_p M[m, p] u^p equals the local bases of `uniform_local_jet` at every u in [0, 1)."""
    knots = make_uniform_knots(torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64), 1, order)
    u = torch.linspace(0, 1, 21, dtype=F64)[:-1]
    x = (u * 1.0).unsqueeze(1)  # the single inner cell [0, 1), h = 1
    _, local = uniform_local_jet(x, knots, order, derivatives=0)
    powers = u.unsqueeze(1) ** torch.arange(order + 1, dtype=F64)  # (n, k + 1)
    torch.testing.assert_close(powers @ uniform_basis_matrix(order).T, local[0][:, 0, :],
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_cell_polynomials_reproduce_spline_and_derivatives(order):
    """uniform_cells + power_jet + cell_polynomials give the spline sum_j c_j B_j and its first
    two x-derivatives (from basis_jet) everywhere, zero outside the knot span."""
    grid, n_out = 5, 3
    lo = torch.tensor([-1.0, 0.0], dtype=F64)
    hi = torch.tensor([1.0, 3.0], dtype=F64)
    knots = make_uniform_knots(lo, hi, grid, order)
    coef = torch.randn(2, grid + order, n_out, generator=torch.Generator().manual_seed(order), dtype=F64)
    x = points_around(knots, 200, seed=80 + order, margin=1.0)
    x = x[away_from_knots(x, knots, 1e-9).all(dim=1)]
    cell, u, h = uniform_cells(x, knots)
    torch.testing.assert_close(h, (hi - lo) / grid, rtol=0, atol=1e-15)
    poly = cell_polynomials(coef, order)  # (n_in, G + 2k + 2, k + 1, n_out)
    assert poly.shape == (2, grid + 2 * order + 2, order + 1, n_out)
    gathered = poly[torch.arange(2), cell]  # (N, n_in, k + 1, n_out)
    powers = power_jet(u, h, order, derivatives=2)  # (3, N, n_in, k + 1)
    got = torch.einsum("rnip,nipo->rnio", powers, gathered)
    want = torch.einsum("rnik,iko->rnio", torch.stack(basis_jet(x, knots, order)), coef)
    for r in range(3):
        torch.testing.assert_close(got[r], want[r], rtol=0, atol=1e-11 * max(1.0, float(want[r].abs().max())))
    outside = (x < knots[:, 0]) | (x >= knots[:, -1])
    assert bool(outside.any()) and float(got[:, outside].abs().max()) == 0.0
    assert float(want[0].abs().max()) > 0.1


def test_power_jet_by_hand():
    """power_jet: u^p, p u^(p-1) / h and p (p-1) u^(p-2) / h^2."""
    u = torch.tensor([[0.5, 0.25]], dtype=F64)
    h = torch.tensor([2.0, 0.5], dtype=F64)
    out = power_jet(u, h, order=3, derivatives=2)
    a, b = 0.5, 0.25
    expected = torch.tensor([
        [[[1, a, a**2, a**3], [1, b, b**2, b**3]]],
        [[[0, 1 / 2, 2 * a / 2, 3 * a**2 / 2], [0, 1 / 0.5, 2 * b / 0.5, 3 * b**2 / 0.5]]],
        [[[0, 0, 2 / 4, 6 * a / 4], [0, 0, 2 / 0.25, 6 * b / 0.25]]],
    ], dtype=F64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)


def test_cubic_least_squares_fit_converges_at_order_four():
    """A least-squares cubic spline fit of sin(3x) + exp(x)/2 on [-1, 1]: max error ~ G^-(k+1)."""
    order = 3

    def f(x):
        return torch.sin(3 * x) + torch.exp(x) / 2

    x_fit = torch.linspace(-1, 1, 2001, dtype=F64).unsqueeze(1)
    x_test = torch.linspace(-1, 1, 3001, dtype=F64).unsqueeze(1)
    one = torch.ones(1, dtype=F64)
    grids, errors = [8, 16, 32, 64], []
    for grid in grids:
        knots = make_uniform_knots(-one, one, grid, order)
        a = basis(x_fit, knots, order)[:, 0, :]  # (N, G + k)
        coef = torch.linalg.lstsq(a, f(x_fit)).solution
        pred = basis(x_test, knots, order)[:, 0, :] @ coef
        errors.append(float((pred - f(x_test)).abs().max()))
    slope = (torch.tensor([math.log(e) for e in errors], dtype=F64).diff()
             / torch.tensor([math.log(g) for g in grids], dtype=F64).diff())
    fitted = float(torch.linalg.lstsq(
        torch.stack([torch.log(torch.tensor(grids, dtype=F64)), torch.ones(4, dtype=F64)], dim=1),
        torch.log(torch.tensor(errors, dtype=F64)).unsqueeze(1)).solution[0, 0])
    assert fitted < -3.5, (errors, slope)
    assert errors[-1] < 1e-6
