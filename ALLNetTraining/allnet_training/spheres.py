"""The sphere transform (phi in ALL-Net): one fixed-size ball per lesion.

Each 26-connected component of the reference mask is replaced by a ball of fixed
*physical* diameter (default 10 mm) at the component's centre of mass; balls are
united where they overlap. The sphere head of the network is trained against this map
with the focal loss (LesLoss), which weights every lesion equally whatever its volume.

Arrays are numpy KJI; ``spacing_kji`` is the voxel size in mm along (k, j, i), so on an
anisotropic grid the ball is an ellipsoid in voxel units.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

SPHERE_DIAMETER_MM = 10.0
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def lesion_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of ``mask > 0``: (labels int32 KJI, count)."""
    labels, count = ndimage.label(np.asarray(mask) > 0, structure=CONNECTIVITY_26)
    return labels.astype(np.int32, copy=False), int(count)


def lesion_centres(mask: np.ndarray) -> np.ndarray:
    """Centres of mass (voxel KJI, float) of the 26-connected components, shape (n, 3)."""
    labels, count = lesion_components(mask)
    if count == 0:
        return np.zeros((0, 3), dtype=np.float64)
    centres = ndimage.center_of_mass(np.ones(labels.shape, np.uint8), labels, range(1, count + 1))
    return np.asarray(centres, dtype=np.float64).reshape(count, 3)


def draw_balls(shape: tuple[int, int, int], centres: np.ndarray,
               spacing_kji: tuple[float, float, float] = (1.0, 1.0, 1.0),
               diameter_mm: float = SPHERE_DIAMETER_MM) -> np.ndarray:
    """Union of balls of ``diameter_mm`` (physical) at voxel centres ``centres`` (n, 3):
    uint8 KJI map; a voxel is inside when its centre lies within the radius (inclusive)."""
    out = np.zeros(shape, dtype=np.uint8)
    radius = diameter_mm / 2.0
    spacing = np.asarray(spacing_kji, dtype=np.float64)
    half = np.ceil(radius / spacing).astype(int)
    for centre in np.asarray(centres, dtype=np.float64).reshape(-1, 3):
        lo = np.maximum(np.floor(centre).astype(int) - half, 0)
        hi = np.minimum(np.ceil(centre).astype(int) + half + 1, shape)
        if np.any(hi <= lo):
            continue
        axes = [(np.arange(lo[a], hi[a]) - centre[a]) * spacing[a] for a in range(3)]
        dist2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        region = out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        region |= (dist2 <= radius * radius + 1e-9).astype(np.uint8)
    return out


def sphere_map(mask: np.ndarray, spacing_kji: tuple[float, float, float] = (1.0, 1.0, 1.0),
               diameter_mm: float = SPHERE_DIAMETER_MM) -> np.ndarray:
    """phi(mask): uint8 KJI union of ``diameter_mm`` balls at the lesions' centres of mass."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"sphere_map needs a 3D mask, got shape {mask.shape}")
    return draw_balls(mask.shape, lesion_centres(mask), spacing_kji, diameter_mm)
