"""The library of named elementwise functions a symbolic KAN edge can hold: a f(b x + c) + d.

Each function has a torch, a numpy and a sympy form. `kanpde.nn.kan` evaluates symbolic edges
with the torch forms; `kanpde.interpret` fits, formats and simplifies with the others. Here, not in
`kanpde.interpret.symbolic`, so that the network depends on the library and not on the fitting.

Domain-restricted functions (log, sqrt, 1/x) have safe torch and numpy versions that equal the
formula on their domain and stay finite, with finite gradients, off it (pykan's idea): log and
sqrt are clamped below at 1e-6 and 1e-12, 1/x turns linear, x / 1e-12, for |x| < 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from scipy.special import expit
from torch import Tensor

_LOG_MIN, _SQRT_MIN, _INV_MIN = 1e-6, 1e-12, 1e-6


@dataclass(frozen=True)
class SymbolicFunction:
    """One library function f.

    Attributes:
        name: library key, e.g. "sin", "x^2".
        torch: elementwise Tensor -> Tensor (safe version, see the module docstring).
        numpy: elementwise ndarray -> ndarray, equal to `torch` everywhere.
        sympy: sympy.Expr -> sympy.Expr, the formula.
        complexity: cost in `suggest`'s score (0 for the constant, 1 for x, ...).
        domain: elementwise ndarray -> bool ndarray, where the formula and the safe versions
            agree; None: everywhere.
    """

    name: str
    torch: Callable[[Tensor], Tensor]
    numpy: Callable[[np.ndarray], np.ndarray]
    sympy: Callable[[sp.Expr], sp.Expr]
    complexity: int
    domain: Callable[[np.ndarray], np.ndarray] | None = None


def _t_inv(x: Tensor) -> Tensor:
    far = x.abs() >= _INV_MIN
    return torch.where(far, 1 / torch.where(far, x, torch.ones_like(x)), x / _INV_MIN**2)


def _n_inv(x: np.ndarray) -> np.ndarray:
    far = np.abs(x) >= _INV_MIN
    return np.where(far, 1 / np.where(far, x, 1.0), x / _INV_MIN**2)


def _t_sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


_FUNCTIONS = [  # name, torch, numpy, sympy, complexity, domain
    ("0", lambda z: 0 * z, np.zeros_like, lambda z: sp.Integer(0), 0, None),
    ("x", lambda z: z, lambda z: z, lambda z: z, 1, None),
    ("x^2", lambda z: z**2, lambda z: z**2, lambda z: z**2, 2, None),
    ("x^3", lambda z: z**3, lambda z: z**3, lambda z: z**3, 3, None),
    ("exp", torch.exp, np.exp, sp.exp, 2, None),
    ("log", lambda z: torch.log(torch.clamp(z, min=_LOG_MIN)), lambda z: np.log(np.maximum(z, _LOG_MIN)),
     sp.log, 2, lambda z: z >= _LOG_MIN),
    ("sqrt", lambda z: torch.sqrt(torch.clamp(z, min=_SQRT_MIN)), lambda z: np.sqrt(np.maximum(z, _SQRT_MIN)),
     sp.sqrt, 2, lambda z: z >= _SQRT_MIN),
    ("sin", torch.sin, np.sin, sp.sin, 2, None),
    ("cos", torch.cos, np.cos, sp.cos, 2, None),
    ("1/x", _t_inv, _n_inv, lambda z: 1 / z, 2, lambda z: np.abs(z) >= _INV_MIN),
    ("tanh", torch.tanh, np.tanh, sp.tanh, 3, None),
    ("sigmoid", _t_sigmoid, expit, lambda z: 1 / (1 + sp.exp(-z)), 3, None),
    ("cosh", torch.cosh, np.cosh, sp.cosh, 3, None),
    ("arctan", torch.arctan, np.arctan, sp.atan, 3, None),
    ("abs", torch.abs, np.abs, sp.Abs, 3, None),
]
LIBRARY: dict[str, SymbolicFunction] = {row[0]: SymbolicFunction(*row) for row in _FUNCTIONS}
