"""The synthetic demo case: T1W, T2W and FLAIR with known lesions in native-like geometry.

The project ships no MS data, so ``allnet demo`` segments a generated case: the template
tissue maps (``allnet.templates``) are turned into MR contrasts (``allnet.synthesis``),
ellipsoidal lesions are painted into periventricular and deep white matter, and the head is
moved by a rigid transform away from its MNI position and resampled, like a clinical scan,
to anisotropic, oblique grids (FLAIR and T2W 2D-like with 3 mm slices, T1W near-isotropic),
each with its own field of view. The truth mask is written in the FLAIR geometry.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .grid import working_reference
from .synthesis import add_rician_noise, ellipsoid_lesions, insert_lesions, synthesize_contrasts
from .templates import load_template

T1_FILE, T2_FILE, FLAIR_FILE = "T1W.nii.gz", "T2W.nii.gz", "FLAIR.nii.gz"
TRUTH_FILE = "lesions_truth.nii.gz"
TRANSFORM_FILE = "working_to_native.tfm"
INFO_FILE = "demo_case.json"

# Per modality: voxel spacing (i, j, k) mm, field of view (i, j, k) mm, Rician noise std
# (relative to T1W white matter ~0.8). The slice axis k is the 2D acquisitions' thick axis.
ACQUISITIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    "flair": ((0.9, 0.9, 3.0), (230.0, 230.0, 168.0), 0.025),
    "t1": ((1.0, 1.0, 1.2), (240.0, 240.0, 168.0), 0.02),
    "t2": ((0.8, 0.8, 3.0), (220.0, 240.0, 162.0), 0.025),
}
FILES = {"t1": T1_FILE, "t2": T2_FILE, "flair": FLAIR_FILE}
INTENSITY_SCALE = 1000.0  # stored as int16, T1W white matter ~800, like scanner output
# (number, semi-axis range mm, zone) of the demo's lesions: volumes span ~5 to ~4000 mm3.
LESION_GROUPS = ((2, (7.0, 12.0), "periventricular"), (6, (2.5, 6.0), "periventricular"),
                 (7, (1.8, 5.0), "deep"), (2, (1.0, 1.6), "deep"))
# Lesion contrast (see synthesis.LESION_CONTRAST): the upper part of the range seen in real
# scans, so every demo lesion is visible to the eye.
DEMO_CONTRAST = {"flair": (0.45, 0.9), "t2": (0.35, 0.8), "t1": (-0.45, -0.05)}


@dataclass(frozen=True)
class DemoCase:
    """Paths and known truth of a demo case (volumes in mm3)."""

    t1: Path
    t2: Path
    flair: Path
    truth: Path                       # uint8 0/1 in the FLAIR geometry
    lesion_count: int                 # 26-connected lesions in the truth mask
    truth_volume_mm3: float           # lesion volume of the truth mask (FLAIR geometry)
    lesion_volumes_mm3: tuple[float, ...]  # each painted lesion on the 1 mm working grid
    working_to_native: sitk.Transform  # rigid: working-grid (MNI) LPS points -> native LPS points
    seed: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def _zones(wm: np.ndarray, csf: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Centre candidates (bool KJI): periventricular WM (1.5-6 mm from a ventricle) and deep WM."""
    step = 2  # distances on a 2 mm lattice are ample for choosing lesion centres
    sub = (slice(None, None, step),) * 3
    to_boundary = ndimage.distance_transform_edt(brain[sub] > 0, sampling=step)
    ventricles = (csf[sub] > 0.5) & (to_boundary > 15.0)
    to_ventricle = ndimage.distance_transform_edt(~ventricles, sampling=step)

    def full(a: np.ndarray) -> np.ndarray:
        for axis in range(3):
            a = np.repeat(a, step, axis=axis)
        return a[tuple(slice(0, n) for n in wm.shape)]

    to_boundary, to_ventricle = full(to_boundary), full(to_ventricle)
    return {
        "periventricular": (wm >= 0.7) & (to_ventricle >= 1.5) & (to_ventricle <= 6.0),
        "deep": (wm >= 0.9) & (to_ventricle > 10.0) & (to_boundary > 15.0),
    }


def demo_lesions(wm: np.ndarray, csf: np.ndarray, brain: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Lesion mask (uint8 KJI, working grid) of the demo: periventricular and deep WM ellipsoids."""
    zones = _zones(wm, csf, brain)
    mask = np.zeros(wm.shape, np.uint8)
    for count, radius, zone in LESION_GROUPS:
        mask |= ellipsoid_lesions(wm.shape, wm, count, rng, radius, where=zones[zone], existing=mask)
    return mask


def _random_rigid(rng: np.random.Generator, centre_lps: np.ndarray) -> sitk.VersorRigid3DTransform:
    """Rigid working->native transform: 5-10 degrees about a random axis through the brain
    centre, and a 8-12 mm shift in a random direction."""
    axis = rng.standard_normal(3)
    shift = rng.standard_normal(3)
    transform = sitk.VersorRigid3DTransform()
    transform.SetCenter([float(c) for c in centre_lps])
    transform.SetRotation([float(a) for a in axis / np.linalg.norm(axis)],
                          float(np.deg2rad(rng.uniform(5.0, 10.0))))
    transform.SetTranslation([float(t) for t in shift / np.linalg.norm(shift) * rng.uniform(8.0, 12.0)])
    return transform


def _oblique_direction(rng: np.random.Generator) -> np.ndarray:
    """Direction cosines of an oblique axial acquisition (2-5 degrees off the scanner axes)."""
    axis = rng.standard_normal(3)
    rotation = sitk.VersorTransform([float(a) for a in axis / np.linalg.norm(axis)],
                                    float(np.deg2rad(rng.uniform(2.0, 5.0))))
    return np.array(rotation.GetMatrix()).reshape(3, 3)


def _native_grid(spacing: tuple[float, float, float], fov: tuple[float, float, float],
                 direction: np.ndarray, centre: np.ndarray) -> sitk.Image:
    size = [int(round(f / s)) for f, s in zip(fov, spacing)]
    origin = centre - direction @ (np.array(spacing) * (np.array(size) - 1) / 2.0)
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetDirection([float(d) for d in direction.flatten()])
    grid.SetOrigin([float(o) for o in origin])
    return grid


def resample_to_native(arrays: list[np.ndarray], grid: sitk.Image,
                       native_to_working: sitk.Transform) -> list[np.ndarray]:
    """Resample working-grid KJI arrays onto ``grid`` (linear; float32 KJI each).

    Thick slices average sub-slices of ~1 mm (a box slice profile), so partial volume along
    the slice axis is like a 2D acquisition's rather than a point sample. Several arrays
    are resampled in one pass as the components of a vector image.
    """
    spacing = np.array(grid.GetSpacing())
    n_sub = max(1, int(round(spacing[2])))
    fine = sitk.Image([*grid.GetSize()[:2], grid.GetSize()[2] * n_sub], sitk.sitkUInt8)
    fine.SetSpacing([spacing[0], spacing[1], spacing[2] / n_sub])
    fine.SetDirection(grid.GetDirection())
    slice_axis = np.array(grid.GetDirection()).reshape(3, 3)[:, 2]
    fine.SetOrigin(np.array(grid.GetOrigin()) - slice_axis * (n_sub - 1) * spacing[2] / (2 * n_sub))
    stacked = np.stack([a.astype(np.float32) for a in arrays], axis=-1)
    source = sitk.GetImageFromArray(stacked, isVector=True)
    source.CopyInformation(working_reference())
    values = sitk.GetArrayFromImage(sitk.Resample(source, fine, native_to_working, sitk.sitkLinear,
                                                  0.0, sitk.sitkVectorFloat32))
    size_i, size_j, size_k = grid.GetSize()
    values = values.reshape(size_k, n_sub, size_j, size_i, len(arrays)).mean(axis=1)
    return [np.ascontiguousarray(values[..., c]) for c in range(len(arrays))]


def _as_image(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return image


def _write_series(path: Path, image: np.ndarray, grid: sitk.Image, sigma: float,
                  rng: np.random.Generator) -> None:
    """Add Rician noise (native grid, like an acquisition) and write as int16 NIfTI."""
    noisy = add_rician_noise(image, sigma, rng) * INTENSITY_SCALE
    stored = np.clip(np.rint(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)
    sitk.WriteImage(_as_image(stored, grid), str(path), True, 1)


def make_demo_case(out_dir: str | Path, seed: int = 0) -> DemoCase:
    """Write a synthetic case (T1W/T2W/FLAIR.nii.gz, lesions_truth.nii.gz, the true
    working->native transform and demo_case.json) into ``out_dir``; deterministic per seed.

    Files appear only when complete (written to a temporary folder, then renamed).
    ``DemoCase.timings`` holds the seconds spent per stage.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    template = load_template()
    gm, wm, csf = (sitk.GetArrayFromImage(m) for m in (template.gm, template.wm, template.csf))
    brain = sitk.GetArrayFromImage(template.brain_mask)
    timings["template"] = time.perf_counter() - start
    start = time.perf_counter()
    images = synthesize_contrasts(gm, wm, csf, brain, rng, noise=0.0)
    timings["contrasts"] = time.perf_counter() - start
    start = time.perf_counter()
    lesions = demo_lesions(wm, csf, brain, rng)
    images, lesions = insert_lesions(images, lesions, wm, rng, contrast=DEMO_CONTRAST,
                                     brain_mask=brain)
    labels, _ = ndimage.label(lesions, structure=np.ones((3, 3, 3)))
    painted_volumes = tuple(float(v) for v in np.bincount(labels.ravel())[1:])
    timings["lesions"] = time.perf_counter() - start

    start = time.perf_counter()
    centre = np.array(template.brain_mask.TransformContinuousIndexToPhysicalPoint(
        [float(c) for c in ndimage.center_of_mass(brain)[::-1]]))
    working_to_native = _random_rigid(rng, centre)
    native_to_working = working_to_native.GetInverse()
    head_centre = np.array(working_to_native.TransformPoint([float(c) for c in centre]))
    direction = _oblique_direction(rng)
    grids = {}
    for modality in ("flair", "t1", "t2"):
        spacing, fov, _ = ACQUISITIONS[modality]
        offset = rng.uniform(-5.0, 5.0, 3)  # each series has its own field of view
        grids[modality] = _native_grid(spacing, fov, direction, head_centre + offset)

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=out_dir))
    try:
        flair, truth = resample_to_native([images.pop("flair"), lesions], grids["flair"],
                                          native_to_working)
        _write_series(staging / FLAIR_FILE, flair, grids["flair"], ACQUISITIONS["flair"][2], rng)
        truth_mask = truth >= 0.5  # partial-volume threshold on the FLAIR grid
        for modality in ("t1", "t2"):
            native, = resample_to_native([images.pop(modality)], grids[modality], native_to_working)
            _write_series(staging / FILES[modality], native, grids[modality],
                          ACQUISITIONS[modality][2], rng)
        _, lesion_count = ndimage.label(truth_mask, structure=np.ones((3, 3, 3)))
        truth_volume = float(truth_mask.sum() * np.prod(grids["flair"].GetSpacing()))
        sitk.WriteImage(_as_image(truth_mask.astype(np.uint8), grids["flair"]),
                        str(staging / TRUTH_FILE), True, 1)
        sitk.WriteTransform(working_to_native, str(staging / TRANSFORM_FILE))
        info = {"seed": seed, "lesion_count": int(lesion_count), "truth_volume_mm3": truth_volume,
                "painted_lesion_volumes_mm3": list(painted_volumes),
                "note": "synthetic case: tissue contrasts from the ICBM 2009a template priors"}
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2))
        for name in (*FILES.values(), TRUTH_FILE, TRANSFORM_FILE, INFO_FILE):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    timings["native_resample_write"] = time.perf_counter() - start
    return DemoCase(t1=out_dir / T1_FILE, t2=out_dir / T2_FILE, flair=out_dir / FLAIR_FILE,
                    truth=out_dir / TRUTH_FILE, lesion_count=int(lesion_count),
                    truth_volume_mm3=truth_volume, lesion_volumes_mm3=painted_volumes,
                    working_to_native=working_to_native, seed=seed, timings=timings)
