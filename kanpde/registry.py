"""Problems and models by name, so a saved config stays readable when a module moves.

Config keys are constructor arguments word for word: `build` rejects an unknown key with a
one-line message listing the allowed ones. Problems are found in kanpde.problems, in installed
packages' `kanpde.problems` entry points, and in a user's own file or module named by the problem
config's `file:` or `module:` key (imported then, and only then).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from kanpde.validate import ConfigError

PROBLEMS: dict[str, type] = {}
MODELS: dict[str, type] = {}
_NOT_OPTIONS = ("self", "generator", "dtype")


def register_problem(name: str) -> Callable[[type], type]:
    """Class decorator: make a problem available as `problem=<name>`."""

    def add(cls: type) -> type:
        if name in PROBLEMS and PROBLEMS[name] is not cls:
            raise ValueError(f"problem name {name!r} is taken by {PROBLEMS[name].__qualname__}")
        PROBLEMS[name] = cls
        cls.name = name
        return cls

    return add


ENTRY_POINTS = "kanpde.problems"  # installed plugins: [project.entry-points."kanpde.problems"]
_plugins_loaded = False


def _load_builtin() -> None:
    """Import every module of kanpde.problems (the repo's problems/ folder), the models, and the
    modules that installed packages declare in the `kanpde.problems` entry-point group."""
    global _plugins_loaded
    import kanpde.problems as pkg
    from kanpde.nn.chebyshev import ChebyKAN
    from kanpde.nn.kan import KAN
    from kanpde.nn.mlp import MLP

    MODELS.setdefault("kan", KAN)
    MODELS.setdefault("mlp", MLP)
    MODELS.setdefault("chebykan", ChebyKAN)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    if not _plugins_loaded:
        _plugins_loaded = True
        for ep in metadata.entry_points(group=ENTRY_POINTS):
            try:
                ep.load()
            except Exception as exc:  # a broken plugin must not hide the built-in problems
                raise ConfigError(f"problem plugin {ep.name!r} ({ep.value}) failed to load: "
                                  f"{type(exc).__name__}: {exc}") from exc


def config_dirs() -> list[Path]:
    """Folders a problem's relative `file:` is looked up in after the current directory: those
    given to the command line with --config-dir (the CLI records them in KANPDE_CONFIG_DIRS)."""
    return [Path(p) for p in os.environ.get("KANPDE_CONFIG_DIRS", "").split(os.pathsep) if p]


def load_user_module(file: str | None = None, module: str | None = None) -> None:
    """Import a user's problem definitions, which register themselves: a Python `file` (absolute,
    or relative to the current directory or a --config-dir) or an importable `module` name.
    This is the only code a config can cause to run, and only when it names it."""
    if module is not None:
        if not isinstance(module, str) or not module:
            raise ConfigError(f"problem.module must be a module name, got {module!r}")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"problem.module {module!r} cannot be imported: {exc}") from exc
        except Exception as exc:  # the user's own code failed: one line here, the chain for a debugger
            raise ConfigError(f"problem.module {module!r} failed on import: {_one_line(exc)}") from exc
    if file is None:
        return
    if not isinstance(file, str) or not file.endswith(".py"):
        raise ConfigError(f"problem.file must be the path of a .py file, got {file!r}")
    candidates = [Path(file)] if Path(file).is_absolute() else [Path.cwd() / file, *(d / file for d in config_dirs())]
    path = next((c.resolve() for c in candidates if c.is_file()), None)
    if path is None:
        raise ConfigError(f"problem.file {file!r} not found; looked in {', '.join(str(c.parent) for c in candidates)}")
    name = f"kanpde_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"problem.file {file!r} failed on import: {_one_line(exc)}") from exc


def _one_line(exc: Exception) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def options(cls: type) -> list[str]:
    """The config keys `cls` accepts: its constructor's arguments."""
    return [p for p in inspect.signature(cls).parameters if p not in _NOT_OPTIONS]


def _build(table: dict[str, type], group: str, cfg: dict, **extra) -> object:
    _load_builtin()
    cfg = dict(cfg)
    if group == "problem":
        load_user_module(cfg.pop("file", None), cfg.pop("module", None))
    name = cfg.pop("name", None)
    if name not in table:
        raise ConfigError(f"{group}.name {name!r} is not known; allowed: {', '.join(sorted(table))}")
    cls = table[name]
    allowed = options(cls)
    for key in cfg:
        if key not in allowed:
            raise ConfigError(f"{group} {name!r} has no option {key!r}; allowed: {', '.join(allowed)}")
    return cls(**cfg, **extra)


def build_problem(cfg: dict):
    """The problem named cfg["name"], built from the other keys."""
    return _build(PROBLEMS, "problem", cfg)


def build_model(cfg: dict, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                variables: list[str] | None = None) -> nn.Module:
    """The model named cfg["name"] ("kan", "mlp", "chebykan"), built from the other keys.

    The option `periodic: {period: {input: L}, harmonics: M}` puts the network behind Fourier
    features of those inputs (`kanpde.nn.features.PeriodicFeatures`); an input is an index, or
    one of `variables` (the problem's variable names) when they are given.
    """
    cfg = dict(cfg)
    spec = cfg.pop("periodic", None)
    if spec is None:
        return _build(MODELS, "model", cfg, generator=generator, dtype=dtype)
    from kanpde.nn.features import PeriodicFeatures, periodic_option

    period, harmonics, inner = periodic_option(spec, cfg.get("width"), variables)
    net = _build(MODELS, "model", {**cfg, "width": inner}, generator=generator, dtype=dtype)
    return PeriodicFeatures(net, period, harmonics)


def model_name(model: nn.Module) -> str:
    """The registry name of `model` (of its network, for one behind `PeriodicFeatures`)."""
    _load_builtin()
    from kanpde.nn.features import PeriodicFeatures

    if isinstance(model, PeriodicFeatures):
        model = model.model
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered model")


def problem_names() -> list[str]:
    _load_builtin()
    return sorted(PROBLEMS)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, the same count for every model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def paper_params(model: nn.Module) -> int:
    """Parameters as the KAN paper counts them: KAN edges x G; MLP weights only (no biases)."""
    from kanpde.nn.kan import KAN
    from kanpde.nn.mlp import MLP

    if isinstance(model, KAN):
        return sum(layer.in_dim * layer.out_dim * layer.grid_size for layer in model.layers)
    if isinstance(model, MLP):
        return sum(w.numel() for w in model.weights)
    return count_params(model)
