"""Machine-level checks for `kanpde.bench`: the kernel's flag sets side by side, an MLP against
its matmul floor, and a run beside a CPU-bound neighbour.

- `kernel_builds`: every candidate flag set of the kernel (`kanpde.nn.build.CANDIDATES`) built
  and timed on the same evaluation, so a reader sees how far the chosen one is from the fastest.
- `mlp_matmul_floor`: the time of exactly the matrix products an MLP's jet evaluation and its
  backward perform, run alone on the same shapes; the MLP's evaluation can only approach it from
  above (the rest is elementwise work and bookkeeping).
- `neighbour`: a busy-looping subprocess for the duration of a block, the "other CPU-bound
  process" beside which a run should lose only the core it takes; `whole_runs` times the
  default run idle and beside one.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from kanpde.nn import build, kernel


def kernel_builds(time_step: Callable[[], float], log=print) -> list[dict]:
    """ms of `time_step` (one timed evaluation through the kernel) with each candidate build.

    Returns:
        [{"build": name, "ms": float or None, "error": str or None, "chosen": bool,
          "vs_fastest": ms / fastest ms}], in CANDIDATES order.
    """
    chosen = kernel.build_info().get("build")
    out = []
    for name in build.candidates():
        try:
            lib, info = build.build(name)
        except Exception as exc:  # noqa: BLE001 - a flag this compiler lacks: reported, not fatal
            out.append({"build": name, "ms": None, "error": f"{type(exc).__name__}: {exc}"[:120], "chosen": False})
            continue
        with kernel.using(lib, info):
            ms = time_step()
        out.append({"build": name, "ms": ms, "error": None, "chosen": name == chosen})
        log(f"kernel build {name:14} {ms:8.2f} ms" + ("  (chosen)" if name == chosen else ""))
    fastest = min((r["ms"] for r in out if r["ms"] is not None), default=None)
    for r in out:
        r["vs_fastest"] = round(r["ms"] / fastest, 3) if r["ms"] is not None and fastest else None
    return out


def mlp_matmul_floor(width: list[int], n: int, rows_per_point: int, dtype: torch.dtype,
                     device: torch.device, repeats: int = 7,
                     beside: Callable[[], None] | None = None) -> dict:
    """The matrix products of one MLP jet evaluation and its backward, timed alone.

    The jet multiplies every channel (value, d gradient components, P second-derivative channels:
    `rows_per_point` = 1 + d + P rows per point) by each layer's weight: forward (R N, a) @ (a, b);
    backward the weight gradient (a, R N) @ (R N, b) and, past the first layer, the input gradient
    (R N, b) @ (b, a).

    `beside` (one evaluation of the MLP itself) is timed right after the products in every
    repetition, so both medians come from the same moments of a machine whose load drifts and
    their ratio is a side-by-side figure.

    Returns:
        {"ms": the median over `repeats` of the summed product times, "gflop": their work,
         "gflops": the rate they ran at, and with `beside` "beside_ms": its median}.
    """
    rows = rows_per_point * n
    shapes = []
    for l, (a, b) in enumerate(zip(width[:-1], width[1:])):
        shapes += [((rows, a), (a, b)), ((a, rows), (rows, b))] + ([((rows, b), (b, a))] if l else [])
    gen = torch.Generator(device=device).manual_seed(0)
    pairs = [(torch.randn(*p, generator=gen, dtype=dtype, device=device),
              torch.randn(*q, generator=gen, dtype=dtype, device=device)) for p, q in shapes]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def timed(work: Callable[[], None]) -> float:
        sync()
        t0 = time.perf_counter()
        work()
        sync()
        return time.perf_counter() - t0

    def products() -> None:
        for x, y in pairs:
            x @ y

    times, beside_times = [], []
    for rep in range(repeats + 1):  # the first is a warm-up
        times.append(timed(products))
        if beside is not None:
            beside_times.append(timed(beside))
    times, beside_times = times[1:], beside_times[1:]
    gflop = sum(2 * p[0] * p[1] * q[1] for p, q in shapes) / 1e9
    ms = 1e3 * statistics.median(times)
    out = {"ms": round(ms, 2), "gflop": round(gflop, 3), "gflops": round(gflop / ms * 1e3, 1)}
    if beside is not None:
        out["beside_ms"] = round(1e3 * statistics.median(beside_times), 2)
    return out


@contextmanager
def neighbour(count: int = 1) -> Iterator[None]:
    """`count` CPU-bound processes (busy loops) running for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them start
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def whole_run(device: torch.device, threads: int = 0) -> dict:
    """Time one default run (`python -m kanpde` with the default config, `threads` as given: 0
    counts the free cores) in a scratch folder."""
    from hydra import compose, initialize_config_module

    from kanpde.run import run

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose("config", overrides=["progress=false", f"device={device}", f"threads={threads}"])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = run(cfg, tmp)
        total = time.perf_counter() - t0
    keys = ("status", "evals", "wall_s", "rel_l2", "l2_sq", "h1_sq", "threads")
    ms_per_eval = round(1e3 * m["wall_s"] / max(m["evals"], 1), 2)
    return {"total_s": round(total, 2), **{k: m.get(k) for k in keys}, "ms_per_eval": ms_per_eval}


def whole_runs(device: torch.device, threads: int = 0) -> dict:
    """The default run idle and beside one CPU-bound process (CPU only), and the ratio."""
    idle = whole_run(device, threads)
    if device.type != "cpu":
        return {"idle": idle}
    with neighbour(1):
        busy = whole_run(device, threads)
    return {"idle": idle, "beside_one": busy, "ratio": round(busy["total_s"] / idle["total_s"], 2)}
