"""`kanpde.run.run`: tiny end-to-end runs and the complete run record they leave."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config

from kanpde.record import load_model, read_history, read_metrics
from kanpde.registry import build_model, build_problem
from kanpde.run import resolve_width, run
from kanpde.validate import ConfigError

N_PARAMS = {"kan": (281, 150), "mlp": (20601, 20300)}  # (real, paper) for the default widths
HISTORY = {"step", "stage", "loss", "loss_pde", "loss_boundary", "evals", "wall_s",
           "l2_sq", "h1_sq", "rel_l2", "max_err"}


@pytest.mark.parametrize("model", ["kan", "mlp"])
@pytest.mark.parametrize("problem", ["poisson", "poisson_sinsin"])
def test_run_writes_complete_record(tiny_config, tmp_path, problem, model):
    """Two optimiser steps write metrics.json, config.yaml and run.h5 whose saved model
    reproduces the saved predictions and whose history ends at the final metrics."""
    cfg = tiny_config(f"problem={problem}", f"model={model}")
    returned = run(cfg, tmp_path)
    metrics = read_metrics(tmp_path)
    assert metrics == json.loads(json.dumps(returned))
    assert metrics["problem"] == problem and metrics["model"] == model
    assert metrics["status"] == "ok" and metrics["steps"] == 2
    assert (metrics["n_params"], metrics["n_params_paper"]) == N_PARAMS[model]
    for key in ("l2_sq", "h1_sq", "rel_l2", "wall_s", "max_err", "loss"):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0, key
    assert 0 < metrics["l2_sq"] <= metrics["h1_sq"]
    assert metrics["evals"] >= 2
    if model == "kan":
        assert metrics["grid"] == 5
        assert [c["grid"] for c in metrics["grid_changes"]] == [3, 5]
    else:
        assert "grid" not in metrics and metrics["grid_changes"] == []

    saved_cfg = OmegaConf.load(tmp_path / "config.yaml")
    expected = OmegaConf.to_container(cfg, resolve=True)
    expected["model"]["width"] = resolve_width(expected["model"]["width"], 2, 1)  # recorded resolved
    assert OmegaConf.to_container(saved_cfg) == expected

    hist = read_history(tmp_path)
    assert HISTORY <= hist.keys()
    np.testing.assert_array_equal(hist["step"], [0, 1, 2])
    np.testing.assert_array_equal(hist["stage"], [-1, 0, 1])
    if model == "kan":
        np.testing.assert_array_equal(hist["grid"], [5, 3, 5])
    assert hist["loss"][-1] == metrics["loss"]
    assert hist["l2_sq"][-1] == pytest.approx(metrics["l2_sq"], rel=1e-12)
    np.testing.assert_allclose(hist["loss"], hist["loss_pde"] + hist["loss_boundary"], rtol=1e-12)

    with h5py.File(tmp_path / "run.h5", "r") as f:
        x, u_pred, u_exact = (np.array(f["fields"][k]) for k in ("x", "u_pred", "u_exact"))
        assert json.loads(f.attrs["metrics"])["l2_sq"] == metrics["l2_sq"]
    ticks = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(x, np.stack(np.meshgrid(ticks, ticks, indexing="ij"), -1).reshape(-1, 2))
    prob = build_problem(OmegaConf.to_container(cfg.problem))
    np.testing.assert_allclose(u_exact, prob.exact(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-15)

    loaded = load_model(tmp_path)
    assert sum(p.numel() for p in loaded.parameters()) == metrics["n_params"]
    with torch.no_grad():
        again = loaded(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(again, u_pred, rtol=0, atol=1e-14)
    assert np.abs(u_pred).max() > 1e-3


def test_run_is_reproducible(tiny_config, tmp_path):
    """The same config run twice gives identical metrics and predictions; another seed differs."""
    cfg = tiny_config("problem=poisson_sinsin", "model=kan")
    a = run(cfg, tmp_path / "a")
    b = run(cfg, tmp_path / "b")
    c = run(tiny_config("problem=poisson_sinsin", "model=kan", "seed=1"), tmp_path / "c")
    assert a["l2_sq"] == b["l2_sq"] and a["loss"] == b["loss"]
    assert a["l2_sq"] != c["l2_sq"]
    with h5py.File(tmp_path / "a" / "run.h5") as fa, h5py.File(tmp_path / "b" / "run.h5") as fb:
        np.testing.assert_array_equal(np.array(fa["fields/u_pred"]), np.array(fb["fields/u_pred"]))


def test_a_second_run_into_a_held_folder_writes_a_sibling(tiny_config, tmp_path):
    """Two runs given one folder (two jobs started in the same second) keep two records: the
    second writes <folder>-2 and says so in metrics["run_dir"]; the first's is untouched."""
    first = run(tiny_config("problem=poisson_sinsin", "model=kan"), tmp_path / "r")
    record = (tmp_path / "r" / "metrics.json").read_bytes()
    second = run(tiny_config("problem=poisson_sinsin", "model=kan", "seed=1"), tmp_path / "r")
    assert first["run_dir"] == str(tmp_path / "r") and second["run_dir"] == str(tmp_path / "r-2")
    assert (tmp_path / "r" / "metrics.json").read_bytes() == record
    assert read_metrics(tmp_path / "r-2")["seed"] == 1 and read_metrics(tmp_path / "r")["seed"] == 0


def test_claim_is_exclusive_across_processes(tmp_path):
    """Processes claiming one folder at once each get their own."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        got = pool.map(_claim, [str(tmp_path / "x")] * 4)
    assert sorted(got) == sorted(str(tmp_path / n) for n in ("x", "x-2", "x-3", "x-4"))


def _claim(folder: str) -> str:
    from pathlib import Path

    from kanpde.run import claim

    return str(claim(Path(folder)))


def test_restarts_keep_the_lowest_training_loss(tiny_config, tmp_path):
    """restarts=3 trains seeds 0, 1, 2 on the same data and keeps the one with the lowest final
    training loss: its metrics equal a plain run of that seed (with data_seed fixed at 0)."""
    multi = run(tiny_config("problem=poisson_sinsin", "model=kan", "restarts=3", "data_seed=0"), tmp_path / "m")
    tried = multi["restarts"]
    assert [t["seed"] for t in tried] == [0, 1, 2]
    best = min(tried, key=lambda t: t["loss"])
    assert multi["seed"] == best["seed"] and multi["loss"] == best["loss"]
    assert len({t["loss"] for t in tried}) == 3  # the seeds really differ
    single = run(tiny_config("problem=poisson_sinsin", "model=kan", f"seed={best['seed']}", "data_seed=0"),
                 tmp_path / "s")
    assert single["loss"] == multi["loss"] and single["l2_sq"] == multi["l2_sq"]


def test_run_diverges_cleanly(tiny_config, tmp_path):
    """A non-finite update (Adam with lr = inf: halving it is no remedy) is retried twice, then
    the run stops with status "diverged" and the last finite parameters: here the initial ones."""
    cfg = tiny_config("model=kan")
    cfg.optim.stages = [{"optimizer": "adam", "steps": 3, "lr": float("inf")}]
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "diverged" and metrics["steps"] == 0
    assert [r["lr"] for r in metrics["recoveries"]] == [float("inf"), float("inf"), None]
    assert math.isfinite(metrics["l2_sq"]) and math.isfinite(metrics["loss"])
    loaded = load_model(tmp_path)
    initial = build_model({**OmegaConf.to_container(cfg.model), "width": [2, 10, 1]},
                          generator=torch.Generator().manual_seed(cfg.seed), dtype=torch.float64)
    for (name, p), q in zip(loaded.state_dict().items(), initial.state_dict().values()):
        assert torch.isfinite(p).all(), name
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert read_metrics(tmp_path)["status"] == "diverged"


@pytest.mark.parametrize("override, words", [
    ("model.width=[3,10,1]", "model.width"),
    ("model.grid_range=[1.0,-1.0]", "model.grid_range"),
    ("problem.n_interior=0", "problem.n_interior"),
    ("optim.stages.0.optimizer=sgd", "sgd"),
    ("dtype=float16", "float16"),
    ("restarts=0", "restarts"),
    ("+bogus=1", "bogus"),
])
def test_run_rejects_bad_config_before_work(tiny_config, tmp_path, override, words):
    """A bad value raises ConfigError naming it, before anything is written."""
    with pytest.raises(ConfigError, match=words):
        run(tiny_config(override), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_second_order_stages_run_and_lm_needs_residuals(tiny_config, tmp_path):
    """optimizer lm / ssbfgs / ssbroyden / bfgs are stage options: each lowers the loss of a run
    (their convergence is tested in test_optim.py);
    lm on a problem without residual vectors (a classifier) fails in one line naming the stage."""
    for name in ("lm", "ssbfgs", "ssbroyden", "bfgs"):
        stages = f"optim.stages=[{{optimizer: {name}, steps: 2, max_iter: 3}}]"
        metrics = run(tiny_config("problem=poisson_sinsin", stages), tmp_path / name)
        history = read_history(tmp_path / name)
        assert metrics["status"] == "ok" and metrics["steps"] == 2, name
        assert history["loss"][-1] < history["loss"][0], name
    with pytest.raises(ConfigError, match=r"optim.stages\[0\].optimizer=lm needs a least-squares problem"):
        run(compose_config(["problem=gaam", "problem.n_hamiltonians=4", "problem.n_sites=20", "progress=false",
                            f"problem.cache_dir={tmp_path}", "optim.stages=[{optimizer: lm, steps: 1}]"],
                           shrink=False), tmp_path / "gaam")
