"""Sweeps through Hydra's launchers: joblib on one machine, submitit (the SLURM launcher's local
twin) end to end; a diverged job does not stop the others; a resumed sweep skips finished jobs;
the report collects every job."""

from __future__ import annotations

import json
import os
import subprocess
import sys

TINY = ["problem=poisson_sinsin", "problem.n_interior=64", "problem.n_boundary=16", "problem.n_test=100",
        "eval_mesh=5", "progress=false", "threads=1",
        "optim.stages=[{optimizer: lbfgs, steps: 2, grid: 3, max_iter: 2}]"]


def _run(module: str, args: list[str], cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _statuses(sweep) -> dict[str, str]:
    return {m.parent.name: json.loads(m.read_text())["status"] for m in sorted(sweep.glob("*/metrics.json"))}


def test_joblib_sweep_survives_a_diverged_job_and_resumes(tmp_path):
    """A 4-job joblib sweep in which two jobs diverge (NaN forced at every try of step 1):
    the other two finish, every job has its record, the report lists all four; resuming the
    sweep runs nothing again."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "seed=0,1",
            "inject_nan=null,{step: 1, times: 9}", f"hydra.sweep.dir={sweep}"]
    proc = _run("kanpde", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(_statuses(sweep).values()) == ["diverged", "diverged", "ok", "ok"]
    stamps = {m: m.stat().st_mtime_ns for m in sweep.glob("*/metrics.json")}
    again = _run("kanpde", [f"resume={sweep}"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "not run again" in again.stdout + again.stderr
    assert {m: m.stat().st_mtime_ns for m in sweep.glob("*/metrics.json")} == stamps
    report = _run("kanpde.report", [str(sweep), "--out", str(tmp_path / "out")], tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| 2/2/0 |" in text
    assert text.count(": diverged") == 2


def test_submitit_local_sweep_end_to_end(tmp_path):
    """`hydra/launcher=submitit_local` (what `submitit_slurm` runs on a cluster, as local
    processes) completes a 2-job sweep, each job in its own folder, and the report has both."""
    sweep = tmp_path / "sweep"
    proc = _run("kanpde", ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY,
                           "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _statuses(sweep) == {"0": "ok", "1": "ok"}
    report = _run("kanpde.report", [str(sweep), "--out", str(tmp_path / "out")], tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "| 2/0/0 |" in (tmp_path / "out" / "report.md").read_text()


def test_slurm_recipe_composes():
    """`hydra/launcher=slurm` is kanpde's recipe over hydra-submitit-launcher's SLURM launcher:
    2 CPUs per job, a SIGUSR2 warning before the time limit, logs inside the sweep folder."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", "hydra.launcher.partition=cpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.cpus_per_task, launcher.signal_delay_s) == ("cpu", 2, 120)
