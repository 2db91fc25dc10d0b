"""Threads from the free cores (`kanpde.cores`), and a run's thread count being its own."""

from __future__ import annotations

import os

import pytest
import torch

from kanpde import cores


def _fake_stat(monkeypatch, busy_share: float, own_s: float = 0.0, cpus: int = 2):
    """/proc/stat readings `busy_share` busy over the probe, and `own_s` CPU seconds of our own."""
    readings = iter([(0, 0), (int(1000 * busy_share), 1000)])
    clock = iter([0.0, own_s])
    monkeypatch.setattr(cores, "allowed_cpus", lambda: list(range(cpus)))
    monkeypatch.setattr(cores, "_busy_ticks", lambda c: next(readings))
    monkeypatch.setattr(cores.time, "process_time", lambda: next(clock))
    monkeypatch.setattr(cores.time, "sleep", lambda s: None)


@pytest.mark.parametrize("busy_share, own_s, free, threads", [
    (0.0, 0.0, 2.0, 2),    # idle
    (0.5, 0.0, 1.0, 1),    # one core taken by a neighbour
    (0.5, 0.2, 2.0, 2),    # busy with our own work only (0.2 s in a 0.2 s probe: one core)
    (0.2, 0.0, 1.6, 2),    # a neighbour at 40 % of a core: two threads still pay
    (1.0, 0.0, 0.0, 1),    # everything busy: at least one thread
])
def test_free_cores_and_threads(monkeypatch, busy_share, own_s, free, threads):
    _fake_stat(monkeypatch, busy_share, own_s)
    assert cores.free_cores() == pytest.approx(free)
    _fake_stat(monkeypatch, busy_share, own_s)
    assert cores.auto_threads() == threads


def test_unreadable_stat_means_all_allowed_cpus(monkeypatch):
    monkeypatch.setattr(cores, "_busy_ticks", lambda c: None)
    assert cores.free_cores() is None and cores.auto_threads() == len(cores.allowed_cpus())


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_real_probe_is_in_range():
    free = cores.free_cores(0.05)
    assert 0.0 <= free <= len(cores.allowed_cpus())
    assert 1 <= cores.auto_threads(0.05) <= len(cores.allowed_cpus())


@pytest.mark.parametrize("threads", [0, 2])
def test_run_threads_are_recorded_and_restored(tiny_config, tmp_path, threads):
    from kanpde.run import run

    before = torch.get_num_threads()
    metrics = run(tiny_config(f"threads={threads}"), tmp_path)
    assert torch.get_num_threads() == before
    assert metrics["threads_from"] == ("set" if threads else "free cores")
    assert metrics["threads"] == threads if threads else 1 <= metrics["threads"] <= len(cores.allowed_cpus())


@pytest.mark.parametrize("env, want, policy", [
    ({}, {"GOMP_SPINCOUNT": "100000"}, "GOMP_SPINCOUNT=100000"),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}, "OMP_WAIT_POLICY=PASSIVE"),
    ({"GOMP_SPINCOUNT": "0"}, {"GOMP_SPINCOUNT": "0"}, "GOMP_SPINCOUNT=0"),
])
def test_bounded_waiting_keeps_a_users_choice(monkeypatch, env, want, policy):
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cores.bounded_waiting()
    assert {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ} == want
    assert cores.wait_policy() == policy


def test_watch_follows_a_neighbour_that_comes_and_goes(monkeypatch):
    """Readings 1 s apart: idle, then a neighbour on one of two CPUs, then idle again; our own
    process busy on both CPUs, then on one. Threads go 2 -> 1 -> 2 once two windows in a row
    agree, each change recorded; a reading sooner than the window and a one-window blip change
    nothing."""
    # (busy ticks, total ticks) summed over 2 CPUs, our CPU seconds, the clock
    readings = iter([
        ((0, 0), 0.0, 0.0),
        ((100, 100), 0.0, 0.5),    # too soon: no decision
        ((200, 200), 2.0, 1.0),    # all busy, all ours: 2 free
        ((400, 400), 3.0, 2.0),    # all busy, 1 CPU ours: a neighbour, 1 free (a blip so far)
        ((600, 600), 5.0, 3.0),    # all ours again: 2 free
        ((800, 800), 6.0, 4.0),    # the neighbour: 1 free
        ((1000, 1000), 7.0, 5.0),  # still there: 1 thread
        ((1100, 1200), 8.0, 6.0),  # half busy, all ours: 2 free
        ((1200, 1400), 9.0, 7.0),  # again: 2 threads
    ])
    monkeypatch.setattr(cores, "allowed_cpus", lambda: [0, 1])
    monkeypatch.setattr(cores.Watch, "_reading", lambda self: next(readings))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        watch = cores.Watch(limit=2, window_s=1.0)
        seen = []
        for step in range(1, 9):
            watch.check(step)
            seen.append(torch.get_num_threads())
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 2, 2, 2, 2, 1, 1, 2]
    assert watch.changes == [{"step": 6, "threads": 1, "free_cores": 1.0},
                             {"step": 8, "threads": 2, "free_cores": 2.0}]
