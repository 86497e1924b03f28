"""Preprocessed training cases cached on disk (one ``.npz`` per case).

Each case goes once through exactly the code that inference uses:
``allnet.io.read_image`` -> ``allnet.preprocessing.pipeline.preprocess(already_in_mni=True)``
-> ``allnet.anatomy.compute_anatomy``. The result is stored on the working grid (KJI):

- ``images``   float16 (3, K, J, I) in ``MODALITIES`` order (flair, t1, t2); a missing
  modality is all zeros and absent from ``present``
- ``anatomy``  float16 (6, K, J, I) AnaConv channels
- ``mask``     uint8 reference lesion mask (> 0.5 of the file's values)
- ``brain``    uint8 brain mask; ``tissue`` uint8 (0 bg, 1 CSF, 2 GM, 3 WM)

The file name holds the case id and a key hashing the preprocessing version (the source
of the core modules involved and the input files' sizes and times), so a change of
either makes a fresh entry instead of reusing a stale one.
"""
from __future__ import annotations

import hashlib
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import allnet
from allnet.atomic import atomic_file
from allnet.errors import InputError
from allnet.plan import NORMALISATION_ROBUST_ZSCORE
from allnet.preprocessing.noise import model_inputs

from .data import Case

MODALITIES: tuple[str, ...] = ("flair", "t1", "t2")
_CORE_MODULES = ("io.py", "validation.py", "preprocessing", "anatomy.py", "tissue.py",
                 "templates.py", "grid.py")
# applied after the cache (pair: longitudinal only; noise: from the model plan at load time)
_NOT_CACHED = {"preprocessing/pair.py", "preprocessing/noise.py"}
CACHE_FORMAT = 1


@dataclass
class CachedCase:
    """One preprocessed case in memory (arrays as stored, see module docstring)."""

    case_id: str
    subject_id: str
    images: np.ndarray
    anatomy: np.ndarray
    mask: np.ndarray
    brain: np.ndarray
    tissue: np.ndarray
    present: tuple[str, ...]
    # what ``images`` hold: the cache stores the robust z-score (``allnet.plan`` names)
    normalisation: str = NORMALISATION_ROBUST_ZSCORE
    noise_target: float = 0.0  # and no noise harmonisation

    def images_float32(self) -> np.ndarray:
        return self.images.astype(np.float32)

    def anatomy_float32(self) -> np.ndarray:
        return self.anatomy.astype(np.float32)


def with_normalisation(case: CachedCase, normalisation: str, noise_target: float = 0.0) -> CachedCase:
    """``case`` with its images as a model of normalisation ``normalisation`` and noise target
    ``noise_target`` takes them (from the stored robust z-score and the case's tissue labels,
    through ``allnet.preprocessing.noise.model_inputs`` as ``allnet segment`` applies it);
    the same case when it already is."""
    if normalisation == case.normalisation and noise_target == case.noise_target:
        return case
    if case.normalisation != NORMALISATION_ROBUST_ZSCORE or case.noise_target != 0:
        raise ValueError(f"{case.case_id}: cannot convert {case.normalisation!r} images to {normalisation!r}")
    images = {name: case.images[i].astype(np.float32) for i, name in enumerate(MODALITIES)
              if name in case.present}
    out, _ = model_inputs(images, case.brain, case.tissue, normalisation, noise_target)
    stacked = np.zeros_like(case.images)
    for i, name in enumerate(MODALITIES):
        if name in out:
            stacked[i] = out[name].astype(case.images.dtype)
    return replace(case, images=stacked, normalisation=normalisation, noise_target=noise_target)


def hashed_core_files() -> list[Path]:
    """The core source files whose code produces cached tensors (``_CORE_MODULES``, minus the
    longitudinal pair preprocessing, which no cached tensor goes through)."""
    root = Path(allnet.__file__).resolve().parent
    out = []
    for name in _CORE_MODULES:
        path = root / name
        for f in (sorted(path.rglob("*.py")) if path.is_dir() else [path]):
            if f.is_file() and f.relative_to(root).as_posix() not in _NOT_CACHED:
                out.append(f)
    return out


def preprocessing_version() -> str:
    """Short hash of the core code that produces cached tensors (changes invalidate)."""
    root = Path(allnet.__file__).resolve().parent
    digest = hashlib.sha1(f"format={CACHE_FORMAT};allnet={getattr(allnet, '__version__', '')}".encode())
    for f in hashed_core_files():
        digest.update(f.relative_to(root).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def cache_key(case: Case, version: str | None = None) -> str:
    """Key of one case: preprocessing version + the input files (path, size, mtime)."""
    digest = hashlib.sha1((version or preprocessing_version()).encode())
    for role, path in sorted(case.paths().items()):
        stat = path.stat()
        digest.update(f"{role}={path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cache_path(case: Case, cache_dir: str | Path, version: str | None = None) -> Path:
    return Path(cache_dir) / f"{case.case_id}-{cache_key(case, version)}.npz"


def _read(path: Path, role: str) -> sitk.Image:
    from allnet.io import read_image

    return read_image(path, role)


def preprocess_case(case: Case) -> tuple[CachedCase, dict[str, float]]:
    """Run the core preprocessing and anatomy on one case; returns it and stage times (s)."""
    from allnet.anatomy import compute_anatomy
    from allnet.grid import is_on_working_grid
    from allnet.preprocessing.pipeline import preprocess

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    t1 = _read(case.t1, "t1")
    flair = _read(case.flair, "flair")
    t2 = _read(case.t2, "t2") if case.t2 is not None else None
    mask_img = _read(case.mask, "mask")
    if not is_on_working_grid(mask_img):
        raise InputError(case.mask, "lesion mask is not on the working grid (MNI152 1 mm, 182x218x182)")
    times["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    paths = {k: str(v) for k, v in case.paths().items() if k != "mask"}
    pre = preprocess(t1, flair, t2, already_in_mni=True, paths=paths)
    times["preprocess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    anatomy = compute_anatomy(pre.images["t1"], pre.brain_mask)
    times["anatomy"] = time.perf_counter() - t0
    shape = pre.brain_mask.shape
    images = np.zeros((len(MODALITIES), *shape), dtype=np.float16)
    for index, name in enumerate(MODALITIES):
        if name in pre.images:
            images[index] = pre.images[name].astype(np.float16)
    mask = (sitk.GetArrayFromImage(mask_img) > 0.5).astype(np.uint8)
    cached = CachedCase(case.case_id, case.subject_id, images,
                        anatomy.channels.astype(np.float16), mask,
                        (pre.brain_mask > 0).astype(np.uint8), anatomy.tissue.astype(np.uint8),
                        tuple(m for m in MODALITIES if m in pre.images))
    return cached, times


def save_cached(cached: CachedCase, path: Path) -> None:
    """Write atomically (temporary file in the same folder, then rename)."""
    with atomic_file(path) as tmp:  # its name ends in .npz, so np.savez adds no suffix
        np.savez(tmp, images=cached.images, anatomy=cached.anatomy, mask=cached.mask,
                 brain=cached.brain, tissue=cached.tissue,
                 present=np.array(cached.present), case_id=np.array(cached.case_id),
                 subject_id=np.array(cached.subject_id))


def load_cached(path: str | Path) -> CachedCase:
    """Read one cache file written by :func:`save_cached`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return CachedCase(str(z["case_id"]), str(z["subject_id"]), z["images"], z["anatomy"],
                              z["mask"], z["brain"], z["tissue"],
                              tuple(str(m) for m in z["present"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"unreadable training cache file ({type(exc).__name__}: corrupt, or not "
                               "written by allnet-train prepare); delete it and run allnet-train "
                               "prepare, which makes it again") from exc


def _readable(path: Path) -> bool:
    """A cache file whose archive and every array's checksum are intact."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def prepare_cases(cases: list[Case], cache_dir: str | Path, *, log=print) -> list[Path]:
    """Make sure every case is cached; returns the cache files in case order."""
    version = preprocessing_version()
    out = []
    for case in cases:
        path = cache_path(case, cache_dir, version)
        if path.is_file() and not _readable(path):
            log(f"{path}: corrupt cache file, made again")
            path.unlink()
        if not path.is_file():
            t0 = time.perf_counter()
            cached, times = preprocess_case(case)
            save_cached(cached, path)
            log(f"cached {case.case_id} in {time.perf_counter() - t0:.1f} s "
                f"({', '.join(f'{k} {v:.1f} s' for k, v in times.items())}) -> {path}")
        out.append(path)
    return out
