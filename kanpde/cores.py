"""How many threads a run should use: the cores that other processes leave free, measured.

Why: torch's intra-op threads and the kernel's OpenMP loops split each operation evenly and wait
for the slowest share. When another process occupies one of two cores, the thread that shares it
gets half a core, every operation waits for it, and a run took 2.6x its idle time, where one thread
on the free core took 1.7x. So a run with `threads: 0` (the default) counts the free cores first
(`free_cores`: the busy time of the CPUs it may run on, from /proc/stat over a fifth of a second,
less its own) and starts that many threads, at least one.

The other half is how idle threads wait. OpenMP's (libgomp's) default is to spin for a while
after each parallel loop; beside a CPU-bound process a spinning thread takes the time its partner
needs, and the default run with 2 threads took 174 s instead of 80 s with sleeping threads
(`OMP_WAIT_POLICY=PASSIVE`; idle: 60 s and 65 s). The command-line entry points set that policy
(`passive_waiting`) unless the user chose one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROBE_S = 0.2


def passive_waiting() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless already set: idle OpenMP threads sleep instead of spinning.

    libgomp reads it once, when it is loaded (with torch), so this must run before torch is
    imported; later it has no effect.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
    if after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])  # busy fraction of the allowed CPUs
    busy = max(0.0, share * len(cpus) - own / probe_s)
    return max(0.0, len(cpus) - busy)


def auto_threads(probe_s: float = PROBE_S) -> int:
    """Threads for a run: the free cores rounded to the nearest whole core, at least 1 (all
    allowed CPUs where they cannot be counted)."""
    free = free_cores(probe_s)
    n = len(allowed_cpus())
    return n if free is None else max(1, min(n, int(free + 0.5)))
