"""Smoke test of the speed benchmark's measuring and table building (not a timing test)."""

import time

import torch

from kanpde.bench import Row, benchmark, headlines, markdown_table


def test_tiny_benchmark_builds_table():
    rows = [Row("KAN [2,10,1]", 5, 64, "float64", p) for p in ("fast", "autograd")]
    rows += [Row("KAN [2,10,3]", 5, 64, "float64", "fast", problem="kovasznay")]
    benchmark(rows, torch.device("cpu"), min_time=0.0, log=lambda s: None)
    assert all(r.ms > 0 and r.reps >= 3 and r.note == "" for r in rows)
    rows += [Row("KAN [2,10,1]", 5, 64, "float64", "pykan", ms=100 * rows[0].ms),
             Row("KAN [2,10,1]", 5, 10**6, "float64", "autograd", note="skipped (est. 9.0 s)")]
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| problem | model | G | N | dtype | path | ms/eval | peak MB | speedup vs pykan |")
    assert len(table) == 2 + len(rows)
    assert table[2].endswith("| 100.0x |") and "skipped (est. 9.0 s)" in table[-1]
    assert headlines(rows)[0].endswith("n/a")  # no N = 10,000 rows here
    assert "| kovasznay | KAN [2,10,3] | 5 | 64 |" in markdown_table(rows)


def test_rows_include_the_library_problems_at_10000():
    from kanpde.bench import make_rows

    rows = make_rows([1000, 10_000], ["float64"], False, False)
    library = {(r.problem, r.model, r.path) for r in rows if r.problem != "poisson"}
    assert ("heat", "KAN [2,10,1]", "torch") in library and ("kovasznay", "MLP [2,100,100,100,3]", "fast") in library
    assert all(r.n == 10_000 for r in rows if r.problem != "poisson")
    assert not [r for r in make_rows([1000], ["float64"], False, False) if r.problem != "poisson"]


def test_machine_names_the_cpu_and_the_kernel_build():
    from kanpde.bench import machine
    from kanpde.nn import kernel

    info = machine(torch.device("cpu"))
    assert info["cpu"] and info["cores"] >= 1
    built = kernel.build_info()
    if built["available"]:
        assert built["compiler"] in info["kernel"] and f"-march=native = {built['march']}" in info["kernel"]
        assert info["kernel"].startswith(f"build {built['build']} (")
    else:
        assert info["kernel"].startswith("none (")


def test_mlp_matmul_floor_counts_the_jet_products():
    """[2,3,1] with 4 rows per point at N = 5: forward (20,2)@(2,3), (20,3)@(3,1); weight
    gradients (2,20)@(20,3), (3,20)@(20,1); the input gradient past the first layer (20,1)@(1,3)."""
    from kanpde.speed import mlp_matmul_floor

    floor = mlp_matmul_floor([2, 3, 1], 5, 4, torch.float64, torch.device("cpu"), repeats=2)
    flops = 2 * (20 * 2 * 3 + 20 * 3 * 1 + 2 * 20 * 3 + 3 * 20 * 1 + 20 * 1 * 3)
    assert floor["gflop"] == round(flops / 1e9, 3) and floor["ms"] > 0 and "beside_ms" not in floor


def test_mlp_matmul_floor_times_an_evaluation_beside_each_repetition():
    from kanpde.speed import mlp_matmul_floor

    calls = []
    floor = mlp_matmul_floor([2, 3, 1], 5, 4, torch.float64, torch.device("cpu"), repeats=3,
                             beside=lambda: calls.append(time.sleep(0.01)))
    assert len(calls) == 4 and floor["beside_ms"] >= 10  # one warm-up, three timed; the median is a timed one


def test_neighbour_runs_for_the_block_only(monkeypatch):
    import subprocess

    from kanpde import speed

    started = []
    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(real(*a, **k)) or started[-1])
    with speed.neighbour(2):
        assert len(started) == 2 and all(p.poll() is None for p in started)
    assert all(p.poll() is not None for p in started)


def test_kernel_builds_reports_each_build_against_the_fastest(monkeypatch):
    from kanpde import speed
    from kanpde.nn import build, kernel

    if not kernel.build_info()["available"]:
        import pytest

        pytest.skip("the C++ kernel cannot be built here")
    lib, info = kernel.library(), kernel.build_info()
    monkeypatch.setattr(build, "candidates", lambda: ["native", "native-scalar"])
    monkeypatch.setattr(build, "build", lambda name: (lib, {**info, "build": name}))
    times = iter([4.0, 2.0])
    got = speed.kernel_builds(lambda: next(times), log=lambda s: None)
    assert [(g["build"], g["ms"], g["vs_fastest"]) for g in got] == [("native", 4.0, 2.0), ("native-scalar", 2.0, 1.0)]
    assert [g["chosen"] for g in got] == [info["build"] == "native", info["build"] == "native-scalar"]
