"""From a trained KAN to a formula: prune, snap to symbolic functions, tidy, refit, compare
(arXiv 2404.19756, sec. 2.5.1 and 4.4; the "automatic mode" of its Figure 2.4).

    trained KAN --prune--> sparse KAN --auto_symbolic--> symbolic KAN --formula--> sympy
    --select_terms (fewest terms that classify as well)--> --refit (the problem's loss on the
    constants)--> --snap_arguments, snap_coefficients (rounding)--> the formula

Every step is a function of the model and the data; `discover` chains them with the settings of
the `interpret` config group and returns what it found. `compare` tells how close a formula is to
a known one (e.g. the theory's mobility edge) up to a common factor.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import sympy as sp
import torch

from kanpde.interpret.formula import formula, latex, prune_terms
from kanpde.nn.kan import KAN
from kanpde.interpret.prune import prune, used_inputs
from kanpde.record import write_json
from kanpde.interpret.settings import Settings
from kanpde.interpret.symbolic import auto_symbolic
from kanpde.interpret.tidy import (accuracy, linearize, select_terms, snap_arguments, snap_coefficients,
                         term_coefficients)
from kanpde.validate import ConfigError


def compare(found: sp.Expr, theory: sp.Expr) -> dict:
    """How far `found` = 0 is from `theory` = 0 up to a common factor.

    The factor is the least-squares ratio over the theory's terms; the reported errors are the
    largest relative coefficient error over the theory's terms and the largest extra term's
    coefficient relative to the largest theory coefficient (both after scaling).

    Returns:
        {"factor", "max_rel_err", "extra", "extra_terms"}; the numbers are None when the formulas
        share no term.
    """
    t, f = term_coefficients(theory), term_coefficients(found)
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
        (the pruned symbolic KAN, a record: used inputs, edge fits, the raw formula, the tidied,
        refitted and selected one before rounding ("formula_fit") and after ("formula"), its
        LaTeX; or "error" when no formula could be formed).
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
    if settings.refit:  # classification: keep the terms the labels need, refitted
        final = select_terms(raw, inputs, xs, ys, settings.select_tol)
    else:
        final = prune_terms(raw, data, settings.term_tol)
    # functions left in their straight part become linear; select (or tidy) and refit once more
    straight = linearize(final, data)
    if straight is not final:
        final = (select_terms(straight, inputs, xs, ys, settings.select_tol) if settings.refit
                 else prune_terms(straight, data, settings.term_tol))
    fitted = final  # before rounding, kept in the record
    if settings.refit:
        final = snap_arguments(final, inputs, xs, ys)
    final = snap_coefficients(final, inputs, xs, ys)
    shown = _rounded(final, settings.digits)
    record.update({"formula_raw": str(raw), "formula_fit": str(_rounded(fitted, settings.digits)),
                   "formula": str(shown), "latex": latex(shown)})
    return sym, {**record, "expr": final}


def _rounded(expr: sp.Expr, digits: int) -> sp.Expr:
    return expr.xreplace({a: sp.Float(round(float(a), digits)) for a in expr.atoms(sp.Float)})


def interpret(model: KAN, problem, data: dict, test: dict, settings: Settings, out: Path) -> dict:
    """`discover` on a supervised problem's data, scored on its test data, written into `out`.

    Writes formula.json (the record), edges.png and network.png (the trained KAN),
    edges_pruned.png (after pruning and snapping). A problem with `theory_formula()` (a sympy
    logit, positive = label 1) gets the formula compared with it.

    Returns:
        metrics: formula_accuracy on the test data, and formula_factor / formula_max_rel_err /
        formula_extra when there is a theory to compare with.
    """
    from kanpde.interpret.plots import plot_edges, plot_network

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
