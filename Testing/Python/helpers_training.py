"""Tiny synthetic training cases for the ALLNetTraining tests (no real data needed)."""
from __future__ import annotations

import numpy as np

from allnet.model import ModelConfig
from allnet_training.augment import NO_AUGMENTATION
from allnet_training.cache import CachedCase
from allnet_training.patches import SamplerConfig
from allnet_training.synthetic import SyntheticConfig

SHAPE = (32, 48, 48)  # K, J, I voxels (1 mm)


def tiny_case(seed: int, case_id: str = "", with_t2: bool = True) -> CachedCase:
    """An ellipsoidal 'brain' with WM core and 3-5 bright spherical 'lesions' on FLAIR/T2."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    c = [(n - 1) / 2 for n in SHAPE]
    r = np.sqrt(((k - c[0]) / 14) ** 2 + ((j - c[1]) / 21) ** 2 + ((i - c[2]) / 21) ** 2)
    brain = (r < 1).astype(np.uint8)
    tissue = np.where(r < 0.6, 3, np.where(r < 0.85, 2, np.where(r < 1, 1, 0))).astype(np.uint8)
    mask = np.zeros(SHAPE, np.uint8)
    for _ in range(int(rng.integers(3, 6))):
        centre = np.array(c) + rng.uniform(-6, 6, 3)
        radius = rng.uniform(1.5, 3.5)
        mask |= (((k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2) <= radius ** 2)
    mask &= brain
    base = {"flair": (0.0, 0.2, -0.3), "t1": (0.3, -0.1, -1.0), "t2": (-0.4, 0.0, 1.2)}
    images = np.zeros((3, *SHAPE), np.float16)
    for index, name in enumerate(("flair", "t1", "t2")):
        wm, gm, csf = base[name]
        img = np.select([tissue == 3, tissue == 2, tissue == 1], [wm, gm, csf], 0.0)
        img = img + 0.1 * rng.standard_normal(SHAPE)
        if name in ("flair", "t2"):
            img = img + 1.5 * mask
        images[index] = (img * brain).astype(np.float16)
    if not with_t2:
        images[2] = 0
    anatomy = np.stack([k / 100, j / 100, i / 100, r, r * 0.5, (1 - r).clip(0) * 2]).astype(np.float16)
    present = ("flair", "t1", "t2") if with_t2 else ("flair", "t1")
    return CachedCase(case_id or f"case{seed}", case_id or f"case{seed}", images, anatomy, mask,
                      brain, tissue, present)


def tiny_model_config(**kw) -> ModelConfig:
    args = dict(base_channels=4, depth=2, head_channels=4, head_mlp=(4,), modality_dropout=True)
    args.update(kw)
    return ModelConfig(**args)


def tiny_sampler_config(augment: bool = False) -> SamplerConfig:
    from allnet_training.augment import AugmentConfig

    return SamplerConfig(crop=(16, 24, 24), lesion_p=0.5,
                         augment=AugmentConfig() if augment else NO_AUGMENTATION,
                         synthetic=SyntheticConfig(p=0.0))
