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
