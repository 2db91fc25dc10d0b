"""Command line: `python -m kanpde problem=poisson model=kan ...` (Hydra; `-m` for sweeps)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from kanpde import cores

cores.bounded_waiting()  # before torch (with libgomp) is loaded below: see kanpde.cores

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from kanpde.run import run  # noqa: E402
from kanpde.validate import ConfigError  # noqa: E402

log = logging.getLogger("kanpde")
GROUPS = ("problem", "model", "optim", "interpret", "recipe", "experiment")


def _fail(message: str) -> None:
    print(f"kanpde: error: {message}", file=sys.stderr)
    sys.exit(2)


def user_config_dirs(argv: list[str]) -> list[Path]:
    """Folders the command line adds to the config search path: --config-dir / -cd DIR and
    hydra.searchpath=[file://DIR, ...] (pkg:// entries are packages, not folders)."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.partition("=")[2])
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            entries = arg.partition("=")[2].strip("[]").split(",")
            dirs += [e.strip().strip("'\"")[len("file://"):] for e in entries if e.strip().strip("'\"").startswith("file://")]
    return [Path(d).resolve() for d in dirs if d]


def check_group_choices(argv: list[str]) -> None:
    """Fail in one line on `group=choice` overrides naming no config file (Hydra's own message
    spans many lines); the user's config folders count too."""
    conf = resources.files("kanpde.conf")
    extra = user_config_dirs(argv)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS:
            continue
        names = []
        for folder in (conf.joinpath(key), *(d / key for d in extra)):
            names += list(folder.iterdir()) if folder.is_dir() else []
        allowed = sorted({p.name[:-5] for p in names if p.name.endswith(".yaml")})
        for choice in value.split(","):
            if choice and choice not in allowed:
                _fail(f"{key}={choice} is not a known {key}; allowed: {', '.join(allowed) or 'none yet'}")


@hydra.main(version_base="1.3", config_path="pkg://kanpde.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    out_dir = HydraConfig.get().runtime.output_dir
    try:
        metrics = run(cfg, out_dir)
    except ConfigError as exc:
        _remove_stub(Path(out_dir))
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("skipped: %s", exc)  # one bad job must not stop the other jobs of a sweep
            return None
        _fail(str(exc))
    except Exception as exc:  # the run's own folder holds the traceback (metrics.json)
        if os.environ.get("KANPDE_TRACEBACK") or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        _fail(f"run failed: {type(exc).__name__}: {exc} (traceback in {out_dir}/metrics.json; "
              "KANPDE_TRACEBACK=1 shows it here)")
    keys = ("status", "n_params", "steps", "evals", "wall_s", "l2_sq", "h1_sq", "rel_l2", "max_err",
            "accuracy", "theory_accuracy", "formula_accuracy", "formula")
    log.info("%s", "  ".join(f"{k}={metrics[k]:.3g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
                             for k in keys if k in metrics))
    out_dir = metrics.get("run_dir", out_dir)
    log.info("run record: %s", out_dir)
    if metrics["status"] == "interrupted" and HydraConfig.get().mode != RunMode.MULTIRUN:
        log.warning("interrupted; to go on: python -m kanpde resume=%s", out_dir)
        sys.exit(130)
    return metrics.get("l2_sq")


def _remove_stub(out: Path) -> None:
    """Remove the folder Hydra made for a run that failed validation, if it holds nothing but
    Hydra's own files (.hydra/ and an empty or short log): no run record, no stub."""
    if not out.is_dir() or (out / "config.yaml").exists():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)


def resume_argv(argv: list[str]) -> list[str]:
    """`resume=<run or sweep folder>` -> the overrides that folder was made with, plus its
    hydra.run.dir / hydra.sweep.dir and resume=true (other arguments kept, after them)."""
    import yaml

    picked = [a for a in argv if a.startswith("resume=")]
    value = picked[-1].partition("=")[2] if picked else ""
    if value.lower() in ("", "true", "false"):
        return argv
    folder = Path(value)
    rest = [a for a in argv if not a.startswith("resume=")]
    if (folder / "multirun.yaml").exists():
        hydra_cfg = yaml.safe_load((folder / "multirun.yaml").read_text())["hydra"]
        own = [o for o in hydra_cfg["overrides"]["hydra"] if not o.startswith(("hydra.sweep.dir=", "hydra.run.dir="))]
        return ["-m", *own, *hydra_cfg["overrides"]["task"], f"hydra.sweep.dir={folder}", "resume=true",
                *[a for a in rest if a not in ("-m", "--multirun")]]
    saved = folder / ".hydra" / "overrides.yaml"
    if not saved.exists():
        _fail(f"resume={value}: not a kanpde run folder (no .hydra/overrides.yaml) nor a sweep folder "
              "(no multirun.yaml)")
    task = [o for o in yaml.safe_load(saved.read_text()) or [] if not o.startswith("resume=")]
    return [*task, f"hydra.run.dir={folder}", "resume=true", *rest]


def check_composes(argv: list[str]) -> DictConfig | None:
    """Compose the config once before Hydra runs, so an override Hydra rejects (an unknown key,
    a malformed value) ends in one line instead of Hydra's multi-line report.

    Returns:
        the composed config (without the hydra node), or None where Hydra checks it itself
        (sweeps, Hydra's own flags).
    """
    dirs = user_config_dirs(argv)
    argv = _without_config_dir(argv)
    if any(a in ("-m", "--multirun") or a.startswith("--") or a.startswith("-") for a in argv):
        return None  # sweeps and Hydra's own flags: Hydra reports those itself
    overrides = [a for a in argv if not a.startswith(("hydra.", "+hydra.", "++hydra."))]
    if dirs:
        overrides.append("hydra.searchpath=[" + ",".join(f"file://{d}" for d in dirs) + "]")
    from hydra import compose, initialize_config_module

    try:
        with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except Exception as exc:  # Hydra raises several types; all mean a bad override
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        culprit = _unparsable(overrides)  # a grammar error's message does not say which one
        _fail(f"bad override{f' {culprit}' if culprit else ''}: " + (" ".join(lines[:2]) or type(exc).__name__))


def _unparsable(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar rejects, or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except Exception:
            return override
    return None


def _without_config_dir(argv: list[str]) -> list[str]:
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in ("--config-dir", "-cd"):
            skip = True
        elif not arg.startswith("--config-dir="):
            out.append(arg)
    return out


def cli() -> None:
    argv = resume_argv(sys.argv[1:])
    sys.argv[1:] = argv  # what Hydra parses
    # A problem config's relative `file:` is also looked up in the user's config folders.
    os.environ["KANPDE_CONFIG_DIRS"] = os.pathsep.join(str(d) for d in user_config_dirs(argv))
    check_group_choices(argv)
    check_composes(argv)
    main()


if __name__ == "__main__":
    cli()
