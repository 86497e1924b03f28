"""Longitudinal mode: new, enlarging, stable, shrinking and resolved lesions between two visits.

``run_longitudinal`` (the ``allnet longitudinal`` command and ``allnet.longitudinal``):

1. inputs checked before any computation: a FLAIR at both visits, a T1W at one visit at
   least (T2W optional), no file given twice (same path or same content), output location;
2. both visits on ONE working grid halfway between them, intensities normalised jointly
   (``allnet.preprocessing.pair``); one set of anatomy channels for the head;
3. the model (``allnet.inference.predict``) on each visit, with the model's inference plan;
4. both visits' votes, probabilities and FLAIRs resampled with the SAME transform onto the
   follow-up FLAIR's grid; each visit's lesions by ``allnet.postprocess.postprocess``;
5. lesion-wise change by the written rules of ``allnet.change`` (FLAIR change as evidence);
6. files (``allnet.longitudinal_outputs``) written into a temporary folder and published
   only when everything succeeded.

All output images lie on the follow-up FLAIR's grid; centroids are RAS mm of its physical
space.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__, change as change_rules
from .anatomy import compute_anatomy
from .contract import LONGITUDINAL_OUTPUT_FILES, SUMMARY_OUTPUTS_KEY, SUMMARY_PLAN_KEY, RunSettings
from .errors import InputError
from .grid import array_to_working_image
from .inference import predict
from .io import atomic_output_dir, read_image
from .lesions import Lesion, lesion_table
from .model import KNOWN_MODALITIES
from .outputs import check_output_location
from .pipeline import ImageInput, drop_unused_inputs, load_models, model_plan, unused_input_warnings
from .plan import resolve_plan
from .postprocess import postprocess
from .preprocessing import registration
from .preprocessing.intensity import flair_contrast
from .preprocessing.noise import model_inputs
from .preprocessing.pair import VISIT_NAMES, VISITS, PairCase, VisitImages, preprocess_pair
from .progress import Progress
from .tissue import grey_matter_indicator
from .validation import check_distinct_files

ROLE_NAMES = {"flair": "FLAIR", "t1": "T1W", "t2": "T2W"}


@dataclass
class LongitudinalResult:
    """Everything one longitudinal run produced; images on the follow-up FLAIR's grid (LPS).

    ``change_labels``: uint8 class codes (``allnet.contract.CHANGE_CODES``);
    ``new_enlarged``: uint8 0/1; ``baseline_labels``/``followup_labels``: lesion ids of each
    visit; ``flair_change``: float32 follow-up - baseline FLAIR (z units); ``changes``: one
    entry per lesion in the order of ``changes.csv``, ``places`` their centroids and
    locations, ``change_ids`` the image of their numbers (1..N, that order);
    ``visit_flairs``: both visits' jointly normalised FLAIRs on this grid."""

    change_labels: sitk.Image
    new_enlarged: sitk.Image
    baseline_labels: sitk.Image
    followup_labels: sitk.Image
    flair_change: sitk.Image
    changes: list[change_rules.LesionChange]
    places: list[Lesion]
    change_ids: sitk.Image
    visit_flairs: dict[str, sitk.Image]
    summary: dict
    output_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------- input checks
def _check_images_differ(baseline: sitk.Image, followup: sitk.Image, names: tuple[str, str]) -> None:
    """The two FLAIRs, once read, must not be one image (a copy under another name or format)."""
    if (baseline.GetSize() == followup.GetSize()
            and np.allclose(baseline.GetOrigin(), followup.GetOrigin())
            and np.allclose(baseline.GetSpacing(), followup.GetSpacing())
            and np.array_equal(sitk.GetArrayViewFromImage(baseline), sitk.GetArrayViewFromImage(followup))):
        raise InputError(names[1], f"holds the same image as the baseline FLAIR {names[0]}; "
                                   "give the follow-up visit's FLAIR")


def _read_visit(visit: str, flair: ImageInput, t1: ImageInput | None, t2: ImageInput | None) -> VisitImages:
    images: dict[str, sitk.Image | None] = {}
    names: dict[str, str] = {}
    for role, value in (("flair", flair), ("t1", t1), ("t2", t2)):
        if value is None:
            images[role] = None
        elif isinstance(value, sitk.Image):
            images[role], names[role] = sitk.Cast(value, sitk.sitkFloat32), f"<{visit} {role} image>"
        else:
            images[role], names[role] = read_image(value, role), str(value)
    return VisitImages(flair=images["flair"], t1=images["t1"], t2=images["t2"], names=names)


def _without_unused(bundle, visit: VisitImages) -> tuple[VisitImages, dict[str, str]]:
    """The visit without a T2W the model does not take, and {role: file} of what was left out."""
    images = {role: getattr(visit, role) for role in ("flair", "t1", "t2") if getattr(visit, role) is not None}
    names = dict(visit.names)
    unused = drop_unused_inputs(bundle, images, names)
    if not unused:
        return visit, {}
    return replace(visit, t2=images.get("t2"), names=names), unused


# ----------------------------------------------------------------- the run
def _to_followup(array: np.ndarray, case: PairCase, interpolator: int, pixel_type: int) -> sitk.Image:
    """A working-grid KJI array on the follow-up FLAIR's grid (one interpolation; both visits
    take this same transform)."""
    followup_to_working = registration.invert(case.working_to_flair["followup"])
    return sitk.Resample(array_to_working_image(array), case.flair_native["followup"],
                         followup_to_working, interpolator, 0.0, pixel_type)


def run_longitudinal(baseline_flair: ImageInput, followup_flair: ImageInput, *,
                     baseline_t1: ImageInput | None = None, followup_t1: ImageInput | None = None,
                     baseline_t2: ImageInput | None = None, followup_t2: ImageInput | None = None,
                     output_dir: str | Path | None = None, options: RunSettings | None = None,
                     progress: Progress | None = None) -> LongitudinalResult:
    """Classify lesion changes between two visits; write the files to ``output_dir`` when
    given (see the module docstring). Inputs are file paths, DICOM folders or SimpleITK
    images. Raises InputError (exit 2) for bad inputs, visits of different people, the same
    file twice, visits too far apart to register; ModelError, RegistrationError as ``segment``.
    """
    settings = (options or RunSettings()).validate()
    if settings.preprocessed:
        raise InputError(None, "longitudinal mode needs the native scans of both visits "
                               "(--preprocessed is not supported)")
    if baseline_flair is None or followup_flair is None:
        raise InputError(None, "longitudinal mode needs a FLAIR at both visits "
                               "(--baseline-flair and --followup-flair)")
    if baseline_t1 is None and followup_t1 is None:
        raise InputError(None, "longitudinal mode needs a T1W at one visit at least "
                               "(--baseline-t1 or --followup-t1)")
    check_distinct_files({"baseline FLAIR": baseline_flair, "follow-up FLAIR": followup_flair,
                          "baseline T1W": baseline_t1, "follow-up T1W": followup_t1,
                          "baseline T2W": baseline_t2, "follow-up T2W": followup_t2},
                         hint="each visit and modality needs its own image")
    if output_dir is not None:
        check_output_location(output_dir)
    progress = progress or Progress()
    started = time.perf_counter()

    progress.stage("loading model", message="loading model")
    bundle, model_paths = load_models(settings.model)
    resolved = resolve_plan(model_plan(bundle), settings)
    progress.stage("reading inputs", message="reading and checking both visits")
    visits = {"baseline": _read_visit("baseline", baseline_flair, baseline_t1, baseline_t2),
              "followup": _read_visit("followup", followup_flair, followup_t1, followup_t2)}
    not_used = {}
    for visit in VISITS:
        visits[visit], unused = _without_unused(bundle, visits[visit])
        if unused:
            not_used[visit] = unused
    _check_images_differ(visits["baseline"].flair, visits["followup"].flair,
                         (visits["baseline"].names.get("flair", "baseline FLAIR"),
                          visits["followup"].names.get("flair", "follow-up FLAIR")))

    case = preprocess_pair(visits["baseline"], visits["followup"], device=settings.device,
                           progress=progress, fraction_span=(0.03, 0.55),
                           allow_mismatch=settings.allow_mismatch)
    progress.stage("anatomy", message="tissue segmentation and anatomy maps (one head, both visits)")
    anatomy = compute_anatomy(case.t1_for_anatomy, case.brain_mask)
    # one head: both visits are referenced to the same tissue voxels
    for visit in VISITS:
        case.images[visit], _ = model_inputs(case.images[visit], case.brain_mask, anatomy.tissue,
                                             resolved.plan.normalisation, resolved.plan.noise_target)

    predictions = {}
    for index, visit in enumerate(VISITS):
        progress.stage("network", 0.62 + 0.14 * index, f"running the model on the {VISIT_NAMES[visit]} visit")
        stack = np.stack([case.images[visit].get(m, np.zeros_like(case.images[visit]["flair"]))
                          for m in bundle.config.modalities]).astype(np.float32)
        predictions[visit] = predict(bundle, stack, anatomy.channels, case.brain_mask,
                                     device=settings.device, ensemble=settings.ensemble,
                                     tta=settings.tta, threshold=resolved.plan.threshold,
                                     modalities_present=case.modalities_present[visit],
                                     average_without=resolved.plan.average_without)

    progress.stage("lesion analysis", message="lesions of both visits on the follow-up grid; change rules")
    labels = {}
    # one head: the grey matter of the one tissue segmentation serves both visits
    grey_matter = (_to_followup(grey_matter_indicator(anatomy.tissue), case, sitk.sitkNearestNeighbor,
                                sitk.sitkFloat32) if resolved.plan.max_grey_matter_fraction < 1 else None)
    for visit in VISITS:
        prediction = predictions[visit]
        vote = _to_followup(prediction.mask.astype(np.float32), case, sitk.sitkLinear, sitk.sitkFloat32)
        score = (None if prediction.sphere_probability is None else
                 _to_followup(prediction.sphere_probability, case, sitk.sitkLinear, sitk.sitkFloat32))
        contrast = (flair_contrast(case.images[visit]["flair"], case.brain_mask, anatomy.tissue)
                    if resolved.plan.min_flair_contrast > 0 else None)
        contrast_map = None if contrast is None else _to_followup(contrast, case, sitk.sitkLinear,
                                                                  sitk.sitkFloat32)
        labels[visit] = postprocess(vote, resolved.plan, score, contrast_map, grey_matter).labels
    flairs = {v: _to_followup(case.images[v]["flair"], case, sitk.sitkLinear, sitk.sitkFloat32) for v in VISITS}
    flair_change = sitk.Subtract(flairs["followup"], flairs["baseline"])
    reference = case.flair_native["followup"]
    voxel_mm3 = float(np.prod(reference.GetSpacing()))
    result = change_rules.classify_changes(sitk.GetArrayViewFromImage(labels["baseline"]),
                                           sitk.GetArrayViewFromImage(labels["followup"]),
                                           sitk.GetArrayViewFromImage(flair_change), voxel_mm3)
    zones = _to_followup(anatomy.zones, case, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    changes = _ordered(result.changes)
    places, change_ids = _places(changes, reference, zones)

    images = {"change_labels": _image(result.class_map, reference),
              "new_enlarged": _image(result.new_enlarged, reference)}
    summary = _summary(settings, model_paths, bundle, resolved, visits, not_used, case, changes,
                       voxel_mm3, sitk.GetArrayViewFromImage(labels["baseline"]),
                       sitk.GetArrayViewFromImage(labels["followup"]), result.new_enlarged)
    outcome = LongitudinalResult(change_labels=images["change_labels"], new_enlarged=images["new_enlarged"],
                                 baseline_labels=labels["baseline"], followup_labels=labels["followup"],
                                 flair_change=flair_change, changes=changes, places=places,
                                 change_ids=change_ids, visit_flairs=flairs, summary=summary)
    if output_dir is not None:
        from .longitudinal_outputs import write_longitudinal_files

        progress.stage("writing", message=f"writing outputs to {output_dir}")
        output_dir = Path(output_dir)
        with atomic_output_dir(output_dir, owned=LONGITUDINAL_OUTPUT_FILES.values()) as tmp:
            files = write_longitudinal_files(Path(tmp), outcome, report=settings.report)
            _finish(progress, summary, started, case)
            summary[SUMMARY_OUTPUTS_KEY] = files
            from .outputs import write_summary
            write_summary(Path(tmp), summary)
        outcome.output_dir = output_dir
        outcome.files = {key: output_dir / name for key, name in files.items()}
    else:
        _finish(progress, summary, started, case)
    return outcome


def _image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    return image


_CLASS_ORDER = {name: i for i, name in enumerate(("new", "enlarging", "shrinking", "resolved", "stable"))}


def _ordered(changes: list[change_rules.LesionChange]) -> list[change_rules.LesionChange]:
    """Changes first (new, enlarging, shrinking, resolved), then stable; larger first."""
    return sorted(changes, key=lambda c: (_CLASS_ORDER[c.change_class],
                                          -max(c.volume_followup_mm3, c.volume_baseline_mm3),
                                          c.followup_id or 0, c.baseline_ids))


def _places(changes: list[change_rules.LesionChange], reference: sitk.Image,
            zones: sitk.Image) -> tuple[list[Lesion], sitk.Image]:
    """Centroid (RAS) and location class of each drawn lesion, by ``allnet.lesions.lesion_table``
    on the image of their numbers (returned too; regions are disjoint: follow-up lesions, and
    baseline lesions no follow-up lesion touches)."""
    ids = np.zeros(reference.GetSize()[::-1], dtype=np.uint32)
    for number, item in enumerate(changes, start=1):
        ids[item.box][item.region] = number
    image = _image(ids, reference)
    table = {lesion.id: lesion for lesion in lesion_table(image, None, zones)}
    return [table[number] for number in range(1, len(changes) + 1)], image


def _summary(settings: RunSettings, model_paths: list[str], bundle, resolved, visits: dict,
             not_used: dict[str, dict[str, str]], case: PairCase, changes: list, voxel_mm3: float,
             baseline_ids: np.ndarray, followup_ids: np.ndarray, new_enlarged: np.ndarray) -> dict:
    """summary.json content (timings and the output list are added when known)."""
    from .pipeline import model_meta

    return {
        "allnet_version": __version__,
        "mode": "longitudinal",
        "model": {"files": model_paths, "members": len(bundle.members), **model_meta(bundle)},
        "inputs": {visit: visits[visit].names for visit in VISITS},
        **({"inputs_not_used": not_used} if not_used else {}),
        "modalities_present": case.modalities_present,
        "t1_source": case.t1_source,
        "settings": asdict(settings) | {"model": model_paths},
        SUMMARY_PLAN_KEY: resolved.to_dict(),
        "rules": {"change_min_z": change_rules.CHANGE_MIN_Z,
                  "change_min_mm3": change_rules.CHANGE_MIN_MM3},
        "counts": change_rules.counts(changes),
        "totals": {"baseline_volume_ml": float(np.count_nonzero(baseline_ids)) * voxel_mm3 / 1000.0,
                   "followup_volume_ml": float(np.count_nonzero(followup_ids)) * voxel_mm3 / 1000.0,
                   "baseline_lesions": int(len(np.unique(baseline_ids)) - 1),
                   "followup_lesions": int(len(np.unique(followup_ids)) - 1),
                   "new_enlarged_volume_ml": float(np.count_nonzero(new_enlarged)) * voxel_mm3 / 1000.0},
        "qc": case.qc,
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "warnings": case.warnings + [f"{VISIT_NAMES[visit]} visit: {text}" for visit, unused in not_used.items()
                                     for text in unused_input_warnings(bundle, unused)]
                    + input_warnings(case.modalities_present, bundle.config.modalities),
        "coordinate_system": "outputs on the follow-up FLAIR grid; centroids in RAS mm of its physical space",
    }


def input_warnings(modalities_present: dict[str, list[str]],
                   model_modalities: tuple[str, ...] = KNOWN_MODALITIES) -> list[str]:
    """Warnings about the inputs of the two visits, for a model of ``model_modalities``: a T2W
    at one visit only (the visits are then segmented from different inputs, which can look
    like change), or at neither. None for a model that takes no T2W."""
    if "t2" not in model_modalities:
        return []
    with_t2 = [visit for visit in VISITS if "t2" in modalities_present[visit]]
    if len(with_t2) == 1:
        return [f"T2W given for the {VISIT_NAMES[with_t2[0]]} visit only: the visits were segmented "
                "from different inputs, which can show as change; give the T2W of both visits or of neither"]
    if not with_t2:
        return ["T2W not given: both visits segmented from T1W and FLAIR only (T2W channel set to zero)"]
    return []


def _finish(progress: Progress, summary: dict, started: float, case: PairCase) -> None:
    counts = summary["counts"]
    progress.finish(f"{counts['new']} new, {counts['enlarging']} enlarging lesions")
    timings = dict(progress.timings, total=time.perf_counter() - started)
    summary["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    summary["preprocessing_timings_s"] = {k: round(v, 3) for k, v in case.timings.items()}


def longitudinal(baseline_flair: ImageInput, followup_flair: ImageInput, *,
                 baseline_t1: ImageInput | None = None, followup_t1: ImageInput | None = None,
                 baseline_t2: ImageInput | None = None, followup_t2: ImageInput | None = None,
                 output_dir: str | Path | None = None, progress: Progress | None = None,
                 **options) -> LongitudinalResult:
    """Python API: ``allnet.longitudinal(baseline_flair, followup_flair, baseline_t1=...,
    followup_t1=..., output_dir=..., **settings)``; the keyword settings are the fields of
    ``allnet.contract.RunSettings``."""
    return run_longitudinal(baseline_flair, followup_flair, baseline_t1=baseline_t1,
                            followup_t1=followup_t1, baseline_t2=baseline_t2, followup_t2=followup_t2,
                            output_dir=output_dir, options=RunSettings(**options), progress=progress)
