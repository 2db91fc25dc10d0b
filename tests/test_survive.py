"""Runs that survive: checkpoints and resume after SIGKILL or Ctrl-C, divergence recovery, and
resumed sweeps that skip finished jobs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import h5py
import pytest
import torch

from kanpde.checkpoint import Checkpoints
from kanpde.run import run
from kanpde.validate import ConfigError

# ~600 cheap Adam steps, then L-BFGS: long enough to be killed in the middle
LONG = ["problem=poisson_sinsin", "model=kan", "model.grid=3", "problem.n_interior=64",
        "problem.n_boundary=16", "problem.n_test=100", "eval_mesh=5", "progress=false", "threads=1",
        "checkpoint_every=5",
        "optim.stages=[{optimizer: adam, steps: 600, lr: 0.01}, {optimizer: lbfgs, steps: 6, grid: 5, max_iter: 5}]"]
SAME = ("l2_sq", "rel_l2", "max_err", "loss", "steps", "evals", "status", "grid")


def _cli(args, cwd, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "kanpde", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for_checkpoint(path, proc, timeout=120.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.05)


def _history(folder) -> dict:
    with h5py.File(folder / "run.h5", "r") as f:
        return {k: f["history"][k][()] for k in f["history"] if k not in ("wall_s",)}


def _same_run(a, b) -> None:
    ma, mb = (json.loads((f / "metrics.json").read_text()) for f in (a, b))
    assert {k: ma[k] for k in SAME} == {k: mb[k] for k in SAME}
    ha, hb = _history(a), _history(b)
    assert ha.keys() == hb.keys()
    for k in ha:
        assert (ha[k] == hb[k]).all() or (ha[k] != ha[k]).all(), k  # bit for bit


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL mid-training leaves a whole checkpoint; `resume=<folder>` continues from it and
    ends with the metrics and history of a run never stopped, bit for bit; its files open."""
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = _cli([*LONG, f"hydra.run.dir={killed}"], tmp_path)
    ckpt = killed / "checkpoints" / "restart-0.pt"
    _wait_for_checkpoint(ckpt, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    state = Checkpoints(ckpt).load()
    assert not state["done"] and 0 < state["result"]["steps"] < 606
    assert not (killed / "metrics.json").exists()
    done = _cli([f"resume={killed}"], tmp_path)
    out = done.communicate(timeout=300)[0]
    assert done.returncode == 0, out
    assert f"from step {state['result']['steps']}" in out
    ref = _cli([*LONG, f"hydra.run.dir={whole}"], tmp_path)
    assert ref.wait(timeout=300) == 0
    _same_run(killed, whole)
    with h5py.File(killed / "run.h5", "r") as f:
        assert f["history/step"][-1] == 606


def test_ctrl_c_saves_and_records_interrupted(tmp_path):
    """The first SIGINT ends training after the current step: a checkpoint, a complete record
    with status interrupted, exit code 130; resuming finishes the run as if never stopped."""
    folder, whole = tmp_path / "run", tmp_path / "whole"
    proc = _cli([*LONG, f"hydra.run.dir={folder}"], tmp_path)
    _wait_for_checkpoint(folder / "checkpoints" / "restart-0.pt", proc)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and 0 < metrics["steps"] < 606
    assert "resume=true" in metrics["resume"]
    h5py.File(folder / "run.h5", "r").close()
    again = _cli([f"resume={folder}"], tmp_path)
    assert again.wait(timeout=300) == 0
    ref = _cli([*LONG, f"hydra.run.dir={whole}"], tmp_path)
    assert ref.wait(timeout=300) == 0
    _same_run(folder, whole)


def test_resume_in_process_and_finished_runs_are_kept(tiny_config, tmp_path):
    """resume=true on a finished run returns its metrics without training again; on a run of
    another configuration it refuses, naming the key."""
    first = run(tiny_config("problem=poisson_sinsin"), tmp_path)
    stamp = (tmp_path / "run.h5").stat().st_mtime_ns
    again = run(tiny_config("problem=poisson_sinsin", "resume=true"), tmp_path)
    assert again == first and (tmp_path / "run.h5").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"resume: .* holds a run with data_seed=0, not 1"):
        run(tiny_config("problem=poisson_sinsin", "resume=true", "seed=1"), tmp_path)


@pytest.mark.parametrize("times, status", [(1, "ok"), (3, "diverged")])
def test_forced_nan_recovers_or_ends_diverged(tiny_config, tmp_path, times, status):
    """A NaN loss at step 3 is caught there: the last good state is restored and the step
    retried with half the learning rate and an empty L-BFGS memory (2 retries by default); NaN
    three times ends the run "diverged" with the good state of step 2, its metrics finite and
    saved."""
    stages = "optim.stages=[{optimizer: lbfgs, steps: 6, max_iter: 3}]"
    metrics = run(tiny_config("problem=poisson_sinsin", stages, f"inject_nan={{step: 3, times: {times}}}"), tmp_path)
    assert metrics["status"] == status
    rec = metrics["recoveries"]
    assert [r["step"] for r in rec] == [3] * times
    assert [r["lr"] for r in rec] == [0.5, 0.25, None][:times]
    assert metrics["steps"] == (6 if status == "ok" else 2)
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["l2_sq"])
    state = Checkpoints(tmp_path / "checkpoints" / "restart-0.pt").load()
    assert state["done"] and state["result"]["status"] == status
    clean = run(tiny_config("problem=poisson_sinsin", stages, "optim.stages.0.steps=2"), tmp_path / "clean")
    if status == "diverged":  # the last good state is step 2's: that of a clean 2-step run
        assert metrics["l2_sq"] == clean["l2_sq"]


def test_exploding_loss_is_caught(tiny_config, tmp_path):
    """A finite loss far above the stage's best (Adam at an absurd step size) counts as
    diverging too: retried with a smaller step, never accepted."""
    stages = "optim.stages=[{optimizer: adam, steps: 8, lr: 1e3, explode: 10, retries: 30}]"
    metrics = run(tiny_config("problem=poisson_sinsin", stages), tmp_path)
    assert metrics["recoveries"] and all("exploded" in r["what"] or "non-finite" in r["what"] or "nan" in r["what"]
                                         for r in metrics["recoveries"])
    losses = [r for r in metrics["recoveries"]]
    assert metrics["status"] == "ok" and len(losses) <= 30
    assert metrics["recoveries"][-1]["lr"] < 1e3


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous checkpoint whole and no stray file."""
    saves = Checkpoints(tmp_path / "c.pt")
    saves.save({"done": False, "x": torch.arange(3)})

    def dying(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying)
    with pytest.raises(OSError):
        saves.save({"done": True, "x": torch.arange(4)})
    monkeypatch.undo()
    state = saves.load()
    assert not state["done"] and state["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_foreign_checkpoint_is_refused(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="unreadable"):
        Checkpoints(tmp_path / "c.pt").load()
