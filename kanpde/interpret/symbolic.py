"""Symbolic snapping of KAN edges (arXiv 2404.19756, sec. 2.5.1; pykan's suggest/fix_symbolic).

An edge function phi(x) is replaced by a f(b x + c) + d with f from a small library. For one f,
`fit_affine` grid-searches the inner (b, c), solves the outer (a, d) by linear least squares at
every grid point, then refines all four by Levenberg-Marquardt. `suggest` ranks library functions
by a score that trades R^2 against complexity (pykan's): w * complexity + (1 - w) log2(1 + 1e-5 - R^2),
over all functions but the constant "0" unless asked (see DEFAULT_NAMES: unlike pykan).
`auto_symbolic` snaps every active spline edge of a KAN to its best suggestion.

Domain-restricted functions (log, sqrt, 1/x) have safe torch and numpy versions that equal the
formula on their domain and stay finite, with finite gradients, off it (pykan's idea): log and
sqrt are clamped below at 1e-6 and 1e-12, 1/x turns linear, x / 1e-12, for |x| < 1e-6. A fit
only accepts (b, c) that keep every sample's argument in the domain, so the sympy formula equals
the network's edge on the data it was fitted to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from scipy.optimize import least_squares
from torch import Tensor, nn

from kanpde.nn.functions import LIBRARY, SymbolicFunction
from kanpde.nn.kan import edge_key
from kanpde.validate import ConfigError, check_int, check_number

# Candidates of `suggest` by default: not "0". Its R^2 is 0 whatever the edge's size, and with
# complexity 0 it would beat every function below R^2 ~0.94, zeroing edges that matter; removing
# negligible edges is pruning's job (kanpde.interpret.prune). Pass it in `names` to allow it.
DEFAULT_NAMES: tuple[str, ...] = tuple(n for n in LIBRARY if n != "0")
# Symmetries used to report one canonical (a, b, c, d): f(-z) = k - f(z) (k below), f(-z) = f(z),
# and 2 pi periods.
_ODD = {"x": 0, "x^3": 0, "sin": 0, "tanh": 0, "arctan": 0, "1/x": 0, "sigmoid": 1}
_EVEN = {"x^2", "cos", "cosh", "abs"}
_PERIODIC = {"sin", "cos"}


def function(name: str) -> SymbolicFunction:
    """LIBRARY[name], or ConfigError naming the allowed names."""
    if name not in LIBRARY:
        raise ConfigError(f"symbolic function {name!r} is not known; allowed: {', '.join(LIBRARY)}")
    return LIBRARY[name]


@dataclass(frozen=True)
class Fit:
    """y ~ a f(b x + c) + d.

    Attributes:
        name: the library function f.
        params: (a, b, c, d).
        r2: coefficient of determination on the fitted samples.
        score: `suggest`'s ranking score (lower is better); nan from `fit_affine`.
    """

    name: str
    params: tuple[float, float, float, float]
    r2: float
    score: float = math.nan

    def __call__(self, x) -> np.ndarray:
        """(N,) values of the fitted function at x (N,)."""
        a, b, c, d = self.params
        return a * LIBRARY[self.name].numpy(b * _as_array(x, "x") + c) + d


def _as_array(v, name: str) -> np.ndarray:
    if isinstance(v, Tensor):
        v = v.detach().cpu().double().numpy()
    v = np.asarray(v, dtype=float)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise ConfigError(f"{name} must be a 1-D array of finite numbers, got shape {v.shape}")
    return v


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    """1 - SSE / SST; for constant y, 1 if the prediction matches it, else 0."""
    sse, sst = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    if sst <= 1e-28 * len(y) * (1 + y.mean() ** 2):
        return 1.0 if sse <= 1e-24 * len(y) * (1 + y.mean() ** 2) else 0.0
    return 1 - sse / sst


def _canonical(name: str, a: float, b: float, c: float, d: float) -> tuple[float, ...]:
    """One representative of the (a, b, c) that give the same curve: b >= 0, and for sin/cos
    a >= 0 and c in [0, 2 pi)."""
    if b < 0 and name in _ODD:
        a, b, c, d = -a, -b, -c, d + _ODD[name] * a
    elif b < 0 and name in _EVEN:
        b, c = -b, -c
    if name in _PERIODIC:
        if a < 0:
            a, c = -a, c + math.pi
        c = math.fmod(c, 2 * math.pi)
        c += 2 * math.pi if c < 0 else 0.0
    return float(a), float(b), float(c), float(d)


def _grid_r2(fn: SymbolicFunction, u: np.ndarray, y: np.ndarray, beta: np.ndarray,
             gamma: np.ndarray) -> np.ndarray:
    """R^2 of the best a f(beta u + gamma) + d for every (beta, gamma): (B, C); -inf where a
    sample leaves the domain or f is not finite."""
    z = beta[:, None, None] * u + gamma[None, :, None]  # (B, C, n)
    with np.errstate(all="ignore"):
        f = fn.numpy(z)
        ok = np.isfinite(f).all(-1) & (True if fn.domain is None else fn.domain(z).all(-1))
        f = np.where(ok[..., None], f, 0.0)
        fc = f - f.mean(-1, keepdims=True)
        yc = y - y.mean()
        var = (fc**2).sum(-1)
        cov = (fc * yc).sum(-1)
        r2 = np.where(var > 1e-24 * len(u), cov**2 / (var * max((yc**2).sum(), 1e-300)), 0.0)
    return np.where(ok, r2, -np.inf)


def _outer(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, d) minimising |a f + d - y|."""
    fc = f - f.mean()
    var = float((fc**2).sum())
    a = float((fc * (y - y.mean())).sum()) / var if var > 1e-24 * len(f) else 0.0
    return a, float(y.mean() - a * f.mean())


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Least-squares polynomial coefficients, lowest power first: (degree + 1,). Fitted on x
    scaled to [-1, 1] (well conditioned even for few distinct x), then converted back."""
    coef = np.polynomial.Polynomial.fit(x, y, degree).convert().coef
    return np.pad(coef, (0, degree + 1 - len(coef)))


def fit_affine(x, y, name: str, b_range: tuple[float, float] = (-10.0, 10.0),
               c_range: tuple[float, float] = (-10.0, 10.0), grid: int = 61,
               max_points: int = 256) -> Fit:
    """Fit y ~ a f(b x + c) + d for the library function `name`.

    "0", "x" and "x^2" are solved in closed form (least squares). Otherwise x is standardised,
    u = (x - mean) / std, and f(beta u + gamma) is searched over a grid x grid of (beta, gamma) in
    b_range x c_range on at most max_points samples, then over a finer grid around the best,
    with (a, d) by least squares at each; Levenberg-Marquardt on at most 16 max_points samples
    refines the four. R^2 is measured on all samples.

    Args:
        x: (N,) inputs (numpy or torch).
        y: (N,) outputs.
        name: a key of LIBRARY.
        b_range, c_range: search ranges of the inner slope and shift in standardised units.
        grid: points per axis of the coarse search.
        max_points: samples used by the grid search.

    Returns:
        the Fit, params canonical under f's symmetries (b >= 0; sin/cos: a >= 0, c in [0, 2 pi)).
    """
    fn = function(name)
    x, y = _as_array(x, "x"), _as_array(y, "y")
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError(f"x and y must have the same length >= 2, got {len(x)} and {len(y)}")
    if name == "0" or np.ptp(x) == 0:
        params = (0.0, 1.0, 0.0, float(y.mean()))
        return Fit(name, params, _r2(y, np.full_like(y, y.mean())))
    if name == "x":
        icept, slope = _polyfit(x, y, 1)
        return Fit(name, (float(slope), 1.0, 0.0, float(icept)), _r2(y, slope * x + icept))
    if name == "x^2":
        p0, p1, p2 = _polyfit(x, y, 2)
        if p2 != 0:
            c = p1 / (2 * p2)
            params = _canonical(name, p2, 1.0, c, p0 - p2 * c**2)
            return Fit(name, params, _r2(y, np.polyval([p2, p1, p0], x)))
    mean, std = float(x.mean()), float(x.std())
    u = (x - mean) / std
    sub = np.argsort(u)[np.unique(np.linspace(0, len(u) - 1, min(max_points, len(u))).astype(int))]
    beta, gamma = np.linspace(*b_range, grid), np.linspace(*c_range, grid)
    r2 = _grid_r2(fn, u[sub], y[sub], beta, gamma)
    ib, ic = np.unravel_index(np.argmax(r2), r2.shape)
    db, dc = beta[1] - beta[0], gamma[1] - gamma[0]
    beta = np.linspace(beta[ib] - db, beta[ib] + db, 21)
    gamma = np.linspace(gamma[ic] - dc, gamma[ic] + dc, 21)
    r2 = _grid_r2(fn, u[sub], y[sub], beta, gamma)
    ib, ic = np.unravel_index(np.argmax(r2), r2.shape)
    p0 = np.array([0.0, beta[ib], gamma[ic], 0.0])
    if np.isfinite(r2[ib, ic]):
        p0[[0, 3]] = _outer(fn.numpy(p0[1] * u + p0[2]), y)
    lm = np.argsort(u)[np.unique(np.linspace(0, len(u) - 1, min(16 * max_points, len(u))).astype(int))]
    best = _refine(fn, u[lm], y[lm], p0) if np.isfinite(r2[ib, ic]) else p0
    a, bt, gm, d = best
    b, c = bt / std, gm - bt * mean / std
    pred = a * fn.numpy(b * x + c) + d
    return Fit(name, _canonical(name, a, b, c, d), _r2(y, pred) if np.isfinite(r2[ib, ic]) else 0.0)


def _refine(fn: SymbolicFunction, u: np.ndarray, y: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Levenberg-Marquardt on (a, beta, gamma, d) from p0; p0 where that does not improve."""

    def residual(p):
        z = p[1] * u + p[2]
        with np.errstate(all="ignore"):
            r = p[0] * fn.numpy(z) + p[3] - y
        if not np.isfinite(r).all() or (fn.domain is not None and not fn.domain(z).all()):
            return np.full_like(y, 1e150)  # a rejected step
        return r

    sse0 = float((residual(p0) ** 2).sum())
    if len(u) < 4 or sse0 == 0:
        return p0
    try:
        res = least_squares(residual, p0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=200)
    except (ValueError, FloatingPointError):
        return p0
    return res.x if float((residual(res.x) ** 2).sum()) < sse0 else p0


def score(r2: float, complexity: int, weight_simple: float = 0.8) -> float:
    """pykan's ranking score, lower is better: w complexity + (1 - w) log2(1 + 1e-5 - R^2)."""
    r2 = min(max(r2, 0.0), 1.0)
    return weight_simple * complexity + (1 - weight_simple) * math.log2(1 + 1e-5 - r2)


def suggest(x, y, names: Sequence[str] | None = None, weight_simple: float = 0.8, top: int = 5,
            r2_tol: float = 0.0) -> list[Fit]:
    """Fit every candidate function and rank them, simplest at similar R^2 first.

    With the default weight one unit of complexity is worth a 16-fold smaller 1 - R^2, and
    1 - R^2 below ~1e-5 counts as exact. Scores within 1e-6 tie; ties go to the lower
    complexity, then to the earlier LIBRARY entry (so exact sin data picks sin, not cos).
    With r2_tol > 0, the simplest fit whose R^2 is within r2_tol of the winner's goes first: a
    function used only where it is nearly straight (sin(0.01 x + 0.3)) loses to x.

    Args:
        x, y: (N,) samples of the edge's input and output.
        names: candidate LIBRARY keys (default: DEFAULT_NAMES, all but "0").
        weight_simple: w in [0, 1].
        top: how many fits to return.
        r2_tol: R^2 margin within which simplicity decides (0: the score alone).

    Returns:
        up to `top` Fits, best first, each with its score.
    """
    names = list(DEFAULT_NAMES) if names is None else list(names)
    check_int(top, "top", minimum=1)
    weight_simple = check_number(weight_simple, "weight_simple", minimum=0.0)
    if weight_simple > 1:
        raise ConfigError(f"weight_simple must be in [0, 1], got {weight_simple!r}")
    order = {n: k for k, n in enumerate(LIBRARY)}
    fits = []
    for name in names:
        fit = fit_affine(x, y, name)
        s = score(fit.r2, LIBRARY[name].complexity, weight_simple)
        fits.append(Fit(fit.name, fit.params, fit.r2, s))
    fits.sort(key=lambda f: (round(f.score, 6), LIBRARY[f.name].complexity, order[f.name]))
    if r2_tol > 0:  # a simpler fit nearly as good as the winner takes its place
        close = [f for f in fits if f.r2 >= fits[0].r2 - r2_tol]
        simplest = min(close, key=lambda f: (LIBRARY[f.name].complexity, fits.index(f)))
        fits.remove(simplest)
        fits.insert(0, simplest)
    return fits[:top]


def edge_samples(model: nn.Module, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Every layer's input and edge outputs for network input x (mult nodes via model.combine).

    Args:
        model: a KAN.
        x: (N, width[0]).

    Returns:
        per layer l, (h, e): h (N, n_in) its input, e (N, n_in, n_out) its edges' outputs.
    """
    out = []
    with torch.no_grad():
        h = x
        for l, layer in enumerate(model.layers):
            e = layer.edges(h)
            out.append((h, e))
            h = model.combine(l, e.sum(dim=1) + layer.bias)  # (N, width[l+1])
    return out


def node_counts(model: nn.Module, l: int) -> tuple[int, int]:
    """(sum nodes, multiplication nodes) fed by layer l, i.e. of node layer l + 1."""
    width, mult = model.config.width, getattr(model.config, "mult", None)
    n_mult = 0 if mult is None else int(mult[l + 1])
    return width[l + 1] - n_mult, n_mult


def _parse_hints(hints: Mapping[str, str] | None, model: nn.Module) -> dict[tuple[int, int, int], str]:
    parsed = {}
    for key, name in (hints or {}).items():
        edge = edge_key(key, model.layers, "symbolic hint")
        function(name)
        parsed[edge] = name
    return parsed


def auto_symbolic(model: nn.Module, x: Tensor, names: Sequence[str] | None = None, r2_threshold: float = 0.0,
                  weight_simple: float = 0.8, hints: Mapping[str, str] | None = None,
                  r2_tol: float = 0.0) -> list[dict]:
    """Snap every active spline edge of a KAN to its best symbolic fit, in place.

    Layer by layer: the samples of layer l come from a forward pass with layers < l already
    snapped, so each fit sees the inputs the symbolic network will feed it.

    Args:
        model: a KAN with `fix_symbolic` on its layers.
        x: (N, width[0]) network inputs whose forward pass gives the samples.
        names: candidate LIBRARY keys (default: DEFAULT_NAMES).
        r2_threshold: an edge whose best fit has a lower R^2 stays a spline.
        weight_simple: see `suggest`.
        hints: {"l,i,j": name} forces that function on edge i -> j of layer l.
        r2_tol: see `suggest`.

    Returns:
        one dict per active spline edge: layer, i, j, name, params, r2 and fixed (bool).
    """
    forced = _parse_hints(hints, model)
    r2_threshold = check_number(r2_threshold, "r2_threshold")
    report = []
    for l, layer in enumerate(model.layers):
        h, e = edge_samples(model, x)[l]
        for i in range(layer.in_dim):
            for j in range(layer.out_dim):
                if not layer.mask[i, j] or layer.sym_mask[i, j]:
                    continue
                xs, ys = h[:, i], e[:, i, j]
                if (l, i, j) in forced:
                    best = fit_affine(xs, ys, forced[(l, i, j)])
                else:
                    best = suggest(xs, ys, names, weight_simple, top=1, r2_tol=r2_tol)[0]
                fixed = best.r2 >= r2_threshold or (l, i, j) in forced
                if fixed:
                    layer.fix_symbolic(i, j, best.name, params=best.params)
                report.append({"layer": l, "i": i, "j": j, "name": best.name, "params": best.params,
                               "r2": best.r2, "fixed": fixed})
    return report
