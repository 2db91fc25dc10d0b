"""Speed benchmark: ms per Poisson loss + gradient evaluation and its peak memory, kanpde vs pykan.

    python -m kanpde.bench [--device auto|cpu|cuda] [--sizes 1000,10000,100000]
        [--dtypes float64,float32] [--quick] [--out results/bench] [--no-pykan] [--no-run]
        [--compile] [--threads N] [--builds]

One evaluation is what an optimiser step pays for: the paper's Poisson loss (problems/poisson.py,
alpha mean((lap u - f)^2) + mean(u_b^2), 800 boundary points) at N interior points, then backward.
Paths: "fast" (forward-propagated derivatives, `model.jet`; for KANs on the CPU the fused C++
kernel of `kanpde.nn.kernel`), "torch" (the same forward propagation in torch ops, kernel off: what
runs on CUDA), "autograd" (nested autograd), "compiled" (the torch path through torch.compile,
with --compile) and "pykan" (pykan 0.2.8 after `.speed()`,
the loss of its PDE tutorial: nested `torch.autograd.functional.jacobian`, `kan.utils.batch_jacobian`).
At N = 10,000 two library problems take the same paths: heat (u_t beside u_xx) and Kovasznay
flow (three outputs). The Poisson MLP is set against its matmul floor (`kanpde.speed`), the
default run is timed idle and beside one CPU-bound process, and `--builds` times the kernel
built with each candidate flag set, the chosen one marked.

Timing: two warm-up evaluations, then repeats until at least 1 s (0.3 s with --quick) and 3
repeats have passed; the median is reported (CUDA is synchronised around each evaluation). A case
is skipped when its time, extrapolated linearly from the next smaller N, or its first evaluation
exceeds 5 s. Peak memory is the most tensor memory one evaluation holds on top of what existed
before it: on CUDA from torch.cuda.max_memory_allocated, on CPU from the allocation records of
torch.profiler(profile_memory=True) (tensor storage only: not the process RSS).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from kanpde import cores

cores.bounded_waiting()  # as the CLI does, before torch is loaded (see kanpde.cores)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kanpde import speed  # noqa: E402
from kanpde.nn import kernel  # noqa: E402
from kanpde.problem import move  # noqa: E402
from kanpde.registry import build_model, build_problem  # noqa: E402

WIDTHS = {"KAN [2,10,1]": [2, 10, 1], "KAN [2,32,32,1]": [2, 32, 32, 1], "MLP [2,100,100,100,1]": [2, 100, 100, 100, 1],
          "KAN [2,10,3]": [2, 10, 3], "MLP [2,100,100,100,3]": [2, 100, 100, 100, 3]}
# Library problems at N = 10,000, float64: a time-dependent one (u_t beside u_xx: the "diag" second
# derivatives) and a system (u, v, p of Kovasznay flow), to show they take the same fast path.
LIBRARY = {"heat": [("KAN [2,10,1]", 5), ("MLP [2,100,100,100,1]", None)],
           "kovasznay": [("KAN [2,10,3]", 5), ("MLP [2,100,100,100,3]", None)]}
GRIDS = {"KAN [2,10,1]": [5, 10, 20], "KAN [2,32,32,1]": [10], "MLP [2,100,100,100,1]": [None]}
DTYPES = {"float64": torch.float64, "float32": torch.float32}
EXTRA, EXTRA_NOTE = ("KAN [2,32,32,1]", 10, 4096, "float32", "fast"), "target <= 15 ms"  # a separate row
SKIP_S = 5.0


@dataclass
class Row:
    """One case (model, grid, N, dtype, path) and what was measured; ms None when not run."""

    model: str
    grid: int | None
    n: int
    dtype: str
    path: str
    ms: float | None = None
    peak_mb: float | None = None
    reps: int = 0
    note: str = ""
    problem: str = "poisson"


def make_rows(sizes: list[int], dtypes: list[str], pykan: bool, compiled: bool) -> list[Row]:
    """Every case, smallest N first (the skip estimate reads the previous N)."""
    rows = []
    for n, dtype in itertools.product(sorted(sizes), dtypes):
        for model, grids in GRIDS.items():
            kan = model.startswith("KAN")
            paths = ["fast"] + ["torch"] * kan + ["autograd"] + ["compiled"] * compiled + ["pykan"] * (pykan and kan)
            rows += [Row(model, g, n, dtype, p) for g in grids for p in paths]
    rows.append(Row(*EXTRA, note=EXTRA_NOTE))
    if 10_000 in sizes and "float64" in dtypes:
        for problem, models in LIBRARY.items():
            for model, grid in models:
                paths = ["fast", "torch"] if model.startswith("KAN") else ["fast"]
                rows += [Row(model, grid, 10_000, "float64", path, problem=problem) for path in paths]
    return sorted(rows, key=lambda r: r.n)


@contextmanager
def _pykan_env(dtype: torch.dtype):
    """pykan builds in the default dtype and seeds the global RNGs: scope both to this block."""
    old, np_state, py_state = torch.get_default_dtype(), np.random.get_state(), random.getstate()
    torch.set_default_dtype(dtype)
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
            yield
    finally:
        torch.set_default_dtype(old)
        np.random.set_state(np_state)
        random.setstate(py_state)


def _step(row: Row, problem, data: dict, device: torch.device):
    """A closure doing one loss + backward evaluation of the case."""
    dtype = DTYPES[row.dtype]
    if row.path == "pykan":
        from kan import KAN
        from kan.utils import batch_jacobian

        with _pykan_env(dtype):  # as its tutorial: KAN(...).speed(), no checkpoint files
            model = KAN(width=list(WIDTHS[row.model]), grid=row.grid, k=3, seed=0, auto_save=False,
                        device=str(device)).speed()
        xi, xb = data["interior"], data["boundary"]["x"]
        source = problem.source(xi)

        def u_x(x):
            return batch_jacobian(model, x, create_graph=True, mode="vector")[:, 0, :]

        def step():
            with _pykan_env(dtype):
                hess = batch_jacobian(u_x, xi, create_graph=True, mode="vector")  # (N, 2, 2)
                lap = torch.diagonal(hess, dim1=1, dim2=2).sum(dim=1, keepdim=True)
                loss = problem.alpha * ((lap - source) ** 2).mean() + (model(xb) ** 2).mean()
                loss.backward()
                model.zero_grad(set_to_none=True)
        return step
    spec = {"name": row.model.split()[0].lower(), "width": WIDTHS[row.model]}
    if row.grid is not None:
        spec["grid"] = row.grid
    model = build_model(spec, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    losses = problem.losses
    if row.path == "compiled":
        torch._dynamo.reset()  # a fresh cache per case, else dynamo's recompile limit falls back to eager
        losses = torch.compile(problem.losses, dynamic=False)
    fast = row.path != "autograd"
    use_kernel = kernel.enabled and row.path == "fast"

    def step():  # gradients freed at the end, so the profiler sees every block it allocated
        with kernel.switched(use_kernel):
            sum(losses(model, data, fast).values()).backward()
        model.zero_grad(set_to_none=True)
    return step


def _peak_mb(step, device: torch.device) -> float | None:
    """Run `step` once; the most tensor memory it held above the memory allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)  # the profiler writes start/stop lines straight to file descriptor 2
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    try:  # every allocation (+bytes) and free (-bytes) with its time stamp
        events = prof.profiler.kineto_results.events()
        recs = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except AttributeError:  # a torch without these records: no figure rather than a wrong one
        return None
    return max(0, max(itertools.accumulate(b for _, b in recs), default=0)) / 2**20


class TooSlow(Exception):
    """The first evaluation took longer than the limit (seconds in args[0])."""


def measure(step, device: torch.device, min_time: float, limit_s: float | None = None
            ) -> tuple[float, int, float | None]:
    """Median ms per evaluation, repeats, peak MB (the second warm-up is the memory run).

    Raises:
        TooSlow: the first warm-up took more than `limit_s` seconds (then nothing else runs).
    """
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    step()
    sync()
    if limit_s is not None and time.perf_counter() - t0 > limit_s:
        raise TooSlow(time.perf_counter() - t0)
    peak = _peak_mb(step, device)
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_time and len(times) < 1000):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), len(times), peak


def benchmark(rows: list[Row], device: torch.device, min_time: float, log=print) -> list[Row]:
    """Measure the rows in place (skipping slow ones); returns them."""
    have_pykan = False
    if any(r.path == "pykan" for r in rows):
        try:
            import kan  # noqa: F401
            have_pykan = True
        except ImportError:
            pass
    kernel.library()  # built (and its flag set chosen) now: compiling is not the first evaluation
    data_key = None
    last: dict = {}  # (model, grid, dtype, path) -> (N, ms or estimate) of the previous size
    for row in rows:
        key = (row.problem, row.model, row.grid, row.dtype, row.path)
        if row.path == "pykan" and not have_pykan:
            row.note = "pykan not installed"
        elif key in last and last[key][1] * row.n / last[key][0] > SKIP_S * 1e3:
            est = last[key][1] * row.n / last[key][0]
            row.note, last[key] = f"skipped (est. {est / 1e3:.1f} s)", (row.n, est)
        else:
            if data_key != (row.problem, row.n, row.dtype):  # keep one data set at a time
                problem, data = case_data(row, device)
                data_key = (row.problem, row.n, row.dtype)
            try:  # a first evaluation over the limit ends the case (compiling is not the evaluation)
                limit = None if row.path == "compiled" else SKIP_S
                row.ms, row.reps, row.peak_mb = measure(_step(row, problem, data, device), device, min_time, limit)
                last[key] = (row.n, row.ms)
            except TooSlow as exc:
                row.note, last[key] = f"skipped (first evaluation {exc.args[0]:.1f} s)", (row.n, 1e3 * exc.args[0])
            except Exception as exc:  # one failing case (OOM, no compiler) must not end the benchmark
                row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        log(f"{row.problem:9} {row.model:22} G={row.grid or '-':<3} N={row.n:<8} {row.dtype} {row.path:9} "
            + (f"{row.ms:10.2f} ms  {row.peak_mb or 0:8.1f} MB" if row.ms is not None else row.note))
    return rows


def case_data(row: Row, device: torch.device) -> tuple:
    """(problem, its training data on `device` in the row's dtype) for a row, seed 0."""
    problem = build_problem({"name": row.problem, "n_interior": row.n})
    problem.setup(torch.Generator().manual_seed(0), DTYPES[row.dtype], device)
    return problem, move(problem.sample(torch.Generator().manual_seed(0)), device, DTYPES[row.dtype])


def _pykan_ms(rows: list[Row], row: Row) -> float | None:
    for r in rows:
        if r.path == "pykan" and (r.problem, r.model, r.grid, r.n, r.dtype) == (row.problem, row.model, row.grid, row.n, row.dtype):
            return r.ms
    return None


def markdown_table(rows: list[Row]) -> str:
    """The results as a Markdown table; speedup = pykan's ms / this row's ms (same case)."""
    lines = ["| problem | model | G | N | dtype | path | ms/eval | peak MB | speedup vs pykan |", "|" + "---|" * 9]
    for r in rows:
        pk = _pykan_ms(rows, r)
        speed = f"{pk / r.ms:.1f}x" if pk and r.ms else "-"
        ms = f"{r.ms:.2f}" if r.ms is not None else r.note
        if r.ms is not None and r.note:
            ms += f" ({r.note})"
        peak = f"{r.peak_mb:.1f}" if r.peak_mb is not None else "-"
        lines.append(f"| {r.problem} | {r.model} | {r.grid or '-'} | {r.n:,} | {r.dtype} | {r.path} | {ms} | {peak} | {speed} |")
    return "\n".join(lines)


def headlines(rows: list[Row]) -> list[str]:
    """The ratios the issue asks for, from whatever rows were measured."""
    def ms(model, grid, n, dtype, path):
        case = (model, grid, n, dtype, path)
        return next((r.ms for r in rows if (r.model, r.grid, r.n, r.dtype, r.path) == case and r.problem == "poisson"), None)

    out = []
    for g in (5, 20):
        fast, pk = ms("KAN [2,10,1]", g, 10_000, "float64", "fast"), ms("KAN [2,10,1]", g, 10_000, "float64", "pykan")
        out.append(f"KAN [2,10,1] G={g}, N=10,000, float64: kanpde fast vs pykan: "
                   + (f"{pk / fast:.1f}x faster ({fast:.1f} vs {pk:.1f} ms)" if fast and pk else "n/a"))
    kan = ms("KAN [2,10,1]", 10, 10_000, "float64", "fast")
    mlp = min(filter(None, (ms("MLP [2,100,100,100,1]", None, 10_000, "float64", p) for p in ("fast", "autograd"))),
              default=None)
    text = "n/a"
    if kan and mlp:
        text = f"KAN {mlp / kan:.2f}x faster" if mlp >= kan else f"KAN {kan / mlp:.2f}x slower"
        text += f" ({kan:.1f} vs {mlp:.1f} ms)"
    out.append(f"KAN [2,10,1] G=10 fast vs MLP [2,100,100,100,1] (fastest path), N=10,000, float64: {text}")
    big = ms(*EXTRA)
    out.append("KAN [2,32,32,1] G=10, N=4,096, float32, fast: "
               + (f"{big:.2f} ms (target <= 15 ms: {'met' if big <= 15 else 'missed'})" if big else "n/a"))
    return out


def machine(device: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from importlib.metadata import version
        pykan = version("pykan")
    except Exception:
        pykan = "not installed"
    from kanpde.nn import kernel

    built = kernel.build_info()
    choice = built.get("choice") or {}
    how = choice.get("how", "?") + "".join(f", {n} {ms:.2f} ms" for n, ms in choice.get("ms", {}).items())
    build = (f"build {built.get('build')} ({how}): {built.get('compiler', '?')} {built.get('compiler_version', '')} "
             f"{' '.join(built.get('flags', []))} (-march=native = {built.get('march', '?')})"
             if built.get("available") else f"none ({built.get('error')})")
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "pykan": pykan,
            "kernel": build}


def kernel_step_ms(min_time: float) -> float:
    """ms of the KAN [2,10,1] G=5, N=10,000, float64 fast evaluation with the kernel as loaded."""
    row = Row("KAN [2,10,1]", 5, 10_000, "float64", "fast")
    problem, data = case_data(row, torch.device("cpu"))
    return measure(_step(row, problem, data, torch.device("cpu")), torch.device("cpu"), min_time)[0]


def mlp_floors(rows: list[Row], device: torch.device, repeats: int = 9) -> list[str]:
    """Headlines: each measured Poisson MLP fast row at N = 10,000 against its matmul floor
    (`speed.mlp_matmul_floor`; 4 rows per point: value, 2 gradient components, the Laplacian),
    the two timed in alternation (one evaluation after each floor pass) so that their ratio does
    not depend on how loaded the machine was when the row itself was measured."""
    out = []
    for r in rows:
        if r.model.startswith("MLP") and r.path == "fast" and r.ms is not None and r.n == 10_000 and r.problem == "poisson":
            problem, data = case_data(r, device)
            floor = speed.mlp_matmul_floor(WIDTHS[r.model], r.n, 4, DTYPES[r.dtype], device, repeats,
                                           beside=_step(r, problem, data, device))
            out.append(f"{r.model} fast, N={r.n:,}, {r.dtype}, timed in alternation with its matmul floor: "
                       f"{floor['beside_ms']:.1f} ms against {floor['ms']:.1f} ms "
                       f"({floor['gflop']} GFLOP at {floor['gflops']} GFLOP/s): {floor['beside_ms'] / floor['ms']:.2f}x the floor")
    return out


def plot(rows: list[Row], path: Path, dtype: str) -> None:
    """ms against N (log-log, per model and path) and against G (KAN [2,10,1], N = 10,000)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
    style = {"fast": "o-", "torch": "d-", "autograd": "s--", "compiled": "^-.", "pykan": "x:"}
    done = [r for r in rows if r.ms is not None and r.dtype == dtype and r.note != EXTRA_NOTE and r.problem == "poisson"]
    models = sorted({(r.model, r.grid or 0) for r in done})  # one colour per model, one line style per path
    for (model, grid, p), group in itertools.groupby(sorted(done, key=lambda r: (r.model, r.grid or 0, r.path, r.n)),
                                                     key=lambda r: (r.model, r.grid or 0, r.path)):
        g = list(group)
        a.plot([r.n for r in g], [r.ms for r in g], style[p], color=f"C{models.index((model, grid))}",
               label=f"{model}{f' G={grid}' if grid else ''} {p}")
    a.set(xscale="log", yscale="log", xlabel="N interior points", ylabel="ms per loss + gradient",
          title=f"time against N ({dtype})")
    a.legend(fontsize=6, ncol=2)
    n_g = 10_000 if any(r.n == 10_000 for r in done) else max((r.n for r in done), default=0)
    for p in style:
        g = sorted((r for r in done if r.model == "KAN [2,10,1]" and r.path == p and r.n == n_g), key=lambda r: r.grid)
        if g:
            b.plot([r.grid for r in g], [r.ms for r in g], style[p], label=p)
    b.set(yscale="log", xlabel="grid size G", ylabel="ms per loss + gradient",
          title=f"KAN [2,10,1], N = {n_g:,} ({dtype})")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2
        print(f"kanpde.bench: error: {message}", file=sys.stderr)
        sys.exit(2)


def _positive(text: str) -> int:
    """argparse type: a positive integer."""
    if not (text.strip().isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _items(allowed: tuple[str, ...] | None):
    """argparse type: comma-separated names from `allowed`, or positive integers if None."""
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        bad = [t for t in items if (t not in allowed if allowed else not (t.isdigit() and int(t) > 0))]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad[0]!r} is not allowed; give a comma-separated list of "
                                             + (", ".join(allowed) if allowed else "positive integers"))
        return items if allowed else [int(t) for t in items]
    return parse


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, torch.device]:
    """Options and the device; a bad value ends in one line and exit status 2."""
    p = _Parser(prog="python -m kanpde.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--sizes", type=_items(None), help="N values (default 1000,10000,100000; +1000000 on CUDA)")
    p.add_argument("--dtypes", type=_items(tuple(DTYPES)), default=list(DTYPES), help="float64 and/or float32")
    p.add_argument("--quick", action="store_true", help="N = 1000 and 10000, shorter repeats")
    p.add_argument("--out", default="results/bench", help="folder for the table, CSV, JSON and plot")
    p.add_argument("--no-pykan", action="store_true", help="leave out the pykan rows")
    p.add_argument("--no-run", action="store_true", help="leave out the whole default run")
    p.add_argument("--compile", action="store_true", help="also time the fast path through torch.compile")
    p.add_argument("--threads", type=_positive, help="torch CPU threads (default: torch's)")
    p.add_argument("--builds", action="store_true", help="also time every kernel flag set (compiles the missing ones)")
    args = p.parse_args(argv)
    from kanpde.run import resolve_device
    from kanpde.validate import ConfigError

    try:
        device = resolve_device(args.device)
    except ConfigError as exc:
        p.error(str(exc))
    if args.sizes is None:
        args.sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000] + [1_000_000] * (device.type == "cuda")
    return args, device


def write_results(out: Path, label: str, report: dict, rows: list[Row], plot_dtype: str) -> list[Path]:
    """<label>-<date>.md (machine, command, headline, table), <label>.csv, <label>-<date>.json, plot."""
    out.mkdir(parents=True, exist_ok=True)
    date, table, run_info = report["date"], markdown_table(rows), report["whole_run"]
    md = [f"# kanpde speed benchmark ({label}, {date})", "", f"`{report['command']}`", "",
          *[f"- {k}: {v}" for k, v in report["machine"].items()], "", "## Headline", "",
          *[f"- {h}" for h in report["headlines"]], "",
          "## ms per loss + gradient evaluation (median) and peak tensor memory", "", table, ""]
    if run_info:
        md += ["## Whole default Poisson run", ""]
        md += [f"- {label}: " + ", ".join(f"{k}={v}" for k, v in one.items())
               for label, one in run_info.items() if isinstance(one, dict)] + [""]
    md += ["Method: " + " ".join(" ".join(__doc__.split("\n\n")[2:]).split()), ""]
    paths = [out / f"{label}-{date}.md", out / f"{label}.csv", out / f"{label}-{date}.json", out / f"{label}-time.png"]
    paths[0].write_text("\n".join(md))
    with open(paths[1], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*asdict(rows[0]), "speedup_vs_pykan"])
        w.writeheader()
        for r in rows:
            pk = _pykan_ms(rows, r)
            w.writerow({**asdict(r), "speedup_vs_pykan": round(pk / r.ms, 3) if pk and r.ms else ""})
    paths[2].write_text(json.dumps({**report, "rows": [asdict(r) for r in rows]}, indent=1))
    plot(rows, paths[3], plot_dtype)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line entry point; see the module docstring."""
    args, device = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python -m kanpde.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    info = machine(device)
    print(command + "\n" + "  ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    rows = make_rows(args.sizes, args.dtypes, not args.no_pykan, args.compile)
    benchmark(rows, device, 0.3 if args.quick else 1.0, log=lambda s: print(s, flush=True))
    heads = headlines(rows) + mlp_floors(rows, device)
    builds = None
    if args.builds and device.type == "cpu" and kernel.build_info()["available"]:
        builds = speed.kernel_builds(lambda: kernel_step_ms(0.3 if args.quick else 1.0))
        chosen = next((b for b in builds if b["chosen"]), None)
        heads.append("kernel builds, KAN [2,10,1] G=5, N=10,000, float64 fast: "
                     + ", ".join(f"{b['build']} {b['ms']:.2f} ms" if b["ms"] else f"{b['build']} failed" for b in builds)
                     + (f"; chosen {chosen['build']}: {chosen['vs_fastest']:.2f}x the fastest" if chosen else ""))
    run_info = None if args.no_run else speed.whole_runs(device, args.threads or 0)
    if run_info and "ratio" in run_info:
        heads.append(f"default run: {run_info['idle']['total_s']} s idle ({run_info['idle']['threads']} threads), "
                     f"{run_info['beside_one']['total_s']} s beside one CPU-bound process "
                     f"({run_info['beside_one']['threads']} threads): {run_info['ratio']}x")
    print("\n" + markdown_table(rows) + "\n\n" + "\n".join(heads))
    if run_info:
        for label, one in run_info.items():
            if isinstance(one, dict):
                print(f"whole default Poisson run, {label}: " + ", ".join(f"{k}={v}" for k, v in one.items()))
    report = {"command": command, "date": datetime.date.today().isoformat(), "machine": info,
              "headlines": heads, "whole_run": run_info, "kernel_builds": builds}
    paths = write_results(Path(args.out), device.type, report, rows, args.dtypes[0])
    print("\nwritten: " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
