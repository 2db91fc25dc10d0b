"""How many threads a run should use: the cores that other processes leave free, measured.

Why: torch's intra-op threads and the kernel's OpenMP loops split each operation evenly and wait
for the slowest share. When another process occupies one of two cores, the thread that shares it
gets half a core, every operation waits for it, and a run took 2.6x its idle time, where one thread
on the free core took 1.7x. So a run with `threads: 0` (the default) counts the free cores first
(`free_cores`: the busy time of the CPUs it may run on, from /proc/stat over a fifth of a second,
less its own) and starts that many threads, at least one.

The other half is how idle threads wait. OpenMP's (libgomp's) default is to spin for about
300,000 iterations (a few ms) after each parallel loop; beside a CPU-bound process a spinning
thread takes the time its partner needs (the default run with 2 threads forced took 174 s
instead of 80 s with sleeping threads, AMD EPYC). But sleeping threads (`OMP_WAIT_POLICY=PASSIVE`)
cost a wake-up at every parallel loop, and on a virtual machine whose idle vCPUs halt, that goes
through the host: on the Intel Xeon VM a 0.3 ms parallel `torch.sin` took longer on two sleeping
threads than on one (1.1-1.4x), and 0.55-0.6x with short spins. So the command-line entry points
bound the spin instead (`bounded_waiting`: GOMP_SPINCOUNT=100000, a fraction of a millisecond),
unless the user chose a policy or a spin count. The default run there, idle, 2 threads: 29.3 /
30.2 s spinning, 36.1 / 36.4 s sleeping, 44.8 / 45.1 s on one thread.

A spin is only safe while no other process wants our cores: with 2 threads forced beside a
CPU-bound process the same run took 233 s spinning and 46 s sleeping. A neighbour present at the
start gets one thread from `auto_threads`, which never waits (46.2 s); for one that arrives later,
`Watch` re-counts the free cores after every step and drops to the cores left (a neighbour
arriving 7 s into the run: 40.4 s, 2 -> 1 threads after step 27).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

PROBE_S = 0.2
log = logging.getLogger("kanpde")


SPIN_COUNT = 100_000  # libgomp spin iterations before an idle thread sleeps (its default: 300,000)


def bounded_waiting() -> None:
    """GOMP_SPINCOUNT=SPIN_COUNT unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is already set: idle
    OpenMP threads spin briefly, then sleep (module docstring).

    libgomp reads it once, when it is loaded (with torch), so this must run before torch is
    imported; later it has no effect.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)


def wait_policy() -> str:
    """How this process's OpenMP threads wait, from the environment libgomp read."""
    policy, spins = os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT")
    if spins is not None:  # libgomp: a spin count overrides the policy's
        return f"GOMP_SPINCOUNT={spins}"
    return f"OMP_WAIT_POLICY={policy}" if policy else "libgomp default"


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity; all of os.cpu_count() where unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _busy_ticks(cpus: list[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks summed over `cpus`, from /proc/stat; None where unreadable."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted, busy, total = {f"cpu{c}" for c in cpus}, 0, 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


def free_cores(probe_s: float = PROBE_S) -> float | None:
    """Cores of `allowed_cpus()` that other processes left idle over the next `probe_s` seconds
    (this process's own CPU time in that window does not count as busy); None where /proc/stat
    cannot be read (not Linux)."""
    cpus = allowed_cpus()
    before, own = _busy_ticks(cpus), time.process_time()
    if before is None:
        return None
    time.sleep(probe_s)
    after, own = _busy_ticks(cpus), time.process_time() - own
    return _free_between(before, after, own, probe_s, len(cpus))


def _free_between(before: tuple[int, int] | None, after: tuple[int, int] | None, own_s: float, seconds: float,
                  n_cpus: int) -> float | None:
    """Cores of `n_cpus` left idle between two (busy, total) tick readings `seconds` apart, this
    process's `own_s` CPU seconds in between not counted as busy; None where unreadable."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])  # busy fraction of the CPUs
    busy = max(0.0, share * n_cpus - own_s / seconds)
    return max(0.0, n_cpus - busy)


def _threads_for(free: float, limit: int) -> int:
    """`free` cores rounded to the nearest whole core, in 1..limit."""
    return max(1, min(limit, int(free + 0.5)))


def auto_threads(probe_s: float = PROBE_S) -> int:
    """Threads for a run: the free cores rounded to the nearest whole core, at least 1 (all
    allowed CPUs where they cannot be counted)."""
    free = free_cores(probe_s)
    n = len(allowed_cpus())
    return n if free is None else _threads_for(free, n)


class Watch:
    """Keeps a run's automatic thread count to the cores other processes leave free, as they
    come and go: a neighbour that starts mid-run would otherwise share a core with one of our
    threads, and every parallel loop would wait for that thread (beside a spinning wait, 5x).

    `check(step)` after each optimiser step: once at least `window_s` has passed since the last
    reading it counts the free cores over that window, as `free_cores` does but from the
    readings alone (no sleep; /proc/stat and this process's CPU time), rounds them to a thread
    count in 1..`limit`, and sets torch's to it when two windows in a row give the same count (a
    blip of steal time or a short-lived process changes nothing). Each change is logged and kept
    in `changes`.
    """

    def __init__(self, limit: int, window_s: float = 1.0):
        self.limit, self.window_s = limit, window_s
        self.cpus = allowed_cpus()
        self.changes: list[dict] = []
        self._proposed: int | None = None
        self._mark = self._reading()

    def _reading(self) -> tuple[tuple[int, int] | None, float, float]:
        return _busy_ticks(self.cpus), time.process_time(), time.monotonic()

    def check(self, step: int) -> None:
        ticks, own, now = self._reading()
        (ticks0, own0, then) = self._mark
        if now - then < self.window_s:
            return
        self._mark = (ticks, own, now)
        free = _free_between(ticks0, ticks, own - own0, now - then, len(self.cpus))
        if free is None:
            return
        n = _threads_for(free, self.limit)
        import torch  # here, not above: this module is imported before torch (bounded_waiting)

        proposed, self._proposed = self._proposed, n
        if n != torch.get_num_threads() and n == proposed:  # two windows in a row agree
            log.info("threads %d -> %d after step %d (%.1f cores free)", torch.get_num_threads(), n, step, free)
            torch.set_num_threads(n)
            self.changes.append({"step": step, "threads": n, "free_cores": round(free, 2)})
