"""Points in the unit cube [0, 1]^d, the raw material every domain scales and filters.

Four ways, all drawn from the run's explicit `torch.Generator`, so one seed gives one set of
points on every device:

* "random": independent uniform points (torch.rand).
* "mesh": cell centres of the nearest full m^d mesh (off the cube's faces).
* "sobol": a scrambled Sobol sequence (`scipy.stats.qmc.Sobol`), its scrambling seeded from the
  generator.
* "lhs": a Latin hypercube (`scipy.stats.qmc.LatinHypercube`), seeded the same way.

Points are float64 on the CPU; the trainer converts them.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch
from torch import Tensor

from kanpde.validate import check_choice, check_int

SAMPLINGS = ("random", "mesh", "sobol", "lhs")


def scipy_seed(generator: torch.Generator) -> int:
    """A seed for numpy/scipy drawn from `generator` (advances it by one draw)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _qmc_engine(kind: str, d: int, seed: int):
    """A scrambled scipy.stats.qmc engine (imported here: scipy.stats costs ~0.7 s of start-up)."""
    from scipy.stats import qmc

    cls = qmc.Sobol if kind == "sobol" else qmc.LatinHypercube
    # scipy >= 1.15 takes `rng`; older versions `seed` (the same meaning for an int).
    key = "rng" if "rng" in inspect.signature(cls).parameters else "seed"
    return cls(d, scramble=True, **{key: seed})


def unit_points(n: int, d: int, sampling: str, generator: torch.Generator) -> Tensor:
    """Points in [0, 1]^d.

    Args:
        n: how many; "mesh" returns the nearest full mesh, m^d points with m = round(n^(1/d)).
        d: dimension, >= 1.
        sampling: one of `SAMPLINGS`.
        generator: the source of randomness.

    Returns:
        (n', d) float64, n' = n except for "mesh".
    """
    check_int(n, "number of points", minimum=1)
    check_choice(sampling, "sampling", SAMPLINGS)
    if sampling == "random":
        return torch.rand(n, d, generator=generator, dtype=torch.float64)
    if sampling == "mesh":
        m = max(1, round(n ** (1 / d)))
        centres = (torch.arange(m, dtype=torch.float64) + 0.5) / m
        return mesh_points([centres] * d)
    engine = _qmc_engine(sampling, d, scipy_seed(generator))
    with warnings.catch_warnings():  # Sobol warns when n is not a power of 2; any prefix is fine
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(engine.random(n), dtype=np.float64))


def unit_ticks(n: int, sampling: str, generator: torch.Generator) -> Tensor:
    """(n',) points in [0, 1]: `unit_points` in one dimension."""
    return unit_points(n, 1, sampling, generator)[:, 0]


def mesh_points(ticks: list[Tensor]) -> Tensor:
    """Cartesian product of 1-D tick vectors, first axis slowest: (prod len, len(ticks))."""
    if not ticks:
        return torch.zeros(1, 0, dtype=torch.float64)
    grids = torch.meshgrid(*ticks, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)
