"""Reading validated input images and writing outputs atomically.

Images are SimpleITK images with LPS physical geometry (mm). Supported inputs: NIfTI
(.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and DICOM series (a folder).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from . import validation
from .atomic import atomic_file
from .errors import InputError

log = logging.getLogger(__name__)

ROLES = {"t1": "T1W", "t2": "T2W", "flair": "FLAIR", "mask": "mask"}
# Formats written as one file, so a rename publishes header and data together.
SINGLE_FILE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")


def _reason(exc: Exception) -> str:
    """The informative part of an ITK exception (its last non-empty line, shortened)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    if text.startswith("itk::ERROR"):
        text = text.split(":", 2)[-1].strip()
    return text[:200]


def _series_reader(folder: Path) -> tuple[sitk.ImageReaderBase, str]:
    """A reader for the largest DICOM series in ``folder`` and the first file of that series."""
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise InputError(folder, f"folder cannot be scanned for DICOM files ({_reason(exc)})")
    if not series_ids:
        raise InputError(folder, "folder holds no DICOM series (for NIfTI/NRRD/MHA give the "
                                 "file itself, not its folder)")
    files = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)
             for sid in series_ids}
    chosen = max(series_ids, key=lambda sid: (len(files[sid]), sid))
    if len(series_ids) > 1:
        counts = ", ".join(f"{sid} ({len(files[sid])} files)" for sid in series_ids)
        msg = (f"{folder}: holds {len(series_ids)} DICOM series: {counts}; reading the largest, "
               f"{chosen}")
        log.warning(msg)
        warnings.warn(msg, stacklevel=3)
    names = list(files[chosen])
    if len(names) == 1:  # a single (e.g. enhanced multi-frame) file
        reader: sitk.ImageReaderBase = sitk.ImageFileReader()
        reader.SetFileName(names[0])
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(names)
    return reader, names[0]


def _check_nifti_data(p: Path) -> None:
    """Verify the voxel data of a NIfTI file with nibabel.

    ITK's NIfTI reader zero-fills a truncated file and turns NaN voxels into 0 without an
    error, so the on-disk data is checked separately (one extra decompression).
    """
    try:
        raw = np.asanyarray(nib.load(str(p)).dataobj.get_unscaled())
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(p, f"file is corrupt or truncated: {str(exc).splitlines()[0][:200]}")
    validation.check_finite(p, raw)


def _read_validated(p: Path) -> sitk.Image:
    if p.is_dir():
        reader, first = _series_reader(p)
        info = sitk.ImageFileReader()
        info.SetFileName(first)
        n_files = len(reader.GetFileNames()) if isinstance(reader, sitk.ImageSeriesReader) else 1
    else:
        reader = info = sitk.ImageFileReader()
        info.SetFileName(str(p))
        n_files = 1
    try:
        info.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(p, f"file cannot be read as an image (supported: NIfTI, NRRD, "
                            f"MHA/MHD, DICOM folder): {_reason(exc)}")
    size = list(info.GetSize())
    if n_files > 1:  # a series of 2D slices stacks to 3D
        size = size[:2] + [n_files] if len(size) == 2 or size[2] == 1 else size
    validation.check_dimension(p, size)
    validation.check_scalar(p, info.GetNumberOfComponents(),
                            sitk.GetPixelIDValueAsString(info.GetPixelID()))
    validation.check_memory(p, size)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(p, f"file is corrupt or truncated: {_reason(exc)}")
    if p.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_data(p)
    if image.GetDimension() == 4:  # 4D with one time point (checked above)
        image = sitk.Extract(image, list(image.GetSize()[:3]) + [0], [0, 0, 0, 0])
    validation.check_dimension(p, image.GetSize())
    validation.check_scalar(p, image.GetNumberOfComponentsPerPixel(),
                            image.GetPixelIDTypeAsString())
    return image


def read_stored(path: str | Path, what: str) -> sitk.Image:
    """Read a 3D scalar image as stored (any pixel type, constant allowed): the same
    reading and checks as :func:`read_image` (missing, unreadable, 2D, 4D/vector, NaN/inf,
    memory guard), with ``what`` naming the image in messages. Used for masks and maps."""
    try:
        p = validation.check_exists(path)
        image = _read_validated(p)
        validation.check_finite(p, sitk.GetArrayViewFromImage(image))
    except InputError as exc:
        raise InputError(exc.path, f"{what} {exc.problem}") from None
    return image


def read_image(path: str | Path, role: str) -> sitk.Image:
    """Read and validate one input image.

    ``role`` is 't1' | 't2' | 'flair' | 'mask' (named in error messages). A directory is read
    as a DICOM series (the largest one if it holds several, with a warning). Returns a 3D
    scalar float32 image in its own physical (LPS) geometry; role 'mask' gives uint8 0/1
    (every non-zero voxel is 1). Raises InputError naming the path when the image is
    missing, unreadable, 2D, 4D/vector, has NaN/inf voxels or is constant/all-zero (an
    all-zero mask is allowed), and ResourceError when it is over the memory guard.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
    label = ROLES[role]
    try:
        p = validation.check_exists(path)
        image = _read_validated(p)
        view = sitk.GetArrayViewFromImage(image)
        validation.check_finite(p, view)
        if role != "mask":
            validation.check_not_constant(p, view)
    except InputError as exc:
        raise InputError(exc.path, f"{label} {exc.problem}") from None
    if role == "mask":
        return sitk.Cast(sitk.NotEqual(image, 0), sitk.sitkUInt8)
    return sitk.Cast(image, sitk.sitkFloat32)


def _single_file_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SINGLE_FILE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{path}: atomic writing needs a single-file format "
                     f"({', '.join(SINGLE_FILE_SUFFIXES)})")


def write_image_atomic(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` so that readers never see a partial file.

    The image is written to a hidden temporary name in the same folder (same file system)
    and renamed into place with ``os.replace``; on failure the temporary file is removed and
    an existing file at ``path`` is left untouched. Creates the parent folder if needed.
    """
    final = Path(path)
    _single_file_suffix(final)
    with atomic_file(final) as tmp:
        sitk.WriteImage(image, str(tmp), compress)
    return final


def _merge_into(src: Path, dst: Path) -> None:
    """Move every entry of ``src`` into the existing folder ``dst``, replacing same names."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and target.is_dir():
            _merge_into(entry, target)
            continue
        if target.is_dir() and not entry.is_dir():
            shutil.rmtree(target)
        elif entry.is_dir() and target.exists():
            target.unlink()
        os.replace(entry, target)


@contextmanager
def atomic_output_dir(final_dir: str | Path, owned: Iterable[str] = ()) -> Iterator[Path]:
    """Build an output folder in a sibling temporary folder and publish it on success.

    Yields the temporary folder to write into. When the block succeeds the folder is
    renamed to ``final_dir``; if ``final_dir`` already holds files, the new files replace
    same-named ones (each by an atomic rename), entries named in ``owned`` (the names this
    kind of run may write) that this run did not write are removed, so an earlier run's
    outputs never sit beside the new ones, and other files stay. When the block raises,
    the temporary folder is removed and ``final_dir`` is left as it was.
    """
    final = Path(final_dir)
    if final.exists() and not final.is_dir():
        raise InputError(final, "output path exists and is not a folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; publish with the usual permissions
    try:
        yield tmp
        if final.is_dir() and any(final.iterdir()):
            written = {entry.name for entry in tmp.iterdir()}
            _merge_into(tmp, final)
            for name in set(owned) - written:
                stale = final / name
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale)
                elif stale.exists() or stale.is_symlink():
                    stale.unlink()
        else:
            if final.is_dir():
                final.rmdir()
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
