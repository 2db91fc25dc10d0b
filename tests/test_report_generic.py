"""The generic report (`kanpde.report.generic`) against hand-made run records with known medians,
failed and corrupt records, a mix of problems, and the CLI."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from kanpde.report import report
from kanpde.report.__main__ import main
from tests.test_plot import make_record


def _run(folder: Path, problem: str, model: str, width: list[int], seed: int, rel_l2: float,
         wall: float = 2.0, status: str = "ok", options: dict | None = None, **metrics) -> None:
    """A record of a 1-D problem: rel_l2 falls geometrically from 1 to `rel_l2` over `wall` s;
    `options` go into its problem config."""
    config = {"problem": {"name": problem, "n_interior": 100, **(options or {})}, "model": {"name": model, "width": width},
              "optim": {"name": "pde"}, "seed": seed}
    base = {"model": model, "width": width, "seed": seed, "status": status, "rel_l2": rel_l2,
            "max_err": 2 * rel_l2, "wall_s": wall, "n_params": 10 * width[1]}
    if status == "failed":
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"problem": problem, "model": model, "width": width,
                                                         "status": "failed", "error": "RuntimeError: boom\ntrace"}))
    else:
        history = {"step": np.arange(11.0), "wall_s": np.linspace(0, wall, 11),
                   "rel_l2": np.geomspace(1, rel_l2, 11) if rel_l2 > 0 else np.ones(11)}
        make_record(folder, problem, ("x",), metrics=base | metrics, history=history)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed, err in enumerate((1e-3, 3e-3, 2e-3)):  # median 2e-3, spread 1e-3 - 3e-3
        _run(root / f"kan{seed}", "sine1d", "kan", [1, 5, 1], seed, err, wall=1.0 + seed)
    _run(root / "kan3", "sine1d", "kan", [1, 5, 1], 3, float("nan"), status="diverged")
    _run(root / "mlp0", "sine1d", "mlp", [1, 20, 1], 0, 1e-2, wall=4.0)
    _run(root / "mlp1", "sine1d", "mlp", [1, 20, 1], 1, 3e-2, wall=6.0)
    _run(root / "mlp2", "sine1d", "mlp", [1, 20, 1], 2, 0.0, status="failed")
    return root


def _table(out: Path) -> list[dict]:
    with (out / "table.csv").open() as f:
        return list(csv.DictReader(f))


def test_table_medians_statements_and_failures(sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    files = report([sweep], out, command="python -m kanpde.report sweep")
    assert {"report.md", "table.csv", "error_vs_time_sine1d.png", "error_vs_time_sine1d.pdf",
            "solution_sine1d.png"} == {p.name for p in files}
    assert (out / "error_vs_time_sine1d.png").stat().st_size > 10_000
    kan, mlp = _table(out)
    assert (kan["model"], kan["width"], kan["seeds"], kan["ok/diverged/failed"]) == ("KAN", "[1,5,1]", "4", "3/1/0")
    assert (kan["rel L2 median"], kan["rel L2 min - max"], kan["max err median"]) == ("2.00e-03", "1.00e-03 - 3.00e-03", "4.00e-03")
    assert (kan["wall s median"], kan["params"]) == ("2", "50")
    assert (mlp["model"], mlp["rel L2 median"], mlp["ok/diverged/failed"]) == ("MLP tanh", "2.00e-02", "2/0/1")
    text = (out / "report.md").read_text()
    assert text.startswith("# Report: sine1d\n\nMade by: `python -m kanpde.report sweep`\n")
    assert "KAN is more accurate (10x lower median rel L2)" in text
    # target 2e-2 (the best MLP's median): the KAN seeds reach it at 0.6, 1.4, 2.1 s, the MLPs at
    # 3.6 s and never; half of the seeds are there by the lower median
    assert "KAN 1.4 s, MLP 3.6 s; KAN is sooner." in text
    assert f"- `{sweep / 'kan3'}`: diverged" in text
    assert f"- `{sweep / 'mlp2'}`: failed (RuntimeError: boom)" in text
    assert f"most accurate run (`{sweep / 'kan0'}`)" in text


def test_same_records_same_files(sweep: Path, tmp_path: Path):
    a = report([sweep], tmp_path / "a", command="c")
    b = report([sweep], tmp_path / "b", command="c")
    assert [p.name for p in a] == [p.name for p in b]
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_inverse_and_component_columns(tmp_path: Path):
    for seed, kappa in enumerate((0.098, 0.101, 0.1005)):
        _run(tmp_path / "inv" / str(seed), "heat_inverse", "kan", [1, 5, 1], seed, 1e-3, kappa=kappa,
             kappa_true=0.1, kappa_rel_err=abs(kappa - 0.1) / 0.1, rel_l2_u=1e-3)
    report([tmp_path / "inv"], tmp_path / "out")
    [row] = _table(tmp_path / "out")
    assert (row["kappa"], row["kappa_true"], row["kappa_rel_err"], row["rel_l2_u"]) == ("0.1005", "0.1", "1.00e-02", "1.00e-03")
    header = (tmp_path / "out" / "report.md").read_text().split("| ok/diverged/failed |")[1].split("\n")[0]
    assert header == " rel_l2_u | kappa | kappa_true | kappa_rel_err |"


def test_configurations_differing_in_problem_options_say_how(tmp_path: Path):
    """Two configurations of one problem and model that differ only in a problem option: one row
    each, with a "problem options" column naming the values (a record without the key: default)."""
    for seed in (0, 1):
        _run(tmp_path / "runs" / f"plain{seed}", "sine1d", "kan", [1, 5, 1], seed, 1e-3)
        _run(tmp_path / "runs" / f"faded{seed}", "sine1d", "kan", [1, 5, 1], seed, 1e-4, options={"fade": 0.1})
    report([tmp_path / "runs"], tmp_path / "out")
    rows = _table(tmp_path / "out")
    assert sorted((r["problem options"], r["rel L2 median"]) for r in rows) == [("fade=0.1", "1.00e-04"),
                                                                                 ("fade=default", "1.00e-03")]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| model | width | optim | problem options | seeds |" in text
    report([tmp_path / "runs" / "plain0", tmp_path / "runs" / "plain1"], tmp_path / "same")
    assert "problem options" not in (tmp_path / "same" / "report.md").read_text()


def test_unreadable_records_are_skipped_with_a_warning(tmp_path: Path, caplog):
    _run(tmp_path / "runs" / "good", "sine1d", "kan", [1, 5, 1], 0, 1e-3)
    _run(tmp_path / "runs" / "corrupt", "sine1d", "kan", [1, 5, 1], 1, 1e-3)
    (tmp_path / "runs" / "corrupt" / "metrics.json").write_text("{not json")
    _run(tmp_path / "runs" / "no_h5", "sine1d", "kan", [1, 5, 1], 2, 1e-3)
    (tmp_path / "runs" / "no_h5" / "run.h5").unlink()
    with caplog.at_level(logging.WARNING):
        report([tmp_path / "runs"], tmp_path / "out")
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(tmp_path / "runs" / "corrupt") in m and "JSONDecodeError" in m for m in skipped)
    assert any(str(tmp_path / "runs" / "no_h5") in m and "run.h5" in m for m in skipped)
    assert "1 run of 1 problem: sine1d." in (tmp_path / "out" / "report.md").read_text()


def test_mixed_folder_one_section_per_problem(tmp_path: Path, monkeypatch):
    root = tmp_path / "mix"
    _run(root / "a", "sine1d", "kan", [1, 5, 1], 0, 1e-3)
    _run(root / "b", "diffusion_inverse", "mlp", [1, 8, 1], 0, 1e-2, a_rel_l2=0.2)
    _run(root / "c", "cavity", "kan", [2, 5, 3], 0, 0.0, status="failed")
    _run(root / "d", "gaam", "kan", [4, 2, 1], 0, 0.0, status="failed")
    monkeypatch.chdir(tmp_path)
    files = report([root], command="python -m kanpde.report mix")
    out = tmp_path / "results" / "library"
    text = (out / "report.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Summary: the most accurate KAN and MLP per problem", "## cavity", "## diffusion_inverse", "## sine1d"]
    assert f"- mobility runs: their own report in `{Path('results/library/mobility')}`" in text
    assert Path("results/library/mobility/report.md") in files
    assert [r["problem"] for r in _table(out)] == ["cavity", "diffusion_inverse", "sine1d"]
    assert "No finished run recorded rel_l2" in text and "Only MLP runs here" in text


def test_one_generic_problem_defaults_to_results_problem(tmp_path: Path, monkeypatch, capsys):
    _run(tmp_path / "runs" / "a", "sine1d", "kan", [1, 5, 1], 0, 1e-3)
    monkeypatch.chdir(tmp_path)
    main([str(tmp_path / "runs")])
    assert "results/sine1d/report.md" in capsys.readouterr().out.splitlines()
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("kanpde.report: error: ")


def test_summary_best_configuration_per_problem_beside_published(tmp_path: Path):
    """Per problem the lowest-median KAN and MLP configurations, their spread, time and size,
    and the literature's figures; a problem without runs of one kind shows '-'."""
    from kanpde.report.benchmark import rows
    from kanpde.report.records import find_runs

    root = tmp_path / "bench"
    for seed, err in enumerate((4e-6, 2e-6, 3e-6)):
        _run(root / f"hk{seed}", "helmholtz", "kan", [2, 10, 1], seed, err, wall=100.0 + seed, cpu="AMD EPYC",
             evals=20 + 10 * seed)
    _run(root / "hk_wide", "helmholtz", "kan", [2, 20, 1], 0, 1e-5, cpu="AMD EPYC")
    _run(root / "hm", "helmholtz", "mlp", [2, 50, 1], 0, 8e-4, wall=900.0, cpu="AMD EPYC")
    _run(root / "bk", "burgers", "kan", [2, 10, 1], 0, 0.17, cpu="Intel Xeon")
    table = rows(find_runs([root]))
    assert [r["problem"] for r in table] == ["`burgers`", "`helmholtz`"]
    burgers, helmholtz = table
    assert helmholtz["KAN rel L2 median (min - max)"].startswith("3.00e-06 (2.0e-06 - 4.0e-06), KAN [2,10,1], pde, 3 seeds")
    assert helmholtz["KAN wall s"] == "101" and helmholtz["KAN params"] == "100"
    assert helmholtz["MLP rel L2 median (min - max)"].startswith("8.00e-04, MLP [2,50,1]")
    assert "RBA-PINN (6x128, 20k Adam + 1k L-BFGS): 5.8e-06" in helmholtz["best published (rel L2)"]
    assert burgers["MLP wall s"] == "-" and burgers["MLP evals"] == "-" and burgers["machine"] == "Intel Xeon"
    assert helmholtz["KAN evals"] == "30"
    assert helmholtz["kanpde target"] == "rel_l2 <= 5e-06: met"
    assert burgers["kanpde target"] == "rel_l2 <= 1e-04: missed, 1.7e-01 (1,700x)"
    assert helmholtz["configurations tried"] == "3 (5 runs)" and burgers["configurations tried"] == "1 (1 runs)"
    # the MLP's 8e-4 is its end (900 s); the KAN seeds (rel_l2 falling geometrically from 1 to 4e-6,
    # 2e-6, 3e-6 in ten logged steps over 100, 101, 102 s) pass it at their 6th step: 60, 60.6, 61.2 s
    assert helmholtz["sooner to the other's error"] == "KAN (to 8.0e-04: KAN 61 s, MLP 900 s)"
    assert burgers["sooner to the other's error"] == "-"
    report([root], out=tmp_path / "out", command="c")
    assert "## Summary: the most accurate KAN and MLP per problem" in (tmp_path / "out" / "report.md").read_text()
