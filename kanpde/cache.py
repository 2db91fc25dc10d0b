"""Cache files that cannot be corrupted or mistaken: a per-file lock and an atomic write.

Every kanpde cache (the compiled kernel, chain data, reference solutions) goes through
`load_or_make`: a file at the cache path is used only if its `load` accepts it (complete, made for
the same settings), else it is made again. Making it happens under an inter-process lock on
`.<name>.lock` beside the file, so a second process asking for the same file waits for the first
and then reads its result instead of computing it twice; the file is written to a temporary file in
the same folder and renamed into place (`os.replace`, atomic on one file system), so a killed
writer leaves no file or the old one, never half a file. The lock is `filelock.FileLock`
(`flock`), released by the OS if its holder dies; on NFS it needs working NFS locks (Linux
emulates `flock` with NFS byte-range locks). Lock files are left in place on purpose: deleting one
while another process waits on it would let a third take a fresh lock beside it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import filelock

log = logging.getLogger(__name__)
T = TypeVar("T")


def lock_path(path: str | Path) -> Path:
    """The lock file that guards making `path`: the hidden `.<name>.lock` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold the inter-process lock for making `path` (creating its folder); waits, logging once,
    while another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(lock_path(path)))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.info("waiting for another process to finish %s", path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def write_atomic(path: str | Path, write: Callable[[Path], T]) -> T:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it onto `path`.

    Args:
        path: the destination; its folder must exist.
        write: fills the (existing, empty) file it is given; its result is returned. If it raises,
            the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        result = write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return result


_MISSING = object()


def _try_load(path: Path, load: Callable[[Path], T], what: str, warn: bool):
    """load(path), or _MISSING if there is no file or `load` rejects it (logged if `warn`)."""
    if not path.exists():
        return _MISSING
    try:
        return load(path)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, it is not trusted
        if warn:
            log.warning("%s %s is invalid (%s: %s); rebuilding it", what, path, type(exc).__name__, exc)
        return _MISSING


def load_or_make(path: str | Path, load: Callable[[Path], T], make: Callable[[Path], T],
                 what: str = "cache file") -> tuple[T, bool]:
    """The cached value at `path`, made (once across processes) if missing or invalid.

    Args:
        path: the cache file.
        load: reads a file and returns its value; raises (any exception) if the file is incomplete,
            foreign or made for other settings.
        make: fills the temporary file it is given and returns the value, which is returned as is
            (it should check what it wrote as `load` would, where that is cheap).
        what: how the warning about an invalid file names it, e.g. "reference cache file".

    Returns:
        (value, made): made is True if this call made the file.
    """
    path = Path(path)
    existed = path.exists()
    value = _try_load(path, load, what, warn=True)
    if value is not _MISSING:
        return value, False
    with locked(path):
        # Another process may have made it while this one waited; an invalid file seen above was
        # reported already.
        value = _try_load(path, load, what, warn=not existed)
        if value is not _MISSING:
            return value, False
        return write_atomic(path, make), True
