"""`run(cfg, out_dir) -> metrics`: one solve from a plain config, as the CLI and the tests call it.

The config (see conf/config.yaml) has the groups problem, model and optim, plus seed, data_seed,
dtype, device, fast, compile, kernel, restarts, log_every, progress, eval_mesh and threads; the
`interpret` group asks for a formula after training (kanpde.interpret.discover). With restarts = n the
model is trained n times from seeds seed .. seed + n - 1 on the same data, and the one with the
lowest final training loss is kept (never a test-set choice). Every value is checked before
any work starts; a bad one raises `ConfigError` naming it and what is allowed.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import platform
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kanpde import cores
from kanpde.nn import kernel
from kanpde.interpret.settings import Settings
from kanpde.problem import move
from kanpde.record import METRICS, H5, load_model, read_metrics, write_h5, write_json
from kanpde.registry import build_model, build_problem, count_params, model_name, paper_params
from kanpde.checkpoint import Checkpoints
from kanpde.stages import parse_optim
from kanpde.train import spline_kan, train
from kanpde.validate import ConfigError, check_choice, check_int

log = logging.getLogger(__name__)

TOP_KEYS = ("problem", "model", "optim", "interpret", "seed", "data_seed", "dtype", "device", "fast",
            "compile", "kernel", "restarts", "log_every", "progress", "eval_mesh", "threads", "resume",
            "checkpoint_every", "inject_nan")
# settings a resumed run may change: they do not change its numbers
RESUME_FREE = ("resume", "progress", "checkpoint_every")
FINISHED = ("ok", "diverged")  # a resumed run with this status is not run again
DTYPES = {"float32": torch.float32, "float64": torch.float64}
MAX_THREADS = 4096  # more is a typo (torch itself overflows at 2^31 and would start them all)
OWNER = ".kanpde-run"  # a run folder's marker: which process claimed it (`claim`)
MAX_CLAIMS = 100
SEED_MAX = 2**63 - 1  # seeds + offsets (restarts, the test set's) stay within torch's 64-bit seeds


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cpu", "cuda", "cuda:N" as given."""
    if not isinstance(name, str):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA device is available; use auto or cpu")
        if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: there are only cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return torch.device(name)
    raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")


def resolve_width(width, in_dim: int, out_dim: int):
    """A width list with the placeholders "in" and "out" replaced by the problem's input and
    output sizes (model configs say [in, 10, out]); other entries as given."""
    if isinstance(width, (list, tuple)):
        return [in_dim if w == "in" else out_dim if w == "out" else w for w in width]
    return width


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _as_dict(cfg) -> dict:
    """The config as plain containers, its interpolations resolved (a dangling one, e.g.
    `seed=${nosuch}`, is a ConfigError naming its key)."""
    if isinstance(cfg, DictConfig):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{exc.full_key or 'config'}: {reason}") from None
    return dict(cfg)


def _group(cfg: dict, key: str) -> dict:
    value = cfg.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a config group (a mapping), got {value!r}")
    return dict(value)


def run(cfg, out_dir: str | Path) -> dict:
    """Solve one problem with one model and write the run record into `out_dir`.

    Args:
        cfg: the composed config (DictConfig or plain dict).
        out_dir: folder for config.yaml, metrics.json and run.h5 (created; if another run holds
            it, a numbered sibling: see `claim`; metrics["run_dir"] is the one written).

    Returns:
        the final metrics (also in metrics.json).
    """
    return solve_config(cfg, out_dir)[0]


def solve_config(cfg, out_dir: str | Path, problem=None) -> tuple[dict, torch.nn.Module, object]:
    """`run`, also returning the trained model and the problem (with its recovered unknowns).

    Torch's thread count is the run's (`threads`; 0: the free cores, counted at the start and
    followed after every step, `kanpde.cores`) while it runs, and what it was before once it
    returns or fails.

    Args:
        cfg: the composed config.
        out_dir: the run folder.
        problem: a problem object to solve instead of building cfg["problem"] (`kanpde.solve`);
            cfg["problem"] then only names it in the record.

    Returns:
        (metrics, model, problem).
    """
    previous = torch.get_num_threads()
    try:
        return _solve_config(cfg, out_dir, problem)
    finally:
        torch.set_num_threads(previous)


def _solve_config(cfg, out_dir: str | Path, problem) -> tuple[dict, torch.nn.Module, object]:
    cfg = _as_dict(cfg)
    for key in cfg:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown setting {key!r}; allowed: {', '.join(TOP_KEYS)}")
    seed = check_int(cfg.get("seed", 0), "seed", minimum=0, maximum=SEED_MAX)
    data_seed = check_int(cfg.get("data_seed", seed), "data_seed", minimum=0, maximum=SEED_MAX)
    dtype = DTYPES[check_choice(cfg.get("dtype", "float64"), "dtype", tuple(DTYPES))]
    device = resolve_device(cfg.get("device", "auto"))
    fast = _check_bool(cfg.get("fast", True), "fast")
    progress = _check_bool(cfg.get("progress", True), "progress")
    compile_ = _check_bool(cfg.get("compile", False), "compile")
    use_kernel = _check_bool(cfg.get("kernel", True), "kernel")
    log_every = check_int(cfg.get("log_every", 1), "log_every", minimum=1)
    eval_mesh = check_int(cfg.get("eval_mesh", 101), "eval_mesh", minimum=2)
    threads = check_int(cfg.get("threads", 0), "threads", minimum=0, maximum=MAX_THREADS)
    restarts = check_int(cfg.get("restarts", 1), "restarts", minimum=1)
    resume = _check_bool(cfg.get("resume", False), "resume")
    checkpoint_every = check_int(cfg.get("checkpoint_every", 25), "checkpoint_every", minimum=0)
    inject_nan = _check_inject(cfg.get("inject_nan"))
    optim = _group(cfg, "optim")
    interpret = Settings.from_config(cfg.get("interpret"))
    stages = parse_optim(optim)
    problem = build_problem(_group(cfg, "problem")) if problem is None else problem
    cfg["model"] = _group(cfg, "model")
    if "width" in cfg["model"]:  # "in" / "out" stand for the problem's input and output sizes
        cfg["model"]["width"] = resolve_width(cfg["model"]["width"], problem.in_dim, problem.out_dim)
    model = build_model(cfg["model"], generator=torch.Generator().manual_seed(seed), dtype=dtype)
    if model.config.width[0] != problem.in_dim or model.config.width[-1] != problem.out_dim:
        raise ConfigError(
            f"model.width {model.config.width} must start with {problem.in_dim} and end with "
            f"{problem.out_dim} for problem {getattr(problem, 'name', type(problem).__name__)!r}"
        )
    interpret.check_target(model, problem)
    model = model.to(device)

    # after every check: a config that fails leaves the process as it was
    threads_how = "set" if threads else "free cores"
    torch.set_num_threads(threads or cores.auto_threads())
    if threads > 1:
        free = cores.free_cores()
        if free is not None and threads > free + 0.5:
            log.warning("threads=%d but %.1f cores are free: threads that share a core with another process "
                        "stall the others (threads=0 follows the free cores)", threads, free)
    watch = None if threads else cores.Watch(len(cores.allowed_cpus()))
    out = Path(out_dir)
    if resume:
        done = _check_resumable(out, cfg)
        if done is not None:
            log.info("resume: %s already finished (status %s); not run again", out, done["status"])
            return done, load_model(out, device), problem
    out = claim(out) if not resume else out
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    summary = {
        "problem": getattr(problem, "name", type(problem).__name__), "model": model_name(model), "width": model.config.width,
        "optim": optim.get("name", "custom"), "seed": seed, "data_seed": data_seed,
        "dtype": str(dtype).removeprefix("torch."), "device": str(device), "fast": fast,
        "compile": compile_, "kernel": use_kernel and kernel.enabled and kernel.library() is not None,
        **({"variables": list(problem.variables), "outputs": list(problem.outputs)}
           if hasattr(problem, "outputs") else {}),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "threads": torch.get_num_threads(), "threads_from": threads_how,
        "omp_wait_policy": cores.wait_policy(),
        "cpu": _cpu_model(),
        "run_dir": str(out),
    }
    if summary["kernel"]:  # which build of the kernel ran: its flags, what -march=native resolved to
        info = kernel.build_info()
        summary["kernel_build"] = {k: info.get(k) for k in ("build", "march", "compiler_version", "path")}
    t0 = time.perf_counter()
    tried = []
    try:
        data_gen = torch.Generator().manual_seed(data_seed)
        data = move(problem.sample(data_gen), device, dtype)
        test = move(problem.test_data(torch.Generator().manual_seed(data_seed + 7919)), device)
        ref = problem.reference() if hasattr(problem, "reference") else None
        if ref is not None:  # what the errors are measured against
            summary["reference"] = ref.settings
        result, kept_unknowns = None, None
        for r in range(restarts):  # the same data; keep the lowest final training loss
            if r:
                model = build_model(_group(cfg, "model"), generator=torch.Generator().manual_seed(seed + r),
                                    dtype=dtype).to(device)
            problem.setup(torch.Generator().manual_seed(seed + r), dtype, device)
            saves = Checkpoints.in_run(out, r, checkpoint_every)
            state = saves.load() if resume else None
            if state is not None:
                log.info("resume: restart %d from step %d (%s)", r, state["result"]["steps"], saves.path)
            with kernel.switched(use_kernel and kernel.enabled):
                candidate = train(model, problem, data, test, stages, fast=fast, log_every=log_every,
                                  progress=progress, compile=compile_, generator=data_gen,
                                  checkpoints=saves, resume=state, inject_nan=inject_nan,
                                  on_step=None if watch is None else watch.check)
            final = candidate.history[-1]["loss"]
            tried.append({"seed": seed + r, "status": candidate.status, "loss": final, "wall_s": round(candidate.wall_s, 3)})
            if restarts > 1:
                log.info("restart %d/%d (seed %d): %s, final training loss %.4g", r + 1, restarts, seed + r,
                         candidate.status, final)
            if result is None or _better(candidate, result):
                result, summary["seed"] = candidate, seed + r
                kept_unknowns = copy.deepcopy(getattr(problem, "unknowns", None))
            if candidate.status == "interrupted":  # stop here; resume=true goes on from the checkpoint
                result = candidate
                break
    except Exception as exc:  # a failed run still says so in its own folder
        write_json(out / METRICS, {**summary, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                    "traceback": traceback.format_exc()})
        raise
    model = result.model
    if kept_unknowns is not None:  # the kept restart's unknowns, not the last one's
        problem.unknowns = kept_unknowns
    metrics = {
        **summary,
        "status": result.status,
        "n_params": count_params(model),
        "n_params_paper": paper_params(model),
        "steps": result.steps,
        "evals": result.evals,
        "wall_s": round(sum(t["wall_s"] for t in tried), 3),
        **({"restarts": tried} if restarts > 1 else {}),
        "total_s": round(time.perf_counter() - t0, 3),
        "grid_changes": result.grid_changes,
        **({"thread_changes": watch.changes} if watch is not None and watch.changes else {}),
        **({"recoveries": result.recoveries} if result.recoveries else {}),
        **({"grid": spline_kan(model)[0].layers[0].grid_size} if spline_kan(model)[0] is not None else {}),
        **problem.metrics(model, test),
        "loss": result.history[-1]["loss"],
    }
    if result.status == "interrupted":
        metrics["resume"] = f"python -m kanpde resume={out}  (or: <the same overrides> hydra.run.dir={out} resume=true)"
    if interpret.name != "none" and result.status == "ok":
        from kanpde.interpret.discover import interpret as interpret_run  # lazy: sympy, scipy.optimize

        try:  # a failed interpretation must not lose the trained run
            metrics.update(interpret_run(model, problem, data, test, interpret, out))
        except Exception as exc:
            metrics["interpret_error"] = f"{type(exc).__name__}: {exc}"
            log.warning("interpretation failed: %s", metrics["interpret_error"])
    fields = problem.record_fields(model, eval_mesh) if hasattr(problem, "record_fields") else {}
    write_h5(out / H5, result.history, fields, model, extra={"metrics": metrics}, unknowns=getattr(problem, "unknowns", None))
    write_json(out / METRICS, metrics)
    return metrics, model, problem


def claim(out: Path) -> Path:
    """The folder this run owns: `out`, or `out`-2, -3, ... when another run already holds it
    (its marker OWNER, made exclusively), so two runs that start in the same second with the same
    settings, or a second run given the same folder, never write into one record. A resumed run
    goes on in the folder it is given instead."""
    for n in range(1, MAX_CLAIMS + 1):
        folder = out if n == 1 else out.with_name(f"{out.name}-{n}")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / OWNER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"pid {os.getpid()} on {platform.node()}\n")
        if n > 1:
            log.warning("run folder %s holds another run; this one writes %s", out, folder)
        return folder
    raise ConfigError(f"run folder {out} and {MAX_CLAIMS - 1} numbered siblings all hold runs; give hydra.run.dir=<a new folder>")


def _cpu_model() -> str:
    """The CPU's model name (lscpu's "Model name"), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _check_inject(value) -> dict | None:
    """The test hook `inject_nan`: null, or {step: k >= 1, times: n >= 1 (default 1)}."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"step", "times"} or "step" not in value:
        raise ConfigError(f"inject_nan must be null or {{step: k, times: n}}, got {value!r}")
    return {"step": check_int(value["step"], "inject_nan.step", minimum=1),
            "times": check_int(value.get("times", 1), "inject_nan.times", minimum=1)}


def _check_resumable(out: Path, cfg: dict) -> dict | None:
    """For resume=true in `out`: its finished metrics (the run is not repeated), or None to go on
    from its checkpoints (or start, if there are none). ConfigError when the folder holds a run of
    another configuration."""
    saved = out / "config.yaml"
    if not saved.exists():
        return None
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
    for key in sorted(set(old) | set(cfg)):
        if key not in RESUME_FREE and old.get(key) != cfg.get(key):
            raise ConfigError(f"resume: {out} holds a run with {key}={old.get(key)!r}, not {cfg.get(key)!r}; "
                              "resume with the same settings or use another run folder")
    if (out / METRICS).exists():
        try:
            metrics = read_metrics(out)
        except (OSError, ValueError):
            return None  # unreadable: run again from the checkpoints
        if metrics.get("status") in FINISHED and (out / H5).exists():
            return metrics
    return None


def _better(a, b) -> bool:
    """Whether training result a beats b: finished (status ok) first, then lower final loss."""
    ok_a, ok_b = a.status == "ok", b.status == "ok"
    if ok_a != ok_b:
        return ok_a
    la, lb = a.history[-1]["loss"], b.history[-1]["loss"]
    return math.isfinite(la) and (not math.isfinite(lb) or la < lb)
