"""MNI template and tissue priors on the working grid.

Source: the ICBM 2009a nonlinear symmetric template (T1, GM and WM probability maps,
brain mask) that nilearn ships inside its wheel, so nothing is downloaded and no
third-party image is committed to this project. The CSF prior is derived as
``clip(brain_mask - GM - WM, 0, 1)``. All maps are resampled (linear, identity transform
in world coordinates) from the template's own 197 x 233 x 189 grid to the working grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .grid import working_reference

TEMPLATE_NAME = "ICBM 2009a nonlinear symmetric (nilearn)"


@dataclass(frozen=True)
class Template:
    """Template maps on the working grid, each a float32 SimpleITK image in [0, 1]
    (``brain_mask`` is uint8 0/1). ``t1`` is skull-stripped (zero outside the mask)."""

    t1: sitk.Image
    gm: sitk.Image
    wm: sitk.Image
    csf: sitk.Image
    brain_mask: sitk.Image


def nifti_to_sitk(img: nib.Nifti1Image, dtype: type = np.float32) -> sitk.Image:
    """Convert a nibabel image (RAS affine, IJK array) to a SimpleITK image (LPS)."""
    array = np.asarray(img.dataobj, dtype=dtype)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in direction.flatten()))
    image.SetOrigin(tuple(float(o) for o in affine[:3, 3]))
    return image


def _to_working(image: sitk.Image, interpolator: int = sitk.sitkLinear) -> sitk.Image:
    return sitk.Resample(image, working_reference(), sitk.Transform(), interpolator, 0.0,
                         sitk.sitkFloat32)


_MAPS = ("t1", "gm", "wm", "csf", "brain_mask")


@lru_cache(maxsize=1)
def load_template() -> Template:
    """The template and priors on the working grid: cached per process and on disk
    (``allnet.disk_cache``; building them takes about 1.5 s with the nilearn import)."""
    from . import grid
    from .disk_cache import keyed_path, read_arrays, write_arrays
    from .grid import WORKING_SHAPE_KJI

    path = keyed_path("template", __file__, grid.__file__)
    expected = {name: (WORKING_SHAPE_KJI, "uint8" if name == "brain_mask" else "float32") for name in _MAPS}
    arrays = read_arrays(path, expected)
    if arrays is None:
        template = build_template()
        write_arrays(path, {name: sitk.GetArrayFromImage(getattr(template, name)) for name in _MAPS})
        return template
    reference = working_reference()
    images = {}
    for name, array in arrays.items():
        images[name] = sitk.GetImageFromArray(array)
        images[name].CopyInformation(reference)
    return Template(**images)


def build_template() -> Template:
    """The template maps resampled from nilearn's files onto the working grid (no cache)."""
    from nilearn import datasets  # imported lazily: nilearn pulls in a lot at import time

    mask = _to_working(nifti_to_sitk(datasets.load_mni152_brain_mask(resolution=1)),
                       sitk.sitkNearestNeighbor)
    mask = sitk.Cast(mask > 0.5, sitk.sitkUInt8)
    maskf = sitk.Cast(mask, sitk.sitkFloat32)
    t1 = _to_working(nifti_to_sitk(datasets.load_mni152_template(resolution=1))) * maskf
    gm = _to_working(nifti_to_sitk(datasets.load_mni152_gm_template(resolution=1))) * maskf
    wm = _to_working(nifti_to_sitk(datasets.load_mni152_wm_template(resolution=1))) * maskf
    csf = sitk.Clamp(maskf - gm - wm, sitk.sitkFloat32, 0.0, 1.0)
    return Template(t1=t1, gm=gm, wm=wm, csf=csf, brain_mask=mask)
