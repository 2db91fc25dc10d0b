"""Validation everywhere (issue 14): random override sets either run or fail in one line.

Each example draws a command line the way a user writes one: group choices (problem, model,
optim, interpret) and `key=value` overrides for every group's options and the top-level keys,
each value either a valid one (bounded so that the run stays tiny) or a hostile one (negative,
zero, huge, the wrong type, nan/inf, null, an empty list, an unknown key, a dangling
interpolation). It then goes the CLI's way in-process: `check_group_choices`, `check_composes`
(the config it composes), and `kanpde.run.run` into a fresh folder. Accepted outcomes:

* the run finishes (status ok or diverged) and writes metrics.json;
* a pre-check exits with status 2, or `run` raises `ConfigError`, with a one-line message that
  names one of the drawn keys or values, and `run` has written no metrics.json.

Anything else (another exception, a traceback-sized or multi-line message, one that names no
drawn key or value) is a validation gap.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHRINK
from kanpde.__main__ import check_composes, check_group_choices, resume_argv
from kanpde.run import run
from kanpde.stages import OPTIMIZERS
from kanpde.validate import ConfigError

# Problems whose data and reference cost nothing (no reference solver, no chain data).
CHEAP = ("poisson_sinsin", "poisson", "heat", "sine1d", "advection", "wave", "helmholtz", "heat_inverse",
         "poisson3d", "kovasznay")
CONF = resources.files("kanpde.conf")


def _choices(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in CONF.joinpath(group).iterdir() if p.name.endswith(".yaml"))


def _options(group: str, name: str) -> list[str]:
    """The options conf/<group>/<name>.yaml sets (besides name), those of its defaults included."""
    cfg = yaml.safe_load(CONF.joinpath(group, f"{name}.yaml").read_text())
    base = [d for d in cfg.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    cfg = cfg.get(group, cfg) if group == "problem" else cfg  # `# @package _global_`: under problem:
    own = [k for k in cfg if k not in ("name", "defaults")]
    return sorted({*own, *(k for b in base for k in _options(group, b))})


PROBLEM_OPTIONS = {name: _options("problem", name) for name in CHEAP}
MODELS, OPTIMS, INTERPRETS = _choices("model"), _choices("optim"), _choices("interpret")
MODEL_OPTIONS = {name: _options("model", name) for name in MODELS}

# --- values, as override text --------------------------------------------------------------

HOSTILE = ("-1", "0", "-0.5", "1e30", "abc", "''", "[]", "[1,2]", "{a: 1}", "null", "true", "false",
           "1.5", "nan", "inf", "-inf", "'5'", "[[1]]", "${nosuch}", "[1,2")
HUGE_INT = "18446744073709551616"  # 2^64: valid where only >= 0 is asked, but no seed holds it

# Values that are valid for these keys but slow or noisy: never drawn as "hostile" ones.
COSTLY = {"n_interior", "n_boundary", "n_initial", "n_test", "n_obs", "width", "grid", "steps", "max_iter",
          "eval_mesh", "restarts", "update_grid_every", "resample_every", "history_size", "retries"}
SPARED = {"compile": {"true"}, "progress": {"true"}}


def hostile(key: str) -> st.SearchStrategy[str]:
    """A value that is bad for most keys (huge ints only where they cost nothing if valid)."""
    values = HOSTILE + (() if key in COSTLY else (HUGE_INT,))
    return st.sampled_from([v for v in values if v not in SPARED.get(key, ())])


def ints(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(str)


def floats(lo: float, hi: float) -> st.SearchStrategy[str]:
    return st.floats(lo, hi, allow_nan=False).map(lambda v: f"{v:.4g}")


def pick(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from(values)


BOOL = pick("true", "false")
PROBLEM_VALID = {
    "n_interior": ints(1, 64), "n_boundary": ints(1, 32), "n_initial": ints(1, 32), "n_test": ints(1, 100),
    "n_obs": ints(1, 32), "sampling": pick("random", "mesh", "sobol", "lhs"), "hard": BOOL,
    "alpha": floats(1e-3, 10), "kappa": floats(1e-3, 1), "kappa0": floats(1e-3, 1), "noise": floats(0, 0.1),
    "c": floats(0.1, 4), "re": floats(1, 100), "k": floats(-4, 4), "beta": floats(-30, 30),
    "a1": ints(1, 4), "a2": ints(1, 4),
}
WIDTHS = pick("[in,out]", "[in,2,out]", "[in,3,2,out]", "[in,4,out]")
MODEL_VALID = {
    "width": WIDTHS, "grid": ints(1, 6), "order": ints(1, 4), "grid_range": pick("[-1,1]", "[0,2]", "[-2.5,0.5]"),
    "noise_scale": floats(0, 1), "base_scale": floats(0, 2), "mult": pick("null"),
    "symbolic": pick("null", "{}", r"{0\,0\,0:x}"), "activation": pick("tanh", "silu", "sin"),
    "degree": ints(1, 5), "init_scale": floats(0, 2),
}
MODEL_BAD = pick("[]", "[in]", "[0,1]", "[in,-1,out]", "[in,2.5,out]", "[in,x,out]", "[4,2,1]", "[1,1]",
                 "[in,[2],out]", r"{0\,0\,0:nosuch}", r"{9\,9\,9:exp}", r"{0\,0\,0:[x,a]}", "[0,1,0]", "[5]",
                 "relu", "[1,-1]", "[nan,1]", "[-inf,inf]")
STAGE_VALID = {
    "optimizer": st.sampled_from(OPTIMIZERS), "steps": ints(0, 2), "lr": floats(1e-4, 1),
    "grid": st.one_of(ints(1, 6), pick("null")), "update_grid_every": ints(0, 2),
    "update_grid_until": st.one_of(ints(0, 2), pick("null")), "grid_eps": floats(0, 1), "max_iter": ints(1, 3),
    "history_size": ints(1, 10), "reg": floats(0, 0.1), "reg_entropy": floats(0, 2), "reg_coef": floats(0, 1),
    "resample_every": ints(0, 2), "retries": ints(0, 2), "explode": st.one_of(pick("0"), floats(2, 1e6)),
}
TOP_VALID = {
    "seed": ints(0, 3), "data_seed": ints(0, 3), "dtype": pick("float32", "float64"),
    "device": pick("cpu", "auto"), "fast": BOOL, "compile": pick("false"), "kernel": BOOL,
    "restarts": ints(1, 2), "log_every": ints(1, 3), "eval_mesh": ints(2, 6), "threads": ints(0, 1),
    "checkpoint_every": ints(0, 3), "resume": BOOL, "progress": pick("false"),
    "inject_nan": pick("null", "{step: 1}", "{step: 2, times: 1}"),
}
TOP_BAD = pick("cuda", "cuda:x", "tpu", "float16", "int", "{step: 0}", "{step: a}", "{foo: 1}", "{step: 1, times: 0}")
INTERPRET_VALID = {
    "prune": floats(0, 0.1), "names": pick("null", "[x, exp]"), "weight_simple": floats(0, 1),
    "r2_threshold": floats(0, 1), "r2_tol": floats(0, 0.01), "hints": pick("{}"), "term_tol": floats(0, 0.5),
    "select_tol": floats(0, 0.01), "refit": BOOL, "digits": ints(0, 6),
}
INTERPRET_BAD = pick("[nosuch]", r"{0\,0\,0:nosuch}", r"{9\,9\,9:exp}", "abc", "5")
OPTIM_VALID = {"history_size": ints(1, 10), "lr": floats(1e-4, 1), "retries": ints(0, 2), "reg": floats(0, 0.1),
               "stages": pick("[{steps: 1, max_iter: 2}]"), "name": pick("mine"), "explode": floats(2, 1e6)}
OPTIM_BAD = pick("[]", "5", "[5]", "[{stpes: 1}]")
INTERPRET_KEYS = sorted(INTERPRET_VALID)
PLUGIN_KEYS = ("file", "module")  # a user's own problem definitions (`+problem.file=...`)
PLUGIN_BAD = pick("nosuch.py", "nosuch", "/etc/hostname", "kanpde.nosuch", "''")


def value(key: str, valid: dict, bad: bool, worse: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """A valid value of `key`, or (`bad`, or no valid one known) a hostile one."""
    if not bad and key in valid:
        return valid[key]
    hostile_values = hostile(key)
    return hostile_values if worse is None else st.one_of(hostile_values, worse)


@st.composite
def option(draw, problem: str, model: str, interpret: str, bad: bool) -> str:
    """One `key=value` override of any group's option or a top-level key."""
    kinds = ["problem", "problem", "model", "stage", "optim", "top", "top", "interpret"]
    kind = draw(st.sampled_from([*kinds, "unknown"] if bad else kinds))
    if kind == "problem":
        key = draw(st.sampled_from([*PROBLEM_OPTIONS[problem], *(PLUGIN_KEYS if bad else ())]))
        plus = "+" if key in PLUGIN_KEYS else ""
        return f"{plus}problem.{key}={draw(value(key, PROBLEM_VALID, bad, PLUGIN_BAD if plus else None))}"
    if kind == "model":
        key = draw(st.sampled_from(MODEL_OPTIONS[model]))
        return f"model.{key}={draw(value(key, MODEL_VALID, bad, MODEL_BAD))}"
    if kind == "stage":  # the SHRINK stages: 0 (L-BFGS) and 1 (Adam), or a whole stage (bad only)
        key, i = draw(st.sampled_from([*STAGE_VALID, *([""] if bad else [])])), draw(st.sampled_from([0, 0, 1]))
        return f"++optim.stages.{i}{'.' if key else ''}{key}={draw(value(key, STAGE_VALID, bad))}"
    if kind == "optim":  # optim-level keys: every stage's defaults, or the stages themselves
        key = draw(st.sampled_from([*OPTIM_VALID, "steps"] if bad else list(OPTIM_VALID)))
        return f"++optim.{key}={draw(value(key, OPTIM_VALID, bad, OPTIM_BAD))}"
    if kind == "top":
        key = draw(st.sampled_from(sorted(TOP_VALID)))
        return f"{key}={draw(value(key, TOP_VALID, bad, TOP_BAD))}"
    if kind == "interpret":  # interpret=none has no options to set: + adds one for Settings to check
        key = draw(st.sampled_from(INTERPRET_KEYS))
        plus = "" if interpret == "symbolic" else draw(st.sampled_from(["", "++"] if bad else ["++"]))
        return f"{plus}interpret.{key}={draw(value(key, INTERPRET_VALID, bad, INTERPRET_BAD))}"
    where = draw(st.sampled_from(["problem.", "model.", "optim.", "interpret.", "optim.stages.0.", ""]))
    name = draw(st.sampled_from(["nosuch", "n_interor", "widht", "stpes"]))
    return f"{draw(st.sampled_from(['+', '++', '']))}{where}{name}={draw(st.sampled_from(['1', 'abc']))}"


@st.composite
def override_sets(draw) -> list[str]:
    """A command line's overrides: group choices, a few valid options, and mostly one bad one."""
    problem = draw(st.sampled_from(CHEAP))
    out = [f"problem={problem}"]
    model = draw(st.sampled_from(["kan", "kan", "mlp", *MODELS]))  # kan_<chain>: 4 inputs (width errors)
    if draw(st.booleans()):
        out.append(f"model={model}")
    else:
        model = "kan"
    if draw(st.integers(0, 3)) == 0:
        out.append(f"optim={draw(st.sampled_from(OPTIMS))}")
    interpret = "none"
    if draw(st.integers(0, 7)) == 0:
        interpret = draw(st.sampled_from(INTERPRETS))
        out.append(f"interpret={interpret}")
    out += draw(st.lists(option(problem, model, interpret, bad=False), max_size=4))
    if draw(st.integers(0, 2)):  # one bad override, anywhere on the line
        bad = draw(st.one_of(option(problem, model, interpret, bad=True),
                             st.sampled_from(["problem", "model", "optim", "interpret"]).map(lambda g: f"{g}=nosuch")))
        out.insert(draw(st.integers(0, len(out))), bad)
    return out


# --- running one command line --------------------------------------------------------------


def attempt(overrides: list[str], out: Path) -> tuple[str, str | dict]:
    """The CLI's checks and run, in-process: ("error", one message) or ("ran", metrics)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            argv = resume_argv([*SHRINK, *overrides])
            check_group_choices(argv)
            cfg = check_composes(argv)
    except SystemExit as exc:
        assert exc.code == 2, f"pre-check exited {exc.code!r}"
        text = stderr.getvalue()
        assert text.startswith("kanpde: error: ") and text.endswith("\n"), text
        return "error", text.removeprefix("kanpde: error: ").removesuffix("\n")
    try:
        return "ran", run(cfg, out)
    except ConfigError as exc:
        return "error", str(exc)


def _named(message: str, overrides: list[str]) -> bool:
    """Whether `message` names a drawn key (dotted, bracketed or its last part) or value."""
    for item in overrides:
        key, _, text = item.lstrip("+~").partition("=")
        leaf = key.rsplit(".", 1)[-1]
        forms = {key, re.sub(r"\.(\d+)", r"[\1]", key), text.strip("'")}
        if any(f and f in message for f in forms) or re.search(rf"\b{re.escape(leaf)}\b", message):
            return True
    return False


def check_outcome(overrides: list[str]) -> str:
    """Run `attempt` in a fresh folder and assert an accepted outcome; returns ok, diverged or error."""
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        try:
            kind, result = attempt(overrides, out)
        finally:
            torch.set_num_threads(threads)  # threads=<n> must not leak into the next example
        if kind == "ran":
            assert result["status"] in ("ok", "diverged"), result
            assert (out / "metrics.json").exists()
            return result["status"]
        assert result and "\n" not in result and len(result) < 600, f"not one short line: {result!r}"
        assert _named(result, overrides), f"names no drawn key or value: {result!r}"
        assert not (out / "metrics.json").exists(), f"metrics.json written before failing: {result!r}"
        return "error"


@settings(max_examples=200, deadline=None, derandomize=True, print_blob=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(override_sets())
def test_random_overrides_run_or_fail_in_one_line(overrides):
    """Every drawn command line runs, or fails in one line naming what is wrong."""
    check_outcome(overrides)


# --- the gaps the fuzzing found, one each ----------------------------------------------------

GAPS = [  # (overrides, words the one-line message must hold); each used to raise something else
    (["model.noise_scale=${nosuch}"], "model.noise_scale"),  # dangling interpolation: omegaconf's error
    ([r"model.grid_range={'0,0,0': nosuch}"], "model.grid_range="),  # Hydra's grammar error named nothing
    (["device={a: 1}"], "device"),  # AttributeError: 'dict' object has no attribute 'startswith'
    (["++interpret.names=5"], "interpret.names"),  # TypeError: 'int' object is not iterable
    (["++interpret.hints=abc"], "interpret.hints"),  # AttributeError: 'str' object has no attribute 'items'
    (["++interpret.digits=-1"], "interpret.digits"),  # not checked (round() with it after training)
    (["++interpret.refit=abc"], "interpret.refit"),
    (["problem=heat", "interpret=symbolic"], "PDE problem"),  # trained, then failed (interpret_error)
    (["problem=sine1d", "model=mlp", "model.width=[in,2,out]", "interpret=symbolic"], "needs a KAN"),
    ([f"seed={HUGE_INT}"], "seed"),  # ValueError: Overflow when unpacking long long
    ([f"data_seed={HUGE_INT}"], "data_seed"),
    ([f"threads={HUGE_INT}"], "threads"),
    ([f"model.grid={HUGE_INT}"], "model.grid"),  # OverflowError: int too big to convert
    ([f"model.width=[in,{HUGE_INT},out]"], "model.width"),
    (["model.symbolic={a: 1}"], "model.symbolic"),  # TypeError: 'int' object is not iterable
    (["model.noise_scale=nan"], "model.noise_scale"),  # nan passed every `minimum` check
    (["++optim.stages.0.reg=nan"], "optim.stages[0].reg"),
    (["model.noise_scale=inf"], "model.noise_scale"),  # ran, and diverged at once
    (["model.grid_range=[-inf,inf]"], "model.grid_range"),
    (["problem.alpha=inf"], "problem.alpha"),
]


@pytest.mark.parametrize("overrides, words", GAPS, ids=[" ".join(o) for o, _ in GAPS])
def test_found_gaps_fail_in_one_line(overrides, words):
    with tempfile.TemporaryDirectory() as tmp:
        kind, message = attempt(overrides, Path(tmp) / "run")
        assert kind == "error" and words in message and "\n" not in message, message
        assert not (Path(tmp) / "run" / "metrics.json").exists()


@pytest.mark.parametrize("overrides", [[f"model.noise_scale={HUGE_INT}"], [f"model.base_scale={HUGE_INT}"],
                                       ["kernel=false", "inject_nan={step: 1}"]], ids=" ".join)
def test_fixed_crashes_run(overrides):
    """These run now: a huge int is a valid scale (a float), once converted (as an int it
    overflowed torch); a nan step on the torch path of a KAN (kernel=false) recovers (a nan
    input made an index error in `bspline.uniform_cells`)."""
    with tempfile.TemporaryDirectory() as tmp:
        kind, metrics = attempt(overrides, Path(tmp) / "run")
        assert kind == "ran" and metrics["status"] in ("ok", "diverged"), metrics


@pytest.mark.parametrize("override", [f"++optim.stages.0.lr={HUGE_INT}", f"++optim.stages.0.reg={HUGE_INT}"])
def test_stage_keeps_huge_int_numbers(override):
    """A stage's lr or reg given as a huge int is kept as the float it was checked as (as an
    int it overflowed torch)."""
    with tempfile.TemporaryDirectory() as tmp:
        kind, metrics = attempt([override], Path(tmp) / "run")
        assert kind == "ran" and metrics["status"] in ("ok", "diverged"), metrics


def test_failing_problem_file_fails_in_one_line(tmp_path, monkeypatch):
    """A user's problem file that raises on import is a ConfigError naming the file (it was the
    file's own traceback)."""
    (tmp_path / "broken.py").write_text("raise RuntimeError('no such thing\\nsecond line')\n")
    monkeypatch.chdir(tmp_path)
    kind, message = attempt(["+problem.file=broken.py"], tmp_path / "run")
    assert kind == "error" and message == ("problem.file 'broken.py' failed on import: "
                                           "RuntimeError: no such thing")
