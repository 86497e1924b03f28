"""Domain-randomised synthetic training crops (after SynthSeg, Billot et al. 2023, and its MS
and white-matter-lesion variants): images rendered from whole-brain label maps with a
random appearance, so that contrast and resolution are nothing a network can rely on.

Contract of :meth:`DomainSynth.render`:
- inputs: a region (start voxel (k, j, i) and shape, 1 mm voxels of the working grid = FSL
  MNI152 1 mm, arrays KJI) is chosen around a lesion or brain voxel of a random brain
  source (``labelmaps.py``); a ``numpy.random.Generator`` is the only source of randomness,
  so the same generator state gives the same sample bit for bit;
- outputs (:class:`SynthRegion`): ``images`` float32 (3, D, H, W) in ``cache.MODALITIES``
  order (flair, t1, t2), normalised as the pipeline normalises (robust z-score inside the
  brain, see ``synth_acquisition.robust_zscore``), zero outside the brain; ``present`` the
  modalities drawn (T2W may be missing: zeros); ``lesion`` uint8; ``brain`` uint8;
  ``anatomy`` float32 (6, D, H, W) AnaConv channels.

Per sample:
1. brain: one label map (development scans, native scans, ICBM template);
2. lesions: one whole real lesion map (the Lesjak et al. masks and the fold's training
   subjects' masks; masks and brains of held-out subjects are never used, see
   :meth:`DomainSynth.for_training`), shifted by up to ``lesion_shift_mm``, deformed by a
   smooth random displacement, kept where the brain has WM, deep GM, brainstem or
   juxtacortical GM; random components removed, random real lesion shapes added;
3. appearance per label and modality: random mean (relative to WM) and spread, keeping only
   what MS imaging guarantees: FLAIR lesions brighter than WM and CSF darker than WM; T2W
   CSF and lesions brighter than WM; T1W lesions iso- to hypointense to WM. GM ranges from
   slightly darker to much brighter than WM on FLAIR; the septum/hypothalamus (midline GM),
   the cerebellar cortex and the choroid plexus may be bright;
4. acquisition: partial-volume blur, bias field, Rician noise, a thick-slice 2D acquisition
   (3-6 mm along a random axis, resampled back to 1 mm), 8-bit quantisation, an imperfect
   skull strip (brain mask grown with extracerebral signal or eroded), missing T2W;
5. normalisation with the whole brain's statistics (a fixed random sample of its voxels
   rendered with the same appearance and acquisition draws), in the model's normalisation
   (``DomainSynthConfig.normalisation``; for 'wm-csf' the sample's WM and CSF classes are the
   reference, as the T1W tissue segmentation is in the pipeline).

The anatomy channels are the brain source's own (``allnet.anatomy.compute_anatomy`` of that
brain, computed once): the channels move with the tissue under the later spatial
augmentation (``augment.py``) exactly as on real crops, and an imperfect skull strip does
not change them (the channels see the label map's brain).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from allnet.plan import NORMALISATION_ROBUST_ZSCORE
from allnet.synthesis import LesionShapeBank
from allnet.tissue import CSF, GM, WM

from . import labelmaps as lm
from .cache import MODALITIES, CachedCase
from .synth_acquisition import BiasField, noisy, pipeline_normalised, quantise, smooth_noise, thick_slices

LESION = lm.N_LABELS  # appearance index of lesion voxels
_CONN26 = np.ones((3, 3, 3), dtype=bool)
# Where a lesion map may keep its lesions on another brain
_LESION_TISSUE = (lm.WM, lm.DEEP_GM, lm.CEREBELLAR_WM, lm.BRAINSTEM)
_REFERENCE_VOXELS = 20_000
# The T1W tissue class (allnet.tissue) the pipeline's segmentation gives each appearance
# index: the WM-CSF normalisation takes its reference from these classes.
_TISSUE_CLASS = np.full(LESION + 1, GM, dtype=np.uint8)
_TISSUE_CLASS[[lm.BACKGROUND]] = 0
_TISSUE_CLASS[[lm.VENTRICLE_CSF, lm.SULCAL_CSF]] = CSF
_TISSUE_CLASS[[lm.WM, lm.CEREBELLAR_WM, lm.BRAINSTEM]] = WM

# Mean intensity relative to WM per label: (low, high) per modality. Labels absent here are
# drawn like their closest class (see _APPEARANCE_CLASS).
_RANGES: dict[str, dict[int, tuple[float, float]]] = {
    "flair": {lm.VENTRICLE_CSF: (0.03, 0.6), lm.SULCAL_CSF: (0.03, 0.75), lm.CORTICAL_GM: (0.9, 1.7),
              lm.DEEP_GM: (0.85, 1.4), lm.CEREBELLAR_GM: (0.9, 1.8), lm.CEREBELLAR_WM: (0.85, 1.15),
              lm.BRAINSTEM: (0.85, 1.35), lm.MIDLINE_GM: (0.9, 2.0), lm.CHOROID_PLEXUS: (0.5, 2.0),
              LESION: (1.3, 2.4)},
    "t2": {lm.VENTRICLE_CSF: (1.8, 4.0), lm.SULCAL_CSF: (1.6, 4.0), lm.CORTICAL_GM: (1.0, 1.8),
           lm.DEEP_GM: (0.8, 1.5), lm.CEREBELLAR_GM: (1.0, 1.8), lm.CEREBELLAR_WM: (0.85, 1.2),
           lm.BRAINSTEM: (0.9, 1.4), lm.MIDLINE_GM: (1.0, 2.0), lm.CHOROID_PLEXUS: (0.8, 3.0),
           LESION: (1.3, 2.6)},
    "t1": {lm.VENTRICLE_CSF: (0.1, 0.5), lm.SULCAL_CSF: (0.1, 0.55), lm.CORTICAL_GM: (0.5, 0.95),
           lm.DEEP_GM: (0.6, 1.0), lm.CEREBELLAR_GM: (0.5, 0.95), lm.CEREBELLAR_WM: (0.85, 1.05),
           lm.BRAINSTEM: (0.8, 1.05), lm.MIDLINE_GM: (0.5, 0.95), lm.CHOROID_PLEXUS: (0.4, 1.0),
           LESION: (0.35, 1.0)},
}


def check_flair_lesion(flair_lesion: tuple[float, float]) -> None:
    """ValueError unless ``(low, high)``, a FLAIR lesion mean relative to WM, keeps lesions
    brighter than WM (the one FLAIR guarantee): 1 < low <= high."""
    low, high = flair_lesion
    if not 1.0 < low <= high:
        raise ValueError(f"flair_lesion {low:g} {high:g}: need 1 < low <= high (relative to WM; "
                         "FLAIR lesions are brighter than white matter)")


@dataclass(frozen=True)
class DomainSynthConfig:
    """Ranges of the random draws (lengths in mm = voxels; intensities relative to WM)."""

    spread: tuple[float, float] = (0.02, 0.10)      # per-label texture std / mean
    texture_sigma: float = 0.8                      # voxels
    pv_blur: tuple[float, float] = (0.3, 1.0)       # partial-volume / resolution blur sigma
    bias: tuple[float, float] = (0.0, 0.35)         # max |log field|
    noise: tuple[float, float] = (0.0, 0.08)        # Rician sigma relative to WM
    thick_slice_p: float = 0.5                      # per modality
    slice_mm: tuple[float, float] = (3.0, 6.0)
    quantise_p: float = 0.3
    skull_p: float = 0.3
    t2_missing_p: float = 0.3
    lesion_shift_mm: float = 6.0
    lesion_warp_mm: float = 3.0                     # std of the smooth lesion displacement
    lesion_drop: tuple[float, float] = (0.0, 0.4)   # fraction of lesions removed
    lesion_add_max: int = 3                         # real shapes added (0..max)
    flair_gm_bright_p: float = 0.3                  # FLAIR GM drawn near the lesion level
    flair_lesion: tuple[float, float] = _RANGES["flair"][LESION]  # FLAIR lesion mean / WM
    normalisation: str = NORMALISATION_ROBUST_ZSCORE  # the model's (allnet.plan names)

    def __post_init__(self) -> None:
        check_flair_lesion(self.flair_lesion)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SynthRegion:
    images: np.ndarray
    present: tuple[str, ...]
    lesion: np.ndarray
    brain: np.ndarray
    anatomy: np.ndarray
    labels: np.ndarray


@dataclass
class _Brain:
    brain_id: str
    subject_id: str
    labels: np.ndarray
    anatomy: np.ndarray
    brain_idx: np.ndarray       # flat indices of brain voxels
    ref_pos: np.ndarray         # (N, 3) voxel positions of the reference sample
    ref_labels: np.ndarray      # (N,) their labels


@dataclass
class _LesionMap:
    name: str
    subject_id: str
    mask: np.ndarray            # bool KJI working grid
    idx: np.ndarray             # flat indices of its voxels


def brain_from_labels(brain_id: str, subject_id: str, labels: np.ndarray, anatomy: np.ndarray) -> _Brain:
    """A brain to render from: label map (uint8 KJI, ``labelmaps.LABEL_NAMES``) and its
    anatomy channels (6, K, J, I) on the same grid."""
    idx = np.flatnonzero(labels > 0)
    # a fixed sample per brain: the same reference voxels whatever the training seed
    pick = np.random.default_rng(0).choice(idx, size=min(_REFERENCE_VOXELS, idx.size), replace=False)
    pos = np.stack(np.unravel_index(pick, labels.shape), axis=1).astype(np.float64)
    return _Brain(brain_id, subject_id, labels, anatomy, idx, pos, labels.ravel()[pick])


class DomainSynth:
    """Brains and lesion maps to render synthetic crops from (module doc).

    ``development_subjects``: subjects whose brains and masks must leave a fold when that
    subject is held out (:meth:`for_training`)."""

    def __init__(self, brains: list[_Brain], maps: list[_LesionMap] | list[tuple[str, str, np.ndarray]],
                 cfg: DomainSynthConfig = DomainSynthConfig(), bank: LesionShapeBank | None = None,
                 development_subjects: set[str] = frozenset()) -> None:
        maps = [m if isinstance(m, _LesionMap) else _LesionMap(m[0], m[1], m[2].astype(bool), np.flatnonzero(m[2]))
                for m in maps]
        maps = [m for m in maps if m.idx.size]
        if not brains or not maps:
            raise ValueError("domain synthesis needs at least one brain and one lesion map")
        self.brains, self.maps, self.cfg, self.bank = brains, maps, cfg, bank
        self.development_subjects = set(development_subjects)

    @classmethod
    def build(cls, sources: list[lm.BrainSource], maps: list[tuple[str, str, np.ndarray]],
              cfg: DomainSynthConfig = DomainSynthConfig(), bank: LesionShapeBank | None = None,
              development_subjects: set[str] = frozenset(), regions=None) -> "DomainSynth":
        """From brain sources on the working grid (label maps made here with ``regions``);
        ``maps``: (name, subject_id, bool KJI mask) per whole lesion map."""
        brains = [brain_from_labels(s.brain_id, s.subject_id, lm.label_map(s, regions), s.anatomy)
                  for s in sources]
        return cls(brains, maps, cfg, bank, development_subjects)

    def for_training(self, training_subjects: set[str]) -> "DomainSynth":
        """A view without the brains and lesion maps of development subjects that are not
        training subjects (i.e. the held-out ones)."""
        banned = self.development_subjects - set(training_subjects)
        brains = [b for b in self.brains if b.subject_id not in banned]
        maps = [m for m in self.maps if m.subject_id not in banned]
        return DomainSynth(brains, maps, self.cfg, self.bank, self.development_subjects)

    def with_normalisation(self, normalisation: str) -> "DomainSynth":
        """The same generator rendering in the model normalisation ``normalisation``."""
        if normalisation == self.cfg.normalisation:
            return self
        return DomainSynth(self.brains, self.maps, replace(self.cfg, normalisation=normalisation),
                           self.bank, self.development_subjects)

    @property
    def subjects(self) -> set[str]:
        return {b.subject_id for b in self.brains} | {m.subject_id for m in self.maps}

    # -- sampling ---------------------------------------------------------------------
    def render(self, region: tuple[int, int, int], lesion_p: float, rng: np.random.Generator,
               centre: tuple[int, int, int] | None = None) -> SynthRegion:
        """One synthetic region of ``region`` voxels (module doc), centred on a lesion voxel
        with probability ``lesion_p``, else on a brain voxel, or on ``centre`` (k, j, i)."""
        cfg = self.cfg
        brain = self.brains[int(rng.integers(len(self.brains)))]
        lmap = self.maps[int(rng.integers(len(self.maps)))]
        shape = np.array(brain.labels.shape)
        shift = np.round(rng.uniform(-1, 1, 3) * cfg.lesion_shift_mm).astype(int)
        pool = lmap.idx if rng.random() < lesion_p else brain.brain_idx
        drawn = np.array(np.unravel_index(pool[int(rng.integers(pool.size))], brain.labels.shape))
        if pool is lmap.idx:
            drawn = drawn + shift
        centre = drawn if centre is None else np.array(centre)
        reg = np.array(region)
        start = np.clip(centre - reg // 2, 0, shape - reg)
        box = tuple(slice(int(a), int(a) + n) for a, n in zip(start, region))
        labels = brain.labels[box]
        lesion = self._lesions(lmap, labels, start, shift, rng)
        anatomy = brain.anatomy[(slice(None), *box)].astype(np.float32)
        images, present, mask = self._appearance(labels, lesion, start, brain, lmap, shift, rng)
        return SynthRegion(images, present, lesion.astype(np.uint8), mask.astype(np.uint8), anatomy,
                           labels.copy())

    def _lesions(self, lmap: _LesionMap, labels: np.ndarray, start: np.ndarray,
                 shift: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        region = labels.shape
        margin = int(np.ceil(3 * cfg.lesion_warp_mm)) + 1
        src = [(int(s) - int(d) - margin, int(s) - int(d) + n + margin) for s, d, n in zip(start, shift, region)]
        big = np.zeros([b - a for a, b in src], dtype=np.float32)
        full = lmap.mask.shape
        sl_src = tuple(slice(max(a, 0), min(b, n)) for (a, b), n in zip(src, full))
        sl_dst = tuple(slice(max(a, 0) - a, min(b, n) - a) for (a, b), n in zip(src, full))
        big[sl_dst] = lmap.mask[sl_src]
        if big.any() and cfg.lesion_warp_mm > 0:
            lesion = _warp(big, region, margin, cfg.lesion_warp_mm, rng)
        else:
            lesion = big[margin:margin + region[0], margin:margin + region[1], margin:margin + region[2]] > 0.5
        allowed = np.isin(labels, _LESION_TISSUE)
        near_wm = ndimage.binary_dilation(labels == lm.WM, _CONN26, iterations=2)
        allowed |= (labels == lm.CORTICAL_GM) & near_wm
        lesion &= allowed
        components, n = ndimage.label(lesion, _CONN26)
        if n:
            sizes = np.bincount(components.ravel())
            keep = rng.random(n + 1) >= rng.uniform(*cfg.lesion_drop)
            keep &= sizes >= 3
            keep[0] = False
            lesion = keep[components]
        n_add = int(rng.integers(0, cfg.lesion_add_max + 1))
        wm = (labels == lm.WM).astype(np.float32)
        if self.bank is not None and n_add and wm.sum() > 500:
            try:
                lesion |= self.bank.place(wm, n_add, rng, existing=lesion) > 0
            except ValueError:  # no room for a shape in this region: keep the map's lesions
                pass
        return lesion

    def _appearance(self, labels: np.ndarray, lesion: np.ndarray, start: np.ndarray,
                    brain: _Brain, lmap: _LesionMap, shift: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
        cfg = self.cfg
        index = np.where(lesion, LESION, labels)
        ref_pos = brain.ref_pos
        ref_src = (ref_pos - shift).astype(int)
        inside = np.all((ref_src >= 0) & (ref_src < np.array(lmap.mask.shape)), axis=1)
        ref_lesion = np.zeros(len(ref_pos), dtype=bool)
        ref_lesion[inside] = lmap.mask[tuple(ref_src[inside].T)]
        ref_lesion &= np.isin(brain.ref_labels, _LESION_TISSUE)
        ref_index = np.where(ref_lesion, LESION, brain.ref_labels)
        mask = self._skull_strip(labels > 0, rng)
        extra = mask & (labels == 0)
        present = ("flair", "t1") if rng.random() < cfg.t2_missing_p else ("flair", "t1", "t2")
        images = np.zeros((len(MODALITIES),) + labels.shape, dtype=np.float32)
        components, n_lesions = ndimage.label(lesion, _CONN26)
        # tissue texture is anatomy, shared by the modalities; each scales it by its spread
        texture = smooth_noise(labels.shape, rng, cfg.texture_sigma)
        for modality in MODALITIES:  # draws for every modality keep the stream data-free
            means, spreads = self._draw_means(modality, rng)
            lesion_gain = rng.uniform(*self._range(modality, LESION), n_lesions + 1) / means[LESION]
            scale = rng.uniform(0.5, 2.0)
            image = means[index] * (1 + spreads[index] * texture)
            if n_lesions:
                image = np.where(lesion, image * lesion_gain[components], image)
            if extra.any():  # extracerebral signal left by the skull strip: dura, bone, fat
                image[extra] = rng.uniform(0.2, 2.5) * (1 + 0.3 * smooth_noise(labels.shape, rng, 1.5)[extra])
            ref = means[ref_index] * (1 + spreads[ref_index] * rng.standard_normal(len(ref_index)))
            image = ndimage.gaussian_filter(image, rng.uniform(*cfg.pv_blur), truncate=3.0)
            bias = BiasField(rng, rng.uniform(*cfg.bias))
            image *= bias.on_box(start, labels.shape)
            ref *= bias.at(ref_pos)
            if rng.random() < cfg.thick_slice_p:
                image = thick_slices(image, int(rng.integers(3)), rng.uniform(*cfg.slice_mm), rng.uniform(0, 1))
            sigma = rng.uniform(*cfg.noise)
            image = noisy(image, sigma, rng) * scale
            ref = np.abs(ref + sigma * rng.standard_normal(ref.size)) * scale
            if rng.random() < cfg.quantise_p:
                top = float(np.percentile(ref, 99.5)) * rng.uniform(1.0, 1.6)
                image, ref = quantise(image, top), quantise(ref, top)
            if modality in present:
                images[MODALITIES.index(modality)] = pipeline_normalised(
                    image, mask, ref, _TISSUE_CLASS[ref_index], cfg.normalisation, modality)
        return images, present, mask

    def _draw_means(self, modality: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Mean (relative to WM = 1) and relative spread per appearance index."""
        means = np.zeros(LESION + 1)
        means[lm.WM] = 1.0
        for label in _RANGES[modality]:
            means[label] = rng.uniform(*self._range(modality, label))
        if modality == "flair" and rng.random() < self.cfg.flair_gm_bright_p:
            # grey matter near the lesions' level: only shape and place tell them apart
            means[lm.CORTICAL_GM] = means[lm.CEREBELLAR_GM] = means[LESION] * rng.uniform(0.85, 1.05)
        spreads = rng.uniform(*self.cfg.spread, LESION + 1)
        spreads[lm.BACKGROUND] = 0.0
        return means, spreads

    def _range(self, modality: str, label: int) -> tuple[float, float]:
        """(low, high) mean relative to WM of ``label`` on ``modality``."""
        if modality == "flair" and label == LESION:
            return tuple(self.cfg.flair_lesion)
        return _RANGES[modality][label]

    def _skull_strip(self, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The brain mask as an imperfect skull strip leaves it: grown by 1-3 mm (keeping
        extracerebral signal) or eroded by 1-2 mm over smooth random patches."""
        if rng.random() >= self.cfg.skull_p or not brain.any():
            return brain
        patch = smooth_noise(brain.shape, rng, 6.0) > rng.uniform(-0.5, 0.8)
        if rng.random() < 0.6:
            grown = ndimage.binary_dilation(brain, _CONN26, iterations=int(rng.integers(1, 4)))
            return brain | (grown & patch)
        shrunk = ndimage.binary_erosion(brain, _CONN26, iterations=int(rng.integers(1, 3)))
        return np.where(patch, shrunk, brain)


def _warp(big: np.ndarray, region: tuple[int, int, int], margin: int, std_mm: float,
          rng: np.random.Generator) -> np.ndarray:
    """The centre ``region`` of ``big`` (which has ``margin`` voxels more on every side)
    resampled through a smooth random displacement (std ``std_mm``, control points every
    12 mm, trilinear), thresholded at 0.5."""
    import torch
    import torch.nn.functional as F

    coarse = [max(2, n // 12 + 2) for n in region]
    disp = torch.from_numpy(rng.standard_normal((1, 3, *coarse)).astype(np.float32) * std_mm)
    disp = F.interpolate(disp, size=tuple(region), mode="trilinear", align_corners=True)[0]
    axes = [torch.arange(n, dtype=torch.float32) + margin for n in region]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij")) + disp  # (3, D, H, W) voxels of big
    size = torch.tensor(big.shape, dtype=torch.float32).view(3, 1, 1, 1)
    grid = (2 * pos / (size - 1) - 1).permute(1, 2, 3, 0).flip(-1)[None]  # (x=W, y=H, z=D)
    out = F.grid_sample(torch.from_numpy(big)[None, None], grid, mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return out[0, 0].numpy() > 0.5


def development_lesion_maps(cases: list[CachedCase]) -> list[tuple[str, str, np.ndarray]]:
    """Whole lesion maps of cached development cases (name, subject, bool mask)."""
    return [(c.case_id, c.subject_id, c.mask > 0) for c in cases]


def folder_lesion_maps(masks_dir: str | Path, development_subjects: set[str]
                       ) -> list[tuple[str, str, np.ndarray]]:
    """Every ``*.nii.gz`` mask in ``masks_dir``; a file named after a development subject
    (e.g. ``patient07.nii.gz``) is tagged with that subject, so it leaves that subject's
    fold with the subject's own mask."""
    import SimpleITK as sitk

    files = sorted(Path(masks_dir).glob("*.nii.gz"))
    if not files:
        raise FileNotFoundError(f"no lesion masks (*.nii.gz) in {masks_dir}")
    out = []
    for f in files:
        stem = f.name[: -len(".nii.gz")]
        subject = stem if stem in development_subjects else f"lesionmap:{stem}"
        out.append((stem, subject, sitk.GetArrayFromImage(sitk.ReadImage(str(f))) > 0))
    return out


def build_from_data(cases: list[CachedCase], shared_data_dir: str | Path | None, cache_dir: str | Path,
                    masks_dir: str | Path | None, bank: LesionShapeBank | None,
                    cfg: DomainSynthConfig = DomainSynthConfig(), *, log=print) -> DomainSynth:
    """The generator for a training run: brains of ``cases`` (the development cases), of the
    native scans under ``shared_data_dir`` and of the template; lesion maps of ``cases`` and
    of ``masks_dir``. Brain sources are cached under ``cache_dir/brains``."""
    development = {c.subject_id for c in cases}
    sources = [lm.source_from_cached(c) for c in cases]
    sources += lm.extra_sources(shared_data_dir, cache_dir, log=log)
    maps = development_lesion_maps(cases)
    if masks_dir is not None:
        maps += folder_lesion_maps(masks_dir, development)
    regions = lm.template_regions_or_none()
    if regions is None:
        log("allnet.regions is not available: grey matter is not split into classes")
    synth = DomainSynth.build(sources, maps, cfg, bank, development, regions)
    log(f"domain synthesis: {len(synth.brains)} brains ({', '.join(b.brain_id for b in synth.brains)}), "
        f"{len(synth.maps)} lesion maps")
    return synth
