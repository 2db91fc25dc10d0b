"""B-spline bases on per-input knot vectors, with their first and second derivatives.

A KAN edge function is a spline  s(x) = sum_j c_j B_{j,k}(x)  on a grid of G intervals with k
extra knots on each side (Liu et al., arXiv 2404.19756, section 2.2), giving G + k basis functions.

Two evaluations are provided:

* `basis` / `basis_jet`: Cox-de Boor over the full knot vector. Works for any knots (uniform or
  data-adapted after a grid update). Cost: O(k (G + 2k)) per input.
* `uniform_local_jet`: on a uniform grid only the k + 1 bases of the cell holding x are non-zero,
  with closed-form values; they are computed from the cell's local coordinate and scattered into
  the dense layout. Cost: O(k^2) per input plus one scatter. Same results to rounding.

Knot vectors have shape (n_in, G + 2k + 1): each input of a layer has its own grid.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def make_uniform_knots(lower: Tensor, upper: Tensor, grid_size: int, order: int) -> Tensor:
    """Uniform knots on [lower, upper] per input, extended by `order` knots on each side.

    Args:
        lower: (n_in,) left ends of the grid.
        upper: (n_in,) right ends of the grid.
        grid_size: G, number of intervals inside [lower, upper].
        order: k, the spline order (3 = cubic).

    Returns:
        (n_in, G + 2k + 1) knots.
    """
    h = (upper - lower) / grid_size  # (n_in,)
    steps = torch.arange(-order, grid_size + order + 1, dtype=lower.dtype, device=lower.device)
    return lower[:, None] + steps[None, :] * h[:, None]


def _cox_de_boor(x: Tensor, knots: Tensor, order: int) -> list[Tensor]:
    """Bases of every order 0..k.

    Args:
        x: (N, n_in) points.
        knots: (n_in, M) knots, M = G + 2k + 1.
        order: k.

    Returns:
        list of k + 1 tensors; entry r has shape (N, n_in, M - 1 - r).
    """
    x = x.unsqueeze(-1)  # (N, n_in, 1)
    t = knots.unsqueeze(0)  # (1, n_in, M)
    bases = [((x >= t[..., :-1]) & (x < t[..., 1:])).to(x.dtype)]  # (N, n_in, M - 1)
    for r in range(1, order + 1):
        prev = bases[-1]  # (N, n_in, M - r)
        left = (x - t[..., : -(r + 1)]) / (t[..., r:-1] - t[..., : -(r + 1)])
        right = (t[..., r + 1 :] - x) / (t[..., r + 1 :] - t[..., 1:-r])
        bases.append(left * prev[..., :-1] + right * prev[..., 1:])  # (N, n_in, M - 1 - r)
    return bases


def basis(x: Tensor, knots: Tensor, order: int) -> Tensor:
    """B-spline bases B_{j,k}(x) for every input.

    Args:
        x: (N, n_in) points.
        knots: (n_in, G + 2k + 1).
        order: k.

    Returns:
        (N, n_in, G + k) basis values; zero outside [knots[:, 0], knots[:, -1]).
    """
    return _cox_de_boor(x, knots, order)[-1]


def _derivative_from_lower(lower: Tensor, knots: Tensor, r: int) -> Tensor:
    """d/dx of order-r bases from the order-(r-1) bases ("derivative of a B-spline" identity).

    B'_{j,r} = r [ B_{j,r-1} / (t_{j+r} - t_j) - B_{j+1,r-1} / (t_{j+r+1} - t_{j+1}) ].

    Args:
        lower: (N, n_in, M - r) values (or derivatives) of the order-(r-1) bases.
        knots: (n_in, M).
        r: order of the bases being differentiated, >= 1.

    Returns:
        (N, n_in, M - 1 - r).
    """
    t = knots.unsqueeze(0)
    a = r / (t[..., r:-1] - t[..., : -(r + 1)])  # (1, n_in, M - 1 - r)
    b = r / (t[..., r + 1 :] - t[..., 1:-r])
    return a * lower[..., :-1] - b * lower[..., 1:]


def basis_jet(x: Tensor, knots: Tensor, order: int) -> tuple[Tensor, Tensor, Tensor]:
    """Bases with their first and second derivatives in x (any knots).

    Args:
        x: (N, n_in) points.
        knots: (n_in, G + 2k + 1).
        order: k (>= 1; second derivatives of linear splines are zero).

    Returns:
        (B, dB, d2B), each (N, n_in, G + k).
    """
    bases = _cox_de_boor(x, knots, order)
    value = bases[order]
    first = _derivative_from_lower(bases[order - 1], knots, order)
    if order >= 2:
        d_lower = _derivative_from_lower(bases[order - 2], knots, order - 1)  # (N, n_in, M - order)
        second = _derivative_from_lower(d_lower, knots, order)
    else:
        second = torch.zeros_like(value)
    return value, first, second


def uniform_local_jet(
    x: Tensor, knots: Tensor, order: int, derivatives: int = 2
) -> tuple[Tensor, list[Tensor]]:
    """Non-zero bases (and derivatives) of the cell holding x, on a uniform grid.

    On uniform knots with spacing h, x = t_c + u h lies in cell c (0 <= u < 1), and only
    B_{c-k}, ..., B_c are non-zero there. With B^r_m the m-th of them at order r,
    B^r_m = ((u + r - m) B^{r-1}_{m-1} + (m + 1 - u) B^{r-1}_m) / r, and derivatives follow from
    d/dx B^r_m = (B^{r-1}_{m-1} - B^{r-1}_m) / h. Points outside the knot span get all-zero bases,
    as in Cox-de Boor.

    Args:
        x: (N, n_in) points.
        knots: (n_in, G + 2k + 1), uniformly spaced per input.
        order: k.
        derivatives: how many derivatives to return (0, 1 or 2).

    Returns:
        start: (N, n_in) int64 index of the first non-zero basis, in [0, G + k - 1]; the k + 1
            local bases go to columns start .. start + k (clamped into range; their values are
            zero where clamping happened).
        local: list of 1 + derivatives tensors, each (N, n_in, k + 1): value, d/dx, d2/dx2.
    """
    t0 = knots[:, 0]  # (n_in,)
    h = knots[:, 1] - knots[:, 0]  # (n_in,)
    n_cells = knots.shape[1] - 1
    s = (x - t0) / h  # (N, n_in) position in units of h from the first knot
    cell = torch.floor(s)
    inside = (s >= 0) & (s < n_cells)
    cell = cell.clamp(0, n_cells - 1)
    u = s - cell  # (N, n_in) in [0, 1) inside
    levels = [torch.ones_like(u).unsqueeze(-1)]  # order 0: (N, n_in, 1)
    for r in range(1, order + 1):
        prev = levels[-1]  # (N, n_in, r)
        m = torch.arange(r + 1, dtype=u.dtype, device=u.device)  # (r + 1,)
        pad = torch.zeros_like(prev[..., :1])
        from_left = torch.cat([pad, prev], dim=-1)  # B^{r-1}_{m-1}
        from_right = torch.cat([prev, pad], dim=-1)  # B^{r-1}_m
        uu = u.unsqueeze(-1)
        levels.append(((uu + r - m) * from_left + (m + 1 - uu) * from_right) / r)
    hh = h.unsqueeze(-1)  # (n_in, 1)

    def diff(vals: Tensor) -> Tensor:  # (N, n_in, r) -> (N, n_in, r + 1)
        pad = torch.zeros_like(vals[..., :1])
        return (torch.cat([pad, vals], dim=-1) - torch.cat([vals, pad], dim=-1)) / hh

    mask = inside.to(u.dtype).unsqueeze(-1)
    local = [levels[order] * mask]
    if derivatives >= 1:
        local.append(diff(levels[order - 1]) * mask if order >= 1 else torch.zeros_like(local[0]))
    if derivatives >= 2:
        local.append(diff(diff(levels[order - 2])) * mask if order >= 2 else torch.zeros_like(local[0]))
    start = (cell.long() - order)  # basis index of B^k_0 is c - k
    return start, local


def scatter_local(start: Tensor, local: Tensor, n_basis: int) -> Tensor:
    """Place local bases into the dense (N, n_in, n_basis) layout.

    Args:
        start: (N, n_in) index of the first local basis (may be negative or overflow at the
            ends of the knot span, where the corresponding local values are zero).
        local: (..., N, n_in, k + 1) local values.
        n_basis: G + k.

    Returns:
        (..., N, n_in, n_basis).
    """
    k1 = local.shape[-1]
    idx = start.unsqueeze(-1) + torch.arange(k1, device=start.device)  # (N, n_in, k + 1)
    valid = (idx >= 0) & (idx < n_basis)
    idx = idx.clamp(0, n_basis - 1).expand(local.shape)
    vals = torch.where(valid, local, torch.zeros((), dtype=local.dtype, device=local.device))
    out = torch.zeros(*local.shape[:-1], n_basis, dtype=local.dtype, device=local.device)
    return out.scatter_add(-1, idx, vals)


@functools.lru_cache(maxsize=None)
def uniform_basis_matrix(order: int) -> Tensor:
    """Polynomial form of the k + 1 bases that are non-zero on a cell of a uniform grid.

    With x = t_c + u h (0 <= u < 1), B_{c-k+m}(x) = sum_p M[m, p] u^p. Built by running the
    local recursion (see `uniform_local_jet`) on polynomial coefficient arrays.

    Returns:
        (k + 1, k + 1) float64 matrix M (cached: do not modify it in place).
    """
    levels = [torch.ones(1, 1, dtype=torch.float64)]  # order 0: one basis, polynomial 1
    for r in range(1, order + 1):
        prev = levels[-1]  # (r, r) rows: bases, columns: powers of u
        cur = torch.zeros(r + 1, r + 1, dtype=torch.float64)
        for m in range(r + 1):
            if m >= 1:  # (u + r - m) * B^{r-1}_{m-1}
                cur[m, 1:] += prev[m - 1]
                cur[m, :-1] += (r - m) * prev[m - 1]
            if m < r:  # (m + 1 - u) * B^{r-1}_m
                cur[m, :-1] += (m + 1) * prev[m]
                cur[m, 1:] -= prev[m]
        levels.append(cur / r)
    return levels[order]


def cell_polynomials(coef: Tensor, order: int, matrix: Tensor | None = None) -> Tensor:
    """Per grid cell, the polynomial in u of every edge's spline, with an empty cell at each end.

    Args:
        coef: (n_in, G + k, n_out) spline coefficients on uniform knots.
        order: k.
        matrix: `uniform_basis_matrix(order)` in coef's dtype and device, if already at hand.

    Returns:
        (n_in, G + 2k + 2, k + 1, n_out) A with spline(t_c + u h) = sum_p A[i, c + 1, p] u^p for
        the knot-span cells c = 0 .. G + 2k - 1; rows 0 and G + 2k + 1 are zero (points outside).
    """
    m = uniform_basis_matrix(order).to(coef) if matrix is None else matrix  # (k+1 bases, k+1 powers)
    padded = torch.nn.functional.pad(coef, (0, 0, order + 1, order + 1))  # (n_in, G+3k+2, n_out)
    cells = padded.shape[1] - order  # G + 2k + 2
    # Shifted slices rather than `unfold`: the same windows, and torch.func can batch their
    # backward (vmap has no rule for unfold's, and loops over the batch instead).
    windows = torch.stack([padded[:, m : m + cells] for m in range(order + 1)], dim=-1)  # (n_in, G+2k+2, n_out, k+1 bases)
    return torch.einsum("icom,mp->icpo", windows, m)


def uniform_cells(x: Tensor, knots: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cell index and local coordinate of x on uniform knots.

    Args:
        x: (N, n_in) points.
        knots: (n_in, M) uniformly spaced knots.

    Returns:
        cell: (N, n_in) int64 in [0, M]: c + 1 for x in cell c of the span, 0 left of it, M right.
        u: (N, n_in) position inside the cell, in [0, 1) within the span.
        h: (n_in,) knot spacing.
    """
    h = knots[:, 1] - knots[:, 0]
    s = (x - knots[:, 0]) / h
    # nan -> cell 0 (u stays nan, so is the value): a nan input must give nan, not an index error
    cell = torch.floor(s).nan_to_num(nan=-1.0).clamp(-1, knots.shape[1] - 1)
    return (cell + 1).long(), s - cell, h


def power_jet(u: Tensor, h: Tensor, order: int, derivatives: int) -> Tensor:
    """Powers u^p (p = 0..k) and their first and second x-derivatives (du/dx = 1/h).

    Args:
        u: (N, n_in) local coordinates.
        h: (n_in,) spacing.
        order: k.
        derivatives: 0, 1 or 2.

    Returns:
        (1 + derivatives, N, n_in, k + 1).
    """
    pows = [torch.ones_like(u), u]
    for _ in range(2, order + 1):
        pows.append(pows[-1] * u)
    pows = pows[: order + 1]
    out = [torch.stack(pows, dim=-1)]
    if derivatives >= 1:
        zero = torch.zeros_like(u)
        inv = 1 / h
        out.append(torch.stack([zero] + [p * pows[p - 1] * inv for p in range(1, order + 1)], dim=-1))
    if derivatives >= 2:
        inv2 = 1 / (h * h)
        out.append(torch.stack([zero, zero][: min(2, order + 1)]
                               + [p * (p - 1) * pows[p - 2] * inv2 for p in range(2, order + 1)], dim=-1))
    return torch.stack(out)
