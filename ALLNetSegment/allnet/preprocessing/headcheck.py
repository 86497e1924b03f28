"""One-head check: do the T1W and the T2W show the same head as the FLAIR?

After the rigid registration of a T1W/T2W to the FLAIR, the same head lines up edge for edge
(ventricles, sulci, the grey/white border), while another person's head lines up only in
its outline. The check measures, in FLAIR space on the 2 mm isotropic FLAIR grid used for
registration, inside the T1W brain mask carried into FLAIR space:

  edge_correlation  Pearson correlation of the gradient magnitudes (Gaussian derivative,
                    sigma ``EDGE_SIGMA_MM``) of the FLAIR and of the registered image;
  nmi               normalised mutual information (H(A) + H(B)) / H(A, B) of the intensities
                    (32 bins between the 1st and 99th percentiles), reported only;
  brain_inside_fov  fraction of the brain mask that lies inside the FLAIR's field of view.

A pair passes when ``edge_correlation >= EDGE_CORRELATION_MIN``. The limit sits between
the values measured on every matched pair of the development data and on swapped pairs
of different people (``benchmarks/bench_headcheck.py`` -> ``benchmarks/results/headcheck_values.json``), with a
margin on both sides. Inputs already on the MNI grid are compared on that grid, inside the
FLAIR brain, without registration (limit ``EDGE_CORRELATION_MIN_MNI``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

EDGE_SIGMA_MM = 1.5
EDGE_CORRELATION_MIN = 0.45
EDGE_CORRELATION_MIN_MNI = 0.33
NMI_BINS = 32
ROLE_NAMES = {"t1": "T1W", "t2": "T2W", "flair": "FLAIR"}


@dataclass(frozen=True)
class HeadMatch:
    """Similarity of one image to the FLAIR after registration (see the module doc)."""

    role: str                 # 't1' or 't2'
    edge_correlation: float
    nmi: float
    brain_inside_fov: float
    limit: float

    @property
    def same_head(self) -> bool:
        return bool(self.edge_correlation >= self.limit)

    def to_dict(self) -> dict:
        return asdict(self) | {"same_head": self.same_head}


def _nmi(a: np.ndarray, b: np.ndarray) -> float:
    def bins(x: np.ndarray) -> np.ndarray:
        low, high = np.percentile(x, [1.0, 99.0])
        return np.clip(((x - low) / max(high - low, 1e-9) * NMI_BINS).astype(int), 0, NMI_BINS - 1)
    joint = np.bincount(bins(a) * NMI_BINS + bins(b), minlength=NMI_BINS * NMI_BINS).astype(np.float64)
    p = joint / joint.sum()

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())
    pa, pb = p.reshape(NMI_BINS, NMI_BINS).sum(1), p.reshape(NMI_BINS, NMI_BINS).sum(0)
    return (entropy(pa) + entropy(pb)) / max(entropy(p), 1e-12)


def similarity(fixed: sitk.Image, moving: sitk.Image, brain: np.ndarray, role: str,
               limit: float) -> HeadMatch:
    """Similarity of ``moving`` to ``fixed`` (both float32 on one grid) inside ``brain``
    (bool KJI array of that grid, True = brain inside the fixed image's field of view)."""
    if brain.sum() < 100:
        return HeadMatch(role, 0.0, 0.0, 0.0, limit)
    edges = [sitk.GetArrayFromImage(sitk.GradientMagnitudeRecursiveGaussian(image, EDGE_SIGMA_MM))[brain]
             for image in (fixed, moving)]
    correlation = float(np.corrcoef(edges[0], edges[1])[0, 1]) if min(e.std() for e in edges) > 0 else 0.0
    a, b = sitk.GetArrayViewFromImage(fixed)[brain], sitk.GetArrayViewFromImage(moving)[brain]
    return HeadMatch(role, round(correlation, 4), round(_nmi(a, b), 4), 1.0, limit)


def measure_native(flair: sitk.Image, moving: sitk.Image, flair_to_moving: sitk.Transform,
                   t1_mask: sitk.Image, flair_to_t1: sitk.Transform, role: str) -> HeadMatch:
    """:class:`HeadMatch` of a native T1W/T2W registered to the native FLAIR.

    ``flair_to_moving``/``flair_to_t1`` map FLAIR LPS points to the moving image / the T1W;
    ``t1_mask`` is the T1W brain mask on the T1W grid.
    """
    from .registration import isotropic_grid

    grid = isotropic_grid(flair)
    fixed = sitk.Resample(sitk.Cast(flair, sitk.sitkFloat32), grid, sitk.Transform(),
                          sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    ones = sitk.Image(flair.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(flair)
    fov = sitk.GetArrayViewFromImage(sitk.Resample(ones, grid, sitk.Transform(),
                                                   sitk.sitkNearestNeighbor, 0)) > 0
    mask = sitk.GetArrayViewFromImage(sitk.Resample(t1_mask, grid, flair_to_t1,
                                                    sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
    registered = sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), grid, flair_to_moving,
                               sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    match = similarity(fixed, registered, mask & fov, role, EDGE_CORRELATION_MIN)
    inside = float((mask & fov).sum() / max(mask.sum(), 1))
    return HeadMatch(role, match.edge_correlation, match.nmi, round(inside, 4), match.limit)


def measure_working(arrays: dict[str, np.ndarray], brain: np.ndarray) -> list[HeadMatch]:
    """:class:`HeadMatch` of the T1W/T2W of a case already on the MNI grid (KJI arrays, NaN
    outside an image's field of view) against its FLAIR, inside ``brain``."""
    def image(array: np.ndarray) -> sitk.Image:
        out = sitk.GetImageFromArray(np.nan_to_num(array, nan=0.0).astype(np.float32))
        out.SetSpacing((1.0, 1.0, 1.0))
        return out
    fixed = image(arrays["flair"])
    return [similarity(fixed, image(arrays[role]), brain.astype(bool) & np.isfinite(arrays[role]),
                       role, EDGE_CORRELATION_MIN_MNI)
            for role in ("t1", "t2") if role in arrays]


def check_same_head(matches: list[HeadMatch], paths: dict[str, str], *,
                    allow_mismatch: bool = False) -> list[str]:
    """Raise InputError naming both files for the first image that is not the FLAIR's head;
    with ``allow_mismatch`` return one warning per such image instead (else [])."""
    warnings = []
    for match in matches:
        if match.same_head:
            continue
        name = ROLE_NAMES[match.role]
        problem = (f"does not look like the same head as the FLAIR {paths.get('flair', 'FLAIR')} "
                   f"(edge correlation after registration {match.edge_correlation:.2f}, "
                   f"same-head limit {match.limit:.2f}); check that both files belong to one "
                   "person and session")
        if not allow_mismatch:
            raise InputError(paths.get(match.role, name), f"{name} {problem} (or run with --allow-mismatch)")
        warnings.append(f"{name} {paths.get(match.role, '')} {problem}; run continued because "
                        "allow_mismatch is set")
    return warnings
