"""The working grid: the FSL MNI152 1 mm grid on which the network runs.

Geometry (SimpleITK/LPS conventions): size 182 x 218 x 182 voxels (i, j, k), spacing 1 mm,
direction diag(1, -1, 1) in LPS (i.e. LAS voxel order, as FSL writes it), origin
(-90, 126, -72) mm LPS = RAS (90, -126, -72). Voxel (i, j, k) lies at MNI RAS
(90 - i, j - 126, k - 72) mm. Numpy arrays taken from these images with
``sitk.GetArrayFromImage`` are indexed [k, j, i] (KJI) and have shape (182, 218, 182).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

WORKING_SIZE: tuple[int, int, int] = (182, 218, 182)  # (i, j, k)
WORKING_SPACING: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm
WORKING_ORIGIN_LPS: tuple[float, float, float] = (-90.0, 126.0, -72.0)  # mm
WORKING_DIRECTION_LPS: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
WORKING_SHAPE_KJI: tuple[int, int, int] = WORKING_SIZE[::-1]


def working_reference(pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """An all-zero image on the working grid, to use as a resampling reference."""
    image = sitk.Image(list(WORKING_SIZE), pixel_type)
    image.SetSpacing(WORKING_SPACING)
    image.SetOrigin(WORKING_ORIGIN_LPS)
    image.SetDirection(WORKING_DIRECTION_LPS)
    return image


def array_to_working_image(array: np.ndarray) -> sitk.Image:
    """Wrap a KJI array of shape WORKING_SHAPE_KJI as an image on the working grid."""
    if tuple(array.shape) != WORKING_SHAPE_KJI:
        raise ValueError(f"array shape {array.shape} is not the working grid {WORKING_SHAPE_KJI}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(WORKING_SPACING)
    image.SetOrigin(WORKING_ORIGIN_LPS)
    image.SetDirection(WORKING_DIRECTION_LPS)
    return image


def geometry_mismatch(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3,
                      tol_dir: float = 1e-4) -> str | None:
    """Why two images do not share one voxel grid (size, spacing, origin in LPS mm,
    direction), or None when they do (within ``tol_mm`` mm and ``tol_dir``)."""
    def fmt(values) -> str:
        return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

    if a.GetDimension() != b.GetDimension():
        return f"dimension {a.GetDimension()} vs {b.GetDimension()}"
    if tuple(a.GetSize()) != tuple(b.GetSize()):
        return f"size {tuple(a.GetSize())} vs {tuple(b.GetSize())} voxels"
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol_mm):
        return f"spacing {fmt(a.GetSpacing())} vs {fmt(b.GetSpacing())} mm"
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm):
        return f"origin {fmt(a.GetOrigin())} vs {fmt(b.GetOrigin())} mm (LPS)"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=tol_dir):
        return f"direction {fmt(a.GetDirection())} vs {fmt(b.GetDirection())}"
    return None


def same_grid(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3) -> bool:
    """True when ``a`` and ``b`` share size, spacing, origin and direction."""
    return geometry_mismatch(a, b, tol_mm) is None


def is_on_working_grid(image: sitk.Image, tol_mm: float = 1e-3) -> bool:
    """True when ``image`` has exactly the working grid's size, spacing, origin and direction."""
    return image.GetDimension() == 3 and same_grid(image, working_reference(), tol_mm)


def mni_ras_coordinates() -> np.ndarray:
    """MNI RAS coordinates (mm) of every working-grid voxel, shape (3, K, J, I): x, y, z."""
    k, j, i = np.meshgrid(
        *(np.arange(n, dtype=np.float32) for n in WORKING_SHAPE_KJI), indexing="ij"
    )
    x = WORKING_ORIGIN_LPS[0] * -1.0 - i  # RAS x = -(LPS x); LPS x = -90 + i
    y = j - WORKING_ORIGIN_LPS[1]  # RAS y = -(LPS y); LPS y = 126 - j
    z = WORKING_ORIGIN_LPS[2] + k
    return np.stack([x, y, z]).astype(np.float32)


def isotropic_grid_like(image: sitk.Image, spacing_mm: float, min_size: int = 4) -> sitk.Image:
    """An empty float32 image with isotropic ``spacing_mm`` voxels over ``image``'s field of
    view, in ``image``'s direction; the field of view stays centred (the first voxel centre
    moves by half the change of voxel size)."""
    spacing = np.array(image.GetSpacing())
    extent = np.array(image.GetSize()) * spacing
    size = [max(min_size, int(np.ceil(e / spacing_mm))) for e in extent]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing([float(spacing_mm)] * 3)
    grid.SetDirection(image.GetDirection())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    grid.SetOrigin(tuple(float(o) for o in np.array(image.GetOrigin())
                         + direction @ ((spacing_mm - spacing) / 2)))
    return grid
