"""Checks of ``allnet-train``'s command-line values, made before any data is read or any
folder is created.

Numeric ranges are argparse ``type=`` functions, so argparse names the option and exits
with code 2. Paths are checked by functions that raise :class:`allnet.errors.InputError`
naming the path (exit code 2 through ``cli.main``).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from allnet.errors import InputError


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (epochs, steps, batch size, crop size, threads)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (0 switches the feature off)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rate)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (loss weights)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def probability(text: str) -> float:
    """argparse type: a probability or share in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def prior(text: str) -> float:
    """argparse type: an initial foreground probability in [0, 1) (0 = PyTorch's default bias)."""
    value = _number(text, float)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value:g}")
    return value


def output_folder(path: Path) -> None:
    """An output folder that can be created and written (``allnet.outputs`` rules)."""
    from allnet.outputs import check_output_location

    check_output_location(path)


def output_file(path: Path) -> None:
    """An output file path: not an existing folder, under a folder that is (or can be) one."""
    if path.is_dir():
        raise InputError(path, "is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(path, f"cannot be created: {parent} is a file")


def cache_folder(path: Path) -> None:
    """The cache folder: a folder, or a path where one can be made."""
    if path.exists() and not path.is_dir():
        raise InputError(path, "the cache path exists and is not a folder")


def data_folder(path: Path, what: str = "development data folder") -> None:
    """A folder that must exist (``--dev-data``, ``--lesion-masks``, ``--synth-data``)."""
    if not path.is_dir():
        raise InputError(path, f"{what} not found" if not path.exists() else f"{what} is not a folder")


def crossval_folder(path: Path, pattern: str, what: str) -> None:
    """A cross-validation folder holding at least one ``pattern`` match (e.g. fold_*/bundle.pt);
    ``what`` names the command that makes them."""
    if not path.is_dir():
        raise InputError(path, "cross-validation folder not found" if not path.exists()
                               else "is not a folder (a cross-validation folder is expected)")
    if not any(path.glob(pattern)):
        raise InputError(path, f"holds no {pattern}: run {what} first")


def json_object(path: Path) -> dict:
    """A JSON file holding an object (e.g. ``export --meta``); InputError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(content, dict):
        raise InputError(path, f"must hold a JSON object, not a {type(content).__name__}")
    return content
