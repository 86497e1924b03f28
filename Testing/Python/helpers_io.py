"""Synthetic images for the reader and validation tests (small, anisotropic, oblique)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def oblique_direction(angle_deg: float = 20.0) -> tuple[float, ...]:
    """A rotation about an oblique axis, flattened row-major (LPS direction cosines)."""
    transform = sitk.VersorTransform((0.3, 0.5, 0.81), np.deg2rad(angle_deg))
    return tuple(transform.GetMatrix())


def phantom(size=(40, 36, 24), spacing=(0.8, 0.9, 2.5), direction=None,
            origin=(-12.0, 30.5, 7.25), dtype=np.int16) -> sitk.Image:
    """A smooth ellipsoidal blob with internal structure; integer voxels as from a scanner."""
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in size[::-1]), indexing="ij")
    r2 = i**2 + (j / 0.9) ** 2 + (k / 0.8) ** 2
    array = 800 * np.exp(-2 * r2) + 200 * (i > 0.2) * (r2 < 0.6) + 50 * np.sin(6 * j)
    image = sitk.GetImageFromArray(np.clip(array, 0, None).astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction if direction is not None else oblique_direction())
    return image


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str,
                       description: str = "phantom") -> list[Path]:
    """Write a 3D int16 image as one DICOM file per slice with the geometry tags GDCM reads."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    date, clock = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    common = {
        "0008|0031": clock, "0008|0021": date, "0008|0060": "MR",
        "0008|103e": description, "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
        "0020|000e": series_uid,
        "0020|0037": "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        "0028|0030": "\\".join(f"{v:.6f}" for v in image.GetSpacing()[1::-1]),
        "0018|0050": f"{image.GetSpacing()[2]:.6f}",
    }
    paths = []
    for z in range(image.GetDepth()):
        slice_ = image[:, :, z]
        for tag, value in common.items():
            slice_.SetMetaData(tag, value)
        slice_.SetMetaData("0008|0018", f"{series_uid}.{z + 1}")
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        slice_.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
        slice_.SetMetaData("0020|0013", str(z + 1))
        path = folder / f"{series_uid.rsplit('.', 1)[-1]}_{z:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_)
        paths.append(path)
    return paths
