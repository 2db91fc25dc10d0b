"""The command line, `python -m kanpde ...`, in subprocesses (each costs ~2 s of imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import SHRINK

BAD_OVERRIDES = {
    "problem=nosuch": "nosuch",
    "model.grid=0": "0",
    "model.width=[]": "[]",
    "optim.stages.0.steps=-1": "-1",
    "model.grid=abc": "abc",
    "seed=-3": "-3",
    "device=tpu": "tpu",
    "model.nosuch=1": "nosuch",  # a key Hydra itself rejects
    "+optim.steps=2": "optim.steps=2",  # every stage sets its own steps: it would change nothing
    "inject_nan={step: 0}": "inject_nan.step",
}


def _env() -> dict:
    # one intra-op thread: the runs are tiny, and two subprocesses may run side by side
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}


def _start(args: list[str], cwd) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "kanpde", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kanpde(args: list[str], cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kanpde", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_bad_overrides_fail_in_one_line(tmp_path):
    """Each bad override exits non-zero with a one-line stderr message naming the bad value,
    no traceback, and no run record: not even the folder Hydra made for it."""
    # All at once: each is ~2 s of imports on one core; together they finish in a few seconds.
    procs = [(o, v, _start([*SHRINK, o], tmp_path / f"run{i}"))
             for i, (o, v) in enumerate(BAD_OVERRIDES.items())]
    results = {}
    for override, value, proc in procs:
        out, err = proc.communicate(timeout=180)
        results[override] = (proc.returncode, out, err, value)
    for override, (code, out, err, value) in results.items():
        lines = err.strip().splitlines()
        assert code != 0, override
        assert "Traceback" not in err and "Traceback" not in out, override
        assert len(lines) == 1, (override, err)
        assert value in lines[0], (override, lines[0])
    assert not list(tmp_path.rglob("metrics.json"))
    assert not list(tmp_path.rglob(".hydra")), list(tmp_path.rglob(".hydra"))


def test_tiny_run_succeeds(tmp_path):
    """A shrunk two-step run exits 0 and leaves metrics.json (status ok, 2 steps) under
    results/runs/<date>/<time>_<problem>_<model>/ of the working directory."""
    proc = _kanpde([*SHRINK, "problem=poisson_sinsin", "model=kan"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = list((tmp_path / "results" / "runs").glob("*/*_poisson_sinsin_kan/metrics.json"))
    assert len(found) == 1
    metrics = json.loads(found[0].read_text())
    assert metrics["status"] == "ok" and metrics["steps"] == 2
    assert metrics["problem"] == "poisson_sinsin" and metrics["model"] == "kan"
    # the CLI bounds how long idle OpenMP threads spin (kanpde.cores), unless the user chose
    if "GOMP_SPINCOUNT" in os.environ:
        assert metrics["omp_wait_policy"] == f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    elif "OMP_WAIT_POLICY" in os.environ:
        assert metrics["omp_wait_policy"] == f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    else:
        assert metrics["omp_wait_policy"] == "GOMP_SPINCOUNT=100000"
    assert (found[0].parent / "run.h5").is_file() and (found[0].parent / "config.yaml").is_file()
    assert "Traceback" not in proc.stderr


def test_cfg_job_prints_config(tmp_path):
    """`--cfg job` prints the composed config (with overrides applied) and runs nothing."""
    proc = _kanpde(["--cfg", "job", "model=mlp", "model.activation=sin"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: mlp" in proc.stdout and "activation: sin" in proc.stdout
    assert "name: poisson" in proc.stdout and "stages:" in proc.stdout
    assert not list(tmp_path.rglob("metrics.json"))


def test_bad_choice_in_sweep_list_fails_early(tmp_path):
    """A sweep list naming an unknown config fails before Hydra starts, naming the bad choice."""
    proc = _kanpde(["-m", "problem=poisson_sinsin,nosuch"], tmp_path)
    assert proc.returncode != 0
    assert "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_quick_sweep_and_report_end_to_end(tmp_path):
    """`python -m kanpde -m experiment=poisson_quick` (shrunk: two optimiser steps, 64 points) runs
    its KAN and MLP jobs in parallel processes, and `python -m kanpde.report` turns the sweep
    folder into the report with both models in its table."""
    sweep = tmp_path / "sweep"
    proc = _kanpde(["-m", "experiment=poisson_quick", *SHRINK, f"hydra.sweep.dir={sweep}"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = sorted(sweep.glob("*/metrics.json"))
    assert len(metrics) == 2
    assert {json.loads(m.read_text())["model"] for m in metrics} == {"kan", "mlp"}
    report = subprocess.run([sys.executable, "-m", "kanpde.report", str(sweep), "--out", str(tmp_path / "out")],
                            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "out" / "report.md").read_text()
    # the stages that ran (SHRINK's two steps), not the recipes' named ones
    assert "| KAN [2,10,1], L-BFGS 1 + Adam 1 steps, G 3-5, memory 100 | 1/1 |" in text
    assert "| MLP [2,100,100,100,1] tanh, L-BFGS 1 + Adam 1 steps, G 3-5, memory 100 | 1/1 |" in text
