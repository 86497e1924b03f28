"""``preprocess``: native (or already-MNI) T1W/FLAIR[/T2W] -> normalised working-grid arrays.

Native mode, in order:
1. brain extraction of the T1W (deepbet, T1W grid); brain volume checked (700-2200 mL);
2. T1W -> FLAIR and T2W -> FLAIR rigid registration of the whole-head images;
3. N4 bias correction of every modality inside its brain mask (T1W mask mapped rigidly);
   then the one-head check (``headcheck``): each registered image must line up with the
   FLAIR edge for edge, else InputError naming both files (a warning with
   ``allow_mismatch``);
4. affine registration of the T1W brain to the MNI template (T1 contrast), checked by
   volume scaling and Dice with the template brain mask;
5. every modality resampled ONCE from its native grid to the working grid through the
   composed transform (working -> T1W, working -> FLAIR, working -> FLAIR -> T2W), brain
   mask likewise; robust z-score inside the brain (``intensity.normalise``).

Already-in-MNI mode: the inputs are skull-stripped, co-registered and on the MNI grid;
they are resampled by identity if their grid differs, the brain mask is FLAIR > 0 with
holes filled, ``working_to_native`` is the identity, and the one-head check compares the
images on that grid.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError, RegistrationError
from ..grid import WORKING_SPACING, is_on_working_grid, working_reference
from ..contract import PREPROCESSING_STEPS
from ..progress import Progress
from ..templates import load_template
from ..validation import check_brain_volume
from . import headcheck, registration, roles
from .bias import correct_bias
from .brain import extract_brain, mask_volume_ml
from .intensity import normalise

# Where each step starts inside ``fraction_span``: declared with the other stages.
_STEP_STARTS = PREPROCESSING_STEPS


@dataclass
class PreprocessedCase:
    """Preprocessed inputs on the working grid (see docs/ARCHITECTURE.md)."""

    images: dict[str, np.ndarray]      # 'flair', 't1'[, 't2']: float32 KJI, normalised
    brain_mask: np.ndarray             # uint8 KJI working grid
    flair_native: sitk.Image           # the input FLAIR as read (output reference geometry)
    working_to_native: sitk.Transform  # working-grid (MNI) LPS points -> FLAIR LPS points
    modalities_present: list[str]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    qc: dict = field(default_factory=dict)  # brain volume (mL), registration checks, head_check
    warnings: list[str] = field(default_factory=list)  # e.g. a head mismatch let through


class _Stages:
    """Stage bookkeeping: forwards to a Progress (scaled into ``span``) and times stages."""

    def __init__(self, progress: Progress | None, span: tuple[float, float]) -> None:
        self.progress, self.span = progress, span
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, message: str, key: str | None = None) -> Iterator[None]:
        key = key or name
        lo, hi = self.span
        if self.progress is not None:
            self.progress.stage(name, lo + (hi - lo) * _STEP_STARTS[key], message)
        start = time.perf_counter()
        yield
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start


def _to_working(image: sitk.Image, working_to_image: sitk.Transform) -> np.ndarray:
    """Linear resampling onto the working grid; NaN outside the image's field of view."""
    out = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), working_reference(),
                        working_to_image, sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _mask_to_working(mask: sitk.Image, working_to_image: sitk.Transform) -> np.ndarray:
    out = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), working_reference(),
                        working_to_image, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return (sitk.GetArrayViewFromImage(out) >= 0.5).astype(np.uint8)


def _normalise_all(arrays: dict[str, np.ndarray], brain: np.ndarray) -> dict[str, np.ndarray]:
    """Normalise each modality inside brain and its own field of view (zero elsewhere)."""
    return {name: normalise(np.nan_to_num(a, nan=0.0), brain & np.isfinite(a))
            for name, a in arrays.items()}


@contextmanager
def _naming(path: str) -> Iterator[None]:
    """A RegistrationError raised inside names ``path`` (the image that was registered)."""
    try:
        yield
    except RegistrationError as exc:
        raise RegistrationError(f"{path}: {exc}") from None


def preprocess(t1: sitk.Image, flair: sitk.Image, t2: sitk.Image | None = None, *,
               already_in_mni: bool = False, paths: dict[str, str] | None = None,
               progress: Progress | None = None, device: str = "cpu",
               fraction_span: tuple[float, float] = (0.0, 1.0),
               allow_mismatch: bool = False) -> PreprocessedCase:
    """Preprocess one case (see the module docstring for the steps).

    Inputs: images as returned by ``allnet.io.read_image`` (LPS geometry). ``paths`` maps
    't1'/'flair'/'t2' to file names for error messages. ``device`` is used by brain
    extraction ('cpu', 'cuda', 'auto'). Progress is reported as stages 'brain extraction',
    'registration', 'bias correction', 'resampling' at overall fractions inside
    ``fraction_span``. Raises InputError (T1W not a brain; a T1W/T2W that is not the
    FLAIR's head, unless ``allow_mismatch``: then a warning in ``warnings``),
    RegistrationError (implausible registration) and CancelledError (progress sink said stop).
    """
    paths = paths or {}
    stages = _Stages(progress, fraction_span)
    if already_in_mni:
        return _preprocess_mni(t1, flair, t2, stages, paths, allow_mismatch)
    natives = {"t1": t1, "flair": flair} | ({"t2": t2} if t2 is not None else {})
    qc: dict[str, float] = {}

    with stages.stage("brain extraction", "T1W brain extraction (deepbet)"):
        t1_mask = extract_brain(t1, device=device)
        qc["brain_volume_ml"] = mask_volume_ml(t1_mask)
        check_brain_volume(paths.get("t1", "T1W"), qc["brain_volume_ml"])

    flair_to: dict[str, sitk.Transform] = {"flair": sitk.Euler3DTransform()}
    with stages.stage("registration", "T1W/T2W -> FLAIR (rigid)", "registration to FLAIR"):
        # the two registrations are independent and single-threaded (for determinism):
        # side by side they take the time of one on a 2-core machine
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = {"t1": pool.submit(registration.register_to_flair, flair, t1, moving_brain_mask=t1_mask)}
            if t2 is not None:
                jobs["t2"] = pool.submit(registration.register_to_flair, flair, t2, moving_name="T2W")
            for role, job in jobs.items():
                flair_to[role] = job.result()
        matches = [headcheck.measure_native(flair, natives[role], flair_to[role], t1_mask,
                                            flair_to["t1"], role) for role in natives if role != "flair"]
        qc["head_check"] = {m.role: m.to_dict() for m in matches}
        warnings = headcheck.check_same_head(matches, paths, allow_mismatch=allow_mismatch)
    masks = {"t1": t1_mask}
    for name in natives.keys() - {"t1"}:  # native -> T1W: inverse(flair->t1) after name->flair
        name_to_t1 = registration.compose(flair_to["t1"], registration.invert(flair_to[name]))
        masks[name] = sitk.Resample(t1_mask, natives[name], name_to_t1,
                                    sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)

    corrected: dict[str, sitk.Image] = {}
    with stages.stage("bias correction", "N4 bias-field correction"):
        corrected["t1"] = correct_bias(natives["t1"], masks["t1"])

    with stages.stage("registration", "T1W brain -> MNI template (affine), N4 of the other images beside it",
                      "registration to MNI"):
        template = load_template()
        brain = corrected["t1"] * sitk.Cast(t1_mask, sitk.sitkFloat32)
        # The MNI registration is single-threaded (determinism), so the other images' N4 run on
        # the second core meanwhile; ITK stays single-threaded for the whole block, so their
        # results do not depend on which thread starts first.
        with registration.single_threaded(), ThreadPoolExecutor(max_workers=1) as pool:
            others = pool.submit(lambda: {name: correct_bias(image, masks[name])
                                          for name, image in natives.items() if name != "t1"})
            with _naming(paths.get("t1", "T1W")):
                working_to_t1 = registration.register_to_template(brain, template.t1,
                                                                  template.brain_mask)
            corrected.update(others.result())

    with stages.stage("resampling", "resampling to the working grid"):
        working_to = {"t1": working_to_t1,
                      "flair": registration.compose(registration.invert(flair_to["t1"]),
                                                    working_to_t1)}
        if t2 is not None:
            working_to["t2"] = registration.compose(flair_to["t2"], working_to["flair"])
        brain_mask = _mask_to_working(t1_mask, working_to_t1)
        with _naming(paths.get("t1", "T1W")):
            qc.update(registration.check_template_fit(
                working_to_t1, brain_mask, sitk.GetArrayViewFromImage(template.brain_mask)))
        arrays = {name: _to_working(corrected[name], working_to[name]) for name in natives}
        images = _normalise_all(arrays, brain_mask.astype(bool))
        qc["tissue_levels"], role_warnings = roles.check_roles(images, brain_mask, paths, allow_mismatch)
        warnings = warnings + role_warnings
    return PreprocessedCase(images=images, brain_mask=brain_mask, flair_native=flair,
                            working_to_native=working_to["flair"],
                            modalities_present=list(natives), timings=stages.timings, qc=qc,
                            warnings=warnings)


# Dice of an --preprocessed FLAIR's brain with the template brain mask: MNI-grid data that
# is only rigidly aligned (brains 15 % smaller than the template) gives 0.73-0.75, affinely
# normalised data 0.96; an image placed elsewhere in space gives far less.
MNI_DICE_MIN = 0.5
# Non-zero region of an --preprocessed FLAIR (mL): 1,090-1,130 on the Lesjak et al. MNI copies,
# 1,910-2,040 on the MSLesSeg scans (affinely normalised, with extra-axial CSF; the template's
# brain mask is 1,883); a head that was not skull-stripped measures about 3,000 or more.
MNI_BRAIN_VOLUME_RANGE_ML = (700.0, 2800.0)


def check_mni_brain(path: str, brain: np.ndarray) -> float:
    """Check that the non-zero region of an already-preprocessed FLAIR (KJI, working grid)
    is a skull-stripped brain where the MNI template's brain is; returns its Dice with the
    template brain mask. InputError naming ``path`` otherwise."""
    volume_ml = float(brain.sum()) * float(np.prod(WORKING_SPACING)) / 1000.0
    lo, hi = MNI_BRAIN_VOLUME_RANGE_ML
    if not lo <= volume_ml <= hi:
        raise InputError(path, f"its non-zero region on the MNI grid is {volume_ml:.0f} mL, not a "
                               f"skull-stripped brain ({lo:.0f}-{hi:.0f} mL): --preprocessed needs "
                               "skull-stripped images on the MNI152 grid (zero outside the brain)")
    template = sitk.GetArrayViewFromImage(load_template().brain_mask) > 0
    dice = 2.0 * float(np.logical_and(brain, template).sum()) / float(brain.sum() + template.sum())
    if dice < MNI_DICE_MIN:
        raise InputError(path, f"its brain does not lie where the MNI template's brain is (Dice "
                               f"{dice:.2f} < {MNI_DICE_MIN}): --preprocessed needs images registered "
                               "to MNI152 space; give native scans without --preprocessed")
    return round(dice, 4)


def _preprocess_mni(t1: sitk.Image, flair: sitk.Image, t2: sitk.Image | None,
                    stages: _Stages, paths: dict[str, str], allow_mismatch: bool) -> PreprocessedCase:
    natives = {"t1": t1, "flair": flair} | ({"t2": t2} if t2 is not None else {})
    with stages.stage("resampling", "inputs already on the MNI grid"):
        arrays = {}
        for name, image in natives.items():
            if is_on_working_grid(image):
                arrays[name] = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
            else:
                arrays[name] = _to_working(image, sitk.Transform())
        # FLAIR > 0: the other modalities of such data sets sometimes keep neck or skull.
        foreground = np.nan_to_num(arrays["flair"], nan=0.0) > 0
        if not foreground.any():
            raise InputError(None, "the FLAIR is empty on the MNI working grid; is it really "
                                   "in MNI space?")
        brain = ndimage.binary_fill_holes(foreground)
        template_dice = check_mni_brain(paths.get("flair", "FLAIR"), brain)
        # before the one-head check: swapped roles are the likelier reason for a mismatch
        levels, role_warnings = roles.check_roles({n: np.nan_to_num(a, nan=0.0) for n, a in arrays.items()},
                                                  brain, paths, allow_mismatch)
        matches = headcheck.measure_working(arrays, brain)
        warnings = headcheck.check_same_head(matches, paths, allow_mismatch=allow_mismatch)
        images = _normalise_all(arrays, brain)
    volume_ml = float(brain.sum()) * float(np.prod(WORKING_SPACING)) / 1000.0
    return PreprocessedCase(images=images, brain_mask=brain.astype(np.uint8),
                            flair_native=flair, working_to_native=sitk.Euler3DTransform(),
                            modalities_present=list(natives), timings=stages.timings,
                            qc={"brain_volume_ml": volume_ml, "template_brain_dice": template_dice,
                                "head_check": {m.role: m.to_dict() for m in matches},
                                "tissue_levels": levels},
                            warnings=warnings + role_warnings)
