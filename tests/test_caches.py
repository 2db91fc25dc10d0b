"""Cache files that cannot be corrupted or mistaken (`kanpde.cache`): the compiled kernel's key
follows the CPU, and a truncated, foreign or mismatched kernel library or chain-data file is rebuilt;
two processes asking for the same file at once make it once and both get it."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import queue
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from kanpde import cache, chains
from kanpde.nn import build, tuning

CHAIN = dict(model="gaam", n_hamiltonians=3, n_sites=12, seed=1, progress=False)


def _cache_files(folder: Path) -> list[Path]:
    """A cache folder's files but its lock files, which `kanpde.cache` leaves in place."""
    return sorted(p for p in folder.iterdir() if p.suffix != ".lock")


# ---------------------------------------------------------------- the shared helper


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")

    def half_then_fail(tmp: Path):
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        cache.write_atomic(path, half_then_fail)
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"] and path.read_bytes() == b"old"
    assert cache.write_atomic(path, lambda tmp: tmp.write_bytes(b"new")) == 3
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_load_or_make_rebuilds_what_load_rejects(tmp_path, caplog):
    path = tmp_path / "sub" / "value.txt"

    def load(p: Path) -> str:
        text = p.read_text()
        if not text.startswith("ok:"):
            raise ValueError(f"bad content {text!r}")
        return text

    made = []

    def make(tmp: Path) -> str:
        made.append(1)
        tmp.write_text("ok:1")
        return "ok:1"

    assert cache.load_or_make(path, load, make) == ("ok:1", True)
    assert cache.load_or_make(path, load, make) == ("ok:1", False) and made == [1]
    assert cache.lock_path(path) == path.with_name(".value.txt.lock")
    path.write_text("garbage")
    with caplog.at_level(logging.WARNING):
        assert cache.load_or_make(path, load, make, what="test file") == ("ok:1", True)
    assert made == [1, 1] and f"test file {path} is invalid (ValueError: bad content 'garbage')" in caplog.text


# ---------------------------------------------------------------- chain data


def _chain_worker(folder, calls, start, results):
    """Load the CHAIN data through the cache, marking in `calls` if this process generated it."""
    real = chains.generate

    def slow(*args, **kwargs):
        (Path(calls) / str(os.getpid())).touch()
        time.sleep(0.5)  # long enough that the other process asks while this one generates
        return real(*args, **kwargs)

    chains.generate = slow
    start.wait()
    data = chains.load_or_generate(folder, **CHAIN)
    results.put({k: v.tolist() for k, v in data.items()})


def _run_two(target, *args) -> list:
    """Run target(*args, barrier, queue) in two spawned processes released together; their results."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2, timeout=120), ctx.Queue()
    workers = [ctx.Process(target=target, args=(*args, start, results)) for _ in range(2)]
    for w in workers:
        w.start()
    out, deadline = [], time.monotonic() + 240
    while len(out) < len(workers):
        try:
            out.append(results.get(timeout=0.5))
        except queue.Empty:  # a worker that died never reports: fail now, not at the deadline
            codes = [w.exitcode for w in workers]
            assert all(c in (None, 0) for c in codes) and time.monotonic() < deadline, f"exit codes {codes}"
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    return out


def test_chain_cache_two_processes_at_once(tmp_path):
    """Both get the data; one generated it, the other waited for the file; one file is left."""
    folder, calls = tmp_path / "cache", tmp_path / "calls"
    calls.mkdir()
    got = _run_two(_chain_worker, str(folder), str(calls))
    expected = chains.generate(**CHAIN)
    for data in got:
        assert list(data) == list(expected)
        for k, v in expected.items():
            np.testing.assert_array_equal(np.array(data[k]), v)
    assert len(list(calls.iterdir())) == 1
    files = _cache_files(folder)
    assert len(files) == 1 and files[0].suffix == ".h5"  # and no temporary file left


def _damage_chain_file(path: Path, how: str, tmp_path: Path) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"not an HDF5 file")
    elif how == "other_settings":  # a complete file of the same shapes, made with another seed
        other = chains.load_or_generate(tmp_path / "other", **{**CHAIN, "seed": 2})
        assert other["E"].shape == (36,)
        shutil.copyfile(_cache_files(tmp_path / "other")[0], path)
    elif how == "foreign":  # someone else's HDF5 file
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.arange(3.0))
    elif how == "no_attrs":  # the right arrays without the settings attributes
        with h5py.File(path, "a") as f:
            for name in list(f.attrs):
                del f.attrs[name]
    elif how == "missing_dataset":
        with h5py.File(path, "a") as f:
            del f["label"]
    elif how == "wrong_shape":
        with h5py.File(path, "a") as f:
            e = f["E"][()]
            del f["E"]
            f.create_dataset("E", data=e[:-1])
    elif how == "wrong_dtype":
        with h5py.File(path, "a") as f:
            label = f["label"][()]
            del f["label"]
            f.create_dataset("label", data=label.astype(np.float32))


@pytest.mark.parametrize("how", ["truncated", "garbage", "other_settings", "foreign", "no_attrs",
                                 "missing_dataset", "wrong_shape", "wrong_dtype"])
def test_chain_cache_rebuilds_bad_files(tmp_path, caplog, monkeypatch, how):
    """A bad file at the cache path is reported, regenerated and replaced; the next call reads it."""
    folder = tmp_path / "cache"
    chains.load_or_generate(folder, **CHAIN)
    (path,) = _cache_files(folder)
    _damage_chain_file(path, how, tmp_path)
    real, calls = chains.generate, []
    monkeypatch.setattr(chains, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    with caplog.at_level(logging.WARNING):
        data = chains.load_or_generate(folder, **CHAIN)
    assert calls == [1] and f"chain cache file {path} is invalid" in caplog.text
    expected = real(**CHAIN)
    for k, v in expected.items():
        np.testing.assert_array_equal(data[k], v)
    chains.load_or_generate(folder, **CHAIN)
    assert calls == [1] and _cache_files(folder) == [path]


# ---------------------------------------------------------------- kernel library: key

GCC_V = """Using built-in specs.
COLLECT_GCC=c++
Target: x86_64-linux-gnu
Configured with: ../src/configure -v --with-gcc-major-version-only --enable-languages=c,c++
gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)
 /usr/lib/gcc/x86_64-linux-gnu/12/cc1plus -E -quiet -v -imultiarch x86_64-linux-gnu -D_GNU_SOURCE - \
-march=znver3 -mmmx -mavx2 -mno-avx512f --param l1-cache-size=32 -mtune=znver3 -dumpbase -
#include <...> search starts here:
 /usr/include/c++/12
"""
CLANG_V = """Debian clang version 16.0.6 (15~deb12u1)
Target: x86_64-pc-linux-gnu
Thread model: posix
 "/usr/lib/llvm-16/bin/clang" -cc1 -triple x86_64-pc-linux-gnu -E -main-file-name - -mrelocation-model \
pic -fcoverage-compilation-dir=/home/me -target-cpu icelake-server -target-feature +avx512f -target-feature \
-amx-tile -tune-cpu generic -o - -x c++ -
clang -cc1 version 16.0.6 based upon LLVM 16.0.6 default target x86_64-pc-linux-gnu
"""


def test_native_reads_gcc_and_clang_output():
    """What -march=native resolves to, from hand-written gcc and clang verbose output."""
    gcc = build.parse_native(GCC_V)
    assert gcc == {"version": "gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)", "target": "x86_64-linux-gnu",
                   "march": "znver3", "mtune": "znver3",
                   "options": ["-march=znver3", "-mmmx", "-mavx2", "-mno-avx512f", "--param l1-cache-size=32",
                               "-mtune=znver3"]}
    clang = build.parse_native(CLANG_V)
    assert clang["version"] == "Debian clang version 16.0.6 (15~deb12u1)"
    assert (clang["march"], clang["mtune"], clang["target"]) == ("icelake-server", "generic", "x86_64-pc-linux-gnu")
    assert clang["options"] == ["-target-cpu icelake-server", "-target-feature +avx512f",
                                "-target-feature -amx-tile", "-tune-cpu generic"]  # no working-folder paths
    unknown = build.parse_native("some compiler version 1.0\n")
    assert unknown["march"] is None and unknown["options"] == []


def test_kernel_key_follows_the_cpu(monkeypatch):
    """Another instruction set, CPU model or compiler version gives another library file; another
    host name with the same CPU does not."""
    if shutil.which(build.compiler()) is None:
        pytest.skip(f"no C++ compiler {build.compiler()!r}")
    here = build.describe()
    path = build.library_path(here)
    assert path.name.startswith("kan_jet-") and len(path.stem) == len("kan_jet-") + 16
    assert here["march"] and any(here["march"] in option for option in here["isa"])
    monkeypatch.setattr(platform, "node", lambda: "another-node-07")
    assert build.library_path(build.describe()) == path
    resolved, cpu = build.native(build.compiler()), build.cpu()

    def path_with(native=None, cpu_=None):
        monkeypatch.setattr(build, "native", lambda cxx: {**resolved, **(native or {})})
        monkeypatch.setattr(build, "cpu", lambda: {**cpu, **(cpu_ or {})})
        return build.library_path(build.describe())

    assert path_with() == path
    others = [path_with({"march": "skylake-avx512", "options": ["-march=skylake-avx512", "-mavx512f"]}),
              path_with({"options": [*resolved["options"], "-mavx512bw"]}),  # one more extension
              path_with(cpu_={"model": "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"}),
              path_with({"version": "gcc version 13.1.0"})]
    assert len({path, *others}) == 5
    # Where the compiler's resolution cannot be read, /proc/cpuinfo's flags are the ISA.
    fallback = path_with({"march": None, "options": []})
    assert fallback not in (path, *others)
    assert path_with({"march": None, "options": []}, {"flags": [*cpu["flags"], "avx512f_new"]}) != fallback


# ---------------------------------------------------------------- kernel library: files


@pytest.fixture
def good_library():
    """The kernel library this process loaded (built for this CPU and compiler), or skip."""
    from kanpde.nn import kernel

    info = kernel.build_info()
    if not info["available"]:
        pytest.skip(f"the C++ kernel cannot be built here: {info['error']}")
    return Path(info["path"])


def _tiny_library(out: Path, body: str) -> None:
    subprocess.run([build.compiler(), "-shared", "-fPIC", "-x", "c++", "-", "-o", str(out)], input=body,
                   check=True, capture_output=True, text=True)


@pytest.mark.parametrize("how", ["truncated_half", "truncated_tail", "garbage", "foreign", "other_key"])
def test_kernel_library_rebuilds_bad_files(tmp_path, monkeypatch, caplog, good_library, how):
    """A truncated library (loading one would kill the process with SIGBUS), a file that is not a
    library, a library without the kernel's entry points and one reporting another build key are
    each reported and rebuilt (the compile replaced by a copy of the good library)."""
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path))
    from kanpde.nn import kernel

    name = kernel.build_info()["build"]  # the candidate good_library was built as
    build_key = build.key(build.describe(name=name))
    path = build.library_path(build.describe(name=name))
    good = good_library.read_bytes()
    if how == "truncated_half":
        path.write_bytes(good[: len(good) // 2])
    elif how == "truncated_tail":
        path.write_bytes(good[:-1])
        assert "truncated" in build.elf_problem(path)
    elif how == "garbage":
        path.write_bytes(b"not a shared library")
    elif how == "foreign":
        _tiny_library(path, 'extern "C" int other_entry() { return 1; }')
    else:
        _tiny_library(path, 'extern "C" const char* kan_jet_build_key() { return "%s"; }' % ("0" * 64))
    calls = []
    monkeypatch.setattr(build, "compile_library",
                        lambda cxx, out, k, flags: calls.append(k) or shutil.copyfile(good_library, out))
    with caplog.at_level(logging.WARNING):
        lib, info = build.build(name)
    assert calls == [build_key] and info["compiled"] and info["path"] == str(path)
    assert f"kernel library {path} is invalid" in caplog.text
    assert lib.kan_jet_build_key() == build_key.encode() and path.read_bytes() == good
    lib, info = build.build(name)  # now read from the cache
    assert calls == [build_key] and not info["compiled"] and lib.kan_jet_build_key() == build_key.encode()
    assert _cache_files(tmp_path) == [path]
    assert build.elf_problem(good_library) is None


def _kernel_worker(start, results):
    start.wait()
    try:
        lib, info = tuning.build_chosen()  # what kernel.library() calls, without importing torch
        info["available"], info["error"] = lib.kan_jet_build_key() == info["key"].encode(), None
        info["how"] = info["choice"]["how"]
    except Exception as exc:  # noqa: BLE001 - reported to the test
        info = {"available": False, "error": repr(exc)}
    results.put({k: info.get(k) for k in ("available", "how", "path", "error", "key", "build")})


def test_kernel_two_processes_build_and_choose_once(tmp_path, monkeypatch, good_library):
    """Two processes wanting the kernel in an empty cache folder at once: one compiles the timed
    candidates (for real, in parallel, ~25 s), times them and stores its choice; the other waits
    and loads the chosen library."""
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path))
    monkeypatch.delenv(tuning.ENV, raising=False)
    got = _run_two(_kernel_worker)
    assert [g["available"] for g in got] == [True, True], [g["error"] for g in got]
    assert sorted(g["how"] for g in got) == ["cached", "measured"]
    assert got[0]["path"] == got[1]["path"] and got[0]["build"] in tuning.TIMED
    choice = json.loads(tuning.choice_path(build.describe()).read_text())
    assert choice["build"] == got[0]["build"] and sorted(choice["ms"]) == sorted(tuning.TIMED)
    assert choice["ms"][choice["build"]] == min(choice["ms"].values())
    libraries = [build.library_path(build.describe(name=n)) for n in tuning.TIMED]
    assert _cache_files(tmp_path) == sorted([*libraries, tuning.choice_path(build.describe())])
    lib = build.load(got[0]["path"], got[0]["key"])
    assert lib.kan_jet_build_key() == got[0]["key"].encode()
