"""Data augmentation of training crops (torch, deterministic given a ``torch.Generator``).

One spatial transform (small affine + elastic deformation, optional left-right flip) is
applied with a single ``grid_sample`` to the images, the 6 anatomy channels, the label
maps and the brain mask, so they stay aligned. The anatomy channels move with the tissue:
they are properties of the tissue's position in MNI space. The left-right flip flips the
anatomy channels with the images and does not change their values (the x channel keeps
the tissue's original side), exactly as ``allnet.inference.predict`` does for its flip
test-time augmentation. Intensity scale/shift is drawn per modality and applied inside the
brain only; T2W is dropped (zeroed) with probability ``t2_dropout`` so that the model also
works without T2W, as inference does for a missing T2W (zeros in its channel).

``tissue_contrast`` changes contrast between tissues before the spatial transform: grey
matter and CSF move by their own random offsets per modality, and each lesion's difference
from the surrounding white matter is scaled by a random factor. Scanners and sequences
differ mostly there (a 3 T FLAIR shows cortex clearly brighter than white matter, a 1.5 T
FLAIR hardly; lesions stand out by 1.3x-1.7x the white-matter level across the development
scans), and a model that saw one contrast calls bright cortex a lesion on the other.

Tensors are (C, D, H, W) = (C, K, J, I) on the working grid (1 mm, I = left-right axis).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (angles in degrees, lengths in voxels = mm)."""

    flip_p: float = 0.5
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    elastic_p: float = 0.5
    elastic_sigma: float = 2.0     # std of control-point displacements (voxels)
    elastic_spacing: int = 16      # control-point spacing (voxels)
    intensity_scale: float = 0.1   # factor drawn in 1 +- this
    intensity_shift: float = 0.1   # offset drawn in +- this (normalised units)
    t2_dropout: float = 0.3
    gm_shift: float = 0.0          # grey-matter offset drawn in +- this (normalised units)
    csf_shift: float = 0.0         # CSF offset drawn in +- this
    lesion_contrast: tuple[float, float] = (1.0, 1.0)  # factor on lesion - white matter
    noise_p: float = 0.0           # probability of added Gaussian noise
    noise_sd: tuple[float, float] = (0.05, 0.35)  # its std (normalised units)
    blur_p: float = 0.0            # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.4, 1.0)  # its sigma (voxels)

    def to_dict(self) -> dict:
        return asdict(self)


# ``allnet-train --contrast-augment``: tissue-contrast augmentation and wider intensity ranges
CONTRAST_AUGMENTATION = dict(intensity_scale=0.15, intensity_shift=0.2, gm_shift=0.8, csf_shift=0.5,
                             lesion_contrast=(0.6, 1.15))

# ``allnet-train --acquisition-augment``: real crops made noisier or smoother, so that noise
# level stops telling one scanner's scans from another's (the development FLAIRs differ 3x in
# voxel-scale noise: Lesjak et al. 0.28, MSLesSeg 0.08-0.11 normalised units)
ACQUISITION_AUGMENTATION = dict(noise_p=0.3, blur_p=0.3)

NO_AUGMENTATION = AugmentConfig(flip_p=0.0, rotate_deg=0.0, scale=(1.0, 1.0), elastic_p=0.0,
                                intensity_scale=0.0, intensity_shift=0.0, t2_dropout=0.0,
                                gm_shift=0.0, csf_shift=0.0, lesion_contrast=(1.0, 1.0))

TISSUE_CSF, TISSUE_GM, TISSUE_WM = 1, 2, 3
_EDGE_SIGMA = 0.7  # voxels: soft tissue borders, so a shift leaves no hard step at the edge


def _uniform(gen: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def _rotation(angles: Tensor) -> Tensor:
    """Rotation matrix (3x3, float64) about the D, H, W axes by ``angles`` (radians)."""
    out = torch.eye(3, dtype=torch.float64)
    for axis in range(3):
        c, s = math.cos(float(angles[axis])), math.sin(float(angles[axis]))
        a, b = [x for x in range(3) if x != axis]
        r = torch.eye(3, dtype=torch.float64)
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        out = r @ out
    return out


def sampling_grid(in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                  cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    """grid_sample grid (1, D, H, W, 3) mapping the output crop (centred) into the input
    region: ``p_in = c_in + A (p_out - c_out) + elastic(p_out)`` in voxels."""
    angles = _uniform(gen, -1, 1, 3) * math.radians(cfg.rotate_deg)
    scale = float(_uniform(gen, *cfg.scale))
    matrix = _rotation(angles) / scale  # output -> input: zooming in by `scale`
    axes = [torch.arange(n, dtype=torch.float64) - (n - 1) / 2 for n in out_shape]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (D,H,W,3) in d,h,w
    pos = pos @ matrix.T
    if cfg.elastic_p > 0 and float(_uniform(gen, 0, 1)) < cfg.elastic_p:
        coarse = [max(2, math.ceil(n / cfg.elastic_spacing) + 1) for n in out_shape]
        noise = torch.randn((1, 3, *coarse), generator=gen, dtype=torch.float64) * cfg.elastic_sigma
        disp = F.interpolate(noise, size=out_shape, mode="trilinear", align_corners=True)
        pos = pos + disp[0].permute(1, 2, 3, 0)
    centre_in = torch.tensor([(n - 1) / 2 for n in in_shape], dtype=torch.float64)
    pos = pos + centre_in
    size = torch.tensor(in_shape, dtype=torch.float64)
    norm = 2 * pos / (size - 1) - 1
    return norm.flip(-1).unsqueeze(0).float()  # grid_sample wants (x=W, y=H, z=D)


def tissue_contrast(images: np.ndarray, tissue: np.ndarray, lesion: np.ndarray,
                    brain: np.ndarray, cfg: AugmentConfig, gen: torch.Generator) -> np.ndarray:
    """Random per-modality grey-matter/CSF offsets and lesion-contrast factors.

    images (C, D, H, W) normalised (float32, modified copy returned); tissue (D, H, W) uint8
    (0 bg, 1 CSF, 2 GM, 3 WM); lesion (D, H, W) binary, lesion voxels are excluded from the
    tissue offsets; brain (D, H, W) binary. A lesion's value becomes
    ``wm + f * (value - wm)`` with ``wm`` the median white-matter value of the region. The
    same numbers are drawn whatever the data (none when switched off), so the random stream
    depends on the settings only.
    """
    if cfg.gm_shift == 0 and cfg.csf_shift == 0 and tuple(cfg.lesion_contrast) == (1.0, 1.0):
        return images  # switched off: draws nothing, so the random stream is as without it
    n = images.shape[0]
    gm_shift = (_uniform(gen, -1, 1, n) * cfg.gm_shift).numpy()
    csf_shift = (_uniform(gen, -1, 1, n) * cfg.csf_shift).numpy()
    factor = _uniform(gen, *cfg.lesion_contrast, n).numpy()
    out = images.astype(np.float32, copy=True)
    inside = brain > 0
    lesion = lesion > 0
    soft = {k: ndimage.gaussian_filter(((tissue == k) & ~lesion).astype(np.float32), _EDGE_SIGMA)
            for k in (TISSUE_GM, TISSUE_CSF)}
    soft_lesion = ndimage.gaussian_filter(lesion.astype(np.float32), _EDGE_SIGMA)
    wm = (tissue == TISSUE_WM) & ~lesion & inside
    for c in range(n):
        if not np.any(out[c][inside]):  # absent modality: keep zeros
            continue
        out[c] += gm_shift[c] * soft[TISSUE_GM] + csf_shift[c] * soft[TISSUE_CSF]
        if lesion.any():
            level = float(np.median(out[c][wm])) if wm.any() else 0.0
            out[c] += (factor[c] - 1.0) * soft_lesion * (out[c] - level)
        out[c] *= inside
    return out


def _gaussian_blur(images: Tensor, brain: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (sigma in voxels) of (C, D, H, W) inside ``brain`` (1, D, H, W):
    normalised convolution, so the zeros outside the brain do not darken its edge."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    stack = torch.cat([images * brain, brain], dim=0).unsqueeze(1)  # (C+1, 1, D, H, W)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        padding = [0, 0, 0]
        padding[axis] = radius
        stack = F.conv3d(stack, kernel.view(shape), padding=tuple(padding))
    stack = stack[:, 0]
    return stack[:-1] / stack[-1:].clamp_min(1e-3) * brain


def acquisition(images: Tensor, brain: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    """Random Gaussian blur and added noise (normalised units) of (C, D, H, W) images inside
    ``brain``; absent (all-zero) channels stay zero. Draws nothing when switched off, so the
    random stream is as without it."""
    if cfg.noise_p <= 0 and cfg.blur_p <= 0:
        return images
    blur = float(_uniform(gen, 0, 1)) < cfg.blur_p
    sigma = float(_uniform(gen, *cfg.blur_sigma))
    noise = float(_uniform(gen, 0, 1)) < cfg.noise_p
    sd = float(_uniform(gen, *cfg.noise_sd))
    field = torch.randn(images.shape, generator=gen)
    present = (images.flatten(1).abs().amax(dim=1) > 0).float().view(-1, 1, 1, 1)
    out = _gaussian_blur(images, brain, sigma) if blur else images
    if noise:
        out = out + sd * field * brain
    return out * present


def augment(images: Tensor, anatomy: Tensor, labels: Tensor, brain: Tensor,
            out_shape: tuple[int, int, int], cfg: AugmentConfig, gen: torch.Generator,
            t2_channel: int | None = None, absent: tuple[int, ...] = ()
            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Augment one region and crop its centre to ``out_shape``.

    images (C, D, H, W) normalised, anatomy (6, D, H, W), labels (L, D, H, W) binary
    (lesion mask, sphere map, ...), brain (1, D, H, W) binary. The region may be larger
    than ``out_shape`` (a margin keeps rotated corners inside the data). Returns the same
    four tensors at ``out_shape``; labels and brain are 0/1 float32. ``t2_channel`` is the
    image channel that modality dropout may zero; ``absent`` channels (modalities the case
    lacks) stay zero.
    """
    in_shape = tuple(images.shape[1:])
    n_img, n_ana, n_lab = images.shape[0], anatomy.shape[0], labels.shape[0]
    stack = torch.cat([images.float(), anatomy.float(), labels.float(), brain.float()], dim=0)
    grid = sampling_grid(in_shape, out_shape, cfg, gen)
    out = F.grid_sample(stack.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)[0]
    if cfg.flip_p > 0 and float(_uniform(gen, 0, 1)) < cfg.flip_p:
        out = out.flip(-1)
    img = out[:n_img]
    ana = out[n_img:n_img + n_ana]
    lab = (out[n_img + n_ana:n_img + n_ana + n_lab] > 0.5).float()
    brn = (out[-1:] > 0.5).float()
    # draw all intensity numbers every time so the random stream does not depend on data
    scales = 1 + _uniform(gen, -1, 1, n_img).float() * cfg.intensity_scale
    shifts = _uniform(gen, -1, 1, n_img).float() * cfg.intensity_shift
    drop_t2 = float(_uniform(gen, 0, 1)) < cfg.t2_dropout
    img = (img * scales.view(-1, 1, 1, 1) + shifts.view(-1, 1, 1, 1)) * brn
    img = acquisition(img, brn, cfg, gen)
    if t2_channel is not None and drop_t2:
        img[t2_channel] = 0
    for channel in absent:
        img[channel] = 0
    return img, ana, lab, brn
