"""Solution pictures from a run record: prediction, reference and pointwise absolute error.

    python -m kanpde.plot <run folder> [<run folder> ...] [--out DIR] [--format png|pdf]

`plot_run(folder)` reads `fields/` of run.h5 (the mesh of the domain's bounding box, see
`kanpde.pde.problem.record_fields`) and metrics.json, and draws, by the shape of the problem:

    1-D            prediction and reference as lines, the error in a second panel
    2-D            heatmaps of prediction, reference and |error| per output, points outside the
                   domain blank; for flows (outputs u, v, ...) also streamlines of the velocity
    (x, t)         x-t heatmaps (t across, x up) and a row of snapshots u(x) at five times
    3-D and up     the 2-D picture of the middle slice of the last axes (named in the titles)

Prediction and reference share one colour scale. Figures are drawn on matplotlib's Agg canvas
(`matplotlib.figure.Figure`, no pyplot). A pure function of the record.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from kanpde.record import H5, METRICS

_PANEL = (4.0, 3.2)  # inches per heatmap panel
_SNAPSHOTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # fractions of the time range


class PlotError(ValueError):
    """A folder that holds no plottable run record; the message says why."""


@dataclass(frozen=True)
class Fields:
    """A record's solution on its regular mesh, reshaped to the mesh.

    Attributes:
        variables: d names of the inputs, time (if any) last.
        outputs: m names of the outputs.
        axes: d coordinate arrays, (n_k,) each.
        pred: (n_1, ..., n_d, m) prediction, NaN outside the domain.
        ref: (n_1, ..., n_d, m) exact solution or reference, NaN where unknown; None without one.
        ref_name: "exact" or "reference".
        note: what slice of the record this is ("" for the whole mesh).
    """

    variables: list[str]
    outputs: list[str]
    axes: list[np.ndarray]
    pred: np.ndarray
    ref: np.ndarray | None
    ref_name: str
    note: str = ""

    @property
    def error(self) -> np.ndarray:
        """(n_1, ..., n_d, m) pointwise |pred - ref|."""
        return np.abs(self.pred - self.ref)

    def middle_slice(self) -> Fields:
        """The 2-D slice through the middle of every axis after the second (3-D and up)."""
        mid = [len(a) // 2 for a in self.axes[2:]]
        index = (slice(None), slice(None), *mid)
        note = ", ".join(f"{v} = {a[i]:.3g}" for v, a, i in zip(self.variables[2:], self.axes[2:], mid))
        return replace(self, variables=self.variables[:2], axes=self.axes[:2], pred=self.pred[index],
                       ref=None if self.ref is None else self.ref[index],
                       note=f"mid-slice {note}")


def read_record(folder: str | Path) -> tuple[dict, Fields]:
    """(metrics, fields) of a run folder.

    Raises:
        PlotError: no such folder, no metrics.json or run.h5, or no solution fields in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PlotError(f"{folder} is not a folder")
    try:
        metrics = json.loads((folder / METRICS).read_text())
    except (OSError, ValueError) as exc:
        raise PlotError(f"{folder}: cannot read {METRICS} ({exc.__class__.__name__})") from None
    if not (folder / H5).is_file():
        raise PlotError(f"{folder} has no {H5} (status {metrics.get('status', '?')})")
    try:
        with h5py.File(folder / H5, "r") as f:
            fl = f.get("fields")
            if fl is None or "x" not in fl or "u_pred" not in fl:
                raise PlotError(f"{folder / H5} has no solution fields (fields/x, fields/u_pred)")
            arrays = {k: np.array(fl[k]) for k in ("x", "inside", "u_pred", "u_exact", "u_ref") if k in fl}
    except OSError as exc:
        raise PlotError(f"{folder / H5} is not readable: {exc}") from None
    return metrics, _on_mesh(metrics, arrays, folder)


def _on_mesh(metrics: dict, a: dict[str, np.ndarray], folder: Path) -> Fields:
    x = a["x"].reshape(a["x"].shape[0], -1)
    n_points, d = x.shape
    n = round(n_points ** (1 / d))
    if n**d != n_points:
        raise PlotError(f"{folder}: fields/x holds {n_points} points, not a regular {d}-D mesh")
    shape = (n,) * d
    grid = x.reshape(*shape, d)
    axes = [grid[(0,) * k + (slice(None),) + (0,) * (d - k - 1)][:, k] for k in range(d)]
    pred = a["u_pred"].reshape(n_points, -1).astype(float)
    inside = a.get("inside", np.ones(n_points, bool)).astype(bool)
    pred[~inside] = np.nan  # the network's values outside the domain mean nothing
    ref_key = "u_exact" if "u_exact" in a else "u_ref" if "u_ref" in a else None
    ref = a[ref_key].reshape(n_points, -1).astype(float) if ref_key else None
    if ref is not None:
        ref[~inside] = np.nan
    m = pred.shape[1]
    outputs = list(metrics.get("outputs") or (["u"] if m == 1 else [f"u{i}" for i in range(m)]))
    variables = list(metrics.get("variables") or ("x", "y", "z")[:d])
    return Fields(variables, outputs, axes, pred.reshape(*shape, m),
                  None if ref is None else ref.reshape(*shape, m),
                  "exact" if ref_key == "u_exact" else "reference")


def title(metrics: dict) -> str:
    """e.g. 'heat: KAN [2,5,1], rel L2 = 6.69e-04'."""
    width = "[" + ",".join(str(w) for w in metrics.get("width", [])) + "]"
    rel = metrics.get("rel_l2")
    text = f"{metrics.get('problem', '?')}: {str(metrics.get('model', '?')).upper()} {width}"
    text += f", rel L2 = {rel:.3g}" if isinstance(rel, (int, float)) else ""
    status = metrics.get("status", "ok")
    return text if status == "ok" else f"{text} ({status})"


def solution_figure(metrics: dict, fields: Fields) -> Figure:
    """The solution picture of one record (see module docstring for the layouts)."""
    d = len(fields.axes)
    if d == 1:
        fig = _lines(fields)
    elif d == 2 and fields.variables[-1] == "t":
        fig = _evolution(fields)
    else:
        fields = fields.middle_slice()
        fig = _maps(fields)
    fig.suptitle(title(metrics) + (f"\n{fields.note}" if fields.note else ""))
    return fig


def plot_run(folder: str | Path, out: str | Path | None = None, formats: tuple[str, ...] = ("png",),
             name: str = "solution") -> list[Path]:
    """Draw a run record's solution picture into `out` (default: the run folder).

    Args:
        folder: the run folder (metrics.json, run.h5 with fields/).
        out: folder to write into (created).
        formats: file formats, e.g. ("png",) or ("png", "pdf").
        name: file name without suffix.

    Returns:
        the written files.

    Raises:
        PlotError: the folder holds no plottable record.
    """
    metrics, fields = read_record(folder)
    fig = solution_figure(metrics, fields)
    out = Path(folder) if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        # no creation date in the PDF, so the same record gives the same file
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf" else None)
        files.append(path)
    return files


def panels(fig: Figure) -> list:
    """The figure's data panels (its axes other than colorbars)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]


def _scale(*arrays: np.ndarray) -> Normalize:
    """One colour scale over the finite values of all `arrays`."""
    values = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    if values.size == 0:
        return Normalize(0.0, 1.0)
    lo, hi = float(values.min()), float(values.max())
    return Normalize(lo, hi if hi > lo else lo + 1.0)


def _heatmap(ax, h: np.ndarray, v: np.ndarray, c: np.ndarray, norm, cmap: str, text: str, aspect: str):
    """c: (len(v), len(h)) values, NaN left blank (white)."""
    im = ax.pcolormesh(h, v, np.ma.masked_invalid(c), shading="nearest", norm=norm, cmap=cmap, rasterized=True)
    ax.set_aspect(aspect)
    ax.set_title(text, fontsize=9)
    return im


def _triple(fig, axes, f: Fields, k: int, along: tuple[int, int], aspect: str) -> None:
    """Prediction, reference and |error| of output k on three axes; `along` = (horizontal
    variable, vertical variable)."""
    h, v = f.axes[along[0]], f.axes[along[1]]
    orient = (lambda a: a.T) if along == (0, 1) else (lambda a: a)  # arrays are [first, second]
    name = f.outputs[k]
    pairs = [(f.pred[..., k], "prediction")] + ([] if f.ref is None else [(f.ref[..., k], f.ref_name)])
    norm = _scale(*(a for a, _ in pairs))
    ims = [_heatmap(ax, h, v, orient(a), norm, "viridis", f"{name}: {label}", aspect)
           for ax, (a, label) in zip(axes, pairs)]
    fig.colorbar(ims[0], ax=list(axes[:len(pairs)]), shrink=0.9)
    if f.ref is not None:
        err = f.error[..., k]
        im = _heatmap(axes[2], h, v, orient(err), _scale(err), "magma", f"{name}: |error|", aspect)
        fig.colorbar(im, ax=axes[2], shrink=0.9)
    for ax in axes:
        ax.set_xlabel(f.variables[along[0]])
        ax.set_ylabel(f.variables[along[1]])


def _lines(f: Fields) -> Figure:
    m = len(f.outputs)
    fig = Figure(figsize=(9, 3.2 * m), layout="constrained")
    axes = fig.subplots(m, 2, squeeze=False)
    x = f.axes[0]
    for k, (ax, ax_err) in enumerate(axes):
        name = f.outputs[k]
        ax.plot(x, f.pred[:, k], label="prediction")
        if f.ref is not None:
            ax.plot(x, f.ref[:, k], "--", label=f.ref_name)
            ax_err.semilogy(x, np.maximum(f.error[:, k], 1e-300), color="tab:red")
        ax.set_title(f"{name}: prediction and {f.ref_name}", fontsize=9)
        ax_err.set_title(f"{name}: |error|", fontsize=9)
        ax.legend(fontsize=8)
        for a in (ax, ax_err):
            a.set_xlabel(f.variables[0])
            a.grid(True, alpha=0.3)
    return fig


def _evolution(f: Fields) -> Figure:
    """Per output: a row of x-t heatmaps, then a row of snapshots u(x) at fixed times."""
    m = len(f.outputs)
    fig = Figure(figsize=(15, 6.8 * m), layout="constrained")
    x, t = f.axes
    for k, (top, bottom) in enumerate(np.reshape(fig.subfigures(2 * m, 1, height_ratios=[1.1, 1] * m), (m, 2))):
        maps = top.subplots(1, 3)
        if f.ref is None:
            maps[1].set_axis_off()
            maps[2].set_axis_off()
        _triple(top, maps, f, k, (1, 0), "auto")
        shots = bottom.subplots(1, len(_SNAPSHOTS), sharey=True)
        for ax, frac in zip(shots, _SNAPSHOTS):
            j = int(np.argmin(np.abs(t - (t[0] + frac * (t[-1] - t[0])))))
            ax.plot(x, f.pred[:, j, k], label="prediction")
            if f.ref is not None:
                ax.plot(x, f.ref[:, j, k], "--", label=f.ref_name)
            ax.set_title(f"{f.outputs[k]}({f.variables[0]}, {f.variables[1]} = {t[j]:.3g})", fontsize=9)
            ax.set_xlabel(f.variables[0])
            ax.grid(True, alpha=0.3)
        shots[0].legend(fontsize=8)
    return fig


def _maps(f: Fields) -> Figure:
    m = len(f.outputs)
    flow = f.outputs[:2] == ["u", "v"]
    ratio = float(f.axes[0][-1] - f.axes[0][0]) / float(f.axes[1][-1] - f.axes[1][0])  # width / height
    aspect = "equal" if 0.25 <= ratio <= 4 else "auto"
    rows = m + flow
    # panels as wide as the domain is (plus room for a colorbar), so equal aspect wastes no space
    width = _PANEL[1] * (ratio if aspect == "equal" else _PANEL[0] / _PANEL[1]) + 1.2
    fig = Figure(figsize=(3 * width, _PANEL[1] * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    for k in range(m):
        if f.ref is None:
            axes[k, 1].set_axis_off()
            axes[k, 2].set_axis_off()
        _triple(fig, axes[k], f, k, (0, 1), aspect)
    if flow:
        _streamlines(fig, axes[m], f, aspect)
    return fig


def _streamlines(fig, axes, f: Fields, aspect: str) -> None:
    """Streamlines of the predicted and the reference velocity (u, v), coloured by speed on one
    scale, and the magnitude of the velocity error."""
    x, y = f.axes
    fields = [(f.pred, "prediction")] + ([] if f.ref is None else [(f.ref, f.ref_name)])
    speed = [np.hypot(a[..., 0], a[..., 1]).T for a, _ in fields]
    norm = _scale(*speed)
    for ax, (a, label), s in zip(axes, fields, speed):
        lines = ax.streamplot(x, y, a[..., 0].T, a[..., 1].T, color=s, norm=norm, cmap="viridis",
                              density=1.2, linewidth=0.8, arrowsize=0.7)
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])
        ax.set_aspect(aspect)
        ax.set_title(f"velocity (u, v): {label}", fontsize=9)
    fig.colorbar(lines.lines, ax=list(axes[:len(fields)]), shrink=0.9, label="speed")
    for ax in axes:
        ax.set_xlabel(f.variables[0])
        ax.set_ylabel(f.variables[1])
    if f.ref is None:
        axes[1].set_axis_off()
        axes[2].set_axis_off()
        return
    err = np.hypot(*(f.pred[..., :2] - f.ref[..., :2]).transpose(2, 0, 1)).T
    im = _heatmap(axes[2], x, y, err, _scale(err), "magma", "|velocity error|", aspect)
    fig.colorbar(im, ax=axes[2], shrink=0.9)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        print(f"kanpde.plot: error: {message}", file=sys.stderr)
        sys.exit(2)


def _names(folders: list[Path]) -> list[str]:
    """File names for several runs drawn into one folder: their paths below the common parent."""
    if len(folders) == 1:
        return ["solution"]
    parts = [p.resolve().parts for p in folders]
    common = next((i for i in range(min(map(len, parts))) if len({q[i] for q in parts}) > 1), 0)
    return ["_".join(("solution",) + q[common:]) for q in parts]


def main(argv: list[str] | None = None) -> None:
    p = _Parser(prog="python -m kanpde.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="run folders (with metrics.json and run.h5)")
    p.add_argument("--out", type=Path, help="folder for the pictures (default: each run folder)")
    p.add_argument("--format", choices=("png", "pdf"), default="png", help="file format (default png)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    names = _names(args.folders) if args.out is not None else ["solution"] * len(args.folders)
    try:
        for folder, name in zip(args.folders, names):
            for path in plot_run(folder, args.out, (args.format,), name):
                print(path)
    except PlotError as exc:
        p.error(str(exc))


if __name__ == "__main__":
    main()
