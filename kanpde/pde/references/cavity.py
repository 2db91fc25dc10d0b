"""Steady lid-driven cavity flow by streamfunction-vorticity finite differences and Newton's method."""

from __future__ import annotations

import numpy as np

from kanpde.pde.references.base import Reference


def _tridiag(m, lower, diag, upper):
    import scipy.sparse as sparse

    return sparse.diags([np.full(m - 1, lower), np.full(m, diag), np.full(m - 1, upper)], [-1, 0, 1])


def solve_streamfunction(n: int, re: float, lid: float = 1.0, tol: float = 1e-11, max_iter: int = 30,
                         guess: tuple[np.ndarray, np.ndarray] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Newton solve of the steady streamfunction-vorticity equations on an n x n grid of [0, 1]^2.

    Unknowns psi and omega at the interior nodes; psi = 0 on the walls, wall vorticity by Thom's formula
    omega_w = -2 psi_1 / h^2 - 2 U_w / h (U_w the wall's tangential speed, positive along the lid).
    Interior equations, second-order central differences:
        lap psi + omega = 0,     lap omega / Re - psi_y omega_x + psi_x omega_y = 0.
    Newton's method from ``guess`` (psi, omega at all n x n nodes), or from psi = omega = 0, whose
    first step is the Stokes solution; stops when the largest update is below ``tol`` (relative).

    Returns:
        ``(x, psi, omega, iterations)``: x of shape (n,), psi and omega of shape (n, n) indexed
        [i, j] = (x_i, y_j); omega at the four corners is NaN (undefined).
    """
    import scipy.sparse as sparse
    from scipy.sparse.linalg import spsolve

    m = n - 2
    h = 1.0 / (n - 1)
    eye = sparse.identity(m, format="csr")
    d2 = _tridiag(m, 1.0, -2.0, 1.0) / h**2
    d1 = _tridiag(m, -0.5, 0.0, 0.5) / h
    lap = (sparse.kron(d2, eye) + sparse.kron(eye, d2)).tocsr()
    dx = sparse.kron(d1, eye).tocsr()
    dy = sparse.kron(eye, d1).tocsr()
    first = np.zeros((m, m))
    first[0, :] = first[-1, :] = 1.0
    ones = np.zeros((m, m))
    ones[:, 0], ones[:, -1] = 1.0, 1.0
    # Thom's wall vorticity enters the stencils of the wall-adjacent nodes as B psi + c (B diagonal)
    bl = -2.0 / h**4 * (first + ones).ravel()
    cl = np.zeros((m, m))
    cl[:, -1] = -2.0 * lid / h**3
    bx = np.zeros((m, m))
    bx[0, :], bx[-1, :] = 1.0 / h**3, -1.0 / h**3
    by = np.zeros((m, m))
    by[:, 0], by[:, -1] = 1.0 / h**3, -1.0 / h**3
    cy = np.zeros((m, m))
    cy[:, -1] = -lid / h**2
    bx, by, cl, cy = bx.ravel(), by.ravel(), cl.ravel(), cy.ravel()
    psi = np.zeros(m * m) if guess is None else np.array(guess[0][1:-1, 1:-1], dtype=float).ravel()
    omega = np.zeros(m * m) if guess is None else np.array(guess[1][1:-1, 1:-1], dtype=float).ravel()
    for iteration in range(1, max_iter + 1):
        psi_x, psi_y = dx @ psi, dy @ psi
        om_x, om_y = dx @ omega + bx * psi, dy @ omega + by * psi + cy
        r1 = lap @ psi + omega
        r2 = (lap @ omega + bl * psi + cl) / re - psi_y * om_x + psi_x * om_y
        j_psi = (sparse.diags(bl / re - psi_y * bx + psi_x * by) - sparse.diags(om_x) @ dy
                 + sparse.diags(om_y) @ dx)
        j_om = lap / re - sparse.diags(psi_y) @ dx + sparse.diags(psi_x) @ dy
        jac = sparse.bmat([[lap, sparse.identity(m * m)], [j_psi, j_om]], format="csc")
        step = spsolve(jac, -np.concatenate([r1, r2]))
        psi += step[: m * m]
        omega += step[m * m:]
        if np.abs(step).max() <= tol * max(1.0, np.abs(omega).max()):
            break
    else:
        raise RuntimeError(f"cavity: Newton did not converge in {max_iter} iterations (Re={re}, n={n})")
    x = np.linspace(0.0, 1.0, n)
    psi_full = np.zeros((n, n))
    psi_full[1:-1, 1:-1] = psi.reshape(m, m)
    om = np.full((n, n), np.nan)
    om[1:-1, 1:-1] = omega.reshape(m, m)
    om[0, 1:-1] = -2.0 * psi_full[1, 1:-1] / h**2
    om[-1, 1:-1] = -2.0 * psi_full[-2, 1:-1] / h**2
    om[1:-1, 0] = -2.0 * psi_full[1:-1, 1] / h**2
    om[1:-1, -1] = -2.0 * psi_full[1:-1, -2] / h**2 - 2.0 * lid / h
    return x, psi_full, om, iteration


def velocity(psi: np.ndarray, lid: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """u = psi_y, v = -psi_x by central differences at interior nodes; wall values from the boundary data.

    The lid (y = 1) has u = ``lid`` strictly between the corners; the corners belong to the side walls
    (u = 0). The discrete divergence (central differences) of the result vanishes at interior nodes.
    """
    n = psi.shape[0]
    h = 1.0 / (n - 1)
    u = np.zeros_like(psi)
    v = np.zeros_like(psi)
    u[1:-1, 1:-1] = (psi[1:-1, 2:] - psi[1:-1, :-2]) / (2 * h)
    v[1:-1, 1:-1] = -(psi[2:, 1:-1] - psi[:-2, 1:-1]) / (2 * h)
    u[1:-1, -1] = lid
    return u, v


def _second(f, h, axis):
    f = np.moveaxis(f, axis, 0)
    d = np.empty_like(f)
    d[1:-1] = (f[2:] - 2 * f[1:-1] + f[:-2]) / h**2
    d[0] = (2 * f[0] - 5 * f[1] + 4 * f[2] - f[3]) / h**2
    d[-1] = (2 * f[-1] - 5 * f[-2] + 4 * f[-3] - f[-4]) / h**2
    return np.moveaxis(d, 0, axis)


def pressure(u: np.ndarray, v: np.ndarray, re: float) -> np.ndarray:
    """Pressure of a steady velocity field on the uniform n x n grid of [0, 1]^2, pinned to p(0, 0) = 0.

    With F = -(u . grad) u + lap u / Re (second-order differences, one-sided at the walls), grad p = F
    is solved in the least-squares sense of the pressure Poisson equation lap p = div F with
    dp/dn = F . n on the walls, discretised by finite volumes on the node-centred dual cells (face
    gradients (p_b - p_a) / h, face values of F the mean of its two nodes). The discrete problem is
    compatible by construction; one equation is replaced by the pin.
    """
    import scipy.sparse as sparse
    from scipy.sparse.linalg import spsolve

    n = u.shape[0]
    h = 1.0 / (n - 1)
    grad = [np.gradient(w, h, edge_order=2) for w in (u, v)]
    fx = -(u * grad[0][0] + v * grad[0][1]) + (_second(u, h, 0) + _second(u, h, 1)) / re
    fy = -(u * grad[1][0] + v * grad[1][1]) + (_second(v, h, 0) + _second(v, h, 1)) / re
    width = np.full(n, h)
    width[[0, -1]] = h / 2
    index = np.arange(n * n).reshape(n, n)
    rows, cols, vals = [], [], []
    rhs = np.zeros(n * n)
    for f, a, b, w in ((fx, index[:-1, :], index[1:, :], width[None, :]),
                       (fy, index[:, :-1], index[:, 1:], width[:, None])):
        w = np.broadcast_to(w, a.shape).ravel()
        a, b = a.ravel(), b.ravel()
        flux = w * 0.5 * (f.ravel()[a] + f.ravel()[b])
        c = w / h
        rows += [a, a, b, b]
        cols += [a, b, b, a]
        vals += [-c, c, -c, c]
        np.add.at(rhs, a, flux)
        np.add.at(rhs, b, -flux)
    mat = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(n * n, n * n)).tolil()
    mat[0, :] = 0.0
    mat[0, 0] = 1.0
    rhs[0] = 0.0
    return spsolve(mat.tocsc(), rhs).reshape(n, n)


def _refine(c: np.ndarray) -> np.ndarray:
    """Local cubic interpolation of c (..., m, m) to the grid of half the spacing (..., 2m - 1, 2m - 1).

    Midpoints by the 4-point stencil (-1, 9, 9, -1) / 16, one-sided (5, 15, -5, 1) / 16 next to the edges;
    local, so a corner singularity does not ring through the whole field as with a global spline.
    """
    for axis in (-2, -1):
        c = np.moveaxis(c, axis, 0)
        out = np.empty((2 * c.shape[0] - 1, *c.shape[1:]))
        out[::2] = c
        mid = (9 * (c[1:-2] + c[2:-1]) - (c[:-3] + c[3:])) / 16
        out[3:-3:2] = mid
        out[1] = (5 * c[0] + 15 * c[1] - 5 * c[2] + c[3]) / 16
        out[-2] = (5 * c[-1] + 15 * c[-2] - 5 * c[-3] + c[-4]) / 16
        c = np.moveaxis(out, 0, axis)
    return c


def _fields(n, re, lid, guess=None):
    x, psi, omega, _ = solve_streamfunction(n, re, lid, guess=guess)
    u, v = velocity(psi, lid)
    return x, psi, omega, np.stack([u, v, pressure(u, v, re)])


def cavity(re: float = 100.0, n: int = 257, richardson: bool = True) -> Reference:
    """Steady lid-driven cavity: incompressible Navier-Stokes on (0, 1)^2, lid u = 1 at y = 1.

    Solves (u . grad) u + grad p = lap u / Re, div u = 0, with no slip on the other walls, in
    streamfunction-vorticity form by second-order central finite differences (Thom's wall vorticity)
    and Newton's method (``solve_streamfunction``); u = psi_y, v = -psi_x by central differences;
    the pressure from the pressure Poisson equation of that velocity (``pressure``), pinned to
    p(0, 0) = 0 (not mean zero: p is singular, ~ 1/r, at the lid corners). Second order in h = 1/(n-1).
    With ``richardson`` the problem is also solved on the grid of spacing 2h and the Richardson
    correction (f_h - f_2h) / 3, interpolated from the coarse nodes by local cubics (``_refine``), is added to u, v, p.
    Accuracy at the defaults: the centreline extrema (min u on x = 0.5, max and min v on y = 0.5) agree
    with the spectral benchmark of Botella & Peyret (1998) to < 1e-5 relative (7e-4..9e-4 without the
    Richardson correction), their positions to 1e-4; away from the lid corners (y < 0.8) u and v
    change by < 5e-5 between n = 129 and 257, p by < 3e-4 (p is the least accurate output: the
    corner singularity pollutes it globally). Within a few cells of the lid corners, where the
    velocity is discontinuous, errors reach 1e-2. Ghia, Ghia & Shin's (1982) table deviates from this
    solution by up to 0.009 (3.4% at min v). About 25-40 s at the defaults (two Newton solves).

    Args:
        re: Reynolds number, > 0 (steady solutions exist up to several thousand; Newton from the
            Stokes flow converges for moderate Re such as 100..1000).
        n: grid points per axis, odd, >= 9 (>= 129 for a reference-quality result).
        richardson: add the Richardson correction from the grid of (n + 1) / 2 points.

    Returns:
        Reference with variables ("x", "y"), outputs ("u", "v", "p"), values of shape (3, n, n).
    """
    if isinstance(re, bool) or not isinstance(re, (int, float, np.number)) or not np.isfinite(re) or re <= 0:
        raise ValueError(f"re: got {re!r}; must be a finite number > 0")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 9 or n % 2 == 0:
        raise ValueError(f"n: got {n!r}; must be an odd integer >= 9")
    if not isinstance(richardson, (bool, np.bool_)):
        raise ValueError(f"richardson: got {richardson!r}; must be True or False")
    re, n = float(re), int(n)
    guess = None
    if richardson:
        xc, psi_c, om_c, coarse = _fields((n + 1) // 2, re, 1.0)
        x = np.linspace(0.0, 1.0, n)
        fine_points = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)
        from scipy.interpolate import RegularGridInterpolator

        guess = tuple(RegularGridInterpolator((xc, xc), np.nan_to_num(f))(fine_points) for f in (psi_c, om_c))
    x, _, _, values = _fields(n, re, 1.0, guess)
    if richardson:
        values = values + _refine((values[:, ::2, ::2] - coarse) / 3.0)
    settings = dict(solver="streamfunction-vorticity/finite-differences/newton", re=re, n=n,
                    richardson=bool(richardson), lid=1.0, pressure_pin="p(0,0)=0")
    return Reference(("x", "y"), (x, x.copy()), values, ("u", "v", "p"), settings)
