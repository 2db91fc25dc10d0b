"""The kernel build chosen by measurement (`kanpde.nn.tuning`): the fastest candidate is kept and
remembered per CPU and compiler, a forced or corrupt choice is handled, the flag sets differ in
the cache key only by their flags."""

from __future__ import annotations

import json
import math
import platform

import pytest

from kanpde.nn import build, tuning


@pytest.fixture
def fake_builds(tmp_path, monkeypatch):
    """Candidates that are not compiled: build_all hands out placeholders, measure returns the
    times in `ms` (changeable by the test) and counts its calls."""
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path))
    monkeypatch.delenv(tuning.ENV, raising=False)
    state = {"ms": {"native": 3.0, "native-scalar": 2.0}, "measured": 0}
    monkeypatch.setattr(tuning, "build_all", lambda names: {n: (object(), {}) for n in names})
    monkeypatch.setattr(build, "_unload", lambda lib: None)

    def measure(libs, rounds=tuning.ROUNDS):
        state["measured"] += 1
        return {n: state["ms"][n] for n in libs}

    monkeypatch.setattr(tuning, "measure", measure)
    return state


def test_choose_keeps_the_fastest_and_remembers_it(fake_builds):
    first = tuning.choose()
    assert first["build"] == "native-scalar" and first["how"] == "measured" and first["ms"] == fake_builds["ms"]
    fake_builds["ms"] = {"native": 1.0, "native-scalar": 2.0}  # not measured again: the choice is cached
    again = tuning.choose()
    assert again["build"] == "native-scalar" and again["how"] == "cached" and fake_builds["measured"] == 1
    stored = json.loads(tuning.choice_path(build.describe()).read_text())
    assert stored["build"] == "native-scalar" and stored["cpu_model"] == build.cpu()["model"]


def test_a_corrupt_or_foreign_choice_is_measured_again(fake_builds, caplog):
    tuning.choose()
    path = tuning.choice_path(build.describe())
    for text in ("{not json", json.dumps({"build": "no-such-build"})):
        path.write_text(text)
        fake_builds["ms"] = {"native": 1.0, "native-scalar": 2.0}
        assert tuning.choose()["build"] == "native"
    assert fake_builds["measured"] == 3 and "kernel build choice" in caplog.text


def test_another_cpu_or_compiler_chooses_again(fake_builds, monkeypatch):
    here = tuning.choice_path(build.describe())
    real = build.native(build.compiler()) if _has_compiler() else None
    if real is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setattr(build, "native", lambda cxx: {**real, "version": "gcc version 99.1.0"})
    assert tuning.choice_path(build.describe()) != here


def test_forced_build_and_a_bad_name(fake_builds, monkeypatch):
    monkeypatch.setenv(tuning.ENV, "native")
    assert tuning.choose() == {"build": "native", "ms": {}, "how": tuning.ENV} and fake_builds["measured"] == 0
    monkeypatch.setenv(tuning.ENV, "fastest")
    with pytest.raises(ValueError, match=r"KANPDE_KERNEL_BUILD='fastest' is not a kernel build here; allowed: native, "):
        tuning.choose()


def test_candidates_follow_the_machine(monkeypatch):
    monkeypatch.setattr(build, "cpu", lambda: {"model": "x", "flags": ["sse4_2", "popcnt", "avx2"]})
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert build.candidates() == list(build.CANDIDATES)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert build.candidates() == ["native", "native-scalar"]
    assert set(tuning.TIMED) <= set(build.candidates())


def test_flag_sets_differ_in_the_key_by_their_flags_only():
    if not _has_compiler():
        pytest.skip("no C++ compiler")
    native, scalar = build.describe(name="native"), build.describe(name="native-scalar")
    assert build.key(native) != build.key(scalar) and build.for_cpu(native) == build.for_cpu(scalar)
    assert scalar["flags"] == ["-O3", "-march=native", "-fno-tree-vectorize", *build.COMMON]


def test_measure_times_real_libraries():
    """The workload runs through the loaded kernel (both names the same library here)."""
    from kanpde.nn import kernel

    lib = kernel.library()
    if lib is None:
        pytest.skip("the C++ kernel cannot be built here")
    ms = tuning.measure({"a": lib, "b": lib}, rounds=2)
    assert sorted(ms) == ["a", "b"] and all(math.isfinite(v) and v > 0 for v in ms.values())


def _has_compiler() -> bool:
    import shutil

    return shutil.which(build.compiler()) is not None


def test_the_workload_is_a_real_layer_call():
    """The timed calls compute what a run's layer computes: their outputs equal the torch path's
    on the same arrays (the Laplacian's |dh|^2 formed in the kernel where P = 1)."""
    import numpy as np
    import torch

    from kanpde.nn import kernel

    lib = kernel.library()
    if lib is None:
        pytest.skip("the C++ kernel cannot be built here")
    for shape in tuning.WORKLOAD:
        case = tuning._arrays(64, *shape[1:], np.random.default_rng(3))
        tuning._calls(lib, [case])
        dims, ins, outs, _, _ = case
        x, dh, d2h, m2, coef, wb, t0, h = (torch.from_numpy(np.asarray(a)) for a in ins)
        if dims[8] == 1:
            m2 = (dh * dh).sum(-1, keepdim=True)
        expected = kernel.torch_layer_jet(x, dh, d2h, m2, coef, wb, t0, h, int(dims[5]))
        for got, want in zip(outs, expected):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)
