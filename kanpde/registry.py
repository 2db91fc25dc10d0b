"""Problems and models by name, so a saved config stays readable when a module moves.

Config keys are constructor arguments word for word: `build` rejects an unknown key with a
one-line message listing the allowed ones.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable

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


def _load_builtin() -> None:
    """Import every module of kanpde.problems (the repo's problems/ folder) and the models."""
    import kanpde.problems as pkg
    from kanpde.kan import KAN
    from kanpde.mlp import MLP

    MODELS.setdefault("kan", KAN)
    MODELS.setdefault("mlp", MLP)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")


def options(cls: type) -> list[str]:
    """The config keys `cls` accepts: its constructor's arguments."""
    return [p for p in inspect.signature(cls).parameters if p not in _NOT_OPTIONS]


def _build(table: dict[str, type], group: str, cfg: dict, **extra) -> object:
    _load_builtin()
    cfg = dict(cfg)
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


def build_model(cfg: dict, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """The model named cfg["name"] ("kan", "mlp"), built from the other keys."""
    return _build(MODELS, "model", cfg, generator=generator, dtype=dtype)


def model_name(model: nn.Module) -> str:
    _load_builtin()
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
    from kanpde.kan import KAN
    from kanpde.mlp import MLP

    if isinstance(model, KAN):
        return sum(layer.in_dim * layer.out_dim * layer.grid_size for layer in model.layers)
    if isinstance(model, MLP):
        return sum(w.numel() for w in model.weights)
    return count_params(model)
