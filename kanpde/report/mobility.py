"""The mobility-edge report (KAN paper, arXiv 2404.19756, sec. 4.4, Table 5).

From runs of `problem=gaam|maam|mosaic` with `interpret=symbolic`: per run, the theory formula and
its accuracy, the formula kanpde found and its accuracy, the network's accuracy, how close the
formula is to the theory (common factor, largest coefficient error), and the paper's numbers; all
accuracies on the same held-out states (Hamiltonians not seen in training).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from kanpde.report.records import Run, width_text

# Paper sec. 4.4 (see shared/reference/paper-targets.md): KAN network accuracy, formula accuracy,
# theory formula accuracy on the paper's data.
PAPER = {
    "gaam": {"network": "98.7", "formula": "98.9 (linear/quadratic snap)", "theory": "99.2"},
    "maam": {"network": "98.4 ([4,3,1,1])", "formula": "97.1 auto; 97.7 / 97.7 / 96.6 manual", "theory": "98.6"},
    "mosaic": {"network": "-", "formula": "-", "theory": "-"},
}
COLUMNS = ("run", "problem", "model", "theory formula (logit)", "theory acc. %", "kanpde formula (logit)",
           "before rounding", "formula acc. %", "network acc. %", "coef. error %", "edge error %", "train s",
           "paper network %", "paper formula %", "paper theory %")


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.1f}"


def _problem(run: Run) -> str:
    """e.g. "mosaic kappa=2 (N=500, H=100)": chain length N, number of Hamiltonians H."""
    name, cfg = str(run.metrics.get("problem")), run.config.get("problem", {})
    label = f"mosaic kappa={cfg.get('kappa')}" if name == "mosaic" else name
    size = ", ".join(f"{k}={cfg[key]}" for k, key in (("N", "n_sites"), ("H", "n_hamiltonians")) if key in cfg)
    return f"{label} ({size})" if size else label


def row(run: Run, index: int) -> dict:
    found_file = run.path / "formula.json"
    found = json.loads(found_file.read_text()) if found_file.exists() else {}
    m = run.metrics
    paper = PAPER.get(str(m.get("problem")), {})
    mult = run.model.get("mult")
    model = f"KAN {width_text(m.get('width', []))}" + (f" mult {width_text(mult)}" if mult else "")
    fixed = run.model.get("symbolic") or {}
    if fixed:  # edges fixed from the start: config-level hints
        model += ", fixed " + ", ".join(f"{k}: {v}" for k, v in fixed.items())
    restarts = m.get("restarts")
    if restarts:
        model += f", best of {len(restarts)} seeds"
    err = m.get("formula_max_rel_err")
    return {
        "run": str(index), "problem": _problem(run), "model": model,
        "theory formula (logit)": f"`{found.get('theory', '-')}`",
        "theory acc. %": _pct(m.get("theory_accuracy")),
        "kanpde formula (logit)": f"`{found['formula']}`" if "formula" in found else
                                  f"(none: {found.get('error', m.get('interpret_error', 'not interpreted'))})",
        "before rounding": f"`{found['formula_fit']}`" if "formula_fit" in found else "-",
        "formula acc. %": _pct(m.get("formula_accuracy")),
        "network acc. %": _pct(m.get("accuracy")),
        "coef. error %": _pct(err),
        "edge error %": _pct(m.get("edge_rel_err")),
        "train s": f"{m.get('wall_s', math.nan):.0f}",
        "paper network %": paper.get("network", "-"),
        "paper formula %": paper.get("formula", "-"),
        "paper theory %": paper.get("theory", "-"),
    }


def write(runs: list[Run], out: Path, command: str) -> list[Path]:
    """Write table.md / table.csv for mobility-edge runs into `out` and copy their edge plots."""
    out.mkdir(parents=True, exist_ok=True)
    runs = sorted(runs, key=lambda r: (_problem(r), str(r.path)))
    rows = [row(r, k) for k, r in enumerate(runs, 1)]
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    lines = ["# Mobility edges (paper sec. 4.4, Table 5)\n", f"Made by: `{command}`\n",
             "Accuracies on held-out states (Hamiltonians not used in training). A formula is the logit: "
             "positive = extended; before rounding: the selected and refitted formula before its "
             "numbers are rounded (inside functions, then relative to the largest coefficient, each "
             "only where that costs at most 0.1 points of training accuracy). Coefficient error: "
             "largest relative error of the formula's "
             "coefficients against the theory's, after the best common factor. Edge error (mosaic): "
             "median relative distance of the learned edge lambda*(E) from 1/|f_kappa(E)|.\n",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rows]
    lines += ["", "Runs:"] + [f"{k}. {r.path}" for k, r in enumerate(runs, 1)]
    for k, r in enumerate(runs, 1):
        for name in ("edges.png", "edges_pruned.png", "network.png"):
            src = r.path / name
            if src.exists():
                (out / f"run{k}_{name}").write_bytes(src.read_bytes())
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return sorted(p for p in out.iterdir() if p.is_file())
