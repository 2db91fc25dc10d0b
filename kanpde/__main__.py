"""Command line: `python -m kanpde problem=poisson model=kan ...` (Hydra; `-m` for sweeps)."""

from __future__ import annotations

import logging
import sys
from importlib import resources

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from kanpde.run import run
from kanpde.validate import ConfigError

log = logging.getLogger("kanpde")
GROUPS = ("problem", "model", "optim", "experiment")


def _fail(message: str) -> None:
    print(f"kanpde: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_group_choices(argv: list[str]) -> None:
    """Fail in one line on `group=choice` overrides naming no config file (Hydra's own message
    spans many lines)."""
    conf = resources.files("kanpde.conf")
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS:
            continue
        allowed = sorted(p.name[:-5] for p in conf.joinpath(key).iterdir() if p.name.endswith(".yaml"))
        for choice in value.split(","):
            if choice and choice not in allowed:
                _fail(f"{key}={choice} is not a known {key}; allowed: {', '.join(allowed)}")


@hydra.main(version_base="1.3", config_path="pkg://kanpde.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    out_dir = HydraConfig.get().runtime.output_dir
    try:
        metrics = run(cfg, out_dir)
    except ConfigError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("skipped: %s", exc)  # one bad job must not stop the other jobs of a sweep
            return None
        _fail(str(exc))
    keys = ("status", "n_params", "steps", "evals", "wall_s", "l2_sq", "h1_sq", "rel_l2", "max_err")
    log.info("%s", "  ".join(f"{k}={metrics[k]:.3g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
                             for k in keys if k in metrics))
    log.info("run record: %s", out_dir)
    return metrics.get("l2_sq")


def cli() -> None:
    check_group_choices(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
