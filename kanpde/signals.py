"""Stop requests: Ctrl-C (SIGINT) or a scheduler's SIGTERM or SIGUSR2 (SLURM's warning before
a job's time limit, as hydra-submitit-launcher asks for it) ends training at the next step.

Inside `stop_requests()`, the first such signal only sets a flag that the training loop
reads between optimiser steps, so the run saves a consistent checkpoint and records
`status: interrupted`; a second SIGINT interrupts at once (KeyboardInterrupt). Outside the main
thread (where Python cannot install handlers) the block does nothing and the flag stays down.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class StopFlag:
    """Whether a stop was requested, and by which signal."""

    def __init__(self):
        self.requested = False
        self.signal: str | None = None


@contextmanager
def stop_requests() -> Iterator[StopFlag]:
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested, flag.signal = True, signal.Signals(signum).name
        log.warning("%s: stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)",
                    flag.signal)

    caught = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR2] if hasattr(signal, "SIGUSR2") else [])
    previous = {s: signal.signal(s, handler) for s in caught}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
