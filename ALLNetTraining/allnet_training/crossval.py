"""Leave-one-subject-out cross-validation with a naive FLAIR-threshold baseline.

Per fold: train (one member per seed) on the other subjects' cases, predict every visit of
the held-out subject with ``allnet.inference.predict`` on the whole working-grid volume,
and score with ``allnet.metrics.evaluate_case`` (18-connectivity). Predictions first go
through the product's own post-processing (``allnet.postprocess`` with the default
inference plan: 26-connected lesions of at least 10 mm3, lesion scores from the sphere
head), as ``allnet segment`` does; the reference is left as drawn. The model is scored at
the default plan and at a probability threshold chosen on the fold's TRAINING cases (the
one maximising their mean DSC; mean probability above it). The baseline thresholds the
normalised FLAIR inside the brain at the level that maximises the mean DSC over the fold's
TRAINING cases. Nothing is tuned on the held-out subject. Held-out predictions are kept
(``fold_<subject>/oof/``); once every subject has been held out, the model's inference plan
is chosen on them (``allnet_training.plan_tuning``, ``plan.json``).
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from allnet.atomic import atomic_file, write_text_atomic
from allnet.inference import predict
from allnet.metrics import DEFAULT_CONNECTIVITY, CaseMetrics, evaluate_case, summarise
from allnet.plan import DEFAULT_PLAN, InferencePlan
from allnet.postprocess import postprocess_array
from allnet.model import ModelBundle, ModelConfig, load_model_file
from allnet.preprocessing.intensity import flair_contrast
from allnet.synthesis import LesionShapeBank
from allnet.tissue import grey_matter_indicator

from .cache import MODALITIES, CachedCase, with_normalisation
from .domain_synth import DomainSynth
from .ensemble import export_bundle, train_ensemble
from .modalities import warm_start_states
from .patches import CropSampler, SamplerConfig
from .plan_tuning import CONTRAST_KEY, GREY_MATTER_KEY, OOF_DIR, save_oof, tune_plan, write_oof
from .trainer import TrainConfig

FLAIR_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.5, 8.01, 0.1), 2))
PROBABILITY_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.05), 2))
TABLE_METRICS = ("dsc", "lf1", "ltpr", "lfpr", "ppv", "tpr")


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    total = pred.sum() + ref.sum()
    return float(2 * np.logical_and(pred, ref).sum() / total) if total else 1.0


def choose_flair_threshold(cases: list[CachedCase],
                           thresholds: tuple[float, ...] = FLAIR_THRESHOLDS) -> float:
    """The FLAIR level (normalised units) with the best mean DSC over ``cases``."""
    inside = [c.brain > 0 for c in cases]
    flair = [c.images[MODALITIES.index("flair")][b].astype(np.float32) for c, b in zip(cases, inside)]
    refs = [(c.mask > 0)[b] for c, b in zip(cases, inside)]
    scores = [np.mean([_dice(f > t, r) for f, r in zip(flair, refs)]) for t in thresholds]
    return float(thresholds[int(np.argmax(scores))])


def flair_baseline(case: CachedCase, threshold: float) -> np.ndarray:
    """uint8 KJI mask: normalised FLAIR above ``threshold`` inside the brain."""
    return ((case.images[MODALITIES.index("flair")] > threshold) & (case.brain > 0)).astype(np.uint8)


def predict_cached(bundle: ModelBundle, case: CachedCase, *, device: str = "cpu",
                   ensemble: str = "full", threshold: float = 0.5, tta: bool = False):
    """``allnet.inference.predict`` on a cached case (whole working-grid volume), in the
    model's normalisation; ``tta`` adds the left-right flipped pass."""
    case = with_normalisation(case, bundle.config.normalisation, bundle.config.noise_target)
    order = [MODALITIES.index(m) for m in bundle.config.modalities]
    images = case.images[order].astype(np.float32)
    present = [m for m in bundle.config.modalities if m in case.present]
    return predict(bundle, images, case.anatomy.astype(np.float32), case.brain, device=device,
                   ensemble=ensemble, modalities_present=present, threshold=threshold, tta=tta,
                   average_without=bundle.config.average_without)


def model_flair_contrast(config: ModelConfig, case: CachedCase) -> np.ndarray | None:
    """The FLAIR-contrast map (``allnet.preprocessing.intensity.flair_contrast``, KJI working
    grid) of a cached case as ``allnet segment`` computes it for a model of ``config``: from
    the FLAIR the model is given (noise harmonisation and normalisation applied)."""
    model_case = with_normalisation(case, config.normalisation, config.noise_target)
    return flair_contrast(model_case.images[MODALITIES.index("flair")].astype(np.float32),
                          case.brain, case.tissue)


def plan_labels(prediction, case: CachedCase, config: ModelConfig, plan: InferencePlan) -> np.ndarray:
    """Lesion ids (KJI, working grid) of a cached case's prediction post-processed with ``plan``
    as ``allnet segment`` does: the vote, the lesion scores, the FLAIR-contrast map of the FLAIR
    the model was given and the case's grey-matter map, each only where the plan uses it."""
    contrast = model_flair_contrast(config, case) if plan.min_flair_contrast > 0 else None
    grey = grey_matter_indicator(case.tissue) if plan.max_grey_matter_fraction < 1 else None
    labels, _ = postprocess_array(prediction.mask.astype(np.float32), plan, prediction.sphere_probability,
                                  contrast_map=contrast, grey_matter_map=grey)
    return labels


def add_case_maps(out_dir: str | Path, cases: list[CachedCase], *, log=print) -> int:
    """Store the FLAIR-contrast map and the grey-matter map in every held-out prediction of
    the cross-validation ``out_dir`` that lacks them (predictions saved before the contrast
    floor or the grey-matter fraction existed), from the cached case and its fold model's
    config. Returns the number of files updated; ValueError naming the file when a case or a
    fold model is missing."""
    by_id = {c.case_id: c for c in cases}
    updated = 0
    for path in sorted(Path(out_dir).glob(f"fold_*/{OOF_DIR}/*.npz")):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        if CONTRAST_KEY in arrays and GREY_MATTER_KEY in arrays:
            continue
        if path.stem not in by_id:
            raise ValueError(f"{path}: case {path.stem} is not among the given cases")
        case = by_id[path.stem]
        if GREY_MATTER_KEY not in arrays:
            arrays[GREY_MATTER_KEY] = grey_matter_indicator(case.tissue).astype(np.uint8)
        if CONTRAST_KEY not in arrays:
            bundle_path = path.parent.parent / "bundle.pt"
            if not bundle_path.is_file():
                raise ValueError(f"{path}: no fold model {bundle_path} to take the model's inputs from")
            contrast = model_flair_contrast(load_model_file(bundle_path).config, case)
            if contrast is None:
                log(f"{path}: no usable WM/CSF reference on the FLAIR; left without a contrast map")
            else:
                arrays[CONTRAST_KEY] = contrast.astype(np.float16)
        write_oof(path, arrays)
        updated += 1
    return updated


def choose_probability_threshold(bundle: ModelBundle, cases: list[CachedCase], *,
                                 device: str = "cpu",
                                 thresholds: tuple[float, ...] = PROBABILITY_THRESHOLDS) -> float:
    """The probability threshold with the best mean DSC over ``cases`` (training cases;
    computed on the members' mean probability)."""
    scores = np.zeros(len(thresholds))
    for case in cases:
        prob = predict_cached(bundle, case, device=device).probability
        inside = case.brain > 0
        p, r = prob[inside], case.mask[inside] > 0
        scores += [_dice(p > t, r) for t in thresholds]
    return float(thresholds[int(np.argmax(scores))])


def score(pred: np.ndarray, case: CachedCase, plan: InferencePlan = DEFAULT_PLAN,
          score_map: np.ndarray | None = None, contrast_map: np.ndarray | None = None) -> CaseMetrics:
    """Metrics of a working-grid (1 mm) vote after the product's own post-processing
    (``allnet.postprocess`` with ``plan``: connectivity, minimum size, lesion-score
    threshold when ``score_map`` is given, FLAIR-contrast floor when ``contrast_map`` is),
    counted at the evaluation's connectivity (18)."""
    labels, _ = postprocess_array(pred.astype(np.float32), plan, score_map, contrast_map=contrast_map)
    return evaluate_case(labels > 0, case.mask, spacing=(1.0, 1.0, 1.0),
                         connectivity=DEFAULT_CONNECTIVITY, case=case.case_id)


@dataclass
class FoldResult:
    subject: str
    model: list[CaseMetrics]
    baseline: list[CaseMetrics]
    threshold: float
    train_seconds: float
    predict_seconds: float
    bundle_path: Path | None = None
    calibrated: list[CaseMetrics] = field(default_factory=list)
    probability_threshold: float = 0.5
    extra: dict = field(default_factory=dict)


def folds_of(cases: list[CachedCase]) -> list[tuple[str, list[CachedCase], list[CachedCase]]]:
    subjects = list(dict.fromkeys(c.subject_id for c in cases))
    if len(subjects) < 2:
        raise ValueError("cross-validation needs cases of at least two subjects")
    return [(s, [c for c in cases if c.subject_id != s], [c for c in cases if c.subject_id == s])
            for s in subjects]


def run_fold(subject: str, train_cases: list[CachedCase], test_cases: list[CachedCase],
             out_dir: Path, model_config: ModelConfig, train_cfg: TrainConfig,
             sampler_cfg: SamplerConfig, seeds: list[int], bank: LesionShapeBank | None,
             *, resume: bool = True, progress: bool = True, device: str = "cpu",
             log=print, synth: DomainSynth | None = None, init_from: Path | None = None) -> FoldResult:
    """Train on ``train_cases``, evaluate model and baseline on ``test_cases``. ``synth``:
    the domain-randomisation generator (the sampler keeps only the training subjects'
    brains and lesion maps of it). ``init_from``: a finished cross-validation folder whose
    model of the SAME fold (``fold_<subject>/bundle.pt``) is the warm start, to validate a
    staged recipe without the held-out subject ever reaching its fold."""
    fold_dir = out_dir / f"fold_{subject}"
    sampler = CropSampler(train_cases, sampler_cfg, model_config.modalities, bank, synth,
                          model_config.normalisation, model_config.noise_target)
    meta = {"fold": subject, "training_cases": [c.case_id for c in train_cases]}
    init_states = None
    if init_from is not None:
        start_path = Path(init_from) / f"fold_{subject}" / "bundle.pt"
        init_states = warm_start_states(load_model_file(start_path), model_config, start_path)
        meta["warm_start"] = str(start_path)
    t0 = time.perf_counter()
    results = train_ensemble(model_config, train_cfg, sampler, fold_dir, seeds, resume=resume,
                             progress=progress, meta=meta, init_states=init_states)
    train_seconds = time.perf_counter() - t0
    bundle_path = export_bundle(fold_dir / "bundle.pt", model_config, [r.state_dict for r in results],
                                {**meta, "seeds": list(seeds)})
    return evaluate_fold(subject, bundle_path, train_cases, test_cases, train_seconds, device=device, log=log)


def evaluate_fold(subject: str, bundle_path: Path, train_cases: list[CachedCase], test_cases: list[CachedCase],
                  train_seconds: float = 0.0, *, device: str = "cpu", log=print) -> FoldResult:
    """Score the fold model ``bundle_path`` on its held-out ``test_cases`` (model at 0.5, at the
    probability threshold chosen on ``train_cases``, FLAIR-threshold baseline), store the
    out-of-fold predictions next to it and write ``fold.json`` there."""
    fold_dir = Path(bundle_path).parent
    bundle = load_model_file(bundle_path)
    t0 = time.perf_counter()
    predictions = [predict_cached(bundle, c, device=device) for c in test_cases]
    predict_seconds = (time.perf_counter() - t0) / max(1, len(test_cases))
    model_scores = [score(p.mask, c, score_map=p.sphere_probability) for p, c in zip(predictions, test_cases)]
    for p, c in zip(predictions, test_cases):  # out-of-fold predictions for plan tuning
        save_oof(fold_dir, c.case_id, p.probability, p.sphere_probability, c.mask,
                 contrast=model_flair_contrast(bundle.config, c), grey_matter=grey_matter_indicator(c.tissue))
    p_threshold = choose_probability_threshold(bundle, train_cases, device=device)
    calibrated = [score((p.probability > p_threshold).astype(np.uint8), c,
                        replace(DEFAULT_PLAN, threshold=p_threshold), p.sphere_probability)
                  for p, c in zip(predictions, test_cases)]
    threshold = choose_flair_threshold(train_cases)
    base_scores = [score(flair_baseline(c, threshold), c) for c in test_cases]
    for m, k, b in zip(model_scores, calibrated, base_scores):
        log(f"[{subject}] {m.case}: model@0.5 DSC {m.dsc:.3f} L-F1 {m.lf1:.3f} | "
            f"model@{p_threshold:.2f} DSC {k.dsc:.3f} L-F1 {k.lf1:.3f} | "
            f"FLAIR>{threshold:.1f} DSC {b.dsc:.3f} L-F1 {b.lf1:.3f}")
    result = FoldResult(subject, model_scores, base_scores, threshold, train_seconds,
                        predict_seconds, bundle_path, calibrated, p_threshold)
    write_text_atomic(fold_dir / "fold.json", json.dumps(asdict(result), indent=2, default=str))
    return result


def load_fold(fold_dir: Path) -> FoldResult | None:
    """A finished fold's result from its ``fold.json`` (None when the fold has not finished)."""
    path = fold_dir / "fold.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    for key in ("model", "baseline", "calibrated"):
        d[key] = [CaseMetrics(**m) for m in d[key]]
    d["bundle_path"] = Path(d["bundle_path"]) if d.get("bundle_path") else None
    return FoldResult(**d)


def run_crossval(cases: list[CachedCase], out_dir: str | Path, model_config: ModelConfig,
                 train_cfg: TrainConfig, sampler_cfg: SamplerConfig, seeds: list[int],
                 bank: LesionShapeBank | None = None, *, resume: bool = True,
                 progress: bool = True, device: str = "cpu", holdout: list[str] | None = None,
                 log=print, synth: DomainSynth | None = None,
                 init_from: Path | None = None) -> list[FoldResult]:
    """Leave-one-subject-out folds; writes ``crossval.csv``/``.json``/``.md`` in out_dir.

    ``holdout`` limits the run to the folds of these subjects (default: all), so that
    several processes can share one ``out_dir``; the reports then cover every fold finished
    there (read back from ``fold_<subject>/fold.json``), and are complete once all are.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folds = folds_of(cases)
    unknown = set(holdout or []) - {s for s, _, _ in folds}
    if unknown:
        raise ValueError(f"no cases of held-out subjects {sorted(unknown)}")
    computed = {s: run_fold(s, tr, te, out, model_config, train_cfg, sampler_cfg, seeds, bank,
                            resume=resume, progress=progress, device=device, log=log, synth=synth,
                            init_from=init_from)
                for s, tr, te in folds if holdout is None or s in holdout}
    # read the other folds only now: another process may have finished them meanwhile
    results = [computed.get(s) or load_fold(out / f"fold_{s}") for s, _, _ in folds]
    results = [r for r in results if r is not None]
    write_reports(results, out)
    if len(results) == len(folds):  # every subject held out once: choose the model's plan
        tuned = tune_plan(out)
        if tuned:
            log(f"inference plan from out-of-fold predictions: {tuned['plan']} "
                f"(objective {tuned['chosen']['objective']:.3f}, default {tuned['default']['objective']:.3f})")
    return results


def write_reports(results: list[FoldResult], out: Path) -> dict:
    """Per-case CSV, JSON summary and a markdown table of model vs baseline."""
    rows = []
    for fold in results:
        calibrated = fold.calibrated or fold.model
        for m, c, b in zip(fold.model, calibrated, fold.baseline):
            row = {"subject": fold.subject, "case": m.case, "flair_threshold": fold.threshold,
                   "probability_threshold": fold.probability_threshold}
            row.update({f"model_{k}": getattr(m, k) for k in TABLE_METRICS})
            row.update({f"calibrated_{k}": getattr(c, k) for k in TABLE_METRICS})
            row.update({f"baseline_{k}": getattr(b, k) for k in TABLE_METRICS})
            row.update({"ref_lesions": m.n_ref_lesions, "model_lesions": m.n_pred_lesions,
                        "baseline_lesions": b.n_pred_lesions,
                        "ref_volume_ml": m.ref_volume_ml, "model_volume_ml": m.pred_volume_ml})
            rows.append(row)
    with atomic_file(out / "crossval.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    model_all = [m for f in results for m in f.model]
    calibrated_all = [m for f in results for m in (f.calibrated or f.model)]
    base_all = [b for f in results for b in f.baseline]
    summary = {"model": summarise(model_all), "model_calibrated": summarise(calibrated_all),
               "baseline": summarise(base_all),
               "folds": [{"subject": f.subject, "threshold": f.threshold,
                          "probability_threshold": f.probability_threshold,
                          "train_seconds": f.train_seconds, "predict_seconds": f.predict_seconds,
                          "bundle": str(f.bundle_path) if f.bundle_path else None}
                         for f in results],
               "cases": rows,
               "metrics": {"model": [asdict(m) for m in model_all],
                           "model_calibrated": [asdict(m) for m in calibrated_all],
                           "baseline": [asdict(m) for m in base_all]}}
    write_text_atomic(out / "crossval.json", json.dumps(summary, indent=2, default=float))
    write_text_atomic(out / "crossval.md", markdown_table(rows))
    return summary


def load_case_metrics(out_dir: str | Path, method: str = "model") -> list[CaseMetrics] | None:
    """Held-out per-case metrics of a finished cross-validation in ``out_dir`` (None if absent)."""
    path = Path(out_dir) / "crossval.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8")).get("metrics", {}).get(method)
    return None if metrics is None else [CaseMetrics(**m) for m in metrics]


def markdown_table(rows: list[dict]) -> str:
    """Per-case and mean DSC, L-F1, LTPR, LFPR: one row per case and method (the model at
    threshold 0.5, at the training-chosen threshold, and the FLAIR-threshold baseline)."""
    cols = ("dsc", "lf1", "ltpr", "lfpr")
    methods = (("model", "ALLNet, p > 0.5"), ("calibrated", "ALLNet, p > t (t from training cases)"),
               ("baseline", "FLAIR > t (t from training cases)"))
    lines = ["| held-out case | method | t | DSC | L-F1 | LTPR | LFPR |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for key, label in methods:
            t = {"model": 0.5, "calibrated": r["probability_threshold"], "baseline": r["flair_threshold"]}[key]
            lines.append(f"| {r['case']} | {label} | {t:.2f} | "
                         + " | ".join(f"{r[f'{key}_{c}']:.3f}" for c in cols) + " |")
    for key, label in methods:
        mean = [float(np.mean([r[f"{key}_{c}"] for r in rows])) for c in cols]
        lines.append(f"| **mean ({len(rows)} cases)** | {label} | | "
                     + " | ".join(f"**{v:.3f}**" for v in mean) + " |")
    return "\n".join(lines) + "\n"
