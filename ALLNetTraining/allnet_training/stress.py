"""Stress set and false-positive audit of a finished leave-one-subject-out cross-validation.

Stress set: every held-out scan, predicted by its own fold's model (``fold_<s>/bundle.pt``),
as given and under four perturbations, each followed by the pipeline's normalisation
(``allnet.preprocessing.intensity.normalise``) so the network sees what the pipeline would
give it:
- ``gm_bright``: FLAIR grey matter moved 70 % of the way from its median towards the median
  of the case's lesions (soft tissue edges), as on FLAIRs where cortex is nearly as bright as
  lesions;
- ``thick_5mm``: every modality as a 2D acquisition of 5 mm axial slices (Gaussian slice
  profile) resampled back to 1 mm (``synth_acquisition.thick_slices`` along K);
- ``8bit``: every modality stored with 256 grey levels over its brain range;
- ``no_t2``: T2W removed.
Scores come from ``crossval.score`` (the product's post-processing, 18-connectivity counts).

False-positive audit: predicted lesion volume (mL, after the same post-processing) inside the
template's normal-tissue regions where MS lesions are not expected and bright normal tissue
lies (``allnet.regions``: midline GM = septum, fornix, hypothalamus; the cerebellar cortex;
the choroid plexus). Arrays are KJI on the working grid (1 mm voxels, so voxels = mm3).
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from allnet.atomic import atomic_file, write_text_atomic
from allnet.model import ModelBundle, load_model_file
from allnet.pipeline import model_plan
from allnet.plan import DEFAULT_PLAN, InferencePlan
from allnet.postprocess import postprocess_array
from allnet.preprocessing.intensity import normalise

from .cache import MODALITIES, CachedCase
from .crossval import plan_labels, predict_cached, score
from .synth_acquisition import thick_slices

PERTURBATIONS = ("none", "gm_bright", "thick_5mm", "8bit", "no_t2")
AUDIT_REGIONS = ("midline_gm", "cerebellar_cortex", "choroid_plexus")
GM_TOWARDS_LESION = 0.7
_TISSUE_GM = 2


def _renormalised(case: CachedCase, images: np.ndarray, present: tuple[str, ...]) -> CachedCase:
    out = np.zeros_like(images, dtype=np.float16)
    for index, name in enumerate(MODALITIES):
        if name in present:
            out[index] = normalise(images[index], case.brain).astype(np.float16)
    return replace(case, images=out, present=present)


def perturb(case: CachedCase, name: str) -> CachedCase:
    """``case`` under perturbation ``name`` (module doc), renormalised; 'none' returns it."""
    if name == "none":
        return case
    images = case.images.astype(np.float32)
    present = case.present
    brain = case.brain > 0
    if name == "gm_bright":
        flair = images[MODALITIES.index("flair")]
        lesion = case.mask > 0
        gm = (case.tissue == _TISSUE_GM) & brain & ~lesion
        if lesion.any() and gm.any():
            shift = GM_TOWARDS_LESION * (np.median(flair[lesion]) - np.median(flair[gm]))
            soft = ndimage.gaussian_filter(gm.astype(np.float32), 0.7)
            images[MODALITIES.index("flair")] = (flair + max(shift, 0.0) * soft) * brain
    elif name == "thick_5mm":
        for index, modality in enumerate(MODALITIES):
            if modality in present:
                images[index] = thick_slices(images[index], axis=0, thickness=5.0, phase=0.0) * brain
    elif name == "8bit":
        for index, modality in enumerate(MODALITIES):
            if modality in present:
                values = images[index][brain]
                lo, hi = float(values.min()), float(values.max())
                step = (hi - lo) / 255 if hi > lo else 1.0
                images[index] = (np.round((images[index] - lo) / step) * step + lo) * brain
    elif name == "no_t2":
        present = tuple(m for m in present if m != "t2")
        images[MODALITIES.index("t2")] = 0
    else:
        raise ValueError(f"unknown perturbation {name!r}; known: {PERTURBATIONS}")
    return _renormalised(case, images, present)


def final_mask(bundle: ModelBundle, case: CachedCase) -> np.ndarray:
    """The product's lesion mask of a cached case (bool KJI): prediction + post-processing
    with the model's own inference plan (the defaults for a model without one)."""
    plan = InferencePlan.from_dict(model_plan(bundle))
    prediction = predict_cached(bundle, case, threshold=plan.threshold)
    return plan_labels(prediction, case, bundle.config, plan) > 0


def audit_volumes(mask: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    """Predicted volume (mL) inside each audit region (1 mm voxels)."""
    out = {name: float(np.count_nonzero(mask & regions[name])) / 1000.0 for name in AUDIT_REGIONS}
    out["total_normal_tissue"] = float(np.count_nonzero(mask & np.logical_or.reduce(
        [regions[n] for n in AUDIT_REGIONS]))) / 1000.0
    return out


def run_stress(cases: list[CachedCase], crossval_dir: str | Path, *, log=print) -> list[dict]:
    """Stress rows (one per held-out case and perturbation, with the audit of each) for
    every finished fold of ``crossval_dir``; writes ``stress.csv``/``.json``/``.md`` there."""
    from allnet.regions import template_regions

    regions = template_regions()
    root = Path(crossval_dir)
    previous = root / "stress.json"
    # cases scored by an earlier call are kept, so folds can be stressed as they finish
    rows = json.loads(previous.read_text(encoding="utf-8")) if previous.is_file() else []
    done = {(r["case"], r["perturbation"]) for r in rows}
    for subject in dict.fromkeys(c.subject_id for c in cases):
        bundle_path = root / f"fold_{subject}" / "bundle.pt"
        if not bundle_path.is_file():
            log(f"stress: no finished fold for {subject} in {root}")
            continue
        bundle = load_model_file(bundle_path)
        for case in (c for c in cases if c.subject_id == subject):
            for name in (n for n in PERTURBATIONS if (case.case_id, n) not in done):
                variant = perturb(case, name)
                prediction = predict_cached(bundle, variant)
                metrics = score(prediction.mask, variant, score_map=prediction.sphere_probability)
                labels, _ = postprocess_array(prediction.mask.astype(np.float32), DEFAULT_PLAN,
                                              prediction.sphere_probability)
                row = {"case": case.case_id, "perturbation": name, "dsc": metrics.dsc,
                       "lf1": metrics.lf1, "ltpr": metrics.ltpr, "lfpr": metrics.lfpr,
                       "pred_ml": metrics.pred_volume_ml, "ref_ml": metrics.ref_volume_ml,
                       **{f"fp_{k}_ml": v for k, v in audit_volumes(labels > 0, regions).items()}}
                rows.append(row)
                log(f"stress {case.case_id} {name}: DSC {row['dsc']:.3f} L-F1 {row['lf1']:.3f} "
                    f"normal-tissue {row['fp_total_normal_tissue_ml']:.2f} mL")
                write_reports(rows, root)  # after every case: a stopped call loses nothing
    return rows


def write_reports(rows: list[dict], out: Path) -> None:
    with atomic_file(out / "stress.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(out / "stress.json", json.dumps(rows, indent=2))
    lines = ["| case | " + " | ".join(PERTURBATIONS) + " |", "|---" * (len(PERTURBATIONS) + 1) + "|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        cells = []
        for name in PERTURBATIONS:
            hit = [r for r in rows if r["case"] == case and r["perturbation"] == name]
            cells.append(f"{hit[0]['dsc']:.3f} / {hit[0]['lf1']:.3f}" if hit else "")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    means = []
    for name in PERTURBATIONS:
        hit = [r for r in rows if r["perturbation"] == name]
        means.append(f"**{np.mean([r['dsc'] for r in hit]):.3f} / {np.mean([r['lf1'] for r in hit]):.3f}**"
                     if hit else "")
    lines.append("| **mean** | " + " | ".join(means) + " |")
    audit = ["", "| case | midline GM mL | cerebellar cortex mL | choroid plexus mL | total mL |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["perturbation"] == "none":
            audit.append(f"| {r['case']} | {r['fp_midline_gm_ml']:.2f} | {r['fp_cerebellar_cortex_ml']:.2f} | "
                         f"{r['fp_choroid_plexus_ml']:.2f} | {r['fp_total_normal_tissue_ml']:.2f} |")
    write_text_atomic(out / "stress.md", "DSC / L-F1 per perturbation\n\n" + "\n".join(lines + audit) + "\n")


def native_case(study) -> CachedCase:
    """A native visit (``labelmaps.NativeStudy``) through the pipeline's native preprocessing
    and anatomy, as a cached case without a reference mask."""
    from allnet.anatomy import compute_anatomy
    from allnet.io import read_image
    from allnet.preprocessing.pipeline import preprocess

    t2 = read_image(study.t2, "t2") if study.t2 is not None else None
    pre = preprocess(read_image(study.t1, "t1"), read_image(study.flair, "flair"), t2)
    anatomy = compute_anatomy(pre.images["t1"], pre.brain_mask)
    images = np.zeros((len(MODALITIES), *pre.brain_mask.shape), np.float16)
    for index, name in enumerate(MODALITIES):
        if name in pre.images:
            images[index] = pre.images[name].astype(np.float16)
    return CachedCase(study.brain_id, study.subject_id, images, anatomy.channels.astype(np.float16),
                      np.zeros(pre.brain_mask.shape, np.uint8), (pre.brain_mask > 0).astype(np.uint8),
                      anatomy.tissue.astype(np.uint8), tuple(m for m in MODALITIES if m in pre.images))


def cached_native_case(study, cache_dir: str | Path | None) -> CachedCase:
    """:func:`native_case`, kept in ``<cache_dir>/native/`` (keyed like the brain sources:
    input files, not core code) so that auditing several models preprocesses each scan once."""
    from .cache import load_cached, save_cached
    from .labelmaps import _key

    if cache_dir is None:
        return native_case(study)
    paths = [p for p in (study.t1, study.flair, study.t2) if p is not None]
    path = Path(cache_dir) / "native" / f"{study.brain_id}-{_key(paths)}.npz"
    if path.is_file():
        return load_cached(path)
    case = native_case(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_cached(case, path)
    return case


def run_native_audit(model_path: str | Path, studies: list, out_dir: str | Path, *,
                     cache_dir: str | Path | None = None, log=print) -> list[dict]:
    """False-positive audit of a model on native scans (whole pipeline on the working grid);
    writes ``audit_native.json``/``.md`` in ``out_dir``."""
    from allnet.regions import template_regions

    regions = template_regions()
    bundle = load_model_file(model_path)
    rows = []
    for study in studies:
        mask = final_mask(bundle, cached_native_case(study, cache_dir))
        row = {"case": study.brain_id, "pred_ml": float(mask.sum()) / 1000.0,
               **{f"fp_{k}_ml": v for k, v in audit_volumes(mask, regions).items()}}
        rows.append(row)
        log(f"audit {study.brain_id}: predicted {row['pred_ml']:.2f} mL, normal tissue "
            f"{row['fp_total_normal_tissue_ml']:.2f} mL")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "audit_native.json", json.dumps({"model": Path(model_path).name, "rows": rows},
                                                            indent=2))
    lines = ["| scan | predicted mL | midline GM mL | cerebellar cortex mL | choroid plexus mL | total mL |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['pred_ml']:.2f} | {r['fp_midline_gm_ml']:.2f} | "
              f"{r['fp_cerebellar_cortex_ml']:.2f} | {r['fp_choroid_plexus_ml']:.2f} | "
              f"{r['fp_total_normal_tissue_ml']:.2f} |" for r in rows]
    write_text_atomic(out / "audit_native.md", "\n".join(lines) + "\n")
    return rows
