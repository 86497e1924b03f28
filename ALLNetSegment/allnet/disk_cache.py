"""Arrays derived from the template, kept between processes in the user cache folder.

Building the template maps on the working grid, their smoothed tissue priors and the
template regions takes seconds in every run; each is stored once under
``$XDG_CACHE_HOME/allnet`` (or ``~/.cache/allnet``) in a file whose name carries a key of
the code that builds it and the template package's version, so a change of either never
reads stale arrays. Arrays are stored exactly (uncompressed ``.npz``), so a run gives the
same result bit for bit with or without the cache. A missing, unreadable or unexpected
file is rebuilt; a folder that cannot be written only costs the rebuild next time. Writing
a file removes the files of the same name under other keys (earlier versions of the code), so
upgrades do not pile up copies of about 90 MB each.
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path

import numpy as np

KEY_LENGTH = 16  # hex digits of the key in a cache file's name


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
    return cache_dir() / f"{name}_{digest.hexdigest()[:KEY_LENGTH]}{suffix}"


def remove_other_keys(path: Path) -> None:
    """Delete the files next to ``path`` (a ``keyed_path``) that share its name and suffix under
    another key; errors are ignored (another process may be removing them too)."""
    match = re.fullmatch(rf"(.+)_[0-9a-f]{{{KEY_LENGTH}}}(\..+)", path.name)
    if match is None:
        return
    pattern = re.compile(rf"{re.escape(match[1])}_[0-9a-f]{{{KEY_LENGTH}}}{re.escape(match[2])}")
    try:
        siblings = [p for p in path.parent.iterdir() if p.name != path.name and pattern.fullmatch(p.name)]
    except OSError:
        return
    for sibling in siblings:
        try:
            sibling.unlink()
        except OSError:
            pass


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
        return
    remove_other_keys(path)
