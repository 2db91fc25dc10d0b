"""The report for any problem: per problem, a table of configurations, KAN against MLP, the
error against wall time and the solution of the most accurate run; for several problems, a
summary table of the best KAN and MLP per problem beside the published figures first
(`kanpde.report.benchmark`).

A configuration is every run that differs only in its seed (`kanpde.report.records.group_runs`);
its numbers are medians over the seeds that finished (status ok), with the spread of rel_l2.
Where configurations of one problem differ in the problem's own options (`problem.fade=0.1`
against none, say), a column "problem options" names each one's values of those options.
Inverse problems add their recovery errors (metrics ending in _rel_err or _rel_l2) and the
recovered values; systems add the error of each output. Runs that failed or diverged are listed.
A pure function of the records: the same records give the same files.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kanpde.plot import PlotError, plot_run
from kanpde.report import benchmark
from kanpde.report.records import Group, Run, group_runs, median_range, median_time_to, width_text

log = logging.getLogger(__name__)

COLUMNS = ("problem", "model", "width", "optim", "seeds", "rel L2 median", "rel L2 min - max",
           "max err median", "wall s median", "params", "ok/diverged/failed")
STATUSES = ("ok", "diverged", "failed")


def _e(v: float | None) -> str:
    """An error value: 1.23e-04, '-' when unknown, 'never' for inf."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "never" if math.isinf(v) else f"{v:.2e}"


def _g(v: float | None) -> str:
    """A recovered value or a time: 4 significant digits, '-' when unknown."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _median(g: Group, key: str) -> float:
    return median_range(g.values(key))[0]


def _first(g: Group, key: str):
    """`key` of the group's first run that has it (failed runs lack most metrics)."""
    return next((r.metrics[key] for r in g.runs if r.metrics.get(key) is not None), None)


def _model(g: Group) -> str:
    m = g.model
    return str(m.get("name", "?")).upper() + (f" {m.get('activation', 'tanh')}" if m.get("name") == "mlp" else "")


def extra_keys(runs: list[Run]) -> list[str]:
    """Metric keys beyond the fixed columns: per-output errors rel_l2_<output> (in output order),
    then for each inverse-problem error (a key ending in _rel_err or _rel_l2, say kappa_rel_err)
    the recovered value and its truth when recorded (kappa, kappa_true), then the error itself."""
    keys = sorted({k for r in runs for k, v in r.metrics.items() if isinstance(v, (int, float))})
    outputs = next((r.metrics["outputs"] for r in runs if r.metrics.get("outputs")), [])
    parts = [f"rel_l2_{o}" for o in outputs if f"rel_l2_{o}" in keys]
    for key in keys:
        if key != "rel_l2" and not key.startswith("rel_l2_") and key.endswith(("_rel_err", "_rel_l2")):
            base = key.rsplit("_rel_", 1)[0]
            parts += [k for k in (base, f"{base}_true") if k in keys and k not in parts] + [key]
    return parts


OPTIONS = "problem options"


def differing_options(groups: list[Group]) -> list[str]:
    """Per configuration, its values of the problem options that differ between the
    configurations ("fade=0.1, n_initial=800"; "fade=default" where a run's config lacks the
    key, as one made before the option existed), or [] when none differ."""
    configs = [g.runs[0].config.get("problem") or {} for g in groups]
    keys = sorted({k for c in configs for k in c} - {"name"})
    varying = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    if not varying:
        return []
    return [", ".join(f"{k}={c.get(k, 'default')}" for k in varying) for c in configs]


def table_rows(problem: str, groups: list[Group], extra: list[str]) -> list[dict]:
    """One row per configuration: the `COLUMNS`, the differing problem options (`OPTIONS`,
    where some differ) and the `extra` metric medians."""
    rows = []
    options = differing_options(groups)
    for i, g in enumerate(groups):
        med, lo, hi = median_range(g.values("rel_l2"))
        counts = [sum(r.metrics.get("status") == s for r in g.runs) for s in STATUSES[:2]]
        counts.append(len(g.runs) - sum(counts))  # failed, interrupted (listed below with their status)
        row = {"problem": problem, "model": _model(g), "width": width_text(_first(g, "width") or g.model.get("width", [])),
               "optim": g.optim + g.memory_text, "seeds": str(len(g.runs)), "rel L2 median": _e(med),
               "rel L2 min - max": "-" if math.isnan(med) else f"{lo:.2e} - {hi:.2e}",
               "max err median": _e(_median(g, "max_err")), "wall s median": _g(_median(g, "wall_s")),
               "params": str(_first(g, "n_params") or "-"), "ok/diverged/failed": "/".join(map(str, counts))}
        if options:
            row[OPTIONS] = options[i]
        for key in extra:  # errors in e-notation, recovered values and truths as numbers
            row[key] = (_e if "rel_" in key else _g)(_median(g, key))
        rows.append(row)
    return rows


def _history(run: Run) -> dict[str, np.ndarray]:
    """The run's history, {} (after a warning) when run.h5 cannot be read."""
    try:
        return run.history
    except (OSError, KeyError) as exc:
        log.warning("no history for %s: %s: %s", run.path, type(exc).__name__, exc)
        return {}


def comparison(groups: list[Group]) -> list[str]:
    """Plain statements: which model is more accurate, which reaches the best MLP's error sooner."""
    ok = [g for g in groups if not math.isnan(_median(g, "rel_l2"))]
    if not ok:
        return ["No finished run recorded rel_l2: nothing to compare."]
    best = min(ok, key=lambda g: _median(g, "rel_l2"))
    lines = [f"Most accurate configuration: {best.name}, median rel L2 {_e(_median(best, 'rel_l2'))}."]
    kans = [g for g in ok if g.model.get("name") == "kan"]
    mlps = [g for g in ok if g.model.get("name") == "mlp"]
    if not kans or not mlps:
        return lines + [f"Only {'KAN' if kans else 'MLP'} runs here: no KAN-MLP comparison."]
    k = min(kans, key=lambda g: _median(g, "rel_l2"))
    m = min(mlps, key=lambda g: _median(g, "rel_l2"))
    ek, em = _median(k, "rel_l2"), _median(m, "rel_l2")
    if ek == em:
        verdict = "KAN and MLP are equally accurate"
    else:
        verdict = f"{'KAN' if ek < em else 'MLP'} is more accurate ({max(ek, em) / min(ek, em):.3g}x lower median rel L2)"
    lines.append(f"{verdict}: the best KAN, {k.name}, has {_e(ek)}; the best MLP, {m.name}, {_e(em)}.")
    tk, tm = median_time_to(k, "rel_l2", em), median_time_to(m, "rel_l2", em)
    if math.isnan(tk) or math.isnan(tm):
        return lines + ["(no histories: no time comparison)"]
    faster = "KAN" if tk < tm else "MLP" if tm < tk else "neither"
    lines.append(f"Time to the best MLP's error (rel L2 <= {_e(em)}; by when half the seeds were there): "
                 f"KAN {_seconds(tk)}, MLP {_seconds(tm)}; {faster} is sooner.")
    return lines


def _seconds(t: float) -> str:
    return "never" if math.isinf(t) else f"{t:.3g} s"


def plot_error_vs_time(problem: str, groups: list[Group], path: Path) -> list[Path]:
    """rel_l2 against training seconds: each seed thin, the seed median thick, one colour per
    configuration; log-log. Writes `path`.png and .pdf; returns them ([] without histories)."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, g in enumerate(groups):
        hs = [h for h in map(_history, g.ok_runs) if {"rel_l2", "wall_s"} <= h.keys()]
        if not hs:
            continue
        colour = f"C{i % 10}"
        for h in hs:  # one seed: its own curve is the configuration's
            _curve(ax, h["wall_s"], h["rel_l2"], colour, *((0.8, 0.35, None) if len(hs) > 1 else (1.5, 1.0, g.name)))
        if len(hs) > 1:  # seeds share their logging steps; the shortest history bounds the median
            n = min(len(h["rel_l2"]) for h in hs)
            med = [np.median(np.stack([h[k][:n] for h in hs]), axis=0) for k in ("wall_s", "rel_l2")]
            _curve(ax, *med, colour, 2.0, 1.0, f"{g.name} (median of {len(hs)})")
        drawn = True
    if not drawn:
        return []
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("rel L2 error")
    ax.set_title(f"{problem}: error against wall time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    files = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    fig.savefig(files[0], dpi=120, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight", metadata={"CreationDate": None})  # no date: reproducible
    return files


def _curve(ax, x: np.ndarray, y: np.ndarray, colour: str, lw: float, alpha: float, label: str | None) -> None:
    keep = (x > 0) & (y > 0) & np.isfinite(y)  # what a log-log axis can show
    ax.plot(x[keep], y[keep], color=colour, lw=lw, alpha=alpha, label=label)


def _sorted(groups: list[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (g.model.get("name") != "kan", _first(g, "n_params") or 0, g.name))


def section(problem: str, runs: list[Run], out: Path) -> tuple[list[str], list[dict]]:
    """The report section of one problem (markdown lines) and its table rows; writes its figures
    error_vs_time_<problem>.png/pdf and solution_<problem>.png into `out`."""
    groups = _sorted(group_runs(runs))
    extra = extra_keys(runs)
    rows = table_rows(problem, groups, extra)
    m = next((r.metrics for r in runs if r.metrics.get("variables")), {})
    shape = f"; inputs ({', '.join(m['variables'])}), outputs ({', '.join(m['outputs'])})" if m else ""
    ok = [r for g in groups for r in g.ok_runs]
    against = ("" if not ok else "; errors against a reference solution" if any("reference" in r.metrics for r in ok)
               else "; errors against the exact solution")
    lines = [f"## {problem}\n", f"{_count(len(runs), 'run')} in {_count(len(groups), 'configuration')}{shape}"
             f"{against} (medians over the seeds that finished).\n", _markdown(rows, _columns(rows, extra)),
             *comparison(groups), ""]
    curves = plot_error_vs_time(problem, groups, out / f"error_vs_time_{problem}")
    if curves:
        lines.append(f"Error against wall time: `{curves[0].name}` (and .pdf).\n")
    if ok:
        best = min(ok, key=lambda r: (_finite(r.metrics.get("rel_l2")), str(r.path)))
        try:
            plot_run(best.path, out, name=f"solution_{problem}")
            lines.append(f"Solution of the most accurate run (`{best.path}`): `solution_{problem}.png`.\n")
        except PlotError as exc:
            lines.append(f"No solution picture: {exc}\n")
    bad = [r for g in groups for r in g.runs if not r.ok]
    if bad:
        lines += ["Runs not ok:\n"] + [f"- `{r.path}`: {r.metrics.get('status', '?')}" + _reason(r) for r in bad] + [""]
    return lines, rows


def _columns(rows: list[dict], extra: list[str]) -> list[str]:
    """The section table's columns: `COLUMNS` less the problem, the differing problem options
    after the optimiser where there are any, then the extra metrics."""
    cols = [c for c in COLUMNS if c != "problem"]
    if any(OPTIONS in r for r in rows):
        cols.insert(cols.index("optim") + 1, OPTIONS)
    return cols + extra


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _finite(v) -> float:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.inf


def _reason(run: Run) -> str:
    error = str(run.metrics.get("error", "")).strip().splitlines()
    return f" ({error[0]})" if error else ""


def _markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(runs: list[Run], out: Path, command: str, others: dict[str, Path] | None = None) -> list[Path]:
    """Write report.md, table.csv and the figures for `runs` (any problems) into `out`.

    Args:
        runs: the run records.
        out: output folder (created).
        command: the command line printed at the top.
        others: reports written separately (problem kind -> their folder), linked from report.md.

    Returns:
        the files in `out`.
    """
    out.mkdir(parents=True, exist_ok=True)
    by_problem: dict[str, list[Run]] = {}
    for r in runs:
        by_problem.setdefault(str(r.metrics.get("problem")), []).append(r)
    names = sorted(by_problem)
    head = f"# Report: {names[0]}" if len(names) == 1 and not others else "# Report by problem"
    text = [f"{head}\n", f"Made by: `{command}`\n",
            f"{_count(len(runs), 'run')} of {_count(len(names), 'problem')}: {', '.join(names) or '-'}.\n"]
    if others:
        text += [f"- {kind} runs: their own report in `{path}` (report.md there)" for kind, path in sorted(others.items())]
        text.append("")
    text += benchmark.summary(runs)
    rows, columns = [], list(COLUMNS)
    for name in names:
        lines, section_rows = section(name, by_problem[name], out)
        text += lines
        rows += section_rows
        columns += [c for c in dict.fromkeys(c for r in section_rows for c in r) if c not in columns]
    (out / "report.md").write_text("\n".join(text).rstrip("\n") + "\n")
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)
    return sorted(p for p in out.iterdir() if p.is_file())
