"""The one segmentation pipeline behind the CLI, the Python API and the Slicer module.

Stages: read and check inputs -> preprocess to the working (MNI 1 mm) grid -> anatomy
channels and location zones -> network -> back to the FLAIR's native grid -> lesion
components and table -> files. Every result image is in the geometry of the input FLAIR.
"""
from __future__ import annotations

import platform
import time
import warnings as py_warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__, outputs
from .anatomy import compute_anatomy
from .contract import OUTPUT_FILES, REPORT_FILE, SUMMARY_OUTPUTS_KEY, SUMMARY_PLAN_KEY, RunSettings, SettingError, stage_span
from .errors import ModelError
from .grid import array_to_working_image
from .inference import predict
from .io import ROLES, atomic_output_dir, read_image
from .lesions import Lesion, lesion_table, lesion_totals
from .model import ModelBundle, bundled_model_path, load_model_file
from .plan import MODEL_INPUT_KEYS, PLAN_META_KEY, InferencePlan, ResolvedPlan, resolve_plan
from .postprocess import Lesions, postprocess
from .preprocessing.intensity import flair_contrast
from .preprocessing.noise import model_inputs
from .preprocessing.pipeline import PreprocessedCase, preprocess
from .progress import Progress
from .tissue import grey_matter_indicator
from .validation import check_distinct_files

ImageInput = "str | Path | sitk.Image"


# The run settings are defined once, in allnet.contract; this name stays for API users.
SegmentOptions = RunSettings


@dataclass
class SegmentationResult:
    """Everything one run produced; images are in the input FLAIR's geometry (LPS)."""

    mask: sitk.Image
    labels: sitk.Image
    probability: sitk.Image
    zones: sitk.Image
    lesions: list[Lesion]
    totals: dict
    summary: dict
    output_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


def load_models(model: list[str] | str | None) -> tuple[ModelBundle, list[str]]:
    """Load the model file(s); several files are pooled into one ensemble.

    The loaded ensemble is kept per process (keyed on each file's path, size and
    modification time), so a worker that runs many cases of a cohort reads its model once;
    a rewritten file is read again. Raises ModelError when no model is given and none is
    bundled, or when the files' configurations differ.
    """
    paths = [model] if isinstance(model, (str, Path)) else list(model or [])
    if not paths:
        bundled = bundled_model_path()
        if bundled is None:
            raise ModelError(
                "no trained model is bundled with this version of ALLNet; pass a model file "
                "with --model (train one with allnet-train)")
        paths = [str(bundled)]
    stamps = []
    for path in paths:
        try:
            stat = Path(path).stat()
        except OSError:
            return _load_models_uncached(tuple(str(p) for p in paths))  # raises the named error
        stamps.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    bundle = _load_models_cached(tuple(str(p) for p in paths), tuple(stamps))
    return bundle, [str(p) for p in paths]


@lru_cache(maxsize=2)
def _load_models_cached(paths: tuple[str, ...], stamps: tuple) -> ModelBundle:
    """``stamps`` (path, size, mtime per file) only keys the cache."""
    return _load_models_uncached(paths)[0]


def _load_models_uncached(paths: tuple[str, ...]) -> tuple[ModelBundle, list[str]]:
    bundles = [load_model_file(p) for p in paths]
    first = bundles[0]
    for path, other in zip(paths[1:], bundles[1:]):
        if _architecture(other) != _architecture(first):
            raise ModelError(f"{path}: its configuration differs from {paths[0]}; "
                             "only models of one architecture can form an ensemble")
        first.members.extend(other.members)
    return first, [str(p) for p in paths]


def _architecture(bundle: ModelBundle) -> dict:
    """The config entries that must agree for members to vote together (meta may differ)."""
    return {k: v for k, v in bundle.config.to_dict().items() if k not in ("meta", "version")}


def model_plan(bundle: ModelBundle) -> dict:
    """The inference plan stored in a model file (its input entries from its config);
    ModelError naming the file when this version cannot apply it."""
    stored = dict((bundle.meta or {}).get(PLAN_META_KEY) or {})
    stored |= {key: getattr(bundle.config, key) for key in MODEL_INPUT_KEYS}
    try:
        InferencePlan.from_dict(stored)
    except (SettingError, TypeError) as exc:
        raise ModelError(f"{bundle.path or 'model'}: unusable inference plan: {exc}") from None
    return stored


def _read_inputs(t1: ImageInput, flair: ImageInput, t2: ImageInput | None
                 ) -> tuple[dict[str, sitk.Image], dict[str, str]]:
    images, names = {}, {}
    for role, value in (("t1", t1), ("flair", flair), ("t2", t2)):
        if value is None:
            continue
        if isinstance(value, sitk.Image):
            images[role], names[role] = sitk.Cast(value, sitk.sitkFloat32), f"<{role} image>"
        else:
            images[role], names[role] = read_image(value, role), str(value)
    return images, names


def drop_unused_inputs(bundle: ModelBundle, images: dict, names: dict[str, str]) -> dict[str, str]:
    """Remove from ``images``/``names`` (role -> image, role -> file) a T2W the model does not
    take (a FLAIR + T1W model); returns {role: file} of what was removed. FLAIR and T1W are
    always kept: preprocessing and the anatomy channels need them whatever the model reads."""
    unused = {}
    for role in [r for r in images if r not in ("flair", "t1") and r not in bundle.config.modalities]:
        del images[role]
        unused[role] = names.pop(role)
    return unused


def unused_input_warnings(bundle: ModelBundle, unused: dict[str, str]) -> list[str]:
    """The warning for each given image the model does not take."""
    uses = " and ".join(ROLES[m] for m in bundle.config.modalities)
    return [f"{ROLES[role]} given ({name}) but not used: this model takes {uses} only "
            "(see its model card)" for role, name in unused.items()]


def _to_native(array: np.ndarray, case: PreprocessedCase, interpolator: int,
               pixel_type: int) -> sitk.Image:
    """Resample a working-grid KJI array onto the input FLAIR's grid (one interpolation)."""
    native_to_working = case.working_to_native.GetInverse()
    return sitk.Resample(array_to_working_image(array), case.flair_native, native_to_working,
                         interpolator, 0.0, pixel_type)


def run_pipeline(t1: ImageInput, flair: ImageInput, t2: ImageInput | None = None,
                 output_dir: str | Path | None = None, options: RunSettings | None = None,
                 progress: Progress | None = None) -> SegmentationResult:
    """Segment MS lesions; write the output files to ``output_dir`` when given.

    ``t1``/``flair``/``t2`` are file paths, DICOM folders or SimpleITK images (T2W optional).
    Settings and output location are checked before any computation; outputs appear only
    when the whole run succeeded (built in a temporary sibling folder).
    """
    settings = (options or RunSettings()).validate()
    check_distinct_files({"T1W": t1, "FLAIR": flair, "T2W": t2},
                         hint="T1W, FLAIR and T2W each need their own image")
    if output_dir is not None:
        outputs.check_output_location(output_dir)
    progress = progress or Progress()
    started = time.perf_counter()
    warnings: list[str] = []

    progress.stage("loading model", message="loading model")
    bundle, model_paths = load_models(settings.model)
    resolved = resolve_plan(model_plan(bundle), settings)
    progress.stage("reading inputs", message="reading and checking images")
    images, names = _read_inputs(t1, flair, t2)
    unused = drop_unused_inputs(bundle, images, names)
    warnings += unused_input_warnings(bundle, unused)
    if "t2" not in images and "t2" in bundle.config.modalities:
        warnings.append("T2W not given: segmented from T1W and FLAIR only (T2W channel set to zero)")

    case = preprocess(images["t1"], images["flair"], images.get("t2"),
                      already_in_mni=settings.preprocessed, paths=names, progress=progress,
                      device=settings.device, fraction_span=stage_span("preprocessing"),
                      allow_mismatch=settings.allow_mismatch)
    warnings += case.warnings  # a head mismatch let through by allow_mismatch
    progress.stage("anatomy", message="tissue segmentation and anatomy maps")
    anatomy = compute_anatomy(case.images["t1"], case.brain_mask)
    case.images, noise = model_inputs(case.images, case.brain_mask, anatomy.tissue,
                                      resolved.plan.normalisation, resolved.plan.noise_target)
    if noise:
        case.qc["noise_harmonisation"] = noise

    progress.stage("network", message=f"running {len(bundle.members)} model(s)")
    stack = np.stack([case.images.get(m, np.zeros_like(case.images["flair"]))
                      for m in bundle.config.modalities]).astype(np.float32)
    with py_warnings.catch_warnings(record=True) as caught:
        py_warnings.simplefilter("always")
        prediction = predict(bundle, stack, anatomy.channels, case.brain_mask, device=settings.device,
                             ensemble=settings.ensemble, tta=settings.tta,
                             threshold=resolved.plan.threshold, progress=progress,
                             progress_span=stage_span("network"),
                             modalities_present=case.modalities_present,
                             average_without=resolved.plan.average_without)
    warnings += [str(w.message) for w in caught]  # e.g. a modality missing for a model not trained so

    progress.stage("lesion analysis", message="resampling to the FLAIR grid and measuring lesions")
    probability = _to_native(prediction.probability, case, sitk.sitkLinear, sitk.sitkFloat32)
    # Linear interpolation of the binary vote, cut at 0.5 in postprocess, keeps lesion
    # borders sub-voxel smooth.
    vote = _to_native(prediction.mask.astype(np.float32), case, sitk.sitkLinear, sitk.sitkFloat32)
    zones = _to_native(anatomy.zones, case, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    score_map = (None if prediction.sphere_probability is None else
                 _to_native(prediction.sphere_probability, case, sitk.sitkLinear, sitk.sitkFloat32))
    contrast = (flair_contrast(case.images["flair"], case.brain_mask, anatomy.tissue)
                if resolved.plan.min_flair_contrast > 0 else None)
    contrast_map = None if contrast is None else _to_native(contrast, case, sitk.sitkLinear, sitk.sitkFloat32)
    grey_matter = (_to_native(grey_matter_indicator(anatomy.tissue), case, sitk.sitkNearestNeighbor,
                              sitk.sitkFloat32) if resolved.plan.max_grey_matter_fraction < 1 else None)
    found = postprocess(vote, resolved.plan, score_map, contrast_map, grey_matter)
    mask = sitk.Cast(found.labels > 0, sitk.sitkUInt8)
    lesions = lesion_table(found.labels, probability, zones, found.scores)
    totals = lesion_totals(lesions)
    if score_map is None and resolved.plan.lesion_score_threshold > 0:
        warnings.append("the model has no sphere head: the lesion-score threshold was not applied")
    if contrast is None and resolved.plan.min_flair_contrast > 0:
        warnings.append("CSF is not darker than white matter on this FLAIR (or too little of either "
                        "was found): the FLAIR-contrast floor was not applied")

    summary = _summary(settings, bundle, model_paths, names, case, prediction, resolved,
                       found, totals, warnings)
    if unused:
        summary["inputs_not_used"] = unused
    result = SegmentationResult(mask=mask, labels=found.labels, probability=probability,
                                zones=zones, lesions=lesions, totals=totals, summary=summary)
    if output_dir is not None:
        progress.stage("writing", message=f"writing outputs to {output_dir}")
        output_dir = Path(output_dir)
        working = _working_arrays(case, prediction, anatomy) if settings.save_working_grid else None
        with atomic_output_dir(output_dir, owned=OUTPUT_FILES.values()) as tmp:
            files = outputs.write_result_files(Path(tmp), result, settings, working)
            _finish(progress, summary, started, case, totals)
            if settings.report:
                files["report"] = _write_report(Path(tmp), summary, result, images, case, prediction)
            summary[SUMMARY_OUTPUTS_KEY] = files | {"summary": outputs.SUMMARY_FILE}
            outputs.write_summary(Path(tmp), summary)
        result.output_dir = output_dir
        result.files = {key: output_dir / name for key, name in summary[SUMMARY_OUTPUTS_KEY].items()}
    else:
        _finish(progress, summary, started, case, totals)
    return result


def _summary(settings: RunSettings, bundle: ModelBundle, model_paths: list[str], names: dict,
             case: PreprocessedCase, prediction, resolved: ResolvedPlan, found: Lesions,
             totals: dict, warnings: list[str]) -> dict:
    """summary.json content (timings and the output list are added when they are known)."""
    return {
        "allnet_version": __version__,
        "model": {"files": model_paths, "members": len(bundle.members),
                  "members_used": prediction.n_members, **model_meta(bundle)},
        "inputs": names,
        "modalities_present": case.modalities_present,
        "settings": asdict(settings) | {"model": model_paths},
        SUMMARY_PLAN_KEY: resolved.to_dict() | {"lesions_dropped_by_score": found.dropped_by_score,
                                                "lesions_dropped_by_contrast": found.dropped_by_contrast,
                                                "lesions_dropped_by_grey_matter": found.dropped_by_grey_matter,
                                                "lesion_scores": prediction.sphere_probability is not None},
        "device": prediction.device_used,
        "precision": prediction.precision,
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "totals": totals,
        "qc": case.qc,
        "warnings": warnings,
        "coordinate_system": "outputs on the input FLAIR grid; centroids in RAS mm of its physical space",
    }


def _finish(progress: Progress, summary: dict, started: float, case: PreprocessedCase,
            totals: dict) -> None:
    """Close the timers and put them into the summary."""
    progress.finish(f"{totals['count']} lesions, {totals['total_volume_ml']:.2f} mL")
    timings = dict(progress.timings, total=time.perf_counter() - started)
    summary["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    summary["preprocessing_timings_s"] = {k: round(v, 3) for k, v in case.timings.items()}


def model_meta(bundle: ModelBundle) -> dict:
    """Name, version and whether the weights were trained (bundles exported by allnet-train
    carry their training data in ``meta``; random test bundles do not)."""
    meta = dict(bundle.meta or {})
    name = meta.get("name") or (bundle.path.stem if bundle.path else "unnamed")
    return {"name": name, "version": meta.get("version", bundle.config.version),
            "trained": bool(meta.get("trained", "training_data" in meta)),
            "training_data": meta.get("training_data")}


def _write_report(folder: Path, summary: dict, result: SegmentationResult, images: dict[str, sitk.Image],
                  case: PreprocessedCase, prediction) -> str:
    """Write the QC report into ``folder``; its own time is added to the summary's timings."""
    from .report import ReportData, write_report  # matplotlib is imported only for a report

    started = time.perf_counter()
    geometry = {role: {"size": image.GetSize(), "spacing_mm": image.GetSpacing()}
                for role, image in images.items()}
    write_report(folder / REPORT_FILE, ReportData(
        summary=summary, lesions=result.lesions, flair=case.flair_native, labels=result.labels,
        input_geometry=geometry, working_images=case.images, brain_mask=case.brain_mask,
        working_mask=prediction.mask))
    seconds = time.perf_counter() - started
    summary["timings_s"]["report"] = round(seconds, 3)
    summary["timings_s"]["total"] = round(summary["timings_s"]["total"] + seconds, 3)
    return REPORT_FILE


def _working_arrays(case: PreprocessedCase, prediction, anatomy) -> dict[str, np.ndarray]:
    """The MNI working-grid versions: preprocessed images, brain mask, maps, prediction."""
    arrays = {f"{name}_preprocessed": image for name, image in case.images.items()}
    arrays |= {"brain_mask": case.brain_mask, "tissue": anatomy.tissue, "zones": anatomy.zones,
               "lesion_probability": prediction.probability, "lesion_mask": prediction.mask}
    if prediction.sphere_probability is not None:
        arrays["lesion_score_map"] = prediction.sphere_probability
    return arrays


def segment(t1: ImageInput, flair: ImageInput, t2: ImageInput | None = None,
            output_dir: str | Path | None = None, *, progress: Progress | None = None,
            **options) -> SegmentationResult:
    """Python API: ``allnet.segment(t1, flair, t2=None, output_dir=None, **settings)``; the
    keyword arguments are the fields of ``allnet.contract.RunSettings``."""
    return run_pipeline(t1, flair, t2, output_dir, RunSettings(**options), progress)
