"""`python -m kanpde.report <folder> [<folder> ...] [--out DIR]`: write a report from run records."""

from __future__ import annotations

import argparse
import shlex
import sys

from kanpde.report import ReportError, report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        print(f"kanpde.report: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = _Parser(prog="python -m kanpde.report", description=__doc__)
    p.add_argument("folders", nargs="+", help="run or sweep folders (searched recursively)")
    p.add_argument("--out", help="output folder (default: results/<problem report name>, results/library for a mix)")
    args = p.parse_args(argv)
    command = "python -m kanpde.report " + " ".join(shlex.quote(a) for a in argv)
    try:
        files = report(args.folders, args.out, command)
    except (ReportError, FileNotFoundError) as exc:
        p.error(str(exc))
    for f in files:
        print(f)


if __name__ == "__main__":
    main()
