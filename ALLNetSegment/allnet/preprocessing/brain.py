"""Brain extraction of a T1W image with deepbet (weights ship inside its wheel).

deepbet's network expects a roughly 1 mm T1W volume as a RAS-ordered voxel array (as
``nibabel.as_closest_canonical`` gives). Thick-slice 2D acquisitions are therefore resampled
to 1 mm isotropic voxels first (in the image's own orientation, axes reordered to RAS), the
network runs in memory (no temporary files), and the mask is resampled back to the input
grid.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import SimpleITK as sitk

from ..grid import isotropic_grid_like
DEEPBET_SPACING_MM = 1.0
THRESHOLD = 0.5


@lru_cache(maxsize=2)
def _brain_extractor(device: str):
    """deepbet's two networks (bounding box, mask), loaded once per process and device."""
    import torch
    from deepbet import BrainExtraction

    with warnings.catch_warnings():  # deepbet's TorchScript files use torch.jit.load
        warnings.simplefilter("ignore", DeprecationWarning)
        extractor = BrainExtraction(no_gpu=True)
    if device != "cpu":
        extractor.model.to(torch.device(device))
        extractor.bbox_model.to(torch.device(device))
    return extractor


def to_deepbet_grid(image: sitk.Image, spacing_mm: float = DEEPBET_SPACING_MM) -> sitk.Image:
    """Resample ``image`` (linear) onto an isotropic grid covering the same field of view,
    with its axes reordered/flipped to RAS order (direction close to diag(-1, -1, 1) LPS)."""
    ras = sitk.DICOMOrient(image, "RAS")  # lossless axis permutation/flip
    reference = isotropic_grid_like(ras, spacing_mm, min_size=2)
    return sitk.Resample(ras, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def extract_brain(t1: sitk.Image, *, device: str = "cpu") -> sitk.Image:
    """Brain mask of a T1W image.

    Input: a 3D scalar T1W image (any orientation and spacing, physical LPS geometry, whole
    head). Output: uint8 0/1 mask on the input's own grid (same size, spacing, origin,
    direction). Deterministic for a given input and device (no random state).
    """
    from ..inference import resolve_device  # one device rule for the network and deepbet

    extractor = _brain_extractor(str(resolve_device(device)))
    grid = to_deepbet_grid(sitk.Cast(t1, sitk.sitkFloat32))
    x = np.ascontiguousarray(sitk.GetArrayFromImage(grid).transpose(2, 1, 0))  # KJI -> IJK
    import torch

    try:
        with torch.inference_mode():
            probability = extractor.run_model(x)
        mask = extractor.postprocess(probability > THRESHOLD)  # largest component, no holes
    except (AssertionError, ValueError):
        # deepbet asserts when its bounding-box network finds no head, and fails on an empty
        # mask; both mean "no brain", which the caller's volume check reports.
        mask = np.zeros(x.shape, dtype=bool)
    mask_image = sitk.GetImageFromArray(np.ascontiguousarray(mask.transpose(2, 1, 0))
                                        .astype(np.float32))
    mask_image.CopyInformation(grid)
    back = sitk.Resample(mask_image, t1, sitk.Transform(), sitk.sitkLinear, 0.0,
                         sitk.sitkFloat32)
    return sitk.Cast(back >= 0.5, sitk.sitkUInt8)


def mask_volume_ml(mask: sitk.Image) -> float:
    """Volume of the non-zero voxels of ``mask`` in mL."""
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    return voxels * float(np.prod(mask.GetSpacing())) / 1000.0
