"""The Poisson reproduction report (KAN paper, arXiv 2404.19756, sec. 3.4, Figure 3.3).

From run records of KANs and MLPs on the same problem: a table of final metrics per
configuration (median and range over seeds, with the paper's values), the Figure 3.3 panels
(errors against step, against wall time, and against parameter count with fitted slopes),
heatmaps of the best KAN and the best MLP, and plain answers to "which is more accurate at
equal wall time and at equal parameter count".
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kanpde.record import H5  # noqa: E402
from kanpde.report.records import (  # noqa: E402
    Group,
    Run,
    best_by,
    fit_slope,
    group_runs,
    kan_params,
    median_range,
    stage_ends,
    sweep_span,
    time_to,
    width_text,
)

# Read off Figure 3.3 at step 250 (see shared/reference/paper-targets.md): label -> (L2^2, H1^2).
PAPER = {
    "KAN [2,10,1]": (1e-7, 2.8e-5),
    "MLP [2,100,100,100,1] tanh": (5e-6, 1.2e-3),
    "MLP [2,10,1] tanh": (9e-2, 2.0),
}
STEP_PANEL = ("KAN [2,10,1]", "MLP [2,100,100,100,1] tanh", "MLP [2,10,1] tanh")
COLUMNS = ("configuration", "seeds", "params (paper)", "params", "L2^2 median", "L2^2 range",
           "H1^2 median", "H1^2 range", "rel L2", "wall s", "evals", "paper L2^2", "paper H1^2")


def fmt(v: float, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    return f"{v:.{digits}e}" if isinstance(v, float) else str(v)


def _range(values: np.ndarray) -> str:
    med, lo, hi = median_range(values)
    return "-" if math.isnan(med) else f"{lo:.1e} - {hi:.1e}"


def table_rows(groups: list[Group]) -> list[dict]:
    """One row per configuration, ordered KANs first then by parameter count."""
    rows = []
    for g in groups:
        paper = PAPER.get(g.label) if g.optim == "paper" else None
        rows.append({
            "configuration": g.name,
            "seeds": f"{len(g.ok_runs)}/{len(g.runs)}",
            "params (paper)": g.first("n_params_paper"),
            "params": g.first("n_params"),
            "L2^2 median": fmt(median_range(g.values("l2_sq"))[0]),
            "L2^2 range": _range(g.values("l2_sq")),
            "H1^2 median": fmt(median_range(g.values("h1_sq"))[0]),
            "H1^2 range": _range(g.values("h1_sq")),
            "rel L2": fmt(median_range(g.values("rel_l2"))[0]),
            "wall s": f"{np.nanmean(g.values('wall_s')):.0f}" if g.ok_runs else "-",
            "evals": f"{np.nanmean(g.values('evals')):.0f}" if g.ok_runs else "-",
            "paper L2^2": fmt(paper[0], 1) if paper else "",
            "paper H1^2": fmt(paper[1], 1) if paper else "",
        })
    return rows


def markdown(rows: list[dict], columns=COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)


def _sorted(groups: list[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (g.model.get("name") != "kan", g.first("n_params") or 0, g.name))


def kan_scaling(groups: list[Group]) -> dict[str, dict]:
    """Per KAN width: parameter counts and median errors at the end of each grid stage, and the
    fitted slope of log L2^2 (and H1^2) against log(paper parameter count)."""
    out = {}
    for g in groups:
        if g.model.get("name") != "kan" or not g.ok_runs:
            continue
        ends = [stage_ends(r) for r in g.ok_runs]
        n_stage = min(len(e) for e in ends)
        grids = [int(ends[0][s]["grid"]) for s in range(n_stage)]
        width = g.model["width"]
        counts = [kan_params(width, G, g.model.get("order", 3))[0] for G in grids]
        l2 = [float(np.median([e[s]["l2_sq"] for e in ends])) for s in range(n_stage)]
        h1 = [float(np.median([e[s]["h1_sq"] for e in ends])) for s in range(n_stage)]
        entry = {"grids": grids, "params": counts, "l2_sq": l2, "h1_sq": h1, "group": g}
        if n_stage >= 2:
            entry["slope_l2"] = fit_slope(np.array(counts), np.array(l2))[0]
            entry["slope_h1"] = fit_slope(np.array(counts), np.array(h1))[0]
        out[g.name] = entry
    return out


def _median_curve(g: Group, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """The seed-median of y against x (the first seed's x; runs share their logging steps)."""
    hs = [r.history for r in g.ok_runs]
    n = min(len(h[y_key]) for h in hs)
    y = np.median(np.stack([h[y_key][:n] for h in hs]), axis=0)
    x = np.median(np.stack([h[x_key][:n] for h in hs]), axis=0)
    return x, y


def _in_step_panel(g: Group) -> bool:
    return g.label in STEP_PANEL and g.optim == "paper"


def _in_time_panel(g: Group) -> bool:
    """The step panel's runs and the tuned recipes (they differ in steps, not in time)."""
    return _in_step_panel(g) or g.optim in ("adam_lbfgs", "grid_long")


def plot_curves(groups: list[Group], x_key: str, path: Path, keep) -> None:
    """L2^2 and H1^2 (seed medians) against `x_key` ("step" or "wall_s") for groups `keep` accepts."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2))
    for ax, key, title in zip(axes, ("l2_sq", "h1_sq"), ("L2 error squared", "H1 error squared")):
        for g in groups:
            if g.ok_runs and keep(g):
                x, y = _median_curve(g, x_key, key)
                ax.plot(np.maximum(x, 1e-2) if x_key == "wall_s" else x, y, label=g.name)
        ax.set_yscale("log")
        if x_key == "wall_s":
            ax.set_xscale("log")
        ax.set_xlabel("step" if x_key == "step" else "training time (s)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    _legend_beside(axes)
    fig.tight_layout()
    _save(fig, path)


def plot_scaling(groups: list[Group], scaling: dict[str, dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
    mlp: dict[tuple, list] = {}
    for g in groups:
        if g.model.get("name") == "mlp" and g.optim == "paper" and g.ok_runs:
            depth = len(g.model["width"]) - 1
            mlp.setdefault((depth, g.model.get("activation", "tanh"), g.memory or 0), []).append(g)
    for ax, key, title in zip(axes, ("l2_sq", "h1_sq"), ("L2 error squared", "H1 error squared")):
        lo, hi = math.inf, 0.0
        for name, s in scaling.items():
            slope = s.get(f"slope_{key[:2]}")
            g = s["group"]
            schedule = "" if g.optim == "paper" else f" optim={g.optim}"
            text = f"KAN {width_text(g.model['width'])}{schedule}{g.memory_text}" + (
                f" (slope {slope:.2f})" if slope else "")
            ax.plot(s["params"], s[key], "o-", label=text)
            lo, hi = min(lo, min(s["params"])), max(hi, max(s["params"]))
        for (depth, act, _), gs in sorted(mlp.items()):
            gs = sorted(gs, key=lambda g: g.first("n_params_paper"))
            ax.plot([g.first("n_params_paper") for g in gs], [median_range(g.values(key))[0] for g in gs],
                    "s--" if not gs[0].memory_text else "s:", alpha=0.7,
                    label=f"MLP depth {depth} {act}{gs[0].memory_text}")
        if scaling and hi > 0:
            ref = next(iter(scaling.values()))
            n = np.geomspace(lo, hi, 20)
            ax.plot(n, ref[key][0] * (n / ref["params"][0]) ** -4.0, "k:", label="N^-4")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters (paper count: KAN edges x G, MLP weights)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    _legend_beside(axes)
    fig.tight_layout()
    _save(fig, path)


def plot_heatmaps(groups: list[Group], path: Path) -> list[str]:
    """u_pred, u_exact and |error| for the best KAN run and the best MLP run (by final L2^2)."""
    best = []
    for kind in ("kan", "mlp"):
        runs = [r for g in groups if g.model.get("name") == kind for r in g.ok_runs if (r.path / H5).exists()]
        if runs:
            best.append(min(runs, key=lambda r: r.metrics.get("l2_sq", math.inf)))
    if not best:
        return []
    fig, axes = plt.subplots(len(best), 3, figsize=(12, 3.6 * len(best)), squeeze=False)
    names = []
    for row, run in zip(axes, best):
        with h5py.File(run.path / H5, "r") as f:
            if "u_exact" not in f["fields"]:
                continue
            x, up, ue = (np.array(f["fields"][k]) for k in ("x", "u_pred", "u_exact"))
        n = int(round(math.sqrt(x.shape[0])))
        ext = (x[:, 0].min(), x[:, 0].max(), x[:, 1].min(), x[:, 1].max())
        name = f"{run.metrics['model'].upper()} {width_text(run.metrics['width'])} seed {run.metrics['seed']}"
        names.append(f"{name} ({run.path})")
        for ax, arr, title in zip(row, (up, ue, np.abs(up - ue)), ("prediction", "exact", "|error|")):
            im = ax.imshow(arr.reshape(n, n).T, origin="lower", extent=ext, cmap="viridis")
            ax.set_title(f"{name}: {title}", fontsize=9)
            fig.colorbar(im, ax=ax)
    fig.tight_layout()
    _save(fig, path)
    return names


def _legend_beside(axes) -> None:
    """One legend for both panels, to the right of the second, clear of the curves."""
    axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _save(fig, path: Path) -> None:
    fig.savefig(path.with_suffix(".png"), dpi=120, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)


def answers(groups: list[Group]) -> list[str]:
    """Plain statements: equal wall time, equal parameter count, time to the paper's KAN error."""
    ok = [g for g in groups if g.ok_runs]
    kans = [g for g in ok if g.model.get("name") == "kan"]
    mlps = [g for g in ok if g.model.get("name") == "mlp"]
    if not kans or not mlps:
        return ["(needs both KAN and MLP runs)"]
    lines = []
    ref = max(kans, key=lambda g: g.first("n_params") or 0)
    budget = float(np.median(ref.values("wall_s")))
    lines.append(f"Equal wall time ({budget:.0f} s, the training time of {ref.name}): lowest L2^2 each "
                 "configuration had reached by then (median over seeds):")
    reach = sorted(((float(np.median([best_by(r, 'l2_sq', budget) for r in g.ok_runs])), g) for g in ok),
                   key=lambda t: t[0])
    lines += [f"  - {g.name}: {fmt(v)}" for v, g in reach]
    lines.append(f"  -> most accurate at equal wall time: {reach[0][1].name}.")
    target = 1e-7
    lines.append(f"Training time to reach L2^2 <= {target:.0e} (the paper's KAN value), median over seeds:")
    for g in ok:
        t = float(np.median([time_to(r, "l2_sq", target) for r in g.ok_runs]))
        lines.append(f"  - {g.name}: " + (f"{t:.0f} s" if math.isfinite(t) else "not reached"))
    lines.append("Equal parameter count (each KAN against the most accurate MLP with at most as many "
                 "trainable parameters, trained with the same L-BFGS memory):")
    for k in kans:
        nk = k.first("n_params")
        fewer = [g for g in mlps if (g.first("n_params") or 0) <= nk and g.memory == k.memory]
        if not fewer:
            lines.append(f"  - {k.name} ({nk} params): no MLP has as few parameters with this memory")
            continue
        m = min(fewer, key=lambda g: median_range(g.values("l2_sq"))[0])
        lk, lm = median_range(k.values("l2_sq"))[0], median_range(m.values("l2_sq"))[0]
        better = k.name if lk < lm else m.name
        lines.append(f"  - {k.name} ({nk} params): L2^2 {fmt(lk)} vs {m.name} ({m.first('n_params')} params): "
                     f"{fmt(lm)} -> {better}")
    best = min(ok, key=lambda g: median_range(g.values("l2_sq"))[0])
    lines.append(f"Most accurate overall: {best.name}, L2^2 {fmt(median_range(best.values('l2_sq'))[0])} "
                 f"with {best.first('n_params')} parameters.")
    return lines


def sweep_lines(runs: list[Run]) -> list[str]:
    """One line per sweep folder (the parent of its job folders): runs, sum of run times, and
    the time from its first start to its last end (what the sweep took on the machine)."""
    by_folder: dict = {}
    for r in runs:
        by_folder.setdefault(r.path.parent, []).append(r)
    return [f"- `{folder}`: {len(rs)} runs, sum of run times {sum(r.metrics.get('total_s', 0) for r in rs):.0f} s, "
            f"first start to last end {sweep_span(rs):.0f} s"
            for folder, rs in sorted(by_folder.items(), key=lambda kv: str(kv[0]))]


def write(runs, out: Path, command: str) -> list[Path]:
    """Write the whole Poisson report into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    groups = _sorted(group_runs(runs))
    rows = table_rows(groups)
    scaling = kan_scaling(groups)
    write_csv(rows, out / "table.csv")
    plot_curves(groups, "step", out / "fig3_3_step", _in_step_panel)
    plot_curves(groups, "wall_s", out / "error_vs_time", _in_time_panel)
    plot_scaling(groups, scaling, out / "fig3_3_params")
    heat = plot_heatmaps(groups, out / "heatmaps")
    failed = [r for g in groups for r in g.runs if not r.ok]
    text = [f"# Poisson reproduction (paper sec. 3.4, Figure 3.3)\n", f"Made by: `{command}`\n",
            f"{len(runs)} runs, {len(failed)} not ok; sum of run times {sum(r.metrics.get('total_s', 0) for r in runs):.0f} s, "
            f"first start to last end {sweep_span(runs):.0f} s.\n",
            "## Sweeps (wall time of each sweep folder)\n", *sweep_lines(runs), "",
            "## Final metrics (median and range over seeds)\n", markdown(rows),
            "\n## Error against parameter count at the end of each grid stage (KAN)\n"]
    for name, s in scaling.items():
        slope = f"slope L2^2 {s['slope_l2']:.2f}, H1^2 {s['slope_h1']:.2f}" if "slope_l2" in s else "one stage"
        text.append(f"- {name}: G = {s['grids']}, params = {s['params']}, L2^2 = "
                    f"{', '.join(fmt(v) for v in s['l2_sq'])}; {slope}")
    text += ["\n## Which model is more accurate\n", *answers(groups)]
    if heat:
        text += ["\n## Heatmaps (heatmaps.png)\n", *[f"- {h}" for h in heat]]
    if failed:
        text += ["\n## Runs not ok\n", *[f"- {r.path}: {r.metrics.get('status')} {r.metrics.get('error', '')}"
                                          for r in failed]]
    text += ["\n## Figures\n", "- fig3_3_step.png/pdf: L2^2 and H1^2 against step (paper budget runs)",
             "- error_vs_time.png/pdf: the same against training time, with the tuned KAN and MLP",
             "- fig3_3_params.png/pdf: errors against parameter count, KAN slopes and N^-4"]
    (out / "report.md").write_text("\n".join(text) + "\n")
    return sorted(p for p in out.iterdir() if p.is_file())
