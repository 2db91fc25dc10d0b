"""Smoke test of the speed benchmark's measuring and table building (not a timing test)."""

import torch

from kanpde.bench import Row, benchmark, headlines, markdown_table


def test_tiny_benchmark_builds_table():
    rows = [Row("KAN [2,10,1]", 5, 64, "float64", p) for p in ("fast", "autograd")]
    benchmark(rows, torch.device("cpu"), min_time=0.0, log=lambda s: None)
    assert all(r.ms > 0 and r.reps >= 3 and r.note == "" for r in rows)
    rows += [Row("KAN [2,10,1]", 5, 64, "float64", "pykan", ms=100 * rows[0].ms),
             Row("KAN [2,10,1]", 5, 10**6, "float64", "autograd", note="skipped (est. 9.0 s)")]
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| model | G | N | dtype | path | ms/eval | peak MB | speedup vs pykan |")
    assert len(table) == 2 + len(rows)
    assert table[2].endswith("| 100.0x |") and "skipped (est. 9.0 s)" in table[-1]
    assert headlines(rows)[0].endswith("n/a")  # no N = 10,000 rows here


def test_machine_names_the_cpu_and_the_kernel_build():
    from kanpde.bench import machine
    from kanpde.nn import kernel

    info = machine(torch.device("cpu"))
    assert info["cpu"] and info["cores"] >= 1
    built = kernel.build_info()
    if built["available"]:
        assert built["compiler"] in info["kernel"] and f"-march=native = {built['march']}" in info["kernel"]
    else:
        assert info["kernel"].startswith("none (")
