"""Registration: T1W/T2W -> FLAIR (rigid) and subject brain -> MNI template (affine).

Conventions: physical points are LPS mm. A transform named ``a_to_b`` maps points of space
``a`` to points of space ``b`` (SimpleITK's fixed = ``a``, moving = ``b``), so
``sitk.Resample(image_b, grid_a, a_to_b)`` brings an image of ``b`` onto a grid of ``a``.

Determinism: metric samples are drawn with a fixed seed; the Mattes histogram is summed
per thread in a fixed order, so the result is bit-identical for the same input and the same
number of ITK threads.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import SimpleITK as sitk

from ..grid import isotropic_grid_like
from ..errors import RegistrationError

SEED = 20211
REGISTRATION_SPACING_MM = 2.0  # both registrations sample the fixed image on a 2 mm grid
DICE_MIN = 0.8  # registered brain mask vs template brain mask
SCALING_RANGE = (0.6, 1.6)  # determinant of the affine's linear part (volume scaling)
OVERLAP_MIN = 0.5  # fraction of the moving brain inside the fixed field of view


# ----------------------------------------------------------------- affine helpers
def affine_parts(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 matrix A, offset b) with transform(x) = A x + b, for any affine transform."""
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    columns = [np.array(transform.TransformPoint(tuple(e))) - origin for e in np.eye(3)]
    return np.stack(columns, axis=1), origin


def to_affine(matrix: np.ndarray, offset: np.ndarray) -> sitk.AffineTransform:
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in np.asarray(matrix).ravel()))
    transform.SetTranslation(tuple(float(v) for v in offset))
    return transform


def compose(outer: sitk.Transform, inner: sitk.Transform) -> sitk.AffineTransform:
    """The affine x -> outer(inner(x)) (both must be affine, e.g. Euler3D, Affine)."""
    a_o, b_o = affine_parts(outer)
    a_i, b_i = affine_parts(inner)
    return to_affine(a_o @ a_i, a_o @ b_i + b_o)


def invert(transform: sitk.Transform) -> sitk.AffineTransform:
    """The inverse of an affine transform, as an AffineTransform."""
    a, b = affine_parts(transform)
    a_inv = np.linalg.inv(a)
    return to_affine(a_inv, -a_inv @ b)


def scaling(transform: sitk.Transform) -> float:
    """Determinant of the linear part: the volume scaling of the transform."""
    return float(np.linalg.det(affine_parts(transform)[0]))


def mean_displacement_mm(a: sitk.Transform, b: sitk.Transform, points: np.ndarray) -> float:
    """Mean distance (mm) between a(p) and b(p) over ``points`` (N x 3, LPS mm)."""
    a_m, a_o = affine_parts(a)
    b_m, b_o = affine_parts(b)
    diff = points @ (a_m - b_m).T + (a_o - b_o)
    return float(np.linalg.norm(diff, axis=1).mean())


def mask_points(mask: sitk.Image, step: int = 2) -> np.ndarray:
    """Physical LPS points (N x 3, mm) of every ``step``-th non-zero voxel of ``mask``."""
    kji = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[::step]
    ijk = kji[:, ::-1].astype(np.float64)
    direction = np.array(mask.GetDirection()).reshape(3, 3)
    return (ijk * np.array(mask.GetSpacing())) @ direction.T + np.array(mask.GetOrigin())


# ----------------------------------------------------------------- shared machinery
def _affine_from(transform: sitk.Transform) -> sitk.AffineTransform:
    """An AffineTransform equal to a rigid/similarity ``transform``, with its centre."""
    affine = sitk.AffineTransform(3)
    affine.SetCenter(transform.GetCenter())
    affine.SetMatrix(transform.GetMatrix())
    affine.SetTranslation(transform.GetTranslation())
    return affine


def isotropic_grid(image: sitk.Image, spacing_mm: float | None = None) -> sitk.Image:
    """``image`` resampled (linear) onto an isotropic grid over its own field of view
    (``spacing_mm`` defaults to REGISTRATION_SPACING_MM)."""
    spacing_mm = spacing_mm or REGISTRATION_SPACING_MM
    grid = isotropic_grid_like(image, spacing_mm)
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(),
                         sitk.sitkLinear, 0.0)


def _method(sampling: Sequence[float], iterations: int, shrink: Sequence[int],
            smoothing_mm: Sequence[float], max_step: float) -> sitk.ImageRegistrationMethod:
    """Mattes MI, random samples with a fixed seed, regular-step gradient descent.

    Runs single-threaded (see :func:`_single_threaded`).
    """
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    # Gradients by central differences at the samples: a gradient image of the whole
    # moving volume per level cost more than the optimisation and was less accurate.
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(list(sampling), SEED)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=max_step, minStep=1e-3, numberOfIterations=iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(smoothing_mm))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


class _SingleThreaded:
    """Context that runs ITK with one thread: the Mattes metric accumulates its joint
    histogram from several threads in a varying order, which changes transforms in the 11th
    digit between runs. The metric's threads follow the global default, not the method's
    setting. Registrations may run in parallel Python threads (SimpleITK releases the GIL):
    the first to enter sets the default to 1, the last to leave restores it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._previous = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(self._previous)


_single_threaded = _SingleThreaded()
# for other ITK work that must run single-threaded beside a registration (preprocessing.pipeline)
single_threaded = _single_threaded


def _run(reg: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
         what: str) -> sitk.Transform:
    """Execute ``reg``; returns the optimised transform itself (not its composite wrapper)."""
    try:
        with _single_threaded():
            result = reg.Execute(fixed, moving)
        while isinstance(result, sitk.CompositeTransform):
            result = result.GetNthTransform(result.GetNumberOfTransforms() - 1)
        return result.Downcast()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:200]
        raise RegistrationError(f"{what} failed: the images do not overlap enough to be "
                                f"registered ({reason})") from None


def overlap_fraction(fixed: sitk.Image, moving_mask: sitk.Image,
                     fixed_to_moving: sitk.Transform) -> float:
    """Fraction of the ``moving_mask`` volume that maps inside ``fixed``'s field of view."""
    inside = sitk.Resample(moving_mask, fixed, fixed_to_moving, sitk.sitkNearestNeighbor, 0,
                           sitk.sitkUInt8)
    vol_fixed = np.count_nonzero(sitk.GetArrayViewFromImage(inside)) * np.prod(
        fixed.GetSpacing())
    vol_moving = np.count_nonzero(sitk.GetArrayViewFromImage(moving_mask)) * np.prod(
        moving_mask.GetSpacing())
    return float(vol_fixed / vol_moving) if vol_moving else 0.0


# ----------------------------------------------------------------- T1W/T2W -> FLAIR
# Whole-head metric: restricting it with a moving (T1W) brain mask biased the result by
# 0.5-1.5 mm on the development scans, because the sample set changes as the mask moves.
FLAIR_SAMPLING = (0.15, 0.05)  # fraction of the 2 mm FLAIR grid sampled, per level
FLAIR_ITERATIONS = 100


def register_to_flair(flair: sitk.Image, moving: sitk.Image, *,
                      moving_brain_mask: sitk.Image | None = None, affine: bool = False,
                      moving_name: str = "T1W") -> sitk.Transform:
    """Rigid (or affine) registration of ``moving`` (T1W or T2W) to ``flair``.

    Inputs: native whole-head images (any grid, LPS geometry). Mattes mutual information on
    a 2 mm isotropic copy of the FLAIR, two resolutions (4 and 2 mm). The start is the
    scanner geometry (identity) or a centre-of-mass alignment, whichever matches better.
    ``moving_brain_mask`` (0/1 on ``moving``'s grid; Otsu foreground if None) is used only
    for the overlap check. Returns ``flair_to_moving`` (Euler3DTransform, or AffineTransform
    if ``affine``): maps FLAIR LPS points to ``moving`` LPS points. Raises RegistrationError
    when the images do not overlap (before or after registration).
    """
    what = f"{moving_name} -> FLAIR registration"
    fixed = isotropic_grid(flair)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    centre = fixed.TransformContinuousIndexToPhysicalPoint(
        [(s - 1) / 2 for s in fixed.GetSize()])
    identity = sitk.Euler3DTransform()
    identity.SetCenter(centre)
    moments = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
    reg = _method(sampling=FLAIR_SAMPLING, iterations=FLAIR_ITERATIONS, shrink=[2, 1],
                  smoothing_mm=[2.0, 0.0], max_step=2.0)
    start, best = identity, np.inf
    for candidate in (identity, moments):
        reg.SetInitialTransform(sitk.Euler3DTransform(candidate), inPlace=False)
        try:
            with _single_threaded():
                value = reg.MetricEvaluate(fixed, moving)
        except RuntimeError:
            continue
        if value < best:
            start, best = candidate, value
    if not np.isfinite(best):
        raise RegistrationError(f"{what} failed: the {moving_name} and the FLAIR do not "
                                "overlap in space (check that both are of the same subject "
                                "and session)")
    reg.SetInitialTransform(sitk.Euler3DTransform(start), inPlace=False)
    result: sitk.Transform = sitk.Euler3DTransform(_run(reg, fixed, moving, what))
    if affine:
        reg = _method(sampling=FLAIR_SAMPLING[-1:], iterations=FLAIR_ITERATIONS // 2,
                      shrink=[1], smoothing_mm=[0.0], max_step=0.5)
        reg.SetInitialTransform(_affine_from(result), inPlace=False)
        result = sitk.AffineTransform(_run(reg, fixed, moving, what))
    mask = (moving_brain_mask if moving_brain_mask is not None
            else sitk.OtsuThreshold(moving, 0, 1, 200))
    fraction = overlap_fraction(flair, mask, result)
    if fraction < OVERLAP_MIN:
        raise RegistrationError(
            f"{what} is implausible: only {100 * fraction:.0f}% of the {moving_name} "
            "brain lies inside the FLAIR field of view after registration (do the images "
            "show the same head?)")
    return result


# ----------------------------------------------------------------- subject -> MNI
TEMPLATE_SAMPLING = (0.2, 0.1)  # of the 2 mm template grid inside the dilated brain mask
TEMPLATE_ITERATIONS = 100


def register_to_template(brain: sitk.Image, template_t1: sitk.Image,
                         template_mask: sitk.Image) -> sitk.AffineTransform:
    """Affine registration of a skull-stripped subject image to the MNI template.

    Inputs: ``brain`` (T1W-like contrast, zero outside the brain, native grid, LPS),
    ``template_t1`` and ``template_mask`` on the working grid (``allnet.templates``).
    Centre-of-mass start, then a similarity stage and an affine stage (Mattes MI, 4 and
    2 mm). Returns ``working_to_subject``: maps MNI (working-grid) LPS points to points of
    ``brain``'s space. Plausibility is checked by :func:`check_template_fit`.
    """
    what = "registration to the MNI template"
    fixed = isotropic_grid(template_t1)
    fixed_mask = sitk.Resample(sitk.Cast(template_mask, sitk.sitkUInt8), fixed,
                               sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    fixed_mask = sitk.BinaryDilate(fixed_mask, [2, 2, 2])  # 4 mm: keep the brain's edge
    moving = sitk.Cast(brain, sitk.sitkFloat32)
    start = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Similarity3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = _method(sampling=TEMPLATE_SAMPLING, iterations=TEMPLATE_ITERATIONS, shrink=[2, 1],
                  smoothing_mm=[2.0, 1.0], max_step=2.0)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInitialTransform(sitk.Similarity3DTransform(start), inPlace=False)
    similarity = sitk.Similarity3DTransform(_run(reg, fixed, moving, what))
    initial = _affine_from(similarity)
    reg = _method(sampling=TEMPLATE_SAMPLING, iterations=TEMPLATE_ITERATIONS, shrink=[2, 1],
                  smoothing_mm=[1.0, 0.0], max_step=1.0)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInitialTransform(initial, inPlace=False)
    return sitk.AffineTransform(_run(reg, fixed, moving, what))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary arrays of the same shape."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 0.0


def check_template_fit(working_to_subject: sitk.Transform, brain_mask_working: np.ndarray,
                       template_mask: np.ndarray, *, dice_min: float = DICE_MIN,
                       scaling_range: tuple[float, float] = SCALING_RANGE) -> dict[str, float]:
    """Plausibility of the subject -> MNI registration; returns QC numbers.

    ``brain_mask_working`` is the subject's brain mask resampled to the working grid (KJI);
    ``template_mask`` the template brain mask. Raises RegistrationError when the affine's
    volume scaling lies outside ``scaling_range`` or the Dice overlap is below ``dice_min``.
    """
    det = scaling(working_to_subject)
    overlap = dice(brain_mask_working, template_mask)
    lo, hi = scaling_range
    if not lo <= det <= hi:
        raise RegistrationError(
            f"registration to the MNI template is implausible: it scales the brain volume by "
            f"{det:.2f} (expected {lo}-{hi}); the brain extraction or the image may be wrong")
    if overlap < dice_min:
        raise RegistrationError(
            f"registration to the MNI template is implausible: the registered brain mask "
            f"overlaps the template brain by Dice {overlap:.2f} (expected >= {dice_min}); "
            "the brain extraction or the image may be wrong")
    return {"template_dice": overlap, "affine_scaling": det}
