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
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__, outputs
from .anatomy import compute_anatomy
from .errors import InputError, ModelError
from .grid import array_to_working_image
from .inference import predict
from .io import atomic_output_dir, read_image
from .lesions import (DEFAULT_MIN_LESION_MM3, Lesion, label_lesions, lesion_table, lesion_totals,
                      write_lesions_csv)
from .model import ModelBundle, bundled_model_path, load_model_file
from .preprocessing.pipeline import PreprocessedCase, preprocess
from .progress import Progress

ImageInput = "str | Path | sitk.Image"


@dataclass
class SegmentOptions:
    """Settings of one run. ``model``: one or more model files (their members are pooled
    into one majority-vote ensemble); None = the bundled model."""

    model: list[str] | str | None = None
    device: str = "auto"
    threshold: float = 0.5
    min_lesion_mm3: float = DEFAULT_MIN_LESION_MM3
    connectivity: int = 26
    tta: bool = False
    ensemble: str = "full"
    preprocessed: bool = False
    write_probability: bool = True
    per_lesion_segments: bool = False
    save_working_grid: bool = False

    def validate(self) -> None:
        """Raise InputError for out-of-range settings (named as the CLI option)."""
        if not 0.0 < self.threshold < 1.0:
            raise InputError(None, f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.min_lesion_mm3 < 0:
            raise InputError(None, f"--min-lesion-mm3 must be >= 0, got {self.min_lesion_mm3}")
        if self.connectivity not in (6, 18, 26):
            raise InputError(None, f"--connectivity must be 6, 18 or 26, got {self.connectivity}")
        if self.ensemble not in ("full", "fast"):
            raise InputError(None, f"--ensemble must be 'full' or 'fast', got {self.ensemble!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InputError(None, f"--device must be auto, cpu or cuda, got {self.device!r}")


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

    Raises ModelError when no model is given and none is bundled, or when the files'
    configurations differ.
    """
    paths = [model] if isinstance(model, (str, Path)) else list(model or [])
    if not paths:
        bundled = bundled_model_path()
        if bundled is None:
            raise ModelError(
                "no trained model is bundled with this version of ALLNet; pass a model file "
                "with --model (train one with allnet-train)")
        paths = [str(bundled)]
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


def _to_native(array: np.ndarray, case: PreprocessedCase, interpolator: int,
               pixel_type: int) -> sitk.Image:
    """Resample a working-grid KJI array onto the input FLAIR's grid (one interpolation)."""
    native_to_working = case.working_to_native.GetInverse()
    return sitk.Resample(array_to_working_image(array), case.flair_native, native_to_working,
                         interpolator, 0.0, pixel_type)


def run_pipeline(t1: ImageInput, flair: ImageInput, t2: ImageInput | None = None,
                 output_dir: str | Path | None = None, options: SegmentOptions | None = None,
                 progress: Progress | None = None) -> SegmentationResult:
    """Segment MS lesions; write the output files to ``output_dir`` when given.

    ``t1``/``flair``/``t2`` are file paths, DICOM folders or SimpleITK images (T2W optional).
    Outputs appear only when the whole run succeeded (built in a temporary sibling folder).
    """
    options = options or SegmentOptions()
    options.validate()
    progress = progress or Progress()
    started = time.perf_counter()
    warnings: list[str] = []

    progress.stage("loading model", 0.0, "loading model")
    bundle, model_paths = load_models(options.model)
    progress.stage("reading inputs", 0.02, "reading and checking images")
    images, names = _read_inputs(t1, flair, t2)
    if "t2" not in images:
        warnings.append("T2W not given: segmented from T1W and FLAIR only (T2W channel set to zero)")

    case = preprocess(images["t1"], images["flair"], images.get("t2"),
                      already_in_mni=options.preprocessed, paths=names, progress=progress,
                      device=options.device, fraction_span=(0.03, 0.55))
    progress.stage("anatomy", 0.55, "tissue segmentation and anatomy maps")
    anatomy = compute_anatomy(case.images["t1"], case.brain_mask)

    progress.stage("network", 0.62, f"running {len(bundle.members)} model(s)")
    stack = np.stack([case.images.get(m, np.zeros_like(case.images["flair"]))
                      for m in bundle.config.modalities]).astype(np.float32)
    with py_warnings.catch_warnings(record=True) as caught:
        py_warnings.simplefilter("always")
        prediction = predict(bundle, stack, anatomy.channels, case.brain_mask, device=options.device,
                             ensemble=options.ensemble, tta=options.tta, threshold=options.threshold,
                             progress=progress, progress_span=(0.62, 0.9),
                             modalities_present=case.modalities_present)
    warnings += [str(w.message) for w in caught]  # e.g. a modality missing for a model not trained so

    progress.stage("lesion analysis", 0.9, "resampling to the FLAIR grid and measuring lesions")
    probability = _to_native(prediction.probability, case, sitk.sitkLinear, sitk.sitkFloat32)
    # Linear interpolation of the binary vote, cut at 0.5, keeps lesion borders sub-voxel smooth.
    vote = _to_native(prediction.mask.astype(np.float32), case, sitk.sitkLinear, sitk.sitkFloat32)
    zones = _to_native(anatomy.zones, case, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    labels = label_lesions(vote >= 0.5, connectivity=options.connectivity,
                           min_size_mm3=options.min_lesion_mm3)
    mask = sitk.Cast(labels > 0, sitk.sitkUInt8)
    lesions = lesion_table(labels, probability, zones)
    totals = lesion_totals(lesions)

    summary = {
        "allnet_version": __version__,
        "model": {"files": model_paths, "members": len(bundle.members),
                  "members_used": prediction.n_members, **_model_meta(bundle)},
        "inputs": names,
        "modalities_present": case.modalities_present,
        "settings": asdict(options) | {"model": model_paths},
        "device": prediction.device_used,
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "totals": totals,
        "qc": case.qc,
        "warnings": warnings,
        "coordinate_system": "outputs on the input FLAIR grid; centroids in RAS mm of its physical space",
    }
    result = SegmentationResult(mask=mask, labels=labels, probability=probability, zones=zones,
                                lesions=lesions, totals=totals, summary=summary)
    done_message = f"{totals['count']} lesions, {totals['total_volume_ml']:.2f} mL"

    def finish() -> None:
        progress.finish(done_message)
        timings = dict(progress.timings, total=time.perf_counter() - started)
        summary["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        summary["preprocessing_timings_s"] = {k: round(v, 3) for k, v in case.timings.items()}

    if output_dir is None:
        finish()
    else:
        progress.stage("writing", 0.97, f"writing outputs to {output_dir}")
        _write(result, Path(output_dir), options, case, prediction, anatomy, finish)
    return result


def _model_meta(bundle: ModelBundle) -> dict:
    """Name, version and whether the weights were trained (bundles exported by allnet-train
    carry their training data in ``meta``; random test bundles do not)."""
    meta = dict(bundle.meta or {})
    name = meta.get("name") or (bundle.path.stem if bundle.path else "unnamed")
    return {"name": name, "version": meta.get("version", bundle.config.version),
            "trained": bool(meta.get("trained", "training_data" in meta)),
            "training_data": meta.get("training_data")}


def _write(result: SegmentationResult, output_dir: Path, options: SegmentOptions,
           case: PreprocessedCase, prediction, anatomy, finish) -> None:
    """Write all files into a temporary sibling folder, then move them into ``output_dir``.

    ``finish`` closes the timers just before summary.json is written, so it holds them all.
    """
    with atomic_output_dir(output_dir) as tmp:
        tmp = Path(tmp)
        files = {
            "mask": outputs.MASK_FILE, "labels": outputs.LABELS_FILE, "zones": outputs.ZONES_FILE,
            "segmentation": outputs.SEGMENTATION_FILE, "table": outputs.TABLE_FILE,
            "summary": outputs.SUMMARY_FILE,
        }
        sitk.WriteImage(result.mask, str(tmp / outputs.MASK_FILE), True)
        sitk.WriteImage(sitk.Cast(result.labels, sitk.sitkUInt16), str(tmp / outputs.LABELS_FILE), True)
        sitk.WriteImage(result.zones, str(tmp / outputs.ZONES_FILE), True)
        if options.write_probability:
            sitk.WriteImage(result.probability, str(tmp / outputs.PROBABILITY_FILE), True)
            files["probability"] = outputs.PROBABILITY_FILE
        outputs.write_segmentation_nrrd(tmp / outputs.SEGMENTATION_FILE, result.labels,
                                        [lesion.id for lesion in result.lesions],
                                        per_lesion=options.per_lesion_segments)
        write_lesions_csv(result.lesions, tmp / outputs.TABLE_FILE)
        if options.save_working_grid:
            _write_working(tmp / outputs.WORKING_DIR, case, prediction, anatomy)
            files["working_grid"] = outputs.WORKING_DIR
        result.summary["outputs"] = files
        finish()
        outputs.write_json(result.summary, tmp / outputs.SUMMARY_FILE)
    result.output_dir = output_dir
    result.files = {key: output_dir / name for key, name in files.items()}


def _write_working(folder: Path, case: PreprocessedCase, prediction, anatomy) -> None:
    """The MNI working-grid versions: preprocessed images, brain mask, maps, prediction."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}_preprocessed": image for name, image in case.images.items()}
    arrays |= {"brain_mask": case.brain_mask, "tissue": anatomy.tissue, "zones": anatomy.zones,
               "lesion_probability": prediction.probability, "lesion_mask": prediction.mask}
    for name, array in arrays.items():
        sitk.WriteImage(array_to_working_image(array), str(folder / f"{name}.nii.gz"), True)


def segment(t1: ImageInput, flair: ImageInput, t2: ImageInput | None = None,
            output_dir: str | Path | None = None, *, progress: Progress | None = None,
            **options) -> SegmentationResult:
    """Python API: ``allnet.segment(t1, flair, t2=None, output_dir=None, **SegmentOptions)``."""
    return run_pipeline(t1, flair, t2, output_dir, SegmentOptions(**options), progress)
