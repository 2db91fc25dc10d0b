"""Run records as the report reads them: loading, grouping into configurations, statistics.

A run folder holds config.yaml, metrics.json (written last: its presence means the run ended) and
run.h5 (history, fields, model); see `kanpde.record`. A configuration is every run that differs
only in its seeds; the report gives its median and spread over them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import yaml

from kanpde.record import H5, METRICS, read_history, read_metrics
from kanpde.stages import Stage, parse_optim
from kanpde.validate import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One run folder: its resolved config and final metrics; the history is read on demand."""

    path: Path
    config: dict
    metrics: dict

    @cached_property
    def history(self) -> dict[str, np.ndarray]:
        """Columns of the logged history (step, stage, grid, loss, evals, wall_s, l2_sq, ...)."""
        return read_history(self.path)

    @property
    def ok(self) -> bool:
        return self.metrics.get("status") == "ok"

    @property
    def model(self) -> dict:
        return self.config.get("model", {})

    @property
    def optim(self) -> str:
        """The optim config's name, or a description of its stages when they were changed
        (`optim.stages=...`): runs with other stages are another configuration."""
        return optim_label(self.config.get("optim", {}))

    @property
    def lbfgs_memory(self) -> int | None:
        """The largest L-BFGS memory (history_size) of the run's L-BFGS stages; None if none."""
        optim = self.config.get("optim", {})
        if not optim.get("stages"):
            return None
        return max((s.history_size for s in parse_optim(optim) if s.optimizer == "lbfgs"), default=None)


def optim_label(optim: dict) -> str:
    """`optim.name` when the stages are that named config's (L-BFGS memory aside, which the
    report shows apart), else the stages in words, e.g. 'Adam 200 + L-BFGS 6 steps, G 5'."""
    name = str(optim.get("name", "custom"))
    try:
        stages = [replace(s, history_size=0) for s in parse_optim(optim)]
        named = resources.files("kanpde.conf").joinpath("optim", f"{name}.yaml")
        if named.is_file() and stages == [replace(s, history_size=0) for s in parse_optim(yaml.safe_load(named.read_text()))]:
            return name
    except (ConfigError, TypeError, ValueError, AttributeError):
        return name
    parts: list[list] = []
    for s in stages:
        opt = "L-BFGS" if s.optimizer == "lbfgs" else s.optimizer.capitalize()
        if parts and parts[-1][0] == opt:
            parts[-1][1].append(s.steps)
        else:
            parts.append([opt, [s.steps]])
    text = " + ".join(f"{opt} {'+'.join(map(str, steps))}" for opt, steps in parts) + " steps"
    grids = [str(s.grid) for s in stages if s.grid is not None]
    return text + (f", G {'-'.join(grids)}" if grids else "")


def find_runs(folders: list[Path]) -> list[Run]:
    """Every finished run (a folder with metrics.json) under `folders`, sorted by path.

    A record that cannot be read (corrupt metrics.json or config.yaml, or a finished run
    without a readable run.h5) is skipped with a warning naming it.

    Raises:
        FileNotFoundError: a folder does not exist.
    """
    runs = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        for metrics in sorted(folder.rglob(METRICS)):
            run = load_run(metrics.parent)
            if run is not None:
                runs.append(run)
    return sorted(runs, key=lambda r: str(r.path))


def load_run(run_dir: Path) -> Run | None:
    """The run record in `run_dir`, or None (after a warning) when it is unreadable."""
    try:
        metrics = read_metrics(run_dir)
        config_file = run_dir / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        log.warning("skipping run record %s: %s: %s", run_dir, type(exc).__name__, exc)
        return None
    if not isinstance(metrics, dict) or not isinstance(config or {}, dict):
        log.warning("skipping run record %s: metrics.json or config.yaml is not a mapping", run_dir)
        return None
    # failed runs legitimately end without run.h5; a finished one needs it for its history
    if metrics.get("status") == "ok" and not h5py.is_hdf5(run_dir / H5):
        log.warning("skipping run record %s: status ok but %s is missing or unreadable", run_dir, H5)
        return None
    return Run(run_dir, config or {}, metrics)


def width_text(width) -> str:
    return "[" + ",".join(str(int(w)) for w in width) + "]"


OPTIM_TEXT = {
    "paper": "L-BFGS 5x50 steps",
    "adam_lbfgs": "Adam 2000 + L-BFGS 2000 it. (tuned)",
    "grid_lbfgs": "L-BFGS 100 steps, G 5-10-20",
    "grid_long": "L-BFGS 300 steps, G 5-10-20-40 (tuned)",
}


def label(run: Run) -> str:
    """Human name of a run's configuration, e.g. 'KAN [2,10,1]', 'KAN [2,10,1] order 5' or
    'MLP [2,100,100,100,1] tanh'."""
    m = run.model
    name = str(m.get("name", "?")).upper()
    text = f"{name} {width_text(m.get('width', []))}"
    if m.get("name") == "mlp":
        text += f" {m.get('activation', 'tanh')}"
    elif m.get("order") not in (None, 3):
        text += f" order {m['order']}"
    return text


def _frozen(value):
    """A hashable copy of a config value (mappings and lists inside)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def config_key(run: Run) -> tuple:
    """What makes runs the same configuration: the problem and all its options, model (with a
    KAN's spline order), optimiser (with its L-BFGS memory), dtype."""
    m = run.model
    return (_frozen(run.config.get("problem", {})), m.get("name"), tuple(m.get("width", ())), m.get("activation"),
            m.get("order"), run.optim, run.lbfgs_memory, run.config.get("dtype"))


@dataclass
class Group:
    """Runs of one configuration (different seeds)."""

    label: str
    optim: str
    memory: int | None = None
    runs: list[Run] = field(default_factory=list)

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def model(self) -> dict:
        return self.runs[0].model

    @property
    def memory_text(self) -> str:
        """', memory m' for a non-default L-BFGS memory, else ''."""
        return "" if self.memory in (None, Stage.history_size) else f", memory {self.memory}"

    @property
    def name(self) -> str:
        """The label with the optimiser, unique within a report."""
        return f"{self.label}, {OPTIM_TEXT.get(self.optim, self.optim)}{self.memory_text}"

    def values(self, key: str) -> np.ndarray:
        """Final metric `key` of the successful runs, NaN where missing: (n_ok,)."""
        return np.array([float(r.metrics.get(key, math.nan)) for r in self.ok_runs])

    def first(self, key: str):
        return self.runs[0].metrics.get(key)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by `config_key`, in order of first appearance."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = config_key(run)
        if key not in groups:
            groups[key] = Group(label(run), run.optim, run.lbfgs_memory)
        groups[key].runs.append(run)
    return list(groups.values())


def median_range(values: np.ndarray) -> tuple[float, float, float]:
    """(median, min, max) of the finite values; NaNs when there are none."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    return float(np.median(v)), float(v.min()), float(v.max())


def fit_slope(n: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """Least-squares line through (log n, log err): err ~ C n^slope.

    Args:
        n: (M,) positive sizes (e.g. parameter counts), M >= 2.
        err: (M,) positive errors.

    Returns:
        (slope, C).
    """
    n, err = np.asarray(n, float), np.asarray(err, float)
    keep = (n > 0) & (err > 0) & np.isfinite(err)
    if keep.sum() < 2:
        raise ValueError(f"a slope needs at least 2 positive points, got {int(keep.sum())}")
    slope, intercept = np.polyfit(np.log(n[keep]), np.log(err[keep]), 1)
    return float(slope), float(np.exp(intercept))


def kan_params(width: list[int], grid: int, order: int = 3) -> tuple[int, int]:
    """(paper count, trainable count) of a KAN: edges x G; edges x (G + k + 1) + biases."""
    pairs = list(zip(width[:-1], width[1:]))
    return (sum(a * b * grid for a, b in pairs),
            sum(a * b * (grid + order + 1) + b for a, b in pairs))


def stage_ends(run: Run) -> list[dict]:
    """The history row at the end of each optimiser stage (for KANs: one per grid size)."""
    h = run.history
    stages = h["stage"]
    rows = []
    for s in sorted(set(stages[stages >= 0].astype(int))):
        i = int(np.flatnonzero(stages == s)[-1])
        rows.append({k: float(v[i]) for k, v in h.items()})
    return rows


def best_by(run: Run, key: str, wall_s: float) -> float:
    """The best (lowest) `key` the run had logged within `wall_s` seconds of training."""
    h = run.history
    mask = h["wall_s"] <= wall_s
    return float(np.nanmin(h[key][mask])) if mask.any() else math.nan


def time_to(run: Run, key: str, target: float) -> float:
    """Training seconds until `key` first reached `target` or below; inf if it never did."""
    h = run.history
    hit = np.flatnonzero(h[key] <= target)
    return float(h["wall_s"][hit[0]]) if hit.size else math.inf


def median_time_to(group: Group, key: str, target: float) -> float:
    """Training seconds by which half the group's finished seeds had `key` <= target (the lower
    median; inf: they never did; NaN: no readable histories)."""
    times = []
    for r in group.ok_runs:
        try:
            if {key, "wall_s"} <= r.history.keys():
                times.append(time_to(r, key, target))
        except (OSError, KeyError):  # a record without a readable history
            continue
    return sorted(times)[(len(times) - 1) // 2] if times else math.nan


def sweep_span(runs: list[Run]) -> float:
    """Seconds from the first run's start (its config.yaml) to the last run's end (metrics.json)."""
    starts = [(r.path / "config.yaml").stat().st_mtime for r in runs if (r.path / "config.yaml").exists()]
    ends = [(r.path / METRICS).stat().st_mtime for r in runs]
    return max(ends) - min(starts) if starts and ends else math.nan
