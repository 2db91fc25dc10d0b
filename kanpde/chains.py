"""Quasiperiodic tight-binding chains: Hamiltonians, localization labels and mobility edges.

Data for the mobility-edge experiments of Liu et al., "KAN: Kolmogorov-Arnold Networks"
(arXiv 2404.19756, section 4.4). Sites n = 1..N, open boundaries, b = golden ratio, phase phi:

* mosaic: hopping t, V_n = 2 lam cos(2 pi b n + phi) where n % kappa == 0, else 0.
* GAAM:   hopping 1, V_n = 2 lam cos(x_n) / (1 - alpha cos(x_n)), x_n = 2 pi b n + phi.
* MAAM:   hopping e^p e^{-p |n - n'|} between all pairs (nearest neighbour 1), V_n = lam cos(x_n).

Each eigenstate psi gets IPR = sum |psi|^4 / (sum |psi|^2)^2, fractal dimension
D = -log(IPR) / log(N) and label 1 ("extended") iff D > 0.5, else 0 ("localized").
Theory (`theory_localized`, t = 1), localized iff: mosaic lam |f_kappa(E)| > 1, f_kappa(E) =
U_{kappa-1}(E/2) (Chebyshev): E, E^2 - 1, E (E^2 - 2), (E^2 - g^2)(E^2 - g^-2), g = (sqrt 5 - 1)/2;
GAAM alpha E + 2 (lam - 1) > 0; MAAM lam cosh p > E + e^p. Checked numerically: at N = 500 theory
and D labels agree on ~99 % of states for GAAM, MAAM and mosaic kappa = 2, ~96 / 92 / 91 % for
kappa = 3 / 4 / 5 (there the localization length kappa / ln(lam |f|) near the edge exceeds
sqrt(N), so D > 0.5; agreement grows with N). Part of the rest are gap states bound to the ends.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
from scipy.linalg import eigh_tridiagonal
from tqdm import tqdm

from kanpde.cache import load_or_make

CODE_VERSION = 1  # bump when generated data would change; part of the cache key
FORMAT = "kanpde.chains/1"  # a cache file's `format` attribute
GOLDEN = (1 + np.sqrt(5)) / 2
MODELS = ("mosaic", "gaam", "maam")
# Default sampling ranges (uniform). Measured extended fraction at N = 500: GAAM 0.44, MAAM 0.40,
# mosaic kappa = 2..5: 0.41, 0.44, 0.65, 0.51.
DEFAULT_RANGES = {
    "mosaic": {"lam": (0.2, 3.0), "phi": (0.0, 2 * np.pi)},
    "gaam": {"alpha": (-0.9, 0.9), "lam": (0.2, 2.0), "phi": (0.0, 2 * np.pi)},
    "maam": {"p": (0.5, 2.5), "lam": (0.5, 4.0), "phi": (0.0, 2 * np.pi)},
}


def _check_sites(n_sites: int) -> None:
    if int(n_sites) != n_sites or n_sites < 2:
        raise ValueError(f"n_sites must be an integer >= 2, got {n_sites!r}")


def _check_kappa(kappa) -> None:
    if kappa not in (2, 3, 4, 5):
        raise ValueError(f"kappa must be one of 2, 3, 4, 5, got {kappa!r}")


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; allowed: {', '.join(MODELS)}")


def _phases(n_sites: int, phi: float) -> np.ndarray:
    """(N,) x_n = 2 pi b n + phi for n = 1..N."""
    return 2 * np.pi * GOLDEN * np.arange(1, n_sites + 1) + phi


def mosaic_hamiltonian(n_sites: int, lam: float, kappa: int, phi: float,
                       t: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic Aubry-Andre chain as a tridiagonal pair.

    Returns:
        (diag, offdiag): (N,) on-site potentials and (N-1,) hoppings t.
    """
    _check_sites(n_sites)
    _check_kappa(kappa)
    n = np.arange(1, n_sites + 1)
    diag = np.where(n % kappa == 0, 2 * lam * np.cos(_phases(n_sites, phi)), 0.0)
    return diag, np.full(n_sites - 1, float(t))


def gaam_hamiltonian(n_sites: int, lam: float, alpha: float,
                     phi: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized Aubry-Andre model (hopping 1) as a tridiagonal pair (diag (N,), offdiag (N-1,))."""
    _check_sites(n_sites)
    if not -1 < alpha < 1:
        raise ValueError(f"alpha must lie in (-1, 1), got {alpha!r}")
    c = np.cos(_phases(n_sites, phi))
    return 2 * lam * c / (1 - alpha * c), np.ones(n_sites - 1)


def maam_hamiltonian(n_sites: int, lam: float, p: float, phi: float) -> np.ndarray:
    """Aubry-Andre model with exponential long-range hopping e^{-p (|n - n'| - 1)}; dense (N, N)."""
    _check_sites(n_sites)
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p!r}")
    n = np.arange(n_sites)
    h = np.exp(-p * (np.abs(n[:, None] - n[None, :]) - 1.0))
    np.fill_diagonal(h, lam * np.cos(_phases(n_sites, phi)))
    return h


def eigenstates(h) -> tuple[np.ndarray, np.ndarray]:
    """All eigenpairs of a dense (N, N) Hamiltonian or a tridiagonal (diag, offdiag) pair.

    Returns:
        (E, psi): (N,) ascending energies and (N, N) normalised eigenvectors in columns.
    """
    if isinstance(h, tuple):
        return eigh_tridiagonal(*h)
    return np.linalg.eigh(h)


def ipr(psi: np.ndarray) -> np.ndarray:
    """Inverse participation ratio of each column of psi (N, M) (or a vector (N,)); shape (M,)."""
    w = np.abs(psi) ** 2
    return (w**2).sum(axis=0) / w.sum(axis=0) ** 2


def fractal_dimension(psi: np.ndarray) -> np.ndarray:
    """D = -log(IPR) / log(N) per column of psi (N, M): ~1 extended, ~0 localized; shape (M,)."""
    return -np.log(ipr(psi)) / np.log(psi.shape[0])


def theory_localized(model: str, params: dict, energy) -> np.ndarray:
    """Theoretical localization: True where a state at `energy` is localized.

    Args:
        model: "mosaic" (params lam, kappa), "gaam" (alpha, lam) or "maam" (p, lam).
        params: scalars or arrays broadcastable against energy.
        energy: (M,) eigenenergies.
    Returns:
        (M,) bool array.
    """
    _check_model(model)
    e = np.asarray(energy, dtype=float)
    lam = np.asarray(params["lam"], dtype=float)
    if model == "gaam":
        return params["alpha"] * e + 2 * (lam - 1) > 0
    if model == "maam":
        p = np.asarray(params["p"], dtype=float)
        return lam * np.cosh(p) > e + np.exp(p)
    kappa = params["kappa"]
    kappas = np.broadcast_to(kappa, e.shape)
    for k in np.unique(kappas):
        _check_kappa(int(k))
    g = (np.sqrt(5) - 1) / 2
    f = {2: e, 3: e**2 - 1, 4: e * (e**2 - 2), 5: (e**2 - g**2) * (e**2 - g**-2)}
    fk = np.choose(kappas - 2, [f[2], f[3], f[4], f[5]])
    return lam * np.abs(fk) > 1


def _resolve_ranges(model: str, ranges: dict | None) -> dict:
    resolved = dict(DEFAULT_RANGES[model])
    for name, (lo, hi) in (ranges or {}).items():
        if name not in resolved:
            raise ValueError(f"unknown parameter {name!r} for {model}; allowed: {', '.join(resolved)}")
        if not lo < hi:
            raise ValueError(f"range for {name!r} must have low < high, got ({lo}, {hi})")
        resolved[name] = (float(lo), float(hi))
    if model == "gaam" and not -1 < resolved["alpha"][0] < resolved["alpha"][1] < 1:
        raise ValueError(f"alpha range must lie inside (-1, 1), got {resolved['alpha']}")
    return {k: (float(lo), float(hi)) for k, (lo, hi) in resolved.items()}


def _check_generate(model, n_hamiltonians, n_sites, kappa) -> None:
    _check_model(model)
    _check_sites(n_sites)
    if int(n_hamiltonians) != n_hamiltonians or n_hamiltonians < 1:
        raise ValueError(f"n_hamiltonians must be an integer >= 1, got {n_hamiltonians!r}")
    if model == "mosaic":
        _check_kappa(kappa)
    elif kappa is not None:
        raise ValueError(f"kappa applies only to the mosaic model, got kappa={kappa!r} for {model}")


def generate(model: str, n_hamiltonians: int, n_sites: int = 500, seed: int = 0,
             ranges: dict | None = None, kappa: int | None = None,
             progress: bool = True) -> dict[str, np.ndarray]:
    """Sample Hamiltonians (parameters uniform in `ranges`), diagonalise, label every eigenstate.

    Args:
        model: "mosaic", "gaam" or "maam".
        n_hamiltonians: H, number of sampled Hamiltonians.
        n_sites: N, chain length.
        seed: seed of numpy.random.default_rng; same arguments give identical arrays.
        ranges: {param: (low, high)} overriding DEFAULT_RANGES[model] (params lam, phi and
            alpha (GAAM) or p (MAAM)).
        kappa: mosaic period, 2..5 (mosaic only).
        progress: show a tqdm progress bar.
    Returns:
        Dict of (H * N,) arrays: the model parameters (plus kappa for mosaic), E, D, IPR,
        label (1 extended: D > 0.5), theory_label (1 where theory says extended),
        hamiltonian_id (0..H-1).
    """
    _check_generate(model, n_hamiltonians, n_sites, kappa)
    rng = np.random.default_rng(seed)
    box = _resolve_ranges(model, ranges)
    params = {k: rng.uniform(lo, hi, n_hamiltonians) for k, (lo, hi) in box.items()}
    build = {"mosaic": lambda q: mosaic_hamiltonian(n_sites, q["lam"], kappa, q["phi"]),
             "gaam": lambda q: gaam_hamiltonian(n_sites, q["lam"], q["alpha"], q["phi"]),
             "maam": lambda q: maam_hamiltonian(n_sites, q["lam"], q["p"], q["phi"])}[model]
    energies, iprs = np.empty((n_hamiltonians, n_sites)), np.empty((n_hamiltonians, n_sites))
    for i in tqdm(range(n_hamiltonians), desc=f"{model} chains", disable=not progress):
        energies[i], psi = eigenstates(build({k: v[i] for k, v in params.items()}))
        iprs[i] = ipr(psi)
    out = {k: np.repeat(v, n_sites) for k, v in params.items()}
    if model == "mosaic":
        out["kappa"] = np.full(n_hamiltonians * n_sites, kappa, dtype=np.int64)
    out["E"], out["IPR"] = energies.ravel(), iprs.ravel()
    out["D"] = -np.log(out["IPR"]) / np.log(n_sites)
    out["label"] = (out["D"] > 0.5).astype(np.int8)
    out["theory_label"] = (~theory_localized(model, out, out["E"])).astype(np.int8)
    out["hamiltonian_id"] = np.repeat(np.arange(n_hamiltonians, dtype=np.int64), n_sites)
    return out


def fields(model: str) -> dict[str, np.dtype]:
    """The arrays `generate` returns for `model`, in its order, with their dtypes."""
    _check_model(model)
    out = {name: np.dtype(np.float64) for name in DEFAULT_RANGES[model]}
    if model == "mosaic":
        out["kappa"] = np.dtype(np.int64)
    out.update({name: np.dtype(np.float64) for name in ("E", "IPR", "D")})
    out.update(label=np.dtype(np.int8), theory_label=np.dtype(np.int8), hamiltonian_id=np.dtype(np.int64))
    return out


def _spec(model, n_hamiltonians, n_sites, seed, ranges, kappa) -> str:
    """Canonical JSON of every generation parameter and CODE_VERSION."""
    spec = {"model": model, "n_hamiltonians": int(n_hamiltonians), "n_sites": int(n_sites),
            "seed": int(seed), "ranges": _resolve_ranges(model, ranges),
            "kappa": None if kappa is None else int(kappa), "version": CODE_VERSION}
    return json.dumps(spec, sort_keys=True)


def cache_key(model: str, n_hamiltonians: int, n_sites: int, seed: int,
              ranges: dict | None, kappa: int | None) -> str:
    """16 hex digits of SHA-256 over every generation parameter and CODE_VERSION."""
    return hashlib.sha256(_spec(model, n_hamiltonians, n_sites, seed, ranges, kappa).encode()).hexdigest()[:16]


def _read(path: Path, model: str, n_states: int, settings: str) -> dict[str, np.ndarray]:
    """The arrays of a cache file, checked to be the complete data made with `settings`.

    Raises:
        ValueError: another format, other settings, missing or extra datasets, or a dataset of
            another shape (n_states,) or dtype than `fields(model)`.
        OSError: the file cannot be read as HDF5 (e.g. truncated).
    """
    expected = fields(model)
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"format {f.attrs.get('format')!r}, expected {FORMAT!r}")
        if f.attrs.get("settings") != settings:
            raise ValueError(f"stored settings {f.attrs.get('settings')!r} differ from the requested {settings}")
        if set(f) != set(expected):
            raise ValueError(f"datasets {sorted(f)}, expected {sorted(expected)}")
        out = {}
        for name, dtype in expected.items():
            data = f[name]
            if data.shape != (n_states,) or data.dtype != dtype:
                raise ValueError(f"dataset {name} is {data.dtype} {data.shape}, expected {dtype} ({n_states},)")
            out[name] = data[()]
    return out


def load_or_generate(cache_dir: str | Path, model: str, n_hamiltonians: int, n_sites: int = 500,
                     seed: int = 0, ranges: dict | None = None, kappa: int | None = None,
                     progress: bool = True) -> dict[str, np.ndarray]:
    """`generate`, cached in `<cache_dir>/<model>-<hash>.h5`.

    The file is written atomically and read back only if it holds exactly the arrays `generate`
    makes (names, shapes, dtypes) with the same settings (its `settings` attribute); otherwise it
    is regenerated, with a warning. A process asking for a file another is generating waits for it
    (`kanpde.cache.load_or_make`).
    """
    _check_generate(model, n_hamiltonians, n_sites, kappa)
    settings = _spec(model, n_hamiltonians, n_sites, seed, ranges, kappa)
    path = Path(cache_dir) / f"{model}-{cache_key(model, n_hamiltonians, n_sites, seed, ranges, kappa)}.h5"
    n_states = int(n_hamiltonians) * int(n_sites)

    def make(tmp: Path) -> dict[str, np.ndarray]:
        data = generate(model, n_hamiltonians, n_sites, seed, ranges, kappa, progress)
        with h5py.File(tmp, "w") as f:
            f.attrs["format"], f.attrs["settings"] = FORMAT, settings
            for name, values in data.items():
                f.create_dataset(name, data=values)
        return _read(tmp, model, n_states, settings)  # what later calls will read

    return load_or_make(path, lambda p: _read(p, model, n_states, settings), make, what="chain cache file")[0]


def split_by_hamiltonian(data: dict[str, np.ndarray], test_fraction: float,
                         seed: int = 0) -> tuple[dict, dict]:
    """Split per-state arrays into (train, test) so no Hamiltonian is on both sides.

    A random round(test_fraction * H) of the H Hamiltonians (at least 1, at most H - 1) go to test.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    ids = np.unique(data["hamiltonian_id"])
    if len(ids) < 2:
        raise ValueError(f"need at least 2 Hamiltonians to split, got {len(ids)}")
    n_test = min(max(int(round(test_fraction * len(ids))), 1), len(ids) - 1)
    test_ids = np.random.default_rng(seed).permutation(ids)[:n_test]
    mask = np.isin(data["hamiltonian_id"], test_ids)
    return {k: v[~mask] for k, v in data.items()}, {k: v[mask] for k, v in data.items()}
