"""Arrays derived from the template, kept between processes in the user cache folder.

Building the template maps on the working grid, their smoothed tissue priors and the
template regions takes seconds in every run; each is stored once under
``$XDG_CACHE_HOME/allnet`` (or ``~/.cache/allnet``) in a file whose name carries a key of
the code that builds it and the template package's version, so a change of either never
reads stale arrays. Arrays are stored exactly (uncompressed ``.npz``), so a run gives the
same result bit for bit with or without the cache. A missing, unreadable or unexpected
file is rebuilt; a folder that cannot be written only costs the rebuild next time.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """The user cache folder of allnet (not created here)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "allnet"


def keyed_path(name: str, *sources: str | Path, suffix: str = ".npz") -> Path:
    """``cache_dir()/<name>_<key><suffix>``; the key hashes the given source files and the
    installed nilearn version (the template's package)."""
    from importlib.metadata import version  # not ``import nilearn``: that takes seconds

    digest = hashlib.sha256(version("nilearn").encode())
    for source in sources:
        digest.update(Path(source).read_bytes())
    return cache_dir() / f"{name}_{digest.hexdigest()[:16]}{suffix}"


def read_arrays(path: Path, expected: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, np.ndarray] | None:
    """The arrays of ``path`` when each name of ``expected`` is there with its (shape, dtype);
    None otherwise."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in expected}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    for name, (shape, dtype) in expected.items():
        if arrays[name].shape != tuple(shape) or arrays[name].dtype != np.dtype(dtype):
            return None
    return arrays


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` at ``path`` (temporary file, then rename); errors are ignored."""
    from .atomic import atomic_file

    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    except OSError:
        pass
