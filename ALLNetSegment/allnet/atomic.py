"""Atomic file writing: readers never see a partial file, failures leave nothing behind."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the final name as its suffix (``.tmp-<id>-lesions.csv``) so that
    writers choosing a format by extension (SimpleITK, matplotlib) behave the same. On failure
    the temporary file is removed and an existing file at ``path`` is left untouched. The
    parent folder is created if needed; the file gets the usual umask permissions.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{final.name}"
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
