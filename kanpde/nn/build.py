"""Building and loading the C++ kernel's shared library (`csrc/kan_jet.cpp`, the KAN layer's jet,
used by `kernel.py`; `csrc/mlp_jet.cpp`, the MLP activation's jet, used by `activation_jet.py`).

The library is compiled in one of a few flag sets (`CANDIDATES`: `-march=native`, the same with
scalar loops, ...; `kanpde.nn.tuning` picks one by timing them on this CPU), each only valid on
CPUs with the instruction set it was compiled for; the cache folder (`$KANPDE_CACHE`, else `~/.cache/kanpde`) may be shared by
machines with different CPUs (an NFS home on a cluster). Its file name therefore carries a key of
everything the binary depends on (`describe`): the source, the compiler and its version, the flags,
and what `-march=native` resolves to on this CPU. The key is also compiled into the library
(`kan_jet_build_key()`), and a cached file is loaded only if it is a complete ELF file (a truncated
one would kill the process with SIGBUS on load, not raise) that has every entry point and reports
the same key; otherwise it is rebuilt, with a warning. Building goes through `kanpde.cache`: one
process compiles while others wanting the same file wait, and the file appears atomically.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import re
import shlex
import struct
import subprocess
import sys
from pathlib import Path

from kanpde.cache import load_or_make

SOURCES = tuple(Path(__file__).with_name("csrc") / name for name in ("kan_jet.cpp", "mlp_jet.cpp"))
HEADERS = (Path(__file__).with_name("csrc") / "fastmath.h",)  # included by SOURCES: part of the key
COMMON = ["-fopenmp", "-shared", "-fPIC", "-std=c++17"]
# Candidate target flags, by name. Which one is fastest depends on the CPU, not only on its
# instruction set: on one Intel Xeon (AVX-512) the vectorised native build ran 2.5x slower than
# the same source with scalar loops or built for SSE4.2 only, on an AMD EPYC they were close.
CANDIDATES = {
    "native": ["-O3", "-march=native"],
    "native-scalar": ["-O3", "-march=native", "-fno-tree-vectorize"],
    "native-128": ["-O3", "-march=native", "-mprefer-vector-width=128"],
    "x86-64-v2": ["-O3", "-march=x86-64-v2"],
}
X86_ONLY = ("native-128", "x86-64-v2")
ENTRY_POINTS = tuple(f"{kind}_{step}_{suffix}" for kind in ("kan_jet", "mlp_act") for step in ("forward", "backward")
                     for suffix in ("f64", "f32"))


def flags(name: str) -> list[str]:
    """The full compiler flags of candidate `name` (a key of CANDIDATES)."""
    return [*CANDIDATES[name], *COMMON]


def candidates() -> list[str]:
    """The candidate names that can be built for this machine: all on x86-64 CPUs with SSE4.2 and
    POPCNT (x86-64-v2), else those without x86-only flags."""
    names = list(CANDIDATES)
    here = set(cpu()["flags"])
    if platform.machine().lower() not in ("x86_64", "amd64") or not {"sse4_2", "popcnt"} <= here:
        names = [n for n in names if n not in X86_ONLY]
    return names


def compiler() -> str:
    """The C++ compiler: `$CXX`, else `c++`."""
    return os.environ.get("CXX", "c++")


def cache_dir() -> Path:
    """`$KANPDE_CACHE`, else `~/.cache/kanpde`."""
    return Path(os.environ.get("KANPDE_CACHE") or Path.home() / ".cache" / "kanpde")


@functools.lru_cache(maxsize=None)
def cpu() -> dict:
    """This CPU as the OS describes it: {"model": str, "flags": sorted list of ISA feature names}.

    From the first processor of /proc/cpuinfo on Linux (x86 `model name` / `flags`, Arm `Features`
    and `CPU part`), `platform.processor()` and no flags elsewhere. Read once per process (< 1 ms).
    """
    model, flags = "", ""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        name, _, value = (s.strip() for s in line.partition(":"))
        if name in ("model name", "Processor", "cpu model", "CPU part") and not model:
            model = value
        elif name in ("flags", "Features") and not flags:
            flags = value
    return {"model": model or platform.processor() or platform.machine(), "flags": sorted(set(flags.split()))}


@functools.lru_cache(maxsize=None)
def native(cxx: str) -> dict:
    """What `cxx -march=native` resolves to on this CPU, from the compiler's own verbose output.

    One subprocess (`cxx -march=native -x c++ -E -v -`, ~20 ms here: preprocessing an empty input),
    run once per process. GCC's driver passes its front end (cc1plus) the detected `-march=<cpu>`,
    every ISA extension as `-m<ext>` / `-mno-<ext>`, `--param` cache sizes and `-mtune=<cpu>`;
    clang's passes `-target-cpu`, `-target-feature +/-<ext>` and `-tune-cpu`. Those options are
    exactly what the compiled code depends on.

    Returns:
        {"version": the compiler's version line, "target": its target triple, "march": the resolved
        CPU or None if the output could not be read, "mtune": likewise, "options": the resolved
        target options in the compiler's order ([] if none were found)}.

    Raises:
        OSError: the compiler cannot be run (then no kernel can be built either).
    """
    done = subprocess.run([cxx, "-march=native", "-x", "c++", "-E", "-v", "-"], input="",
                          capture_output=True, text=True, timeout=120)
    return parse_native(done.stderr)


def parse_native(verbose: str) -> dict:
    """`native`'s result from a compiler's verbose (`-v`) output; see there."""
    lines = verbose.splitlines()
    info = {"version": next((s.strip() for s in lines if re.search(r"\bversion\s+\d", s)), ""),
            "target": next((s.split(":", 1)[1].strip() for s in lines if s.startswith("Target:")), ""),
            "march": None, "mtune": None, "options": []}
    for line in lines:
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        clang = "-cc1" in words
        if not words or not (clang or Path(words[0]).name.startswith("cc1")):
            continue  # not the front end's command line
        words = iter(words[1:])
        for word in words:
            if word in ("-target-cpu", "-tune-cpu", "-target-feature", "--param"):
                value = next(words, "")
                info["options"].append(f"{word} {value}")
                if word == "-target-cpu":
                    info["march"] = value
                elif word == "-tune-cpu":
                    info["mtune"] = value
            elif word.startswith("-m") and not clang:  # clang's -m options are not the target's
                info["options"].append(word)
                if word.startswith(("-march=", "-mcpu=")):
                    info["march"] = word.split("=", 1)[1]
                elif word.startswith("-mtune="):
                    info["mtune"] = word.split("=", 1)[1]
        break
    if info["march"] is None:
        info["options"] = []
    return info


def describe(cxx: str | None = None, name: str = "native") -> dict:
    """Everything the library's binary for candidate `name` depends on; its SHA-256 is the cache
    key (`key`). Without "flags" (`for_cpu`), what the choice among candidates is made for.

    The instruction set enters as the compiler's resolution of `-march=native` (`native`), the
    most exact key: it is literally what the build depends on, so two CPUs share a library exactly
    when it would be compiled the same for both. /proc/cpuinfo's flags are used only when that
    resolution cannot be read: they also list entries the build does not depend on (bug
    mitigations, `hypervisor`, ...), which vary with the kernel and microcode and would rebuild per
    node. The CPU model name is kept as well (at worst one more build per CPU model; it names the
    CPU in `build_info`). The host name is not: the binary does not depend on it, and nodes with
    different CPUs share one cache folder whatever their names.
    """
    cxx = cxx or compiler()
    resolved, here = native(cxx), cpu()
    sources = hashlib.sha256(b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in (*SOURCES, *HEADERS)))
    return {"source_sha256": sources.hexdigest(), "compiler": cxx,
            "compiler_version": resolved["version"], "compiler_target": resolved["target"],
            "flags": flags(name), "machine": platform.machine(), "cpu_model": here["model"],
            "march": resolved["march"], "mtune": resolved["mtune"],
            "isa": list(resolved["options"]) if resolved["march"] else ["cpuinfo", *here["flags"]]}


def for_cpu(description: dict) -> dict:
    """`description` without its flags: the CPU, compiler and source a choice of flags is for."""
    return {k: v for k, v in description.items() if k != "flags"}


def key(description: dict) -> str:
    """The 64-hex-digit SHA-256 of a `describe` result."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def library_path(description: dict) -> Path:
    """Where the library for `description` is cached: `<cache_dir>/kan_jet-<key[:16]>.so`."""
    return cache_dir() / f"kan_jet-{key(description)[:16]}.so"


def elf_problem(path: str | Path) -> str | None:
    """Why the ELF file at `path` is incomplete, or None (also for a file that is not ELF at all,
    which dlopen refuses safely).

    A shared library cut short keeps its program headers, so dlopen maps segments past the end of
    the file and the first touch of one kills the process (SIGBUS): check that every segment, and
    the section header table at the file's end, lies inside the file.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF":
        return None
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        head = struct.unpack_from(order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"), data, 16)
        phoff, shoff, phentsize, phnum, shentsize, shnum = head[4], head[5], *head[8:12]
        need = max(phoff + phnum * phentsize, shoff + shnum * shentsize)
        for i in range(phnum if need <= len(data) else 0):
            seg = struct.unpack_from(order + ("IIQQQQQQ" if wide else "IIIIIIII"), data, phoff + i * phentsize)
            offset, filesz = (seg[2], seg[5]) if wide else (seg[1], seg[4])
            need = max(need, offset + filesz)
    except struct.error:
        return f"truncated ELF header ({len(data)} bytes)"
    return f"truncated: {len(data)} bytes, its headers need {need}" if need > len(data) else None


def _unload(lib: ctypes.CDLL) -> None:
    """dlclose a rejected library, so that loading the rebuilt file at the same path does not get
    the old one back (dlopen matches an already loaded path by name)."""
    try:
        if sys.platform == "win32":
            ctypes.windll.kernel32.FreeLibrary(ctypes.c_void_p(lib._handle))
        else:
            import _ctypes

            _ctypes.dlclose(lib._handle)
    except Exception:  # noqa: BLE001 - best effort; a failed rebuild is then reported on loading
        pass


def load(path: str | Path, build_key: str) -> ctypes.CDLL:
    """Load the kernel library at `path`, checking it is complete and was built for `build_key`.

    Raises:
        ValueError: the file is a truncated ELF file or reports another build key.
        OSError, AttributeError: dlopen refuses it, or an entry point is missing.
    """
    problem = elf_problem(path)
    if problem:
        raise ValueError(problem)
    lib = ctypes.CDLL(str(path))
    try:
        lib.kan_jet_build_key.restype = ctypes.c_char_p
        stored = lib.kan_jet_build_key().decode()
        if stored != build_key:
            raise ValueError(f"built for key {stored[:16]}, expected {build_key[:16]}")
        for name in ENTRY_POINTS:
            getattr(lib, name).restype = None
    except BaseException:
        _unload(lib)
        raise
    return lib


def compile_library(cxx: str, out: Path, build_key: str, flags: list[str]) -> None:
    """Compile SOURCES with `flags` into the shared library `out`, with `build_key` compiled in;
    raises subprocess.CalledProcessError (its stderr holds the compiler's message) on failure."""
    subprocess.run([cxx, *flags, f'-DKANPDE_BUILD_KEY="{build_key}"', *map(str, SOURCES), "-o", str(out)],
                   check=True, capture_output=True, text=True)


def build(name: str = "native") -> tuple[ctypes.CDLL, dict]:
    """The kernel library of candidate `name` for this CPU and compiler, from the cache or compiled
    (~10 s) into it. (`kanpde.nn.tuning.build` first chooses the candidate.)

    Returns:
        (library, info): info is `describe()` plus "build" (the name), "path", "key" and
        "compiled" (whether this call compiled it).

    Raises:
        Exception: no compiler, a failed compile, an unwritable cache folder, ...
    """
    cxx = compiler()
    description = describe(cxx, name)
    build_key, path = key(description), library_path(description)

    def make(tmp: Path) -> ctypes.CDLL:
        compile_library(cxx, tmp, build_key, description["flags"])
        return load(tmp, build_key)  # check before it is published; the mapping survives the rename

    lib, compiled = load_or_make(path, lambda p: load(p, build_key), make, what="kernel library")
    return lib, {**description, "build": name, "path": str(path), "key": build_key, "compiled": compiled}
