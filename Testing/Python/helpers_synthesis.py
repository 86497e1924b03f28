"""Synthetic tissue phantoms and cases shared by several test modules."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CONN26 = np.ones((3, 3, 3), bool)


def ellipsoid_radius(shape: tuple[int, int, int], semi_axes: tuple[float, float, float]
                     ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], list[float]]:
    """Normalised radius of every voxel (KJI) in an ellipsoid centred in ``shape`` with
    ``semi_axes`` (voxels): 1 on its surface. Also returns the index grids and the centre."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    r = np.sqrt(sum(((g - cg) / a) ** 2 for g, cg, a in zip((k, j, i), c, semi_axes)))
    return r, (k, j, i), c


def phantom_maps(size: int = 64) -> dict[str, np.ndarray]:
    """Spherical head phantom (1 mm voxels): CSF ventricle, WM, GM cortex, brain radius 22 mm.

    Tissue boundaries are smooth (partial volume), like template probability maps.
    """
    centre = (size - 1) / 2.0
    k, j, i = np.meshgrid(*(np.arange(size),) * 3, indexing="ij")
    r = np.sqrt((k - centre) ** 2 + (j - centre) ** 2 + (i - centre) ** 2)

    def inside(radius: float) -> np.ndarray:
        return np.clip(radius + 0.5 - r, 0.0, 1.0).astype(np.float32)

    brain = inside(22.0)
    csf = inside(5.0) + (brain - inside(20.0))  # ventricle + subarachnoid CSF
    gm = inside(20.0) - inside(16.0)
    wm = inside(16.0) - inside(5.0)
    return {"gm": gm, "wm": wm, "csf": csf, "brain": (brain > 0.5).astype(np.uint8), "r": r}


def write_mni_case(folder: Path, seed: int, n_lesions: int) -> dict[str, Path]:
    """A skull-stripped synthetic case on the MNI working grid (the ``--preprocessed`` mode)
    with ``n_lesions`` known lesions: T1/T2/FLAIR and truth files in ``folder``."""
    import SimpleITK as sitk

    from allnet.grid import array_to_working_image
    from allnet.synthesis import ellipsoid_lesions, insert_lesions, synthesize_contrasts
    from allnet.templates import load_template

    template = load_template()
    maps = {n: sitk.GetArrayFromImage(getattr(template, n)) for n in ("gm", "wm", "csf", "brain_mask")}
    rng = np.random.default_rng(seed)
    images = synthesize_contrasts(maps["gm"], maps["wm"], maps["csf"], maps["brain_mask"], rng, head=False)
    lesions = ellipsoid_lesions(maps["wm"].shape, maps["wm"], n_lesions, rng, radius_mm=(2.0, 5.0))
    images, truth = insert_lesions(images, lesions, maps["wm"], rng, brain_mask=maps["brain_mask"])
    # skull-stripped as such data sets are: zero outside the brain (the noise is everywhere)
    images = {name: array * (maps["brain_mask"] > 0) for name, array in images.items()}
    paths = {}
    for name, array in images.items():
        paths[name] = folder / f"{name.upper()}.nii.gz"
        sitk.WriteImage(array_to_working_image(array.astype(np.float32)), str(paths[name]))
    paths["truth"] = folder / "truth.nii.gz"
    sitk.WriteImage(array_to_working_image(truth.astype(np.uint8)), str(paths["truth"]))
    return paths
