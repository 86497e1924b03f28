"""N4 bias-field correction, fitted on a coarse copy and applied at full resolution."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from ..grid import isotropic_grid_like
# N4 is fitted on an isotropic grid of this spacing (mm): the field is smooth, and the fit
# time grows faster than the voxel count (5 mm: ~10k brain voxels, about 1 s on 2 cores;
# the field differs from a 4 mm fit by at most 3%).
FIT_SPACING_MM = 5.0
ITERATIONS = (50, 40, 30)  # per fitting level (the B-spline control grid doubles each level)
CONVERGENCE = 1e-3


def coarse_grid(image: sitk.Image, spacing_mm: float = FIT_SPACING_MM) -> sitk.Image:
    """An empty isotropic grid with ``image``'s direction covering its field of view."""
    return isotropic_grid_like(image, spacing_mm)


def correct_bias(image: sitk.Image, mask: sitk.Image | None = None, *,
                 iterations: Sequence[int] = ITERATIONS,
                 fit_spacing_mm: float = FIT_SPACING_MM) -> sitk.Image:
    """N4-corrected copy of ``image``.

    Input: a 3D scalar image and optionally a 0/1 mask on the same grid (the brain) that
    restricts the fit; without a mask an Otsu foreground mask is used. The log bias field is
    fitted on a coarse isotropic copy (``fit_spacing_mm``) and evaluated on the full-resolution
    grid (``GetLogBiasFieldAsImage``, physical coordinates), so the output is
    ``image / exp(log_field)``: float32 on the input grid; voxels outside the mask get the
    field's smooth extension. Deterministic (no random sampling).
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    if mask is None:
        mask = sitk.OtsuThreshold(image, 0, 1, 200)
    # log(0) is undefined: fit only on positive voxels of the mask.
    mask = sitk.And(sitk.Cast(mask > 0, sitk.sitkUInt8), sitk.Cast(image > 0, sitk.sitkUInt8))
    grid = coarse_grid(image, fit_spacing_mm)
    small = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0)
    small_mask = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                               sitk.sitkUInt8)
    small_mask = sitk.And(small_mask, sitk.Cast(small > 0, sitk.sitkUInt8))
    if np.count_nonzero(sitk.GetArrayViewFromImage(small_mask)) < 100:
        return image  # too little foreground to fit a field; leave the image as it is
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    n4.SetConvergenceThreshold(CONVERGENCE)
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(image)
    return sitk.Cast(image / sitk.Exp(log_field), sitk.sitkFloat32)
