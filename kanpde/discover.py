"""From a trained KAN to a formula: prune, snap to symbolic functions, tidy, refit, compare
(arXiv 2404.19756, sec. 2.5.1 and 4.4; the "automatic mode" of its Figure 2.4).

    trained KAN --prune--> sparse KAN --auto_symbolic--> symbolic KAN --formula--> sympy
    --prune_terms--> fewer terms --refit (the problem's loss on the constants)--> the formula

Every step is a function of the model and the data; `discover` chains them with the settings of
the `interpret` config group and returns what it found. `compare` tells how close a formula is to
a known one (e.g. the theory's mobility edge) up to a common factor.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import sympy as sp
import torch
from scipy.optimize import minimize

from kanpde.formula import formula, latex, prune_terms
from kanpde.kan import KAN
from kanpde.prune import prune, used_inputs
from kanpde.record import write_json
from kanpde.symbolic import LIBRARY, auto_symbolic
from kanpde.validate import ConfigError, check_number


@dataclass
class Settings:
    """The `interpret` config group (config keys are these names).

    Attributes:
        name: "symbolic" runs the pipeline after training; "none" skips it.
        prune: edge/node scale threshold for pruning (mean |phi| on the training inputs).
        names: library functions to try (None: all but "0").
        weight_simple: preference for simple functions in `suggest` (0..1).
        r2_threshold: an edge whose best fit is worse stays a spline (then no formula).
        r2_tol: the simplest function within this R^2 of the best one is chosen.
        hints: {"layer,i,j": function} forced fits.
        term_tol: `prune_terms` tolerance (relative RMS change allowed by dropping terms).
        refit: refit the formula's numbers on the training data with the problem's loss.
        digits: decimals of the numbers in the reported formula.
    """

    name: str = "none"
    prune: float = 0.01
    names: list[str] | None = None
    weight_simple: float = 0.8
    r2_threshold: float = 0.0
    r2_tol: float = 0.002
    hints: dict[str, str] = field(default_factory=dict)
    term_tol: float = 0.1
    refit: bool = True
    digits: int = 4

    @classmethod
    def from_config(cls, cfg: dict | None) -> Settings:
        cfg = dict(cfg or {})
        allowed = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in allowed:
                raise ConfigError(f"interpret has no option {key!r}; allowed: {', '.join(allowed)}")
        s = cls(**cfg)
        if s.name not in ("none", "symbolic"):
            raise ConfigError(f"interpret.name must be none or symbolic, got {s.name!r}")
        check_number(s.prune, "interpret.prune", minimum=0.0)
        check_number(s.term_tol, "interpret.term_tol", minimum=0.0)
        check_number(s.r2_tol, "interpret.r2_tol", minimum=0.0)
        if not 0 <= check_number(s.weight_simple, "interpret.weight_simple") <= 1:
            raise ConfigError(f"interpret.weight_simple must be in [0, 1], got {s.weight_simple!r}")
        for n in s.names or []:
            if n not in LIBRARY:
                raise ConfigError(f"interpret.names: {n!r} is not a library function; allowed: {', '.join(LIBRARY)}")
        s.hints = {str(k): str(v) for k, v in (s.hints or {}).items()}
        return s


def refit(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> sp.Expr:
    """Refit the formula's float constants by binary cross-entropy of sigmoid(expr) against labels.

    Args:
        expr: a logit formula of the symbols `inputs`.
        inputs: the names of x's columns.
        x: (N, len(inputs)) inputs.
        y: (N,) labels in {0, 1}.

    Returns:
        expr with the refitted constants (the same form).
    """
    consts = [a for a in expr.atoms(sp.Float)]
    if not consts:
        return expr
    thetas = sp.symbols(f"theta0:{len(consts)}")
    template = expr.xreplace(dict(zip(consts, thetas)))
    f = sp.lambdify([*map(sp.Symbol, inputs), *thetas], template, "numpy")
    cols = [x[:, k] for k in range(x.shape[1])]

    def loss(theta: np.ndarray) -> float:
        z = np.broadcast_to(np.asarray(f(*cols, *theta), dtype=float), y.shape)
        z = np.clip(z, -50, 50)
        return float(np.mean(np.logaddexp(0, z) - y * z))

    theta0 = np.array([float(c) for c in consts])
    res = minimize(loss, theta0, method="BFGS", options={"maxiter": 200})
    theta = res.x if np.isfinite(res.fun) and res.fun <= loss(theta0) else theta0
    return template.xreplace({t: sp.Float(v) for t, v in zip(thetas, theta)})


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


def snap_coefficients(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray,
                      digits: int = 1, tol: float = 1e-3) -> sp.Expr:
    """Round the formula's term coefficients, relative to the largest, to `digits` decimals
    (pykan's rounding step, on the whole formula) when that costs at most `tol` training accuracy;
    the common scale is kept (it sets the logit's steepness, not the boundary).

    Args:
        expr: a logit formula; x (N, d) inputs named `inputs`; y (N,) labels in {0, 1}.
    """
    terms = _terms(expr)
    big = max((abs(c) for c in terms.values()), default=0.0)
    if big == 0:
        return expr
    snapped = sum(big * round(c / big, digits) * t for t, c in terms.items())
    if accuracy(snapped, inputs, x, y) >= accuracy(expr, inputs, x, y) - tol:
        return sp.expand(snapped)
    return expr


def accuracy(expr: sp.Expr, inputs: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of states whose label is 1 exactly where the logit formula is positive."""
    f = sp.lambdify(list(map(sp.Symbol, inputs)), expr, "numpy")
    z = np.broadcast_to(np.asarray(f(*(x[:, k] for k in range(x.shape[1]))), dtype=float), y.shape)
    return float(np.mean((z > 0) == (y > 0.5)))


def _terms(expr: sp.Expr) -> dict[sp.Expr, float]:
    """{monomial or function term: its coefficient} of the expanded expression."""
    out: dict[sp.Expr, float] = {}
    for term in sp.Add.make_args(sp.expand(expr)):
        coef, rest = term.as_coeff_Mul()
        out[rest] = out.get(rest, 0.0) + float(coef)
    return out


def compare(found: sp.Expr, theory: sp.Expr) -> dict:
    """How far `found` = 0 is from `theory` = 0 up to a common factor.

    The factor is the least-squares ratio over the theory's terms; the reported errors are the
    largest relative coefficient error over the theory's terms and the largest extra term's
    coefficient relative to the largest theory coefficient (both after scaling).

    Returns:
        {"factor", "max_rel_err", "extra", "extra_terms"}; the numbers are None when the formulas
        share no term.
    """
    t, f = _terms(theory), _terms(found)
    keys = list(t)
    tv = np.array([t[k] for k in keys])
    fv = np.array([f.get(k, 0.0) for k in keys])
    factor = float(fv @ tv / (tv @ tv)) if np.any(fv) else 0.0
    if not np.isfinite(factor) or factor == 0:  # no term in common: not comparable
        return {"factor": None, "max_rel_err": None, "extra": None, "extra_terms": sorted(map(str, f))}
    rel = np.abs(fv / factor - tv) / np.abs(tv)
    extra = {str(k): v / factor for k, v in f.items() if k not in t}
    scale = float(np.abs(tv).max())
    return {"factor": factor, "max_rel_err": float(rel.max()),
            "extra": max((abs(v) / scale for v in extra.values()), default=0.0),
            "extra_terms": sorted(extra)}


def discover(model: KAN, inputs: tuple[str, ...], x: torch.Tensor, y: torch.Tensor,
             settings: Settings) -> tuple[KAN, dict]:
    """Prune `model`, snap it, and read off its logit formula (the trained model is not changed).

    Args:
        model: a trained KAN with one output (a logit).
        inputs: names of the inputs (the problem's variables).
        x: (N, d) training inputs.
        y: (N, 1) training labels in {0, 1}.
        settings: see `Settings`.

    Returns:
        (the pruned symbolic KAN, a record: used inputs, edge fits, the raw formula, the tidied
        and refitted formula, its LaTeX, or "error" when no formula could be formed).
    """
    if not isinstance(model, KAN):
        raise ConfigError(f"interpret=symbolic needs a KAN, got {type(model).__name__}")
    x = x.to(next(model.parameters()).dtype)
    pruned = prune(model, x, settings.prune)
    kept = [inputs[i] for i in used_inputs(pruned)]
    sym = copy.deepcopy(pruned)
    fits = auto_symbolic(sym, x, settings.names, settings.r2_threshold, settings.weight_simple, settings.hints,
                         settings.r2_tol)
    record = {"used_inputs": kept, "fits": [{**f, "params": [float(p) for p in f["params"]]} for f in fits]}
    if not all(f["fixed"] for f in fits):
        return sym, {**record, "error": "some edges fit no library function above r2_threshold"}
    raw = formula(sym, inputs)
    xs, ys = x.detach().cpu().double().numpy(), y.detach().cpu().double().numpy().reshape(-1)
    data = {name: xs[:, k] for k, name in enumerate(inputs)}
    tidy = prune_terms(raw, data, settings.term_tol)
    final = refit(tidy, inputs, xs, ys) if settings.refit else tidy
    # functions left in their straight part become linear; tidy and refit once more
    straight = linearize(final, data)
    if straight is not final:
        final = prune_terms(straight, data, settings.term_tol)
        final = refit(final, inputs, xs, ys) if settings.refit else final
    final = snap_coefficients(final, inputs, xs, ys)
    shown = final.xreplace({a: sp.Float(round(float(a), settings.digits)) for a in final.atoms(sp.Float)})
    record.update({"formula_raw": str(raw), "formula": str(shown), "latex": latex(shown)})
    return sym, {**record, "expr": final}


def interpret(model: KAN, problem, data: dict, test: dict, settings: Settings, out: Path) -> dict:
    """`discover` on a supervised problem's data, scored on its test data, written into `out`.

    Writes formula.json (the record), edges.png and network.png (the trained KAN),
    edges_pruned.png (after pruning and snapping). A problem with `theory_formula()` (a sympy
    logit, positive = label 1) gets the formula compared with it.

    Returns:
        metrics: formula_accuracy on the test data, and formula_factor / formula_max_rel_err /
        formula_extra when there is a theory to compare with.
    """
    from kanpde.plots import plot_edges, plot_network

    inputs = tuple(problem.variables)
    x = data["x"].to(next(model.parameters()).dtype)
    plot_edges(model, x, out / "edges.png")
    plot_network(model, x, out / "network.png", inputs=list(inputs))
    sym, record = discover(model, inputs, x, data["y"], settings)
    plot_edges(sym, x, out / "edges_pruned.png")
    metrics: dict = {}
    expr = record.pop("expr", None)
    theory = getattr(problem, "theory_formula", lambda: None)()
    if theory is not None:
        record["theory"] = str(theory)
        record["theory_latex"] = latex(theory)
    if expr is not None:
        xt, yt = test["x"].double().cpu().numpy(), test["y"].double().cpu().numpy().reshape(-1)
        metrics["formula_accuracy"] = accuracy(expr, inputs, xt, yt)
        metrics["formula"] = record["formula"]
        if theory is not None:
            cmp = compare(expr, theory)
            record["comparison"] = cmp
            metrics.update({"formula_factor": cmp["factor"], "formula_max_rel_err": cmp["max_rel_err"],
                            "formula_extra": cmp["extra"]})
    record["metrics"] = metrics
    write_json(out / "formula.json", record)
    return metrics
