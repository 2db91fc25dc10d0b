"""Mobility edges of quasiperiodic chains as supervised problems (KAN paper, arXiv 2404.19756, sec. 4.4).

A data fit, not a residual: eigenstates of sampled Hamiltonians (kanpde.chains) labelled extended
(1) or localized (0) by fractal dimension D > 0.5; the model maps the physical parameters and the
energy to a logit, trained with binary cross-entropy. Train and test states come from different
Hamiltonians, so the test measures generalisation to new parameters. Three chains: `gaam`,
`maam` and `mosaic` (period kappa in 2..5).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, final

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kanpde import chains
from kanpde.problem import Data, Problem
from kanpde.registry import register_problem
from kanpde.validate import ConfigError, check_int, check_number

if TYPE_CHECKING:  # sympy is imported where a formula is built: ~0.5 s of every run's start-up
    import sympy as sp


class _MobilityEdge(Problem):
    """Classify eigenstates of `model` chains from the features `inputs`."""

    chain: str
    inputs: tuple[str, ...]
    out_dim = 1

    def __init__(self, n_hamiltonians: int, n_sites: int, test_fraction: float, cache_dir: str,
                 kappa: int | None = None):
        self.n_hamiltonians = check_int(n_hamiltonians, "problem.n_hamiltonians", minimum=2)
        self.n_sites = check_int(n_sites, "problem.n_sites", minimum=2)
        self.test_fraction = check_number(test_fraction, "problem.test_fraction", positive=True, finite=True)
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

    def theory_formula(self) -> sp.Expr:
        """The theory's logit (positive = extended): 2 - 2 lambda - alpha E."""
        import sympy as sp

        alpha, lam, energy = sp.symbols("alpha lam E")
        return 2 - 2 * lam - alpha * energy

    def __init__(self, n_hamiltonians: int = 400, n_sites: int = 500, test_fraction: float = 0.2,
                 cache_dir: str = "results/cache"):
        super().__init__(n_hamiltonians, n_sites, test_fraction, cache_dir)


@final
@register_problem("maam")
class MAAM(_MobilityEdge):
    """Aubry-Andre model with exponential long-range hopping: H_nn' = e^{-p (|n - n'| - 1)} for
    n != n' (nearest-neighbour hopping 1), V_n = lambda cos(2 pi b n + phi).

    Inputs (lambda, p, phi, E); mobility edge E + e^p - lambda cosh p = 0, localized where
    lambda cosh p > E + e^p. Paper: KAN [4,2,1,1] reaches only ~75 %, [4,3,1,1] 98.4 %; automatic
    symbolic formula 97.1 %, manual (prune, fix linear/quadratic, snap p to cosh) 97.7 / 97.7 /
    96.6 %; theory formula 98.6 % on their data. Dense (N, N) Hamiltonians: ~0.1 s each at N = 500.
    400 Hamiltonians by default: trained on 80 (of 100), a KAN fits per-Hamiltonian offsets
    through phi (99 % on its training states, 93 % on held-out ones).
    """

    chain, inputs = "maam", ("lam", "p", "phi", "E")

    def theory_formula(self) -> sp.Expr:
        """The theory's logit (positive = extended): E + e^p - lambda cosh p."""
        import sympy as sp

        lam, p, energy = sp.symbols("lam p E")
        return energy + sp.exp(p) - lam * sp.cosh(p)

    def __init__(self, n_hamiltonians: int = 400, n_sites: int = 500, test_fraction: float = 0.2,
                 cache_dir: str = "results/cache"):
        super().__init__(n_hamiltonians, n_sites, test_fraction, cache_dir)


@final
@register_problem("mosaic")
class Mosaic(_MobilityEdge):
    """Mosaic Aubry-Andre model: hopping 1, V_n = 2 lambda cos(2 pi b n + phi) on every kappa-th
    site (n % kappa == 0), 0 elsewhere.

    Inputs (lambda, E); mobility edges lambda = 1 / |f_kappa(E)|, localized where
    lambda |f_kappa(E)| > 1, with f_2 = E, f_3 = E^2 - 1, f_4 = E (E^2 - 2),
    f_5 = (E^2 - g^2)(E^2 - g^-2), g = (sqrt 5 - 1) / 2. Paper: KAN [2,1] with the lambda edge
    fixed linear, so the logit is lambda - h(E) and h recovers 1 / |f_kappa|. Labels agree with
    theory on ~99 % of states for kappa = 2 at N = 500 but only ~96 / 92 / 91 % for kappa = 3 / 4 / 5
    (localization lengths near the edge exceed sqrt(N)); use n_sites ~2000 for kappa 4 and 5.
    """

    chain, inputs = "mosaic", ("lam", "E")

    def __init__(self, kappa: int = 2, n_hamiltonians: int = 100, n_sites: int = 500,
                 test_fraction: float = 0.2, cache_dir: str = "results/cache"):
        super().__init__(n_hamiltonians, n_sites, test_fraction, cache_dir,
                         kappa=check_int(kappa, "problem.kappa", minimum=2, maximum=5))

    def edge_function(self, energy: np.ndarray) -> np.ndarray:
        """f_kappa(E): the mobility edge is lambda = 1 / |f_kappa(E)|. (M,) -> (M,)."""
        e, g = np.asarray(energy, dtype=float), (np.sqrt(5) - 1) / 2
        return {2: e, 3: e**2 - 1, 4: e * (e**2 - 2), 5: (e**2 - g**2) * (e**2 - g**-2)}[self.kappa]

    def sample(self, generator: torch.Generator) -> Data:
        """As the base class; the test data also get the energies the edge error is measured at
        (`edge_energies`: data only, so worked out once, not at every logged step)."""
        train = super().sample(generator)
        x = self._test["x"].numpy()
        e, theory = self.edge_energies(x[:, 1], x[:, 0])
        self._test.update(edge_E=torch.from_numpy(e), edge_theory=torch.from_numpy(theory))
        return train

    def metrics(self, model: nn.Module, test: Data) -> dict[str, float]:
        """Accuracies, plus how far the model's learned edge lambda*(E) (where its logit changes
        sign along lambda) is from 1 / |f_kappa(E)|: the median relative error over the energies
        where the test states determine the edge (see `edge_energies`)."""
        out = super().metrics(model, test)
        out["edge_rel_err"] = self._edge_error_at(model, test["edge_E"].cpu().numpy(),
                                                  test["edge_theory"].cpu().numpy())
        return out

    def edge_energies(self, energies: np.ndarray, lams: np.ndarray, n_e: int = 200,
                      neighbours: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Energies at which the data determine the edge, and the theory's edge there.

        Of n_e energies (quantiles of the states'), those whose theoretical edge lies in the
        sampled lambda range and whose `neighbours` nearest states (in E) have lambdas on both
        sides of it: elsewhere (e.g. kappa = 2 at |E| > 2.2, where every state has lambda above
        the edge) no data fixes where a classifier puts it.

        Args:
            energies, lams: (M,) of the states.

        Returns:
            e (K,), theory edge 1 / |f_kappa(e)| (K,); K <= n_e.
        """
        lo, hi = chains.DEFAULT_RANGES["mosaic"]["lam"]
        e = np.quantile(energies, np.linspace(0.01, 0.99, n_e))  # (n_e,) where the states are
        with np.errstate(divide="ignore"):
            theory = 1 / np.abs(self.edge_function(e))  # (n_e,)
        k = min(neighbours, len(energies))
        near = np.argpartition(np.abs(energies[None, :] - e[:, None]), k - 1, axis=1)[:, :k]  # (n_e, k)
        lam_near = lams[near]  # (n_e, k)
        inside = ((theory > lo) & (theory < hi) & (lam_near.min(axis=1) < theory)
                  & (lam_near.max(axis=1) > theory))
        return e[inside], theory[inside]

    def edge_error(self, model: nn.Module, energies: np.ndarray, lams: np.ndarray, n_lam: int = 400,
                   n_e: int = 200, neighbours: int = 50) -> float:
        """Median relative distance of the model's edge from 1 / |f_kappa(E)| over the energies
        `edge_energies` picks from states (energies, lams), (M,) each; nan if it picks none."""
        return self._edge_error_at(model, *self.edge_energies(energies, lams, n_e, neighbours), n_lam)

    def _edge_error_at(self, model: nn.Module, e: np.ndarray, theory: np.ndarray, n_lam: int = 400) -> float:
        """Median relative distance of the learned edge from `theory` at energies e, (K,) each."""
        if not len(e):
            return float("nan")
        lo, hi = chains.DEFAULT_RANGES["mosaic"]["lam"]
        lam = np.linspace(lo, hi, n_lam)
        grid = np.stack(np.broadcast_arrays(lam[None, :], e[:, None]), axis=-1).reshape(-1, 2)
        p = next(model.parameters())
        with torch.no_grad():
            z = model(torch.from_numpy(grid).to(p.device, p.dtype)).double().cpu().numpy().reshape(len(e), n_lam)
        # extended (z > 0) below the edge, localized above: the first sign change along lambda
        change = (z[:, :-1] > 0) & (z[:, 1:] <= 0)  # (K, n_lam - 1)
        has = change.any(axis=1)
        k = change.argmax(axis=1)
        rows = np.arange(len(e))
        learned = np.where(has, lam[k] + (lam[k + 1] - lam[k]) * z[rows, k]
                           / (z[rows, k] - z[rows, k + 1] + 1e-300), np.nan)
        rel = np.abs(learned - theory) / theory
        rel = np.where(np.isnan(rel), 1.0, rel)  # an edge the model does not draw counts as 100 % off
        return float(np.median(rel))
