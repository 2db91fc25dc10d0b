"""Checks of user-supplied settings that fail with one line naming the value and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names both."""


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum], else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_number(value, name: str, minimum: float | None = None, positive: bool = False,
                 finite: bool = False) -> float:
    """`value` as a float (>= minimum, > 0 if positive, not +-inf if finite; never nan), else
    ConfigError."""
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if finite and math.isinf(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum}, got {value!r}")
    return float(value)


def check_choice(value, name: str, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else ConfigError listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


MAX_WIDTH = 2**20  # nodes in one layer; more is a typo (past 2^63 torch cannot even size the tensors)


def check_width(value, name: str) -> list[int]:
    """A layer-width list: at least two integers in [1, MAX_WIDTH]."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < 2:
        raise ConfigError(f"{name} must be a list of at least 2 positive integers, got {_show(value)}")
    for w in value:
        if isinstance(w, bool) or not isinstance(w, Integral) or w < 1:
            raise ConfigError(f"{name} must be a list of at least 2 positive integers, got {_show(value)}")
        if w > MAX_WIDTH:
            raise ConfigError(f"{name} entries must be at most {MAX_WIDTH}, got {_show(value)}")
    return [int(w) for w in value]


def check_interval(value, name: str) -> tuple[float, float]:
    """A pair [a, b] of numbers with a < b."""
    ok = (not isinstance(value, (str, bytes)) and isinstance(value, Sequence) and len(value) == 2
          and all(isinstance(v, Real) and not isinstance(v, bool) for v in value) and value[0] < value[1])
    if not ok:
        raise ConfigError(f"{name} must be [a, b] with numbers a < b, got {_show(value)}")
    return float(value[0]), float(value[1])


def _show(value) -> str:
    try:
        return repr(list(value)) if not isinstance(value, (str, bytes)) else repr(value)
    except TypeError:
        return repr(value)
