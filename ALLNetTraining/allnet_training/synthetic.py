"""Synthetic lesions for training: real lesion shapes pasted into the training brains.

Shapes are the 26-connected lesions of the consensus masks in
``lesjak2018/lesion_masks_mni`` (Lesjak et al. 2018), placed at random white-matter
positions and painted with the core's lesion model (``allnet.synthesis``: hyperintense on
FLAIR/T2W, iso- to hypointense on T1W, smooth borders); the label map gets the new
lesions. Masks of subjects that are in the development set are left out of the shape bank
so a held-out subject's lesions never reach training through it.
Arrays are numpy KJI on the working grid (1 mm).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from allnet.synthesis import LesionShapeBank, insert_lesions, sample_lesion_shapes

WM_LABEL = 3  # allnet.anatomy tissue labels: 0 bg, 1 CSF, 2 GM, 3 WM


@dataclass(frozen=True)
class SyntheticConfig:
    """Probability that a training crop gets synthetic lesions, and how many (inclusive)."""

    p: float = 0.5
    n_min: int = 1
    n_max: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def load_shape_bank(masks_dir: str | Path, exclude: Iterable[str] = ()) -> LesionShapeBank:
    """Shape bank of every ``*.nii.gz`` mask in ``masks_dir`` whose stem is not in ``exclude``."""
    exclude = set(exclude)
    files = sorted(p for p in Path(masks_dir).glob("*.nii.gz")
                   if p.name[: -len(".nii.gz")] not in exclude)
    if not files:
        raise FileNotFoundError(f"no lesion masks (*.nii.gz) in {masks_dir}")
    masks = [sitk.GetArrayFromImage(sitk.ReadImage(str(f))) > 0 for f in files]
    return LesionShapeBank(masks)


def insert_synthetic(images: dict[str, np.ndarray], mask: np.ndarray, tissue: np.ndarray,
                     brain: np.ndarray, bank: LesionShapeBank, rng: np.random.Generator,
                     cfg: SyntheticConfig) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """With probability ``cfg.p`` paste ``n_min..n_max`` bank lesions into the WM of one
    region. ``images`` maps modality -> normalised float32 (only modalities present).
    Returns (images, lesion mask uint8 including the existing lesions, number inserted)."""
    if cfg.p <= 0 or rng.random() >= cfg.p:
        return images, mask, 0
    wm = (tissue == WM_LABEL) & (brain > 0)
    if wm.sum() < 100:
        return images, mask, 0
    n = int(rng.integers(cfg.n_min, cfg.n_max + 1))
    new = sample_lesion_shapes(bank, wm.astype(np.float32), n, rng, existing=mask)
    if not new.any():
        return images, mask, 0
    out, labels = insert_lesions(images, new, wm.astype(np.float32), rng,
                                 brain_mask=brain, base_mask=mask)
    return out, labels, n
