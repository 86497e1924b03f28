"""Atomic file writing: readers never see a partial file, failures leave nothing behind."""
from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath


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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def to_jsonable(value: object) -> object:
    """Plain JSON values: numpy scalars and arrays become numbers and lists, paths strings,
    NaN and infinities ``null`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy here
        return to_jsonable(value.tolist())
    return value


def write_json_atomic(path: str | Path, data: object) -> Path:
    """Write ``data`` as indented strict JSON (see :func:`to_jsonable`) atomically."""
    return write_text_atomic(path, json.dumps(to_jsonable(data), indent=2) + "\n")
