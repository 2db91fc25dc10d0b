"""`kanpde.plot`: solution pictures of real shrunk runs and of hand-made records, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from kanpde.plot import PlotError, _names, main, panels, plot_run, read_record, solution_figure


def make_record(folder: Path, problem: str = "poisson_sinsin", variables=("x", "y"), outputs=("u",),
                n: int = 6, metrics: dict | None = None, history: dict | None = None, fields: bool = True,
                reference: str = "u_exact", inside=None) -> Path:
    """A hand-made run record: metrics.json and run.h5 with history and fields on an n^d mesh of
    [0, 1]^d (u = sum of sines; the prediction off by 1 %).

    Args:
        inside: (n^d, d) -> (n^d,) bool, the domain within the box; default all of it.
        metrics: extra or overriding metrics.
        history: history columns, default 5 rows of step, wall_s and rel_l2 falling to 1e-2.
    """
    folder.mkdir(parents=True)
    d, m = len(variables), len(outputs)
    ticks = np.linspace(0.0, 1.0, n)
    x = np.stack(np.meshgrid(*[ticks] * d, indexing="ij"), -1).reshape(-1, d)
    exact = np.stack([np.sin(np.pi * (k + 1) * x).sum(1) for k in range(m)], 1)
    keep = np.ones(len(x), bool) if inside is None else inside(x)
    history = history or {"step": np.arange(5.0), "wall_s": np.linspace(0, 2, 5), "rel_l2": np.geomspace(1, 1e-2, 5)}
    with h5py.File(folder / "run.h5", "w") as f:
        for k, v in history.items():
            f.create_dataset(f"history/{k}", data=np.asarray(v, float))
        if fields:
            f.create_dataset("fields/x", data=x)
            f.create_dataset("fields/inside", data=keep)
            f.create_dataset("fields/u_pred", data=1.01 * exact)
            if reference:
                f.create_dataset(f"fields/{reference}", data=np.where(keep[:, None], exact, np.nan))
        else:
            f.create_group("fields")
    base = {"problem": problem, "model": "kan", "width": [d, 5, m], "seed": 0, "status": "ok",
            "rel_l2": 0.01, "variables": list(variables), "outputs": list(outputs)}
    (folder / "metrics.json").write_text(json.dumps(base | (metrics or {})))
    return folder


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> dict[str, Path]:
    """Shrunk real records (two optimiser steps, 5x5 mesh) of an evolution problem, a system
    and a 2-D stationary problem."""
    from kanpde.run import run
    from tests.conftest import compose_config

    root = tmp_path_factory.mktemp("plot_runs")
    out = {}
    for name in ("heat", "kovasznay", "helmholtz"):
        run(compose_config([f"problem={name}"]), root / name)
        out[name] = root / name
    return out


# panels: heat 3 x-t maps + 5 snapshots; kovasznay 3 outputs x 3 + streamlines (pred, exact, error)
@pytest.mark.parametrize("name,n_panels", [("heat", 8), ("kovasznay", 12), ("helmholtz", 3)])
def test_real_records_give_their_layouts(real_runs, name, n_panels):
    metrics, fields = read_record(real_runs[name])
    fig = solution_figure(metrics, fields)
    assert len(panels(fig)) == n_panels
    assert fig.get_suptitle().startswith(f"{name}: KAN [")
    assert f"rel L2 = {metrics['rel_l2']:.3g}" in fig.get_suptitle()
    if name == "kovasznay":
        titles = [ax.get_title() for ax in panels(fig)]
        assert titles[:3] == ["u: prediction", "u: exact", "u: |error|"]
        assert titles[-3:] == ["velocity (u, v): prediction", "velocity (u, v): exact", "|velocity error|"]


def test_default_output_is_a_png_in_the_run_folder(real_runs):
    [png] = plot_run(real_runs["helmholtz"])
    assert png == real_runs["helmholtz"] / "solution.png" and png.stat().st_size > 20_000


def test_one_and_three_dimensional_records(tmp_path):
    line = make_record(tmp_path / "line", "sine1d", ("x",))
    metrics, fields = read_record(line)
    assert len(panels(solution_figure(metrics, fields))) == 2
    cube = make_record(tmp_path / "cube", "poisson3d", ("x", "y", "z"), n=5)
    metrics, fields = read_record(cube)
    fig = solution_figure(metrics, fields)
    assert len(panels(fig)) == 3 and "mid-slice z = 0.5" in fig.get_suptitle()
    assert fields.middle_slice().pred.shape == (5, 5, 1)


def test_outside_points_are_blank_and_reference_is_named(tmp_path):
    folder = make_record(tmp_path / "l", "poisson_lshape", reference="u_ref",
                         inside=lambda x: ~((x[:, 0] > 0.5) & (x[:, 1] > 0.5)))
    metrics, fields = read_record(folder)
    assert fields.ref_name == "reference"
    assert np.isnan(fields.pred[-1, -1, 0]) and np.isfinite(fields.pred[0, 0, 0])
    assert [ax.get_title() for ax in panels(solution_figure(metrics, fields))][1] == "u: reference"
    no_ref = make_record(tmp_path / "n", reference="")
    metrics, fields = read_record(no_ref)
    assert fields.ref is None and len(panels(solution_figure(metrics, fields))) == 1


def test_cli_out_folder_and_format(tmp_path, capsys):
    a = make_record(tmp_path / "sweep" / "a", "sine1d", ("x",))
    main([str(a), "--out", str(tmp_path / "pics"), "--format", "pdf"])
    assert [p.name for p in (tmp_path / "pics").iterdir()] == ["solution.pdf"]
    assert capsys.readouterr().out == f"{tmp_path / 'pics' / 'solution.pdf'}\n"
    # several runs into one folder: named by their paths below the common parent
    assert _names([tmp_path / "s" / "0", tmp_path / "s" / "1" / "x"]) == ["solution_0", "solution_1_x"]


@pytest.mark.parametrize("case,message", [("missing", "is not a folder"), ("no_h5", "has no run.h5"),
                                          ("no_fields", "has no solution fields"), ("corrupt", "cannot read metrics.json")])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, case, message):
    folder = tmp_path / case
    if case == "no_h5":
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"status": "failed"}))
    elif case == "no_fields":
        make_record(folder, fields=False)
    elif case == "corrupt":
        make_record(folder)
        (folder / "metrics.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_:
        main([str(folder)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("kanpde.plot: error: ") and message in err
    with pytest.raises(PlotError):
        plot_run(folder)
