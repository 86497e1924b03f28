"""Two visits of one head on ONE working grid, halfway between them (longitudinal mode).

Steps (physical points LPS mm; ``a_to_b`` maps points of space ``a`` to points of ``b``):

1. rigid registration of the follow-up FLAIR to the baseline FLAIR (whole head, the same
   Mattes-MI registration as T1W -> FLAIR): ``baseline_to_followup`` = T. Failure, or a
   result whose rotation exceeds ``MAX_ROTATION_DEG``, is an InputError naming both files
   (the visits are too far apart to register). The FLAIRs must then show the same head:
   edge correlation (``headcheck``) inside the baseline head >= ``SAME_PERSON_MIN``;
2. the halfway space: S = T^(1/2) (half the rotation angle about the same axis, and the
   translation that makes S(S(x)) = T(x)); ``baseline_to_halfway`` = S and
   ``halfway_to_followup`` = S, so neither visit is the reference;
3. per visit with a T1W: deepbet brain mask, T1W/T2W -> FLAIR rigid registration and the
   one-head check of each (``headcheck``). A visit without a T1W takes the other visit's
   T1W through the FLAIR-FLAIR transform (same head), for its brain mask, its T1W channel
   and the anatomy;
4. N4 bias correction of every image inside its brain mask;
5. affine registration of each own T1W brain to the MNI template; each result is carried
   into the halfway space and the (one or two) working -> halfway affines are averaged;
6. every image resampled ONCE from its native grid to the working grid through
   working -> halfway -> visit FLAIR (-> T1W / T2W); the same interpolation for both visits;
7. joint intensity normalisation: per modality, both visits get the robust z-score
   (``intensity.normalise``) over the SAME voxels (common brain inside both fields of view),
   so a FLAIR difference between visits is in units of the brain's spread, not of a scanner.

The common brain mask is the union of the visits' brain masks on the working grid.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from ..errors import InputError, RegistrationError
from ..progress import Progress
from ..templates import load_template
from ..validation import check_brain_volume
from . import headcheck, registration, roles
from .bias import correct_bias
from .brain import extract_brain, mask_volume_ml
from .intensity import normalise
from .pipeline import _mask_to_working, _to_working  # the one native -> working resampling

VISITS: tuple[str, str] = ("baseline", "followup")
VISIT_NAMES = {"baseline": "baseline", "followup": "follow-up"}
# A head repositioned in a scanner turns by a few degrees; 45 degrees means the registration
# (or the input) is wrong.
MAX_ROTATION_DEG = 45.0
# FLAIR vs FLAIR edge correlation after rigid registration, inside the baseline head; measured
# by ``benchmarks/bench_longitudinal.py --same-person`` (results/longitudinal_same_person.json):
# the two visits of one person 0.96-0.98, FLAIRs of two people 0.30-0.50 on the development
# data; the limit sits between them with a wide margin on both sides.
SAME_PERSON_MIN = 0.75


@dataclass
class VisitImages:
    """The images of one visit as read (LPS geometry); ``names``: role -> file name."""

    flair: sitk.Image
    t1: sitk.Image | None = None
    t2: sitk.Image | None = None
    names: dict[str, str] = field(default_factory=dict)


@dataclass
class PairCase:
    """Both visits on the working grid (see the module docstring).

    ``images[visit][modality]``: float32 KJI, jointly normalised, zero outside ``brain_mask``;
    ``brain_mask``: uint8 KJI, union of both visits' brains; ``t1_for_anatomy``: float32 KJI
    (mean of the normalised T1Ws present); ``flair_native[visit]``: the FLAIR as read;
    ``working_to_flair[visit]``: working-grid LPS points -> that FLAIR's LPS points;
    ``baseline_to_followup``: rigid, baseline FLAIR points -> follow-up FLAIR points;
    ``t1_source[visit]``: 'own' or the other visit's name.
    """

    images: dict[str, dict[str, np.ndarray]]
    brain_mask: np.ndarray
    t1_for_anatomy: np.ndarray
    flair_native: dict[str, sitk.Image]
    working_to_flair: dict[str, sitk.Transform]
    baseline_to_followup: sitk.Transform
    modalities_present: dict[str, list[str]]
    t1_source: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    qc: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------- rigid halves
def rigid_parts(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) with transform(x) = R x + t; R is projected onto the nearest rotation."""
    matrix, offset = registration.affine_parts(transform)
    u, _, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:  # a reflection cannot come from a rigid registration
        raise ValueError("transform is not a proper rotation")
    return rotation, offset


def half_rigid(transform: sitk.Transform) -> sitk.AffineTransform:
    """S with S(S(x)) = transform(x) for a rigid ``transform``: rotation by half the angle
    about the same axis, translation (R_h + I)^-1 t (R_h + I is invertible below 180 deg)."""
    rotation, offset = rigid_parts(transform)
    half = Rotation.from_rotvec(Rotation.from_matrix(rotation).as_rotvec() / 2.0).as_matrix()
    shift = np.linalg.solve(half + np.eye(3), offset)
    return registration.to_affine(half, shift)


def rotation_deg(transform: sitk.Transform) -> float:
    """Rotation angle (degrees) of a rigid transform."""
    return float(np.degrees(np.linalg.norm(Rotation.from_matrix(rigid_parts(transform)[0]).as_rotvec())))


def mean_affine(transforms: list[sitk.Transform]) -> sitk.AffineTransform:
    """Element-wise mean of affine transforms (for nearly equal ones, e.g. two estimates of one
    working -> halfway mapping)."""
    parts = [registration.affine_parts(t) for t in transforms]
    return registration.to_affine(np.mean([p[0] for p in parts], axis=0),
                                  np.mean([p[1] for p in parts], axis=0))


# ----------------------------------------------------------------- visit to visit
def _head_mask(flair: sitk.Image) -> sitk.Image:
    """Head (foreground) of a FLAIR on its own grid: Otsu, largest component, holes filled."""
    foreground = sitk.OtsuThreshold(sitk.Cast(flair, sitk.sitkFloat32), 0, 1, 200)
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True) == 1
    return sitk.Cast(sitk.BinaryFillhole(largest), sitk.sitkUInt8)


def register_visits(baseline: VisitImages, followup: VisitImages) -> tuple[sitk.Transform, dict]:
    """``baseline_to_followup`` (rigid) and QC numbers; InputError naming both FLAIR files
    when they cannot be registered, turn implausibly, or do not show the same head."""
    names = (baseline.names.get("flair", "baseline FLAIR"), followup.names.get("flair", "follow-up FLAIR"))
    try:
        transform = registration.register_to_flair(baseline.flair, followup.flair,
                                                   moving_name="follow-up FLAIR")
    except RegistrationError as exc:
        raise InputError(names[1], f"cannot be registered to the baseline FLAIR {names[0]}: the "
                                   f"visits are too far apart in space ({exc})") from None
    angle = rotation_deg(transform)
    if angle > MAX_ROTATION_DEG:
        raise InputError(names[1], f"registration to the baseline FLAIR {names[0]} turns the head "
                                   f"by {angle:.0f} degrees (limit {MAX_ROTATION_DEG:.0f}): the visits "
                                   "are too far apart to register")
    head = _head_mask(baseline.flair)
    match = headcheck.measure_native(baseline.flair, followup.flair, transform, head,
                                     sitk.Euler3DTransform(), "flair")
    qc = {"visit_rotation_deg": round(angle, 3),
          "visit_translation_mm": round(float(np.linalg.norm(rigid_parts(transform)[1])), 3),
          "visit_edge_correlation": match.edge_correlation, "visit_nmi": match.nmi,
          "same_person_limit": SAME_PERSON_MIN}
    if match.edge_correlation < SAME_PERSON_MIN:
        raise InputError(names[1], f"does not look like the same person as the baseline FLAIR "
                                   f"{names[0]} (edge correlation after registration "
                                   f"{match.edge_correlation:.2f}, same-person limit "
                                   f"{SAME_PERSON_MIN:.2f}); both visits must be of one person "
                                   "and close enough in position to be registered")
    return transform, qc


# ----------------------------------------------------------------- the pair
class _Timer:
    """Progress inside the "preprocessing" stage (fractions of ``span``) and seconds per step."""

    def __init__(self, progress: Progress | None, span: tuple[float, float]) -> None:
        self.progress, self.span, self.timings = progress, span, {}

    def step(self, fraction: float, message: str) -> float:
        if self.progress is not None:
            lo, hi = self.span
            self.progress.stage("preprocessing", lo + (hi - lo) * fraction, message)
        return time.perf_counter()

    def done(self, name: str, start: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def _other(visit: str) -> str:
    return VISITS[1 - VISITS.index(visit)]


def preprocess_pair(baseline: VisitImages, followup: VisitImages, *, device: str = "cpu",
                    progress: Progress | None = None,
                    fraction_span: tuple[float, float] = (0.0, 1.0),
                    allow_mismatch: bool = False) -> PairCase:
    """Both visits on one working grid, halfway between them (module docstring).

    At least one visit needs a T1W (checked by the caller). Raises InputError (visits not
    registrable, not one person, a T1W that is not a brain, a T1W/T2W that is not its FLAIR's
    head unless ``allow_mismatch``: then a warning in ``warnings``),
    RegistrationError (implausible template registration).
    """
    visits = {"baseline": baseline, "followup": followup}
    timer = _Timer(progress, fraction_span)
    start = timer.step(0.0, "follow-up FLAIR -> baseline FLAIR (rigid)")
    b_to_f, qc = register_visits(baseline, followup)
    half = half_rigid(b_to_f)
    # flair_to_halfway[v]: FLAIR LPS points of visit v -> halfway LPS points
    flair_to_halfway = {"baseline": half, "followup": registration.invert(half)}
    flair_to_flair = {"baseline": b_to_f, "followup": registration.invert(b_to_f)}  # v -> other
    timer.done("registration between visits", start)

    masks, flair_to_t1, flair_to_t2, t1_source = {}, {}, {}, {}
    start = timer.step(0.15, "T1W brain extraction (deepbet)")
    for visit, images in visits.items():
        if images.t1 is not None:
            masks[visit] = extract_brain(images.t1, device=device)
            qc[f"{visit}_brain_volume_ml"] = mask_volume_ml(masks[visit])
            check_brain_volume(images.names.get("t1", "T1W"), qc[f"{visit}_brain_volume_ml"])
    timer.done("brain extraction", start)

    start = timer.step(0.35, "T1W/T2W -> FLAIR (rigid)")
    warnings: list[str] = []
    # independent single-threaded registrations, two at a time (2 cores), same transforms
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {}
        for visit, images in visits.items():
            if images.t1 is not None:
                jobs[visit, "t1"] = pool.submit(registration.register_to_flair, images.flair, images.t1,
                                                moving_brain_mask=masks[visit])
            if images.t2 is not None:
                jobs[visit, "t2"] = pool.submit(registration.register_to_flair, images.flair, images.t2,
                                                moving_name="T2W")
        for (visit, role), job in jobs.items():
            (flair_to_t1 if role == "t1" else flair_to_t2)[visit] = job.result()
            if role == "t1":
                t1_source[visit] = "own"
    for visit, images in visits.items():
        if images.t1 is not None:
            natives = {"t1": images.t1} | ({"t2": images.t2} if images.t2 is not None else {})
            tos = {"t1": flair_to_t1[visit]} | ({"t2": flair_to_t2[visit]} if visit in flair_to_t2 else {})
            matches = [headcheck.measure_native(images.flair, natives[r], tos[r], masks[visit],
                                                flair_to_t1[visit], r) for r in natives]
            qc[f"{visit}_head_check"] = {m.role: m.to_dict() for m in matches}
            warnings += headcheck.check_same_head(matches, images.names, allow_mismatch=allow_mismatch)
    for visit in VISITS:
        if visit not in flair_to_t1:  # the other visit's T1W, through the FLAIR-FLAIR transform
            other = _other(visit)
            flair_to_t1[visit] = registration.compose(flair_to_t1[other], flair_to_flair[visit])
            t1_source[visit] = other
    timer.done("registration to FLAIR", start)

    mask_of = {v: masks[v if t1_source[v] == "own" else _other(v)] for v in VISITS}
    start = timer.step(0.5, "N4 bias-field correction")
    corrected: dict[str, dict[str, sitk.Image]] = {v: {} for v in VISITS}
    for visit, images in visits.items():
        flair_mask = sitk.Resample(mask_of[visit], images.flair, flair_to_t1[visit],
                                   sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        corrected[visit]["flair"] = correct_bias(images.flair, flair_mask)
        if t1_source[visit] == "own":
            corrected[visit]["t1"] = correct_bias(images.t1, masks[visit])
        if images.t2 is not None:
            t2_to_t1 = registration.compose(flair_to_t1[visit], registration.invert(flair_to_t2[visit]))
            t2_mask = sitk.Resample(mask_of[visit], images.t2, t2_to_t1, sitk.sitkNearestNeighbor,
                                    0, sitk.sitkUInt8)
            corrected[visit]["t2"] = correct_bias(images.t2, t2_mask)
    for visit in VISITS:
        if t1_source[visit] != "own":
            corrected[visit]["t1"] = corrected[_other(visit)]["t1"]
    timer.done("bias correction", start)

    start = timer.step(0.7, "T1W brain -> MNI template (affine), halfway")
    template = load_template()
    estimates = []
    for visit in VISITS:
        if t1_source[visit] != "own":
            continue
        brain = corrected[visit]["t1"] * sitk.Cast(masks[visit], sitk.sitkFloat32)
        working_to_t1 = registration.register_to_template(brain, template.t1, template.brain_mask)
        t1_to_halfway = registration.compose(flair_to_halfway[visit],
                                             registration.invert(flair_to_t1[visit]))
        estimates.append(registration.compose(t1_to_halfway, working_to_t1))
    working_to_halfway = mean_affine(estimates)
    working_to_flair = {v: registration.compose(registration.invert(flair_to_halfway[v]),
                                                working_to_halfway) for v in VISITS}
    working_to_t1 = {v: registration.compose(flair_to_t1[v], working_to_flair[v]) for v in VISITS}
    timer.done("registration to MNI", start)

    start = timer.step(0.9, "resampling both visits to the working grid")
    brain_masks = {v: _mask_to_working(mask_of[v], working_to_t1[v]) for v in VISITS}
    brain = (brain_masks["baseline"] | brain_masks["followup"]).astype(bool)
    qc.update(registration.check_template_fit(
        working_to_halfway, brain.astype(np.uint8), sitk.GetArrayViewFromImage(template.brain_mask)))
    raw: dict[str, dict[str, np.ndarray]] = {v: {} for v in VISITS}
    for visit, images in visits.items():
        to = {"flair": working_to_flair[visit], "t1": working_to_t1[visit]}
        if images.t2 is not None:
            to["t2"] = registration.compose(flair_to_t2[visit], working_to_flair[visit])
        for modality, transform in to.items():
            raw[visit][modality] = _to_working(corrected[visit][modality], transform)
    images_out = joint_normalise(raw, brain)
    for visit in VISITS:  # each image has its role's contrast (a borrowed T1W: the other visit's)
        names = {**visits[_other(visit)].names, **visits[visit].names}
        levels, role_warnings = roles.check_roles(images_out[visit], brain, names, allow_mismatch)
        qc.setdefault("tissue_levels", {})[visit] = levels
        warnings += role_warnings
    t1s = [images_out[v]["t1"] for v in VISITS if t1_source[v] == "own"]
    t1_for_anatomy = np.mean(t1s, axis=0).astype(np.float32) if len(t1s) > 1 else t1s[0]
    timer.done("resampling", start)
    return PairCase(images=images_out, brain_mask=brain.astype(np.uint8),
                    t1_for_anatomy=t1_for_anatomy,
                    flair_native={v: visits[v].flair for v in VISITS},
                    working_to_flair=working_to_flair, baseline_to_followup=b_to_f,
                    modalities_present={v: sorted(raw[v], key=("flair", "t1", "t2").index) for v in VISITS},
                    t1_source=t1_source, timings=timer.timings, qc=qc, warnings=warnings)


def joint_normalise(raw: dict[str, dict[str, np.ndarray]], brain: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Robust z-score of each visit's modality over the SAME voxels: ``brain`` inside the
    field of view (finite values) of that modality at every visit that has it. Arrays are
    KJI on one grid with NaN outside an image's field of view; output zero outside ``brain``."""
    out: dict[str, dict[str, np.ndarray]] = {v: {} for v in raw}
    for modality in sorted({m for arrays in raw.values() for m in arrays}):
        having = [v for v in raw if modality in raw[v]]
        common = brain.copy()
        for visit in having:
            common &= np.isfinite(raw[visit][modality])
        for visit in having:
            array = np.nan_to_num(raw[visit][modality], nan=0.0)
            normalised = normalise(array, common)
            # Voxels of the brain outside the common view still get values on the same scale.
            out[visit][modality] = _extend(array, normalised, common, brain & np.isfinite(raw[visit][modality]))
    return out


def _extend(array: np.ndarray, normalised: np.ndarray, common: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``normalised`` (zero outside ``common``) extended to ``valid`` with the same affine
    intensity map (median and IQR of ``array`` over ``common``)."""
    extra = valid & ~common
    if not extra.any():
        return normalised
    from .intensity import CLIP, IQR_TO_SD
    values = array[common].astype(np.float64)
    q25, median, q75 = np.percentile(values, [25, 50, 75]) if values.size else (0.0, 0.0, 0.0)
    scale = (q75 - q25) / IQR_TO_SD
    out = normalised.copy()
    if np.isfinite(scale) and scale > 0:
        out[extra] = np.clip((array[extra] - median) / scale, -CLIP, CLIP).astype(np.float32)
    return out

