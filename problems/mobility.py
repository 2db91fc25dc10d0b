"""Mobility edges of quasiperiodic chains as supervised problems (KAN paper, arXiv 2404.19756, sec. 4.4).

A data fit, not a residual: eigenstates of sampled Hamiltonians (kanpde.chains) labelled extended
(1) or localized (0) by fractal dimension D > 0.5; the model maps the physical parameters and the
energy to a logit, trained with binary cross-entropy. Train and test states come from different
Hamiltonians, so the test measures generalisation to new parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import final

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kanpde import chains
from kanpde.problem import Data, Problem
from kanpde.registry import register_problem
from kanpde.validate import ConfigError, check_int, check_number


class _MobilityEdge(Problem):
    """Classify eigenstates of `model` chains from the features `inputs`."""

    chain: str
    inputs: tuple[str, ...]
    out_dim = 1

    def __init__(self, n_hamiltonians: int, n_sites: int, test_fraction: float, cache_dir: str,
                 kappa: int | None = None):
        self.n_hamiltonians = check_int(n_hamiltonians, "problem.n_hamiltonians", minimum=2)
        self.n_sites = check_int(n_sites, "problem.n_sites", minimum=2)
        self.test_fraction = check_number(test_fraction, "problem.test_fraction", positive=True)
        if self.test_fraction >= 1:
            raise ConfigError(f"problem.test_fraction must be in (0, 1), got {test_fraction!r}")
        if not isinstance(cache_dir, str) or not cache_dir:
            raise ConfigError(f"problem.cache_dir must be a folder path (a string), got {cache_dir!r}")
        self.cache_dir, self.kappa = Path(cache_dir), kappa
        self.variables = self.inputs

    @property
    def in_dim(self) -> int:
        return len(self.inputs)

    def _split(self, generator: torch.Generator) -> tuple[dict, dict]:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        data = chains.load_or_generate(self.cache_dir, self.chain, self.n_hamiltonians, self.n_sites,
                                       seed=0, kappa=self.kappa, progress=False)
        return chains.split_by_hamiltonian(data, self.test_fraction, seed)

    def _tensors(self, part: dict) -> Data:
        x = np.stack([part[k] for k in self.inputs], axis=1)
        return {"x": torch.from_numpy(x).double(), "y": torch.from_numpy(part["label"]).double()[:, None],
                "theory": torch.from_numpy(part["theory_label"]).double()[:, None]}

    def sample(self, generator: torch.Generator) -> Data:
        """Training states: x (N, n_inputs), y (N, 1) labels; the split is seeded by `generator`."""
        train, test = self._split(generator)
        self._test = self._tensors(test)
        return self._tensors(train)

    def test_data(self, generator: torch.Generator) -> Data:
        """The held-out Hamiltonians' states (made by `sample`, which the runner calls first)."""
        return self._test

    def grid_samples(self, data: Data) -> Tensor:
        return data["x"]

    def losses(self, model: nn.Module, data: Data, fast: bool = True) -> dict[str, Tensor]:
        return {"bce": F.binary_cross_entropy_with_logits(model(data["x"]), data["y"].to(data["x"].dtype))}

    def metrics(self, model: nn.Module, test: Data) -> dict[str, float]:
        """Accuracy of the model and of the theory formula on the held-out states."""
        p = next(model.parameters())
        with torch.no_grad():
            pred = (model(test["x"].to(p.dtype)) > 0).double()
        y = test["y"].double()
        return {"accuracy": float((pred == y).double().mean()),
                "theory_accuracy": float((test["theory"] == y).double().mean())}


@final
@register_problem("gaam")
class GAAM(_MobilityEdge):
    """Generalized Aubry-Andre model: V_n = 2 lambda cos(2 pi b n + phi) / (1 - alpha cos(...)).

    Inputs (alpha, lambda, phi, E); mobility edge alpha E + 2 lambda - 2 = 0, localized where
    alpha E + 2 (lambda - 1) > 0. Paper: KAN [4,2,1,1], 98.7 % accuracy.
    """

    chain, inputs = "gaam", ("alpha", "lam", "phi", "E")

    def __init__(self, n_hamiltonians: int = 100, n_sites: int = 500, test_fraction: float = 0.2,
                 cache_dir: str = "results/cache"):
        super().__init__(n_hamiltonians, n_sites, test_fraction, cache_dir)
