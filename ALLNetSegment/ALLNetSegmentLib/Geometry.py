"""Geometry between Slicer volume nodes (IJK -> RAS) and SimpleITK images (index -> LPS).

Slicer's world is RAS, ITK's physical space is LPS: RAS = (-L, -P, S). Numpy arrays from
Slicer and SimpleITK are indexed [k, j, i].
"""
from __future__ import annotations

import numpy as np

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def ijkToRasArray(volumeNode) -> np.ndarray:
    """4x4 numpy matrix mapping voxel (i, j, k, 1) to RAS mm for a volume node."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def sitkImageFromArray(arrayKJI: np.ndarray, ijkToRas: np.ndarray):
    """SimpleITK image (LPS geometry) holding ``arrayKJI`` placed by the IJK->RAS matrix."""
    import SimpleITK as sitk

    ijkToLps = LPS_FROM_RAS @ np.asarray(ijkToRas, dtype=float)
    axes = ijkToLps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    direction = axes / spacing
    image = sitk.GetImageFromArray(np.ascontiguousarray(arrayKJI))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in direction.ravel()])
    image.SetOrigin([float(o) for o in ijkToLps[:3, 3]])
    return image


def rasFromLps(point) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in point)
    return -x, -y, z
