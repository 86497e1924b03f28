"""Model-card figures: example training crops with synthetic lesions outlined, and the
same slice under random tissue-contrast augmentation."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from allnet.atomic import atomic_file
from allnet.synthesis import LesionShapeBank

from .augment import AugmentConfig, tissue_contrast
from .cache import MODALITIES, CachedCase
from .synthetic import SyntheticConfig, insert_synthetic

NAMES = {"flair": "FLAIR", "t1": "T1W", "t2": "T2W"}


def synthetic_example(case: CachedCase, bank: LesionShapeBank, path: str | Path, seed: int,
                      slab: int = 40) -> int:
    """Insert 3-5 bank lesions into an axial slab of ``case`` and save one PNG: each present
    modality before, after, and after with new lesions outlined in red, real ones in yellow.
    Returns the number of lesions inserted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    k_brain = np.flatnonzero(case.brain.any(axis=(1, 2)))
    k0 = int(np.clip(k_brain[len(k_brain) // 2] - slab // 2 + 10, 0, case.brain.shape[0] - slab))
    box = (slice(k0, k0 + slab), slice(None), slice(None))
    before = {m: case.images[MODALITIES.index(m)][box].astype(np.float32) for m in case.present}
    mask = case.mask[box]
    after, labels, n = insert_synthetic(before, mask, case.tissue[box], case.brain[box], bank, rng,
                                        SyntheticConfig(p=1.0, n_min=3, n_max=5))
    new = (labels > 0) & ~(mask > 0)
    k = int(np.argmax(new.sum(axis=(1, 2)))) if new.any() else slab // 2
    mods = [m for m in MODALITIES if m in case.present]
    brain_k = case.brain[box][k] > 0
    fig, axes = plt.subplots(3, len(mods), figsize=(3.0 * len(mods), 9.3))
    rows = (("original", before, False), ("synthetic lesions", after, False),
            ("outlined", after, True))
    for col, m in enumerate(mods):
        lo, hi = np.percentile(before[m][k][brain_k], [1, 99.5]) if brain_k.any() else (0, 1)
        for row, (title, images, outline) in enumerate(rows):
            ax = axes[row, col]
            # background at the window's low end (normalised images are 0 outside the brain)
            sl = np.where(brain_k, images[m][k], lo)
            # KJI slice: flip J so anterior is up; I already runs from the patient's right (LAS),
            # so the patient's right is on the image's left (radiological convention)
            ax.imshow(sl[::-1], cmap="gray", vmin=lo, vmax=hi)
            if outline:
                ax.contour(new[k][::-1], levels=[0.5], colors="red", linewidths=0.7)
                ax.contour((mask[k] > 0)[::-1], levels=[0.5], colors="yellow", linewidths=0.5)
            ax.set_title(f"{NAMES[m]} - {title}", fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{case.case_id}, axial slice k={k0 + k}: {n} inserted (red), real lesions (yellow)",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return n


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def contrast_example(case: CachedCase, path: str | Path, seeds: tuple[int, ...] = (1, 2, 3),
                     cfg: AugmentConfig = AugmentConfig(), modality: str = "flair") -> None:
    """One axial slice (the one with most lesion voxels) of ``modality`` as stored and under
    ``tissue_contrast`` with each seed; real lesions outlined in yellow. Saves one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    k = int(np.argmax(case.mask.sum(axis=(1, 2))))
    box = (slice(k, k + 1), slice(None), slice(None))
    images = case.images[(slice(None), *box)].astype(np.float32)
    c = MODALITIES.index(modality)
    brain = case.brain[box][0] > 0
    lo, hi = np.percentile(images[c][0][brain], [1, 99.5])
    panels = [("as stored", images[c][0])]
    for seed in seeds:
        out = tissue_contrast(images, case.tissue[box], case.mask[box], case.brain[box], cfg,
                              torch.Generator().manual_seed(seed))
        panels.append((f"augmented (seed {seed})", out[c][0]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.6))
    for ax, (title, sl) in zip(axes, panels):
        ax.imshow(np.where(brain, sl, lo)[::-1], cmap="gray", vmin=lo, vmax=hi)
        ax.contour((case.mask[k] > 0)[::-1], levels=[0.5], colors="yellow", linewidths=0.5)
        ax.set_title(f"{NAMES[modality]} - {title}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{case.case_id}, axial slice k={k}: tissue-contrast augmentation", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def domain_synth_figure(synth, cases: list[CachedCase], path: str | Path, *, n_synthetic: int = 4,
                        k: int = 98, seed: int = 0) -> None:
    """Axial slice ``k`` (working grid) of real scans (top rows) and of synthetic images
    rendered by ``synth`` (``domain_synth.DomainSynth``) around the same slice (bottom rows):
    FLAIR, T1W, T2W, the lesion map. Grey scale -3..6 normalised units throughout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"real: {c.case_id}", c.images.astype(np.float32)[:, k], c.mask[k], c.present)
            for c in cases]
    shape = cases[0].brain.shape
    for index in range(n_synthetic):
        rng = np.random.default_rng(seed + index)
        region = synth.render((9, shape[1], shape[2]), 0.0, rng, centre=(k, shape[1] // 2, shape[2] // 2))
        rows.append((f"synthetic {index + 1}", region.images[:, 4], region.lesion[4], region.present))
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.3 * len(rows)))
    for r, (title, images, lesion, present) in enumerate(rows):
        for c, name in enumerate(MODALITIES):
            ax = axes[r, c]
            ax.imshow(np.flipud(images[MODALITIES.index(name)]), cmap="gray", vmin=-3, vmax=6)
            ax.set_title(f"{title} {NAMES[name]}" if name in present else f"{title}: no {NAMES[name]}",
                         fontsize=7)
            ax.axis("off")
        axes[r, 3].imshow(np.flipud(lesion), cmap="magma", vmin=0, vmax=1)
        axes[r, 3].set_title("lesion map", fontsize=7)
        axes[r, 3].axis("off")
    fig.tight_layout()
    with atomic_file(Path(path)) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
