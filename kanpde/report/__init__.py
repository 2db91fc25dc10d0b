"""Reports: tables and figures from run records, a pure function of the records.

    python -m kanpde.report <run or sweep folder> [<folder> ...] [--out DIR]

`report(folders, out)` finds every finished run under the folders and writes the report for
their problem into `out`: the Poisson reproduction (sec. 3.4 of arXiv 2404.19756), the
mobility-edge table (sec. 4.4), or for any other problem the generic report
(`kanpde.report.generic`). Runs of several problems give one generic report with a section per
problem; Poisson or mobility runs among them get their own report in a subfolder of `out`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from kanpde.report import generic
from kanpde.report.records import Run, find_runs

REPORTS = {"poisson": "kanpde.report.poisson", "mobility": "kanpde.report.mobility"}
DEFAULT_OUT = {"poisson": "results/poisson_paper", "mobility": "results/mobility"}
KIND = {"gaam": "mobility", "maam": "mobility", "mosaic": "mobility"}  # problems sharing a report


class ReportError(ValueError):
    """The folders hold nothing this module can report on; the message says why."""


def problems_of(runs: list[Run]) -> list[str]:
    return sorted({str(r.metrics.get("problem")) for r in runs})


def kind_of(run: Run) -> str:
    """The report a run belongs to: its problem, or the problem family sharing a report."""
    problem = str(run.metrics.get("problem"))
    return KIND.get(problem, problem)


def report(folders: list[str | Path], out: str | Path | None = None, command: str = "") -> list[Path]:
    """Write the report for the runs under `folders`.

    Args:
        folders: run folders or sweep folders (searched recursively for metrics.json).
        out: output folder; default results/<name for the problem>, results/library for a mix.
        command: the command line to print in the report (how to make it again).

    Returns:
        the files written.
    """
    runs = find_runs([Path(f) for f in folders])
    if not runs:
        raise ReportError(f"no finished runs (folders with metrics.json) under {', '.join(map(str, folders))}")
    kinds = sorted({kind_of(r) for r in runs})
    if len(kinds) == 1:
        name = kinds[0]
        out = Path(out) if out is not None else Path(DEFAULT_OUT.get(name, f"results/{name}"))
        if name in REPORTS:
            return importlib.import_module(REPORTS[name]).write(runs, out, command)
        return generic.write(runs, out, command)
    out = Path(out) if out is not None else Path("results/library")
    files, others = [], {}
    for name in (k for k in kinds if k in REPORTS):  # their own reports, in their own subfolders
        others[name] = out / Path(DEFAULT_OUT[name]).name
        files += importlib.import_module(REPORTS[name]).write([r for r in runs if kind_of(r) == name],
                                                              others[name], command)
    rest = [r for r in runs if kind_of(r) not in REPORTS]
    return sorted(files + generic.write(rest, out, command, others))
