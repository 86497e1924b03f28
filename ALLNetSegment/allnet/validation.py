"""Checks of input images, one function per concern.

Each check raises :class:`allnet.errors.InputError` (path + problem) or
:class:`allnet.errors.ResourceError` with a message that names the file, so the CLI and the
Slicer module can show it as is. Sizes are SimpleITK (i, j, k) voxel counts; arrays are
numpy views in KJI order; volumes are in mL (1 mL = 1000 mm^3).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import psutil

from .errors import InputError, ResourceError

# Hard cap on the voxel count of one input image, whatever the machine (1024^3).
MAX_VOXELS = 1024**3
# Working memory of the pipeline per native input voxel (bytes): the image as float32, the
# N4 log-bias field and corrected copy, resampling buffers and the deepbet 1 mm copy.
# Measured: preprocessing a clinical case with 14 M native voxels (T1W+T2W+FLAIR) peaks at
# 1.6 GiB RSS, i.e. about 45 bytes per voxel on top of the fixed part below.
BYTES_PER_VOXEL = 48
# Fixed working memory independent of the input size (bytes): working-grid volumes and
# the template (the network guards its own memory).
FIXED_WORKING_BYTES = 1024**3

# Plausible adult brain volume after brain extraction (mL).
BRAIN_VOLUME_RANGE_ML = (700.0, 2200.0)


def _digest(path: Path) -> str:
    """SHA-256 of a file, or of a DICOM folder's files in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        with item.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_distinct_files(inputs: Mapping[str, object], hint: str) -> None:
    """InputError naming the input when one file (same path, or identical bytes) is given
    under two roles, e.g. the FLAIR again as the T1W. ``inputs``: role -> path (str/PathLike);
    other values (None, in-memory images) are skipped, as are missing files (the reader names
    them). ``hint`` ends the message (what each role needs)."""
    seen: dict[tuple, str] = {}
    for label, value in inputs.items():
        if not isinstance(value, (str, os.PathLike)):
            continue
        path = Path(value)
        if not path.exists():
            continue
        keys = [("path", os.path.realpath(path))]
        if path.is_file() or path.is_dir():
            keys.append(("content", path.stat().st_size if path.is_file() else -1, _digest(path)))
        for key in keys:
            if key in seen:
                raise InputError(value, f"is given as the {label} and again as the {seen[key]} "
                                        f"({'the same file' if key[0] == 'path' else 'identical content'}); "
                                        f"{hint}")
            seen[key] = label


def check_exists(path: str | Path) -> Path:
    """Raise InputError if ``path`` (a file or a DICOM folder) does not exist."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file or folder not found")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)")
    return p


def check_dimension(path: str | Path, size: Sequence[int]) -> None:
    """Require a 3D volume: ``size`` is the (i, j, k[, t]) voxel count.

    A 2D image, or a 3D image with a dimension of size 1 (a single slice), is rejected; so
    is a 4D series unless its fourth dimension has size 1.
    """
    size = tuple(int(s) for s in size)
    if len(size) < 3:
        raise InputError(path, f"image is 2D (size {size}); a 3D volume is required")
    if len(size) > 4 or (len(size) == 4 and size[3] != 1):
        raise InputError(path, f"image is {len(size)}D (size {size}), e.g. a time series or "
                               "diffusion series; a single 3D volume is required")
    if min(size[:3]) < 2:
        raise InputError(path, f"image is a single slice (size {size[:3]}); a 3D volume "
                               "is required")


def check_scalar(path: str | Path, components: int, pixel_type: str = "") -> None:
    """Reject vector (e.g. RGB, multi-echo) and complex images: one component per voxel."""
    if components != 1:
        raise InputError(path, f"image has {components} components per voxel (e.g. RGB or "
                               "vector data); a scalar (grey-scale) volume is required")
    if "complex" in pixel_type.lower():
        raise InputError(path, f"image has complex voxels ({pixel_type}); a magnitude "
                               "(real-valued) volume is required")


def check_finite(path: str | Path, array: np.ndarray) -> None:
    """Reject NaN or infinite voxel values."""
    if np.issubdtype(array.dtype, np.floating):
        bad = np.count_nonzero(~np.isfinite(array))
        if bad:
            raise InputError(path, f"image contains {bad} NaN or infinite voxel values")


def check_not_constant(path: str | Path, array: np.ndarray) -> None:
    """Reject an all-zero or constant image (e.g. an empty export)."""
    lo, hi = float(np.min(array)), float(np.max(array))
    if lo == hi:
        what = "all zero" if hi == 0 else f"constant (every voxel is {hi:g})"
        raise InputError(path, f"image is {what}; it holds no anatomy")


def estimate_working_memory_bytes(voxels: int) -> int:
    """Estimated peak working memory (bytes) of the pipeline for one native input image."""
    return int(voxels) * BYTES_PER_VOXEL + FIXED_WORKING_BYTES


def check_memory(path: str | Path, size: Sequence[int], available_bytes: int | None = None
                 ) -> None:
    """Memory guard: raise ResourceError if the image is absurdly large for this machine.

    ``size`` is the voxel count per axis. Fails when the voxel count exceeds ``MAX_VOXELS``
    or the estimated working memory exceeds the available memory (psutil).
    """
    voxels = int(np.prod([int(s) for s in size], dtype=np.int64))
    needed = estimate_working_memory_bytes(voxels)
    gb = 1024**3
    if voxels > MAX_VOXELS:
        raise ResourceError(f"{path}: image has {voxels:,} voxels (size {tuple(size)}), more than "
                            f"the limit of {MAX_VOXELS:,}; processing it would need about "
                            f"{needed / gb:.1f} GB of memory")
    if available_bytes is None:
        available_bytes = int(psutil.virtual_memory().available)
    if needed > available_bytes:
        raise ResourceError(f"{path}: processing this image (size {tuple(size)}) needs about "
                            f"{needed / gb:.1f} GB of memory but only "
                            f"{available_bytes / gb:.1f} GB is available")


def check_brain_volume(path: str | Path | None, volume_ml: float,
                       plausible_ml: tuple[float, float] = BRAIN_VOLUME_RANGE_ML) -> None:
    """Raise InputError if a brain-extraction result is outside the plausible adult range.

    Used on the T1W after brain extraction: a phantom, a non-head scan or a failed brain
    extraction gives a volume far outside ``plausible_ml`` (mL).
    """
    lo, hi = plausible_ml
    if not lo <= volume_ml <= hi:
        raise InputError(path, f"does not look like a brain: the extracted brain volume is "
                               f"{volume_ml:.0f} mL, outside the plausible adult range "
                               f"{lo:.0f}-{hi:.0f} mL (wrong image, wrong role, or not a "
                               "head MRI?)")
