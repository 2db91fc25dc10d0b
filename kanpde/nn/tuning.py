"""Choosing the kernel's build by measurement: compile every candidate flag set once, time each on
a small KAN workload on this CPU, keep the fastest, and remember the choice in the cache folder.

Why: the fastest flags depend on the processor, not only on its instruction set. The same source
built with `-march=native` ran 2.5x slower on one Intel Xeon (AVX-512, KVM) than built for SSE4.2
only or with its loops left scalar, while on an AMD EPYC the builds were within a few per cent;
no rule read from /proc/cpuinfo predicts that, a measurement does.

The choice is stored as `kan_jet-choice-<key>.json` beside the libraries, keyed by everything but
the flags (`build.for_cpu`: source, compiler, what -march=native resolves to, CPU model): another
CPU or compiler tunes again, a node of the same kind reuses it. Making it goes through
`kanpde.cache.load_or_make`, so two processes starting together tune once (the second waits).
`KANPDE_KERNEL_BUILD=<name>` skips the measurement and builds that candidate.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kanpde.cache import load_or_make
from kanpde.nn import build

log = logging.getLogger(__name__)

ENV = "KANPDE_KERNEL_BUILD"
# The candidates timed on first use (compiled in parallel: on 2 cores as long as one build, ~25 s
# here). The other CANDIDATES are timed by `python -m kanpde.bench --kernel-builds`, which checks
# that the choice is within a few per cent of every flag set tried; on the two CPUs measured, the
# vectorised native build or the scalar one was the fastest.
TIMED = ("native", "native-scalar")
# (N, n_in, n_out, d, P) per layer call, order 3, G = 5: the two layers of the Poisson KAN
# [2,10,1] with its Laplacian jet, and one hidden layer of a wider KAN (32 -> 32).
WORKLOAD = ((4096, 2, 10, 2, 1), (4096, 10, 1, 2, 1), (512, 32, 32, 2, 1))
ROUNDS = 7


def _arrays(n: int, n_in: int, n_out: int, d: int, p: int, rng: np.random.Generator) -> tuple:
    """Inputs and outputs of one forward and backward call, float64, C-contiguous."""
    order, grid = 3, 5
    k_basis = grid + order
    h = np.full(n_in, 2.0 / grid)
    t0 = -1.0 - order * h
    ins = [rng.uniform(-1, 1, (n, n_in)), rng.standard_normal((n, n_in, d)),
           rng.standard_normal((n, n_in, p)), rng.standard_normal((n, n_in, p)),
           rng.standard_normal((n_in, k_basis, n_out)), rng.standard_normal((n_in, n_out)), t0, h]
    outs = [np.empty((n, n_out)), np.empty((n, n_out, d)), np.empty((n, n_out, p))]
    gouts = [rng.standard_normal(o.shape) for o in outs]
    grads = [np.empty_like(a) for a in ins[:6]]
    mode = 1 if p == 1 else 0  # P = 1: the Laplacian's |dh|^2 formed in the kernel, as a run does
    dims = np.array([n, n_in, n_out, k_basis, k_basis + order, order, d, p, mode], dtype=np.int64)
    return dims, ins, outs, gouts, grads


def _calls(lib: ctypes.CDLL, cases: list[tuple]) -> float:
    """Seconds for one forward and one backward of every case, on one thread."""
    fwd, bwd = lib.kan_jet_forward_f64, lib.kan_jet_backward_f64
    ptr = lambda a: ctypes.c_void_p(a.ctypes.data)  # noqa: E731
    start = time.perf_counter()
    for dims, ins, outs, gouts, grads in cases:
        fwd(ptr(dims), *map(ptr, ins), *map(ptr, outs), ctypes.c_int(1))
        bwd(ptr(dims), *map(ptr, ins), *map(ptr, gouts), *map(ptr, grads), ctypes.c_int(1))
    return time.perf_counter() - start


def measure(libs: dict[str, ctypes.CDLL], rounds: int = ROUNDS) -> dict[str, float]:
    """ms of the WORKLOAD per library: the fastest of `rounds` rounds, the libraries interleaved
    within each round (so that a neighbour's burst hits all of them alike), after one warm-up."""
    rng = np.random.default_rng(0)
    cases = [_arrays(*shape, rng) for shape in WORKLOAD]
    best = {name: float("inf") for name in libs}
    for name, lib in libs.items():
        _calls(lib, cases)
    for _ in range(rounds):
        for name, lib in libs.items():
            best[name] = min(best[name], _calls(lib, cases) * 1e3)
    return best


def choice_path(description: dict) -> Path:
    """`<cache_dir>/kan_jet-choice-<key[:16]>.json` for a `build.describe` result."""
    return build.cache_dir() / f"kan_jet-choice-{build.key(build.for_cpu(description))[:16]}.json"


def _read_choice(path: Path, names: list[str]) -> dict:
    choice = json.loads(path.read_text())
    if choice.get("build") not in names:
        raise ValueError(f"build {choice.get('build')!r} is not one of {names}")
    return choice


def build_all(names: list[str]) -> dict[str, tuple]:
    """(library, info) per candidate that builds, compiled in parallel; raises the first error
    if none does."""
    def one(name):
        try:
            return build.build(name)
        except Exception as exc:  # noqa: BLE001 - a flag this compiler lacks: not a candidate
            return exc

    with ThreadPoolExecutor(max_workers=max(1, min(len(names), os.cpu_count() or 1))) as pool:
        results = dict(zip(names, pool.map(one, names)))
    built = {n: r for n, r in results.items() if not isinstance(r, Exception)}
    for name, result in results.items():
        if isinstance(result, Exception):
            log.info("kanpde: kernel build %s not available (%s)", name, result)
    if not built:
        raise next(iter(results.values()))
    return built


def choose(names: list[str] | None = None) -> dict:
    """The candidate to use on this CPU: {"build": name, "ms": {name: ms of the workload},
    "how": "measured" | "cached" | ENV}. Measures (compiling the candidates `names`, default
    TIMED) when no choice is cached for this CPU and compiler.

    Raises:
        ValueError: $KANPDE_KERNEL_BUILD names no candidate of this machine.
    """
    forced = os.environ.get(ENV)
    if forced:
        if forced not in build.candidates():
            raise ValueError(f"{ENV}={forced!r} is not a kernel build here; allowed: {', '.join(build.candidates())}")
        return {"build": forced, "ms": {}, "how": ENV}
    names = names or [n for n in TIMED if n in build.candidates()]
    path = choice_path(build.describe())

    def make(tmp: Path) -> dict:
        built = build_all(names)
        try:
            ms = measure({name: lib for name, (lib, _) in built.items()})
        finally:
            for lib, _ in built.values():
                build._unload(lib)
        choice = {"build": min(ms, key=ms.get), "ms": ms, "cpu_model": build.cpu()["model"],
                  "workload": [list(w) for w in WORKLOAD]}
        tmp.write_text(json.dumps(choice, indent=1))
        return choice

    choice, made = load_or_make(path, lambda p: _read_choice(p, names), make, what="kernel build choice")
    return {**choice, "how": "measured" if made else "cached"}


def build_chosen() -> tuple[ctypes.CDLL, dict]:
    """The kernel library of the chosen candidate (`choose`), loaded; info as `build.build`'s
    plus "choice" (what `choose` returned)."""
    choice = choose()
    lib, info = build.build(choice["build"])
    if choice["how"] == "measured":
        log.info("kanpde: kernel build %s chosen by measurement (%s)", choice["build"],
                 ", ".join(f"{n} {ms:.2f} ms" for n, ms in choice["ms"].items()))
    return lib, {**info, "choice": choice}
