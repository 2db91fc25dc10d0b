"""Reports: tables and figures from run records, a pure function of the records.

    python -m kanpde.report <run or sweep folder> [<folder> ...] [--out DIR]

`report(folders, out)` finds every finished run under the folders, picks the report for their
problem (the Poisson reproduction, sec. 3.4 of arXiv 2404.19756; the mobility-edge table, sec. 4.4)
and writes it into `out`.
"""

from __future__ import annotations

from pathlib import Path

from kanpde.report.records import Run, find_runs

REPORTS = {"poisson": "kanpde.report.poisson", "mobility": "kanpde.report.mobility"}
DEFAULT_OUT = {"poisson": "results/poisson_paper", "mobility": "results/mobility"}
KIND = {"gaam": "mobility", "maam": "mobility", "mosaic": "mobility"}  # problems sharing a report


class ReportError(ValueError):
    """The folders hold nothing this module can report on; the message says why."""


def problems_of(runs: list[Run]) -> list[str]:
    return sorted({str(r.metrics.get("problem")) for r in runs})


def report(folders: list[str | Path], out: str | Path | None = None, command: str = "") -> list[Path]:
    """Write the report for the runs under `folders`.

    Args:
        folders: run folders or sweep folders (searched recursively for metrics.json).
        out: output folder; default results/<name for the problem>.
        command: the command line to print in the report (how to make it again).

    Returns:
        the files written.
    """
    import importlib

    runs = find_runs([Path(f) for f in folders])
    if not runs:
        raise ReportError(f"no finished runs (folders with metrics.json) under {', '.join(map(str, folders))}")
    kinds = sorted({KIND.get(p, p) for p in problems_of(runs)})
    if len(kinds) != 1:
        raise ReportError(f"runs of one kind of problem at a time, got {', '.join(problems_of(runs))}")
    name = kinds[0]
    if name not in REPORTS:
        raise ReportError(f"no report for problem {name!r}; reports exist for {', '.join(sorted(REPORTS))}")
    module = importlib.import_module(REPORTS[name])
    out = Path(out) if out is not None else Path(DEFAULT_OUT.get(name, f"results/{name}"))
    return module.write(runs, out, command)
