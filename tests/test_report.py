"""The report module against hand-written run records (golden file) and known slopes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from kanpde.nn.kan import KAN
from kanpde.registry import count_params, paper_params
from kanpde.report import ReportError, report
from kanpde.report.records import fit_slope, kan_params

GOLDEN = Path(__file__).parent / "golden" / "poisson_report.md"
T0 = 1_800_000_000  # fixed file times, so the sweep span in the report is reproducible


def _write_run(folder: Path, model: dict, optim: str, seed: int, final: tuple[float, float],
               stages: int, wall: float, status: str = "ok", start: float = 0.0) -> None:
    """A run record as kanpde.run writes it: config.yaml, metrics.json, run.h5 (history, fields)."""
    folder.mkdir(parents=True)
    config = {"problem": {"name": "poisson", "n_interior": 10000, "n_boundary": 800},
              "model": model, "optim": {"name": optim}, "seed": seed, "dtype": "float64"}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    l2, h1 = final
    steps = 10 * stages
    step = np.arange(steps + 1, dtype=float)
    # errors fall geometrically to the final value; KAN stage s has grid 2 (s + 1)
    decay = np.geomspace(1e4, 1.0, steps + 1)
    hist = {"step": step, "stage": np.r_[-1, np.repeat(np.arange(stages), 10)].astype(float),
            "wall_s": wall * step / steps, "l2_sq": l2 * decay, "h1_sq": h1 * decay,
            "loss": decay, "evals": 20 * step}
    if model["name"] == "kan":
        hist["grid"] = np.r_[2, np.repeat(2 * (np.arange(stages) + 1), 10)].astype(float)
    with h5py.File(folder / "run.h5", "w") as f:
        for k, v in hist.items():
            f.create_dataset(f"history/{k}", data=v)
        x = np.stack(np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), indexing="ij"), -1).reshape(-1, 2)
        exact = np.sin(np.pi * x[:, :1]) * np.sin(np.pi * x[:, 1:] ** 2)
        f.create_dataset("fields/x", data=x)
        f.create_dataset("fields/u_exact", data=exact)
        f.create_dataset("fields/u_pred", data=exact + np.sqrt(l2))
    width = model["width"]
    if model["name"] == "kan":
        paper, real = kan_params(width, 2 * stages)
    else:
        paper = sum(a * b for a, b in zip(width[:-1], width[1:]))
        real = paper + sum(width[1:])
    metrics = {"problem": "poisson", "model": model["name"], "width": width, "seed": seed, "status": status,
               "l2_sq": l2, "h1_sq": h1, "rel_l2": float(np.sqrt(l2)), "wall_s": wall, "total_s": wall + 1,
               "evals": int(20 * steps), "n_params": real, "n_params_paper": paper}
    if status != "ok":
        metrics = {k: metrics[k] for k in ("problem", "model", "width", "seed")} | {
            "status": status, "error": "RuntimeError: boom"}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    os.utime(folder / "config.yaml", (T0 + start, T0 + start))
    os.utime(folder / "metrics.json", (T0 + start + wall, T0 + start + wall))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    kan = {"name": "kan", "width": [2, 10, 1], "order": 3}
    _write_run(root / "0", kan, "paper", 1, (1e-7, 2e-5), 5, 100.0)
    _write_run(root / "1", kan, "paper", 2, (3e-7, 4e-5), 5, 120.0, start=100)
    _write_run(root / "2", kan, "paper", 3, (2e-7, 3e-5), 5, 110.0, start=220)
    _write_run(root / "3", {"name": "kan", "width": [2, 5, 1], "order": 3}, "paper", 1, (1e-6, 1e-4), 5, 50.0, start=330)
    big = {"name": "mlp", "width": [2, 100, 100, 100, 1], "activation": "tanh"}
    _write_run(root / "4", big, "paper", 1, (5e-6, 1e-3), 1, 400.0, start=380)
    _write_run(root / "5", big, "adam_lbfgs", 1, (4e-9, 1e-6), 1, 900.0, start=780)
    _write_run(root / "6", {"name": "mlp", "width": [2, 10, 1], "activation": "tanh"}, "paper", 1, (9e-2, 2.0), 1, 20.0,
               start=1680)
    _write_run(root / "7", {"name": "mlp", "width": [2, 10, 1], "activation": "tanh"}, "paper", 2, (0, 0), 1, 5.0,
               status="failed", start=1700)
    return root


def test_slope_fit_recovers_a_known_exponent():
    n = np.geomspace(60, 300, 5)
    assert fit_slope(n, 3.0 * n**-4.0) == pytest.approx((-4.0, 3.0), rel=1e-10)
    noisy = 2.0 * n**-3.2 * np.exp(0.05 * np.sin(np.arange(5.0)))
    assert fit_slope(n, noisy)[0] == pytest.approx(-3.2, abs=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        fit_slope(np.array([1.0]), np.array([1.0]))


@pytest.mark.parametrize("width,grid", [([2, 10, 1], 10), ([2, 5, 3, 1], 4)])
def test_kan_parameter_counts_match_the_model(width, grid):
    model = KAN(width, grid=grid)
    assert kan_params(width, grid) == (paper_params(model), count_params(model))


def test_report_matches_the_golden_file(sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    files = report([sweep], out, command="python -m kanpde.report sweep")
    names = {p.name for p in files}
    for stem in ("fig3_3_step", "fig3_3_params", "error_vs_time", "heatmaps"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (out / f"{stem}.png").stat().st_size > 1000
    text = (out / "report.md").read_text().replace(str(sweep), "<sweep>")
    if os.environ.get("KANPDE_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    rows = (out / "table.csv").read_text().splitlines()
    assert rows[0].startswith("configuration,seeds,params (paper),params,L2^2 median")
    assert len(rows) == 1 + 5  # five configurations; the failed run is counted in its group


def test_report_figures_and_statements(sweep: Path, tmp_path: Path):
    report([sweep], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    # the KAN [2,10,1] seeds 1e-7, 3e-7, 2e-7: median 2e-7, range 1e-7 - 3e-7
    assert "| KAN [2,10,1], L-BFGS 5x50 steps | 3/3 | 300 | 431 | 2.00e-07 | 1.0e-07 - 3.0e-07 |" in text
    assert "MLP [2,10,1] tanh, L-BFGS 5x50 steps | 1/2 |" in text
    assert "most accurate at equal wall time: KAN [2,10,1]" in text
    assert "Most accurate overall: MLP [2,100,100,100,1] tanh, Adam 2000 + L-BFGS 2000 it. (tuned)" in text
    assert "slope L2^2" in text


def test_report_errors_are_one_line(tmp_path: Path):
    with pytest.raises(ReportError, match="no finished runs"):
        report([tmp_path], tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "kanpde.report", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is not a folder" in proc.stderr


def test_mobility_report_from_real_runs(tmp_path: Path):
    """Two shrunk mobility runs (gaam, mosaic) through kanpde.run.run, then the Table-5 report."""
    from kanpde.run import run
    from tests.conftest import TINY_STAGES, compose_config

    for name in ("gaam", "mosaic"):
        cfg = compose_config([f"problem={name}", "problem.n_hamiltonians=4", "problem.n_sites=30",
                              "problem.test_fraction=0.5", f"problem.cache_dir={tmp_path / 'cache'}",
                              "progress=false", "device=cpu", "restarts=1", TINY_STAGES], shrink=False)
        metrics = run(cfg, tmp_path / "runs" / name)
    files = report([tmp_path / "runs"], tmp_path / "out", command="python -m kanpde.report runs")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| 1 | gaam (N=30, H=4) | KAN [4,2,1] mult [0,1,0] | `-E*alpha - 2*lam + 2` |" in text
    assert "| mosaic kappa=2 (N=30, H=4) | KAN [2,1] |" in text
    assert f"| {100 * metrics['theory_accuracy']:.1f} |" in text  # the mosaic run's theory accuracy
    assert {"table.csv", "run1_edges.png", "run2_network.png"} <= {p.name for p in files}


def test_lbfgs_memory_separates_configurations():
    """Runs that differ only in the L-BFGS memory are different configurations, named by it."""
    from kanpde.report.records import Run, group_runs

    model = {"name": "kan", "width": [2, 10, 1]}
    stages = yaml.safe_load(resources.files("kanpde.conf").joinpath("optim", "paper.yaml").read_text())["stages"]

    def run(i: int, optim: dict) -> Run:
        return Run(Path(str(i)), {"model": model, "optim": {"name": "paper", **optim}, "seed": i}, {})

    runs = [run(0, {"stages": stages}), run(1, {"stages": stages, "history_size": 100}),
            run(2, {"stages": stages, "history_size": 100}),
            run(3, {"stages": [{**st, "history_size": 100} for st in stages]})]
    groups = group_runs(runs)
    assert [len(g.runs) for g in groups] == [1, 3]
    assert [g.name for g in groups] == ["KAN [2,10,1], L-BFGS 5x50 steps",
                                        "KAN [2,10,1], L-BFGS 5x50 steps, memory 100"]
    adam = Run(Path("4"), {"model": model, "optim": {"name": "x", "stages": [{"optimizer": "adam"}]}}, {})
    assert adam.lbfgs_memory is None
    # stages changed from the named config's: named by what they are, another configuration
    short = run(5, {"stages": stages[:2]})
    assert short.optim == "L-BFGS 50+50 steps, G 2-4" and len(group_runs([*runs, short])) == 3
