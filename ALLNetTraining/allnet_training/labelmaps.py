"""Whole-brain label maps for domain-randomised synthesis (``domain_synth.py``).

Every brain that training may use becomes a *brain source*: its 3-class tissue map
(``allnet.tissue`` labels 0 bg, 1 CSF, 2 GM, 3 WM), its brain mask and its 6 AnaConv
anatomy channels (``allnet.anatomy.compute_anatomy``), all on the working grid (MNI152
1 mm, arrays KJI). Sources:

- the development scans: the training cache (``cache.py``); their expert-labelled lesion
  voxels are set to WM, so a synthetic image shows only the lesions the generator paints;
- native clinical scans (``lesjak2018/native/patientNN/studyN_*``): the project's own native
  preprocessing (brain extraction, registration to MNI, bias correction) and tissue
  segmentation; their lesions are unlabelled and simply become tissue;
- the ICBM 2009a template (``allnet.templates``): the tissue priors' argmax.

Sources are cached as ``<cache>/brains/<brain_id>-<key>.npz``; the key hashes the input
files and ``SOURCE_FORMAT``, not the core's source code: a label map is randomised training
material, and re-running native preprocessing (minutes per scan) after every unrelated core
edit buys nothing. Delete the folder to rebuild after a preprocessing change that matters. :func:`label_map` then splits the tissue into
the synthesis classes below with the template regions of ``allnet.regions`` (cheap, done at
load time, so new region definitions need no re-preprocessing).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from allnet.atomic import atomic_file
from allnet.errors import InputError

from .cache import CachedCase

# Synthesis classes (uint8 label values). Lesions are painted separately, from lesion maps.
BACKGROUND, VENTRICLE_CSF, SULCAL_CSF, CORTICAL_GM, DEEP_GM, WM = 0, 1, 2, 3, 4, 5
CEREBELLAR_GM, CEREBELLAR_WM, BRAINSTEM, MIDLINE_GM, CHOROID_PLEXUS = 6, 7, 8, 9, 10
LABEL_NAMES: dict[int, str] = {
    BACKGROUND: "background", VENTRICLE_CSF: "ventricular CSF", SULCAL_CSF: "sulcal CSF",
    CORTICAL_GM: "cortical GM", DEEP_GM: "deep GM", WM: "WM", CEREBELLAR_GM: "cerebellar GM",
    CEREBELLAR_WM: "cerebellar WM", BRAINSTEM: "brainstem", MIDLINE_GM: "midline GM",
    CHOROID_PLEXUS: "choroid plexus",
}
N_LABELS = len(LABEL_NAMES)
SOURCE_FORMAT = 1
_T_CSF, _T_GM, _T_WM = 1, 2, 3


@dataclass
class BrainSource:
    """One brain on the working grid: ``tissue`` uint8 (0 bg, 1 CSF, 2 GM, 3 WM), ``brain``
    uint8 mask, ``anatomy`` float16 (6, K, J, I) AnaConv channels. ``subject_id`` lets a
    cross-validation fold leave out the brains of its held-out subject."""

    brain_id: str
    subject_id: str
    tissue: np.ndarray
    brain: np.ndarray
    anatomy: np.ndarray


@dataclass(frozen=True)
class NativeStudy:
    """One native clinical visit (paths of its images; ``t2`` may be None)."""

    brain_id: str
    subject_id: str
    t1: Path
    flair: Path
    t2: Path | None


def source_from_cached(case: CachedCase) -> BrainSource:
    """Brain source of a cached development case; its labelled lesions become WM."""
    tissue = case.tissue.copy()
    tissue[(case.mask > 0) & (case.brain > 0)] = _T_WM
    return BrainSource(case.case_id, case.subject_id, tissue, case.brain.copy(), case.anatomy)


def native_studies(shared_data_dir: str | Path) -> list[NativeStudy]:
    """Every native visit with T1W and FLAIR in ``<shared>/lesjak2018/native/patientNN``."""
    root = Path(shared_data_dir) / "lesjak2018" / "native"
    out = []
    for patient in sorted(p for p in root.glob("patient*") if p.is_dir()):
        for flair in sorted(patient.glob("study*_FLAIR.nii.gz")):
            study = flair.name.split("_")[0]
            t1 = patient / f"{study}_T1W.nii.gz"
            t2 = patient / f"{study}_T2W.nii.gz"
            if t1.is_file():
                out.append(NativeStudy(f"{patient.name}_{study}", patient.name, t1, flair,
                                       t2 if t2.is_file() else None))
    return out


def source_from_native(study: NativeStudy) -> BrainSource:
    """Native preprocessing + anatomy (with EM tissue segmentation) of one visit."""
    from allnet.anatomy import compute_anatomy
    from allnet.io import read_image
    from allnet.preprocessing.pipeline import preprocess

    t2 = read_image(study.t2, "t2") if study.t2 is not None else None
    pre = preprocess(read_image(study.t1, "t1"), read_image(study.flair, "flair"), t2,
                     paths={"t1": str(study.t1), "flair": str(study.flair)})
    anatomy = compute_anatomy(pre.images["t1"], pre.brain_mask)
    return BrainSource(study.brain_id, study.subject_id, anatomy.tissue.astype(np.uint8),
                       (pre.brain_mask > 0).astype(np.uint8), anatomy.channels.astype(np.float16))


def source_from_template() -> BrainSource:
    """The ICBM 2009a template: tissue = argmax of its CSF/GM/WM priors inside its mask."""
    import SimpleITK as sitk

    from allnet.anatomy import compute_anatomy
    from allnet.templates import load_template
    from allnet.tissue import TissueSegmentation

    template = load_template()
    priors = np.stack([sitk.GetArrayFromImage(m) for m in (template.csf, template.gm, template.wm)])
    brain = sitk.GetArrayFromImage(template.brain_mask) > 0
    tissue = np.where(brain, np.argmax(priors, axis=0) + 1, 0).astype(np.uint8)
    seg = TissueSegmentation(labels=tissue, posteriors=priors.astype(np.float32),
                             means=np.zeros(3, np.float32), stds=np.ones(3, np.float32))
    t1 = sitk.GetArrayFromImage(template.t1)
    anatomy = compute_anatomy(t1, brain.astype(np.uint8), tissue=seg)
    return BrainSource("icbm2009a", "icbm2009a", anatomy.tissue.astype(np.uint8),
                       brain.astype(np.uint8), anatomy.channels.astype(np.float16))


def _key(paths: list[Path]) -> str:
    digest = hashlib.sha1(f"brain-source-format={SOURCE_FORMAT}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def save_source(source: BrainSource, path: Path) -> None:
    with atomic_file(path) as tmp:
        np.savez(tmp, tissue=source.tissue, brain=source.brain, anatomy=source.anatomy,
                 brain_id=np.array(source.brain_id), subject_id=np.array(source.subject_id))


def load_source(path: str | Path) -> BrainSource:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return BrainSource(str(z["brain_id"]), str(z["subject_id"]), z["tissue"], z["brain"],
                               z["anatomy"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(path, f"unreadable brain-source cache file ({exc})") from exc


def extra_sources(shared_data_dir: str | Path | None, cache_dir: str | Path, *,
                  template: bool = True, log=print) -> list[BrainSource]:
    """Brain sources besides the development cases: every native visit under
    ``shared_data_dir`` (when given) and the template, computed once and cached."""
    folder = Path(cache_dir) / "brains"
    folder.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, list[Path], object]] = []
    if template:
        jobs.append(("icbm2009a", [], source_from_template))
    if shared_data_dir is not None:
        for study in native_studies(shared_data_dir):
            paths = [p for p in (study.t1, study.flair, study.t2) if p is not None]
            jobs.append((study.brain_id, paths, lambda s=study: source_from_native(s)))
    out = []
    for brain_id, paths, make in jobs:
        path = folder / f"{brain_id}-{_key(paths)}.npz"
        if not path.is_file():
            t0 = time.perf_counter()
            try:
                source = make()
            except InputError as exc:  # a scan the pipeline rejects is left out, loudly
                log(f"brain source {brain_id} skipped: {exc}")
                continue
            save_source(source, path)
            log(f"brain source {brain_id} in {time.perf_counter() - t0:.1f} s -> {path}")
        out.append(load_source(path))
    return out


def label_map(source: BrainSource, regions: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Synthesis classes (uint8 KJI, ``LABEL_NAMES``) of a brain source.

    CSF is ventricular inside the case's own ventricles (``allnet.anatomy.ventricle_mask``)
    or the template ventricles, sulcal elsewhere. With ``regions`` (``allnet.regions.
    template_regions()``) GM is split into cortex, deep GM, cerebellar cortex and midline
    GM; WM into cerebral WM, cerebellar WM and brainstem; the choroid plexus becomes its
    own class where the tissue is not WM. Without regions GM is all cortical and WM all
    cerebral.
    """
    from allnet.anatomy import ventricle_mask

    tissue = np.where(source.brain > 0, source.tissue, 0)
    csf, gm, wm = tissue == _T_CSF, tissue == _T_GM, tissue == _T_WM
    ventricles = ventricle_mask(csf)
    if regions is not None:
        for key in ("lateral_ventricles", "third_ventricle", "fourth_ventricle"):
            if key in regions:
                ventricles |= regions[key]
    out = np.zeros(tissue.shape, dtype=np.uint8)
    out[csf] = SULCAL_CSF
    out[csf & ventricles] = VENTRICLE_CSF
    out[gm] = CORTICAL_GM
    out[wm] = WM
    if regions is not None:
        tissue_brain = gm | wm
        out[gm & regions["deep_gm"]] = DEEP_GM
        out[gm & regions["cerebellum"]] = CEREBELLAR_GM
        out[wm & regions["cerebellum"]] = CEREBELLAR_WM
        out[tissue_brain & regions["brainstem"]] = BRAINSTEM
        out[tissue_brain & regions["midline_gm"]] = MIDLINE_GM
        # The template's choroid region reaches 1 mm into the atrial walls, where
        # periventricular lesions are common: its WM stays WM (lesions may be placed there).
        out[(tissue > 0) & ~wm & regions["choroid_plexus"]] = CHOROID_PLEXUS
    return out


def template_regions_or_none() -> dict[str, np.ndarray] | None:
    """``allnet.regions.template_regions()`` when the core provides it, else None."""
    try:
        from allnet.regions import template_regions
    except ImportError:
        return None
    return template_regions()
