"""A safe HDF5 cache of reference solutions, keyed by their kind and settings.

Files are named ``<kind>-<key>.h5`` with ``key`` the first 16 hex digits of the SHA-256 of the canonical
JSON of ``[kind, settings, FORMAT_VERSION]``. Writes go to a temporary file in the same folder that is
then atomically renamed into place, so a killed writer or two concurrent writers leave either no file
or one complete file; a second process asking for a reference being computed waits for it and reads
the file (``kanpde.cache``). A file that cannot be read, is truncated, or was made for other settings
is logged and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from kanpde.cache import load_or_make, write_atomic
from kanpde.pde.references.base import Reference

FORMAT_VERSION = 1


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"settings: value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def canonical_json(obj) -> str:
    """JSON with sorted keys, no whitespace, exact float reprs; tuples become lists, numpy scalars numbers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable, allow_nan=True)


def cache_key(kind: str, settings: dict) -> str:
    """The 16-hex-digit key of ``(kind, settings, FORMAT_VERSION)``."""
    text = canonical_json([kind, settings, FORMAT_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$KANPDE_CACHE/references`` if ``KANPDE_CACHE`` is set, else ``~/.cache/kanpde/references``."""
    root = os.environ.get("KANPDE_CACHE")
    return Path(root) / "references" if root else Path.home() / ".cache" / "kanpde" / "references"


def cache_path(kind: str, settings: dict, cache_dir: str | Path | None = None) -> Path:
    """Where ``cached`` keeps the reference of ``kind`` made with ``settings``."""
    if not isinstance(kind, str) or not kind or any(c in kind for c in "/\\\0") or kind.startswith("."):
        raise ValueError(f"kind: {kind!r} must be a non-empty file-name-safe string")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{kind}-{cache_key(kind, settings)}.h5"


def _write(f: h5py.File, ref: Reference, attrs: dict) -> None:
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["variables"] = json.dumps(list(ref.variables))
    f.attrs["outputs"] = json.dumps(list(ref.outputs))
    f.attrs["reference_settings"] = canonical_json(ref.settings)
    for k, v in attrs.items():
        f.attrs[k] = v
    f.create_dataset("values", data=ref.values)
    for i, a in enumerate(ref.axes):
        f.create_dataset(f"axis{i}", data=a)


def save(path: str | Path, ref: Reference, *, _attrs: dict | None = None) -> Path:
    """Write ``ref`` to the HDF5 file ``path`` atomically (temporary file + ``os.replace``).

    Args:
        path: destination; its folder is created if missing.
        ref: the reference to store.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: _write_file(tmp, ref, _attrs or {}))
    return path


def _write_file(tmp: Path, ref: Reference, attrs: dict) -> None:
    with h5py.File(tmp, "w") as f:
        _write(f, ref, attrs)


def load(path: str | Path, *, kind: str | None = None, settings: dict | None = None) -> Reference:
    """Read a reference written by ``save`` or ``cached``, checking that it is complete.

    Args:
        path: the HDF5 file.
        kind, settings: if given, the file's stored ``kind`` / ``settings`` attributes must equal these.

    Returns:
        The stored ``Reference``.

    Raises:
        ValueError: the file is incomplete, of another format version, or made for other settings.
        OSError: the file cannot be opened as HDF5.
    """
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        if attrs.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {attrs.get('format_version')!r}, expected {FORMAT_VERSION}")
        if kind is not None and attrs.get("kind") != kind:
            raise ValueError(f"{path}: stored kind {attrs.get('kind')!r} is not {kind!r}")
        if settings is not None and attrs.get("settings") != canonical_json(settings):
            raise ValueError(f"{path}: stored settings {attrs.get('settings')!r} differ from the requested ones")
        variables = tuple(json.loads(attrs["variables"]))
        outputs = tuple(json.loads(attrs["outputs"]))
        axes = []
        for i in range(len(variables)):
            a = f[f"axis{i}"]
            if a.ndim != 1:
                raise ValueError(f"{path}: axis{i} has shape {a.shape}, expected 1-D")
            axes.append(np.asarray(a[...], dtype=np.float64))
        values = f["values"]
        expected = (len(outputs), *(a.size for a in axes))
        if values.shape != expected:
            raise ValueError(f"{path}: values has shape {values.shape}, expected {expected}")
        values = np.asarray(values[...], dtype=np.float64)
        ref_settings = json.loads(attrs["reference_settings"])
    return Reference(variables, tuple(axes), values, outputs, ref_settings)


def cached(kind: str, settings: dict, compute: Callable[[], Reference],
           cache_dir: str | Path | None = None) -> Reference:
    """The reference of ``kind`` made with ``settings``: read from the cache, or computed and stored.

    A cache file that is unreadable, truncated, incomplete or stores another kind or other settings
    is logged with ``logging.warning`` and rebuilt. Concurrent callers compute once: the others wait
    for the file and read it; it is replaced atomically, so exactly one complete file remains.

    Args:
        kind: a short file-name-safe name of the problem, e.g. ``"burgers"``.
        settings: JSON-serialisable dict of everything that determines the result.
        compute: called with no arguments to make the reference on a cache miss.
        cache_dir: folder of the cache; default ``default_cache_dir()``.

    Returns:
        The reference (from the file, or the one ``compute`` returned).
    """
    if not isinstance(settings, dict):
        raise ValueError(f"settings: got {type(settings).__name__}; expected a dict")
    path = cache_path(kind, settings, cache_dir)

    def make(tmp: Path) -> Reference:
        ref = compute()
        if not isinstance(ref, Reference):
            raise ValueError(f"compute: returned {type(ref).__name__}; expected a Reference")
        _write_file(tmp, ref, {"kind": kind, "settings": canonical_json(settings)})
        return ref

    return load_or_make(path, lambda p: load(p, kind=kind, settings=settings), make,
                        what="reference cache file")[0]
