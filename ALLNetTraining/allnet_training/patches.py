"""Random training crops from cached cases: centre choice, synthetic lesions, sphere map,
augmentation; with ``synthetic_ratio`` > 0 a share of the crops is rendered instead by the
domain-randomised generator (``domain_synth.py``).

Every sample is a pure function of an integer seed (a fresh ``torch.Generator`` per
sample), so a batch is the same whether one process or several DDP ranks draw it.
Crops are (D, H, W) = (K, J, I) voxels of the working grid; the paper's 128x128x48
(I, J, K) crop is ``(48, 128, 128)`` here.
"""
from __future__ import annotations

import math
from dataclasses import replace, asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from allnet.plan import NORMALISATION_ROBUST_ZSCORE
from allnet.synthesis import LesionShapeBank

from .augment import AugmentConfig, augment, tissue_contrast
from .cache import MODALITIES, CachedCase, with_normalisation
from .domain_synth import DomainSynth, DomainSynthConfig
from .spheres import sphere_map
from .synthetic import SyntheticConfig, insert_synthetic


@dataclass(frozen=True)
class SamplerConfig:
    """Crop size (K, J, I voxels), the chance a crop is centred on a lesion voxel, the
    augmentation and synthetic-lesion settings, and the share of crops rendered by the
    domain-randomised generator (``synthetic_ratio``) with its settings and its spatial
    augmentation (``domain_augment``: a random smooth deformation on every such crop)."""

    crop: tuple[int, int, int] = (48, 128, 128)
    lesion_p: float = 0.5
    sphere_diameter_mm: float = 10.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    synthetic_ratio: float = 0.0
    domain: DomainSynthConfig = field(default_factory=DomainSynthConfig)
    domain_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(
        elastic_p=1.0, elastic_sigma=3.0, t2_dropout=0.0))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["crop"] = list(self.crop)
        return out


def region_shape(crop: tuple[int, int, int]) -> tuple[int, int, int]:
    """Region read around a crop so rotation (10 deg), zoom-out (0.9) and elastic
    displacements still find data: 25 % larger plus 8 voxels."""
    return tuple(int(math.ceil(n * 1.25)) + 8 for n in crop)


class CropSampler:
    """Draws augmented crops from a list of cached cases (uniform over cases)."""

    def __init__(self, cases: list[CachedCase], cfg: SamplerConfig,
                 modalities: tuple[str, ...] = MODALITIES,
                 bank: LesionShapeBank | None = None, synth: DomainSynth | None = None,
                 normalisation: str = NORMALISATION_ROBUST_ZSCORE, noise_target: float = 0.0) -> None:
        """``normalisation``: the model's (``ModelConfig.normalisation``); real and synthetic
        crops both come out in it. ``noise_target``: the model's; the real cases are
        harmonised to it as at inference (synthetic crops keep their randomised noise, whose
        range spans the target and more)."""
        if not cases:
            raise ValueError("no training cases")
        cases = [with_normalisation(c, normalisation, noise_target) for c in cases]
        self.cases, self.cfg, self.bank = cases, cfg, bank
        if cfg.synthetic_ratio > 0 and synth is None:
            raise ValueError("synthetic_ratio > 0 needs a domain-synthesis generator")
        # only the training subjects' brains and masks (and non-development ones) remain
        self.synth = (synth.for_training({c.subject_id for c in cases}).with_normalisation(normalisation)
                      if synth is not None else None)
        if self.synth is not None:  # the settings recorded are those the generator renders with
            self.cfg = replace(cfg, domain=self.synth.cfg)
        self.channels = [MODALITIES.index(m) for m in modalities]
        self.modalities = tuple(modalities)
        self.t2_channel = self.modalities.index("t2") if "t2" in self.modalities else None
        self.region = region_shape(cfg.crop)
        for case in cases:
            if any(r > s for r, s in zip(self.region, case.mask.shape)):
                raise ValueError(f"crop {cfg.crop} too large for volume {case.mask.shape}")
        self._lesion_idx = [np.flatnonzero(c.mask).astype(np.int64) for c in cases]
        self._brain_idx = [np.flatnonzero(c.brain).astype(np.int64) for c in cases]

    def _centre(self, index: int, gen: torch.Generator) -> np.ndarray:
        case = self.cases[index]
        lesions = self._lesion_idx[index]
        use_lesion = float(torch.rand(1, generator=gen)) < self.cfg.lesion_p
        pool = lesions if (use_lesion and lesions.size) else self._brain_idx[index]
        flat = pool[int(torch.randint(0, pool.size, (1,), generator=gen))]
        return np.array(np.unravel_index(flat, case.mask.shape))

    def sample(self, seed: int) -> dict[str, Tensor]:
        """One crop: image (C, D, H, W), anatomy (6, ...), lesion and sphere (1, ...)."""
        gen = torch.Generator().manual_seed(int(seed))
        # drawn only when mixing, so a run without synthetic crops keeps its random stream
        if self.cfg.synthetic_ratio > 0 and float(torch.rand(1, generator=gen)) < self.cfg.synthetic_ratio:
            return self._synthetic(gen)
        index = int(torch.randint(0, len(self.cases), (1,), generator=gen))
        case = self.cases[index]
        centre = self._centre(index, gen)
        shape = np.array(case.mask.shape)
        start = np.clip(centre - np.array(self.region) // 2, 0, shape - np.array(self.region))
        box = tuple(slice(int(a), int(a) + n) for a, n in zip(start, self.region))
        images = case.images[(slice(None), *box)].astype(np.float32)
        mask = case.mask[box]
        brain = case.brain[box]
        if self.bank is not None and self.cfg.synthetic.p > 0:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
            present = {m: images[MODALITIES.index(m)] for m in case.present}
            present, mask, _ = insert_synthetic(present, mask, case.tissue[box], brain,
                                                self.bank, rng, self.cfg.synthetic)
            for m, arr in present.items():
                images[MODALITIES.index(m)] = arr * (brain > 0)
        images = tissue_contrast(images, case.tissue[box], mask, brain, self.cfg.augment, gen)
        spheres = sphere_map(mask, diameter_mm=self.cfg.sphere_diameter_mm)
        img = torch.from_numpy(np.ascontiguousarray(images[self.channels]))
        ana = torch.from_numpy(case.anatomy[(slice(None), *box)].astype(np.float32))
        lab = torch.from_numpy(np.stack([mask, spheres]).astype(np.float32))
        brn = torch.from_numpy(brain[None].astype(np.float32))
        absent = tuple(i for i, m in enumerate(self.modalities) if m not in case.present)
        img, ana, lab, _ = augment(img, ana, lab, brn, self.cfg.crop, self.cfg.augment, gen,
                                   self.t2_channel, absent)
        return {"image": img, "anatomy": ana, "lesion": lab[:1], "sphere": lab[1:2]}

    def _synthetic(self, gen: torch.Generator) -> dict[str, Tensor]:
        """One domain-randomised crop, same tensors as :meth:`sample`."""
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        region = self.synth.render(self.region, self.cfg.lesion_p, rng)
        spheres = sphere_map(region.lesion, diameter_mm=self.cfg.sphere_diameter_mm)
        img = torch.from_numpy(np.ascontiguousarray(region.images[self.channels]))
        ana = torch.from_numpy(region.anatomy)
        lab = torch.from_numpy(np.stack([region.lesion, spheres]).astype(np.float32))
        brn = torch.from_numpy(region.brain[None].astype(np.float32))
        absent = tuple(i for i, m in enumerate(self.modalities) if m not in region.present)
        img, ana, lab, _ = augment(img, ana, lab, brn, self.cfg.crop, self.cfg.domain_augment, gen,
                                   self.t2_channel, absent)
        return {"image": img, "anatomy": ana, "lesion": lab[:1], "sphere": lab[1:2]}

    def batch(self, seeds: list[int]) -> dict[str, Tensor]:
        samples = [self.sample(s) for s in seeds]
        return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def sample_seed(seed: int, step: int, index: int) -> int:
    """Seed of sample ``index`` of global step ``step`` of a run seeded ``seed``."""
    return ((int(seed) * 1_000_003 + int(step)) * 4096 + int(index)) % (2**63 - 1)
