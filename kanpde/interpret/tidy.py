"""Tidying a logit formula on labelled data: refit its numbers, drop terms, round numbers.

A formula read off a snapped KAN (`kanpde.interpret.formula`) holds every term the network used, with
constants from one-edge-at-a-time fits. These steps, each judged on the training data by the
binary cross-entropy of sigmoid(formula) or by accuracy (positive logit = label 1), turn it into
the shortest formula that classifies as well:

    refit            every float constant by the cross-entropy (BFGS)
    linearize        a function left in its straight part -> its tangent
    select_terms     the fewest terms that classify about as well as all (best-subset search)
    snap_arguments   constants inside function arguments rounded (cosh(0.97 p) -> cosh(p))
    snap_coefficients  term coefficients rounded relative to the largest

Shapes: x is (N, len(inputs)) with the columns named by `inputs`, y is (N,) labels in {0, 1}.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import sympy as sp
from scipy.optimize import minimize


def logits(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """The formula on every row of x: (N,) float64."""
    f = sp.lambdify(list(map(sp.Symbol, inputs)), expr, "numpy")
    return np.broadcast_to(np.asarray(f(*(x[:, k] for k in range(x.shape[1]))), dtype=float), (len(x),))


def bce(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of sigmoid(expr) against y (logits clipped to +-50)."""
    z = np.clip(logits(expr, inputs, x), -50, 50)
    return float(np.mean(np.logaddexp(0, z) - y * z))


def accuracy(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of states whose label is 1 exactly where the logit formula is positive."""
    return float(np.mean((logits(expr, inputs, x) > 0) == (y > 0.5)))


def refit(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> sp.Expr:
    """Refit the formula's float constants (sympy Floats; exact numbers such as the 1 of a
    snapped cosh(p) stay) by the binary cross-entropy; the same Float in several places is one
    constant.

    Returns:
        expr with the refitted constants (the same form); expr itself if the fit did not help.
    """
    consts = list(expr.atoms(sp.Float))
    thetas = tuple(sp.Dummy(f"theta{k}") for k in range(len(consts)))  # never an input's name
    template = expr.xreplace(dict(zip(consts, thetas)))
    values = _fit(template, thetas, [float(c) for c in consts], inputs, x, y)
    return template.xreplace({t: sp.Float(v) for t, v in zip(thetas, values)})


def _fit(template: sp.Expr, thetas: tuple[sp.Symbol, ...], start: list[float], inputs: tuple[str, ...],
         x: np.ndarray, y: np.ndarray) -> list[float]:
    """The values of the symbols `thetas` in `template` that minimise the cross-entropy (BFGS from
    `start`); `start` itself if the fit did not lower it."""
    if not thetas:
        return []
    f = sp.lambdify([*map(sp.Symbol, inputs), *thetas], template, "numpy")
    cols = [x[:, k] for k in range(x.shape[1])]

    def loss(theta: np.ndarray) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.broadcast_to(np.asarray(f(*cols, *theta), dtype=float), y.shape)
        z = np.clip(z, -50, 50)
        value = float(np.mean(np.logaddexp(0, z) - y * z))
        return value if np.isfinite(value) else np.inf

    theta0 = np.array(start, dtype=float)
    res = minimize(loss, theta0, method="BFGS", options={"maxiter": 200})
    return list(res.x) if np.isfinite(res.fun) and res.fun <= loss(theta0) else list(theta0)


def linearize(expr: sp.Expr, data: dict[str, np.ndarray], tol: float = 0.02) -> sp.Expr:
    """Replace functions f(u) by their tangent at the middle of u's range on the data,
    f(m) + f'(m) (u - m), one at a time, wherever that changes the whole formula by at most tol
    times its root mean square on the data. A refit can drive a snapped sin or tanh into its
    nearly straight part (sin(0.01 x + 0.3)); this turns it back into x.

    Args:
        expr: a formula of the symbols in data.
        data: {name: (N,) values}.
        tol: allowed relative RMS change of the formula.
    """
    names = sorted(data)
    symbols = [sp.Symbol(n) for n in names]

    def values(e: sp.Expr) -> np.ndarray:
        n = len(data[names[0]])
        return np.broadcast_to(np.asarray(sp.lambdify(symbols, e, "numpy")(*(data[k] for k in names)),
                                          dtype=float), (n,))

    base = values(expr)
    scale = float(np.sqrt(np.mean(base**2))) or 1.0
    for g in sorted(expr.atoms(sp.Function), key=str):
        if len(g.args) != 1 or not g.args[0].free_symbols:
            continue
        arg = g.args[0]
        u = values(arg)
        if not np.all(np.isfinite(u)):
            continue
        t = sp.Dummy("t")
        m = 0.5 * (float(u.min()) + float(u.max()))
        tangent = g.func(t).subs(t, m) + sp.diff(g.func(t), t).subs(t, m) * (arg - m)
        candidate = expr.xreplace({g: sp.Float(float(tangent.subs({}).as_coeff_Add()[0])) + (tangent - tangent.as_coeff_Add()[0])})
        change = values(candidate) - base
        if np.all(np.isfinite(change)) and np.sqrt(np.mean(change**2)) <= tol * scale:
            expr = candidate
    return sp.expand(expr)


def select_terms(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray,
                 tol: float = 0.005, exhaustive: int = 4, budget: int = 20000, max_rows: int = 20000,
                 seed: int = 0) -> sp.Expr:
    """The fewest additive terms of the formula that classify about as well as all of them.

    Each term of the expanded formula (its number stripped, the numbers inside functions kept)
    is a feature; a logistic regression on a subset of features is convex, so every subset gets
    its best coefficients (Newton's method). Best-subset search: for k = 1, 2, ..., `exhaustive`
    terms, the k-subset with the lowest cross-entropy; the first whose training accuracy is
    within `tol` of all terms' wins. Past `exhaustive`, backward elimination (drop the term that
    costs least, while the accuracy stays within `tol`). The winner's constants, those inside
    functions included, are then refitted (`refit`).

    Why not drop small terms: a formula read off a network often holds large terms that nearly
    cancel (E lam, lam^2, lam and a constant standing in for E), so the terms the boundary needs
    are not the largest; and greedy elimination can lose a needed term on the way.

    Args:
        expr: a logit formula; x (N, d) inputs named `inputs`; y (N,) labels in {0, 1}.
        tol: accuracy (fraction) the dropped terms may cost together.
        exhaustive: largest subset size searched exhaustively (C(n, k) fits of k features),
            lowered so that the search needs at most `budget` fits.
        max_rows: the search uses at most this many rows of x (a seeded random subset).
        seed: the row subset's seed.

    Returns:
        the refitted formula of the chosen terms (all of them when none can go).
    """
    terms = [t.as_coeff_Mul()[1] for t in sp.Add.make_args(sp.expand(expr))]
    if len(terms) < 2:
        return refit(expr, inputs, x, y)
    rows = np.random.default_rng(seed).permutation(len(x))[:max_rows]
    with np.errstate(all="ignore"):
        feats = np.stack([logits(t, inputs, x[rows]) for t in terms], axis=1)  # (n, T)
    usable = [k for k in range(len(terms)) if np.all(np.isfinite(feats[:, k]))]
    scale = np.where(np.isfinite(feats).all(axis=0) & (feats.std(axis=0) > 0), feats.std(axis=0), 1.0)
    feats = feats / scale  # (n, T), a constant term stays 1
    yr = y[rows]

    def fit(cols: tuple[int, ...]) -> tuple[float, float, np.ndarray]:
        w, loss, acc = _logistic(feats[:, cols], yr)
        return loss, acc, w

    def best(subsets) -> tuple[float, float, tuple[int, ...]]:  # (loss, accuracy, subset)
        return min((fit(c)[:2] + (c,) for c in subsets), key=lambda r: r[0])

    floor = fit(tuple(usable))[1] - tol
    chosen = None
    fits, kmax = 0, 0
    while kmax < min(exhaustive, len(usable) - 1) and fits + math.comb(len(usable), kmax + 1) <= budget:
        kmax += 1
        fits += math.comb(len(usable), kmax)
    for k in range(1, kmax + 1):
        _, acc, cols = best(itertools.combinations(usable, k))
        if acc >= floor:
            chosen = cols
            break
    if chosen is None:  # backward elimination from all terms
        chosen = tuple(usable)
        while len(chosen) > 1:
            _, acc, cols = best(itertools.combinations(chosen, len(chosen) - 1))
            if acc < floor:
                break
            chosen = cols
    w = fit(chosen)[2] / scale[list(chosen)]
    return refit(sp.Add(*(sp.Float(float(c)) * terms[k] for c, k in zip(w, chosen))), inputs, x, y)


def _logistic(a: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[np.ndarray, float, float]:
    """Logistic regression without intercept by Newton's method with backtracking.

    Args:
        a: (n, k) features; y: (n,) labels in {0, 1}.

    Returns:
        (weights (k,), mean cross-entropy, accuracy).
    """
    w = np.zeros(a.shape[1])
    ridge = 1e-8

    def loss(w: np.ndarray) -> float:
        z = a @ w
        return float(np.mean(np.logaddexp(0, z) - y * z) + ridge * w @ w)

    current = loss(w)
    for _ in range(iters):
        z = a @ w
        prob = 0.5 * (1 + np.tanh(z / 2))  # sigmoid, no overflow
        grad = a.T @ (prob - y) / len(y) + 2 * ridge * w
        hess = (a * (prob * (1 - prob))[:, None]).T @ a / len(y) + 2 * ridge * np.eye(len(w))
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        while loss(w - t * step) > current - 1e-4 * t * grad @ step and t > 1e-8:
            t /= 2
        w, previous, current = w - t * step, current, loss(w - t * step)
        if previous - current < 1e-12:
            break
    return w, current, float(np.mean(((a @ w) > 0) == (y > 0.5)))


def snap_arguments(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray,
                   digits: int = 1, tol: float = 1e-3) -> sp.Expr:
    """Round the constants inside function arguments (cosh(0.971 p) -> cosh(p)), one at a time,
    to a whole number if that costs at most `tol` training accuracy (after refitting the rest),
    else to 1, ..., `digits` decimals under the same test; else keep it. A rounded constant
    becomes an exact number, so later refits keep it.

    Args:
        expr: a logit formula; x (N, d) inputs named `inputs`; y (N,) labels in {0, 1}.
    """
    inner = sorted({c for g in expr.atoms(sp.Function) for c in g.atoms(sp.Float)},
                   key=lambda c: -abs(float(c)))
    consts = inner + [c for c in expr.atoms(sp.Float) if c not in inner]
    thetas = tuple(sp.Dummy(f"theta{k}") for k in range(len(consts)))  # never an input's name
    template = expr.xreplace(dict(zip(consts, thetas)))
    values = {t: float(c) for t, c in zip(thetas, consts)}  # the free constants

    def at(t: sp.Expr, v: dict) -> sp.Expr:
        return t.xreplace({s: sp.Float(u) for s, u in v.items()})

    for theta in thetas[:len(inner)]:
        floor = accuracy(at(template, values), inputs, x, y) - tol
        rest = [t for t in values if t != theta]
        for d in range(digits + 1):
            candidate = template.xreplace({theta: sp.Rational(round(values[theta] * 10**d), 10**d)})
            fitted = dict(zip(rest, _fit(candidate, rest, [values[t] for t in rest], inputs, x, y)))
            if accuracy(at(candidate, fitted), inputs, x, y) >= floor:
                template, values = candidate, fitted
                break
    out = at(template, values)  # a function left without a variable (sin(4)) is a number
    return out.xreplace({g: sp.Float(float(g)) for g in out.atoms(sp.Function) if not g.free_symbols})


def snap_coefficients(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray,
                      digits: int = 1, tol: float = 1e-3) -> sp.Expr:
    """Round the formula's term coefficients, relative to the largest, to `digits` decimals
    (pykan's rounding step, on the whole formula) when that costs at most `tol` training accuracy;
    the common scale is kept (it sets the logit's steepness, not the boundary).

    Args:
        expr: a logit formula; x (N, d) inputs named `inputs`; y (N,) labels in {0, 1}.
    """
    terms = term_coefficients(expr)
    big = max((abs(c) for c in terms.values()), default=0.0)
    if big == 0:
        return expr
    snapped = sum(big * round(c / big, digits) * t for t, c in terms.items())
    if accuracy(snapped, inputs, x, y) >= accuracy(expr, inputs, x, y) - tol:
        return sp.expand(snapped)
    return expr


def term_coefficients(expr: sp.Expr) -> dict[sp.Expr, float]:
    """{monomial or function term: its coefficient} of the expanded expression."""
    out: dict[sp.Expr, float] = {}
    for term in sp.Add.make_args(sp.expand(expr)):
        coef, rest = term.as_coeff_Mul()
        out[rest] = out.get(rest, 0.0) + float(coef)
    return out


