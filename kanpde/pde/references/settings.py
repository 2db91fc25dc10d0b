"""A problem's reference solution from its solver, its default settings and a user's overrides.

The settings (the problem's parameters and the solver's resolution) are the cache key, and are
what the run record reports; a user changes the resolution with the problem option `reference`,
e.g. `problem.reference={nx: 1025}`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from kanpde.pde.references.base import Reference
from kanpde.pde.references.cache import cached
from kanpde.validate import ConfigError


def check_overrides(overrides, solver: Callable, fixed: Mapping) -> dict:
    """`overrides` as a dict of the solver's keyword arguments, none of them the problem's own
    parameters (`fixed`); ConfigError naming the bad key or value otherwise."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"problem.reference must be a mapping of solver settings, got {overrides!r}")
    allowed = [p for p in inspect.signature(solver).parameters if p not in fixed]
    for key in overrides:
        if key not in allowed:
            raise ConfigError(f"problem.reference has no setting {key!r}; allowed: {', '.join(allowed)}")
    return dict(overrides)


def reference(kind: str, solver: Callable[..., Reference], fixed: Mapping, overrides: Mapping) -> Reference:
    """`solver(**fixed, **overrides)`, computed once and cached under those settings."""
    settings = {**fixed, **overrides}
    try:
        return cached(kind, settings, lambda: solver(**settings))
    except ValueError as exc:  # the solvers' own checks of a setting's value
        raise ConfigError(f"problem.reference: {exc}") from exc
