"""Lesion prediction on the working grid: brain crop, whole-crop or sliding-window passes,
ensembles, left-right flip test-time augmentation, device handling.

All arrays are numpy KJI on the working grid (1 mm MNI152, ``allnet.grid``); images are
(C, K, J, I) in the bundle's modality order, anatomy is (6, K, J, I) from ``allnet.anatomy``.

Flip TTA mirrors the I axis (left-right in the LAS working grid). The image and the anatomy
maps are flipped together, the network runs, and its logits are flipped back. The flipped
anatomy's x channel then reads -x at each voxel; because the MNI template is symmetric,
the flipped input is a plausible brain with consistent anatomy channels (a mirrored
subject), which is what the flip augmentation during training shows the network.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psutil
import torch

from .errors import InputError, ModelError, ResourceError
from .model import ALLNet, ModelBundle, fused_for_inference
from .progress import Progress

# Voxels (mm) kept around the brain bounding box; images are zero outside the brain, so
# context beyond a few voxels adds time and nothing else.
CROP_MARGIN = 2
OVERLAP = 0.5  # sliding-window overlap, fraction of the patch
MEMORY_SAFETY = 1.5  # multiplies the activation estimate
CPU_MEMORY_FRACTION = 0.6  # of psutil's available memory
CUDA_MEMORY_FRACTION = 0.8  # of torch.cuda.mem_get_info's free memory
PATCH_CANDIDATES = (192, 160, 128, 112, 96, 80, 64, 48, 32)


@dataclass
class Prediction:
    """Result of :func:`predict`, on the input (working) grid.

    ``probability``: float32 KJI, mean over members and flips of sigmoid(lesion logits),
    zero outside the brain mask. ``mask``: uint8 KJI, 1 where a strict majority of the
    members has probability > threshold (ties count as background), zero outside the brain.
    ``sphere_probability``: float32 KJI, mean of sigmoid(sphere-head logits) (high near
    lesion centres; the lesion score of ``allnet.postprocess``), None when the model has
    no sphere head.
    """

    probability: np.ndarray
    mask: np.ndarray
    n_members: int
    device_used: str
    seconds: float
    mode: str  # 'whole' (one pass per member and flip) or 'sliding'
    patch_size: tuple[int, int, int]
    n_windows: int  # windows per member and flip
    crop: tuple[slice, slice, slice]
    sphere_probability: np.ndarray | None = None
    precision: str = "fp32"  # arithmetic of the network: 'fp32', 'bf16' (CPU) or 'fp16' (CUDA)


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16 or AMX): there
    autocast to bfloat16 is faster; elsewhere it would be emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _autocast(dev: torch.device) -> tuple[contextlib.AbstractContextManager, str]:
    """The network's arithmetic on ``dev``: float16 autocast on CUDA; bfloat16 autocast on a
    CPU with native bfloat16 (the models are trained under it; on the development scans the
    masks agree with float32 at Dice 0.999 and the network runs 1.8x faster); else float32.
    The same device always gives the same result."""
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16), "fp16"
    if dev.type == "cpu" and cpu_supports_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16), "bf16"
    return contextlib.nullcontext(), "fp32"


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA if available else CPU; 'cpu'; 'cuda' / 'cuda:N' (InputError without CUDA)."""
    if not isinstance(device, str):
        raise InputError("device", f"must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError("device", f"'{device}' was requested but this PyTorch "
                             f"({torch.__version__}) sees no CUDA GPU; use device 'cpu' or 'auto'")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError("device", f"'{device}' does not exist ({torch.cuda.device_count()} "
                             "CUDA device(s) found)")
        return dev
    raise InputError("device", f"must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


def brain_crop(brain_mask: np.ndarray, multiple: int, margin: int = CROP_MARGIN
               ) -> tuple[slice, slice, slice]:
    """Bounding box of the mask plus ``margin`` voxels, grown (inside the volume where
    possible) to a multiple of ``multiple`` voxels per axis."""
    nonzero = np.nonzero(brain_mask)
    if nonzero[0].size == 0:
        raise InputError("brain_mask", "the brain mask is empty")
    slices = []
    for axis, n in enumerate(brain_mask.shape):
        lo = max(int(nonzero[axis].min()) - margin, 0)
        hi = min(int(nonzero[axis].max()) + 1 + margin, n)
        grow = min(hi - lo + (-(hi - lo)) % multiple, n) - (hi - lo)
        lo, hi = lo - grow // 2, hi + grow - grow // 2
        if hi > n:
            lo, hi = lo - (hi - n), n
        if lo < 0:
            lo, hi = 0, min(hi - lo, n)
        slices.append(slice(lo, hi))
    return tuple(slices)  # type: ignore[return-value]


def window_starts(size: int, patch: int, overlap: float = OVERLAP) -> list[int]:
    """Start indices of windows of ``patch`` voxels covering ``size`` voxels with the given
    overlap; the first starts at 0 and the last ends at ``size``."""
    if patch >= size:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n = int(np.ceil((size - patch) / step)) + 1
    return [int(round(s)) for s in np.linspace(0, size - patch, n)]


def gaussian_importance(patch: tuple[int, int, int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Separable Gaussian weight (peak 1 at the patch centre, sigma = patch * sigma_scale),
    floored at 1e-3 so the borders of the volume, covered by edges only, stay defined."""
    weight = torch.ones(1, dtype=torch.float64)
    for n in patch:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        g = torch.exp(-0.5 * (x / max(n * sigma_scale, 1e-6)) ** 2)
        weight = weight[..., None] * g
    weight = weight.reshape(patch)
    return (weight / weight.max()).clamp_min(1e-3).float()


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_FRACTION)
    return int(psutil.virtual_memory().available * CPU_MEMORY_FRACTION)


def _pass_bytes(net: ALLNet, shape: Sequence[int], bytes_per_value: int) -> float:
    m = net.config.multiple
    voxels = float(np.prod([n + (-n) % m for n in shape]))
    return voxels * net.activation_bytes_per_voxel(bytes_per_value) * MEMORY_SAFETY


def choose_patch(net: ALLNet, crop_shape: Sequence[int], device: torch.device,
                 patch_size: Sequence[int] | None = None) -> tuple[int, int, int]:
    """The window size: ``patch_size`` if given (clipped to the crop), else the whole crop
    when its activations fit in memory, else the largest fitting cube of PATCH_CANDIDATES."""
    if patch_size is not None:
        if len(patch_size) != 3 or any(int(p) < 1 for p in patch_size):
            raise InputError("patch_size", f"must be three positive integers, got {patch_size!r}")
        return tuple(min(int(p), n) for p, n in zip(patch_size, crop_shape))  # type: ignore
    bpv = 2 if device.type == "cuda" else 4
    budget = _available_bytes(device)
    if _pass_bytes(net, crop_shape, bpv) <= budget:
        return tuple(int(n) for n in crop_shape)  # type: ignore[return-value]
    m = net.config.multiple
    for edge in PATCH_CANDIDATES:
        edge = max(m, edge - edge % m)
        patch = tuple(min(edge, int(n)) for n in crop_shape)
        if _pass_bytes(net, patch, bpv) <= budget:
            return patch  # type: ignore[return-value]
    raise ResourceError(f"not enough free memory on {device} for even a "
                        f"{PATCH_CANDIDATES[-1]}^3 window ({budget / 2**20:.0f} MiB usable)")


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels, no cuDNN autotuning; restores the caller's settings after."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.utils.deterministic.fill_uninitialized_memory)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Filling every new buffer with NaN costs ~20% of a CPU pass; every buffer here is
    # written before it is read, so the fill adds nothing to reproducibility.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]
        torch.utils.deterministic.fill_uninitialized_memory = saved[4]


def _check_inputs(bundle: ModelBundle, images: np.ndarray, anatomy: np.ndarray,
                  brain_mask: np.ndarray) -> None:
    cfg = bundle.config
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[0] != len(cfg.modalities):
        raise InputError("images", f"expected an array (C={len(cfg.modalities)}, K, J, I) in the order "
                         f"{list(cfg.modalities)}, got shape {getattr(images, 'shape', None)}")
    spatial = images.shape[1:]
    if not isinstance(anatomy, np.ndarray) or anatomy.shape != (cfg.n_anatomy, *spatial):
        raise InputError("anatomy", f"expected shape {(cfg.n_anatomy, *spatial)}, "
                         f"got {getattr(anatomy, 'shape', None)}")
    if not isinstance(brain_mask, np.ndarray) or brain_mask.shape != spatial:
        raise InputError("brain_mask", f"expected shape {spatial}, got {getattr(brain_mask, 'shape', None)}")


def _modalities(bundle: ModelBundle, images: np.ndarray,
                modalities_present: Sequence[str] | None) -> np.ndarray:
    """Zero the channels of missing modalities; warn when the model was not trained for that."""
    cfg = bundle.config
    if modalities_present is None:
        return images
    unknown = [m for m in modalities_present if m not in cfg.modalities]
    if unknown:
        raise InputError("modalities_present", f"{unknown} are not inputs of this model "
                         f"(it uses {list(cfg.modalities)})")
    missing = [m for m in cfg.modalities if m not in modalities_present]
    if not missing:
        return images
    if len(missing) == len(cfg.modalities):
        raise InputError("modalities_present", "no input modality is present")
    if not cfg.modality_dropout:
        warnings.warn(f"the model was not trained with missing modalities; predicting without "
                      f"{missing} (zeros in their channels) may be unreliable", RuntimeWarning,
                      stacklevel=3)
    images = images.copy()
    for m in missing:
        images[cfg.modalities.index(m)] = 0.0
    return images


def _heads(net: ALLNet, image: torch.Tensor, anatomy: torch.Tensor, sphere: bool) -> torch.Tensor:
    """Logits (n_heads, D, H, W): the lesion head, then the sphere head when asked for and
    the model has one."""
    out = net(image, anatomy, sphere=sphere)
    heads = [out["lesion"]] + ([out["sphere"]] if sphere and out.get("sphere") is not None else [])
    return torch.cat(heads, dim=1)[0].float()


def _run_windows(net: ALLNet, image: torch.Tensor, anatomy: torch.Tensor,
                 patch: tuple[int, int, int], weight: torch.Tensor | None,
                 on_window: Callable[[], None], sphere: bool) -> torch.Tensor:
    """Logits (n_heads, D, H, W) of one network over the crop: one pass, or the
    Gaussian-weighted average of overlapping windows' logits."""
    shape = tuple(image.shape[2:])
    if patch == shape:
        logits = _heads(net, image, anatomy, sphere)
        on_window()
        return logits
    total: torch.Tensor | None = None
    norm = torch.zeros(shape, dtype=torch.float32, device=image.device)
    for k in window_starts(shape[0], patch[0]):
        for j in window_starts(shape[1], patch[1]):
            for i in window_starts(shape[2], patch[2]):
                sl = (slice(k, k + patch[0]), slice(j, j + patch[1]), slice(i, i + patch[2]))
                out = _heads(net, image[(..., *sl)], anatomy[(..., *sl)], sphere)
                if total is None:
                    total = torch.zeros((out.shape[0], *shape), dtype=torch.float32, device=image.device)
                total[(slice(None), *sl)] += out * weight
                norm[sl] += weight
                on_window()
    return total / norm


def _flip_mean(net: ALLNet, image: torch.Tensor, anatomy: torch.Tensor, flips: tuple[bool, ...],
               patch: tuple[int, int, int], weight: torch.Tensor | None,
               on_window: Callable[[int], None], sphere: bool) -> np.ndarray:
    """Head probabilities (n_heads, D, H, W) of one network over the crop, averaged over
    ``flips`` (a left-right mirrored pass is flipped back); ``on_window(flip index)`` per window."""
    total: torch.Tensor | float = 0.0
    for f, flip in enumerate(flips):
        x = torch.flip(image, dims=(4,)) if flip else image
        a = torch.flip(anatomy, dims=(4,)) if flip else anatomy
        logits = _run_windows(net, x, a, patch, weight, lambda: on_window(f), sphere=sphere)
        if flip:
            logits = torch.flip(logits, dims=(3,))
        total = total + torch.sigmoid(logits.float())
    return (total / len(flips)).cpu().numpy()


def predict(bundle: ModelBundle, images: np.ndarray, anatomy: np.ndarray, brain_mask: np.ndarray,
            *, device: str = "auto", ensemble: str = "full", tta: bool = False,
            threshold: float = 0.5, patch_size: Sequence[int] | None = None,
            modalities_present: Sequence[str] | None = None,
            average_without: Sequence[str] = (),
            progress: Progress | None = None,
            progress_span: tuple[float, float] = (0.0, 1.0)) -> Prediction:
    """Lesion probability and mask for one case on the working grid.

    ``ensemble``: 'full' uses all members, 'fast' the first only. ``tta``: add the
    left-right (I axis) mirrored pass per member. ``patch_size`` (K, J, I voxels) forces
    sliding windows of that size; by default the brain crop runs in one pass when memory
    allows. ``modalities_present``: names of the modalities given (others are zeroed; a
    warning when the model was not trained with modality dropout). ``average_without``
    (``ModelConfig.average_without``): modalities that a second pass per member leaves out
    (zeroed); its lesion probability is averaged with the full pass's before the member votes
    (the lesion score comes from the full pass); no second pass when they are not given.
    Progress goes to ``progress.update`` per member/pass/window, mapped into
    ``progress_span`` of the run.
    Repeated calls on the same device give bit-identical results.
    """
    start = time.perf_counter()
    _check_inputs(bundle, images, anatomy, brain_mask)
    if ensemble not in ("full", "fast"):
        raise InputError("ensemble", f"must be 'full' or 'fast', got {ensemble!r}")
    if not 0.0 < float(threshold) < 1.0:
        raise InputError("threshold", f"must be in (0, 1), got {threshold!r}")
    if not bundle.members:
        raise ModelError("the model bundle has no members")
    images = _modalities(bundle, images, modalities_present)
    dev = resolve_device(device)
    cfg = bundle.config
    unknown = [m for m in average_without if m not in cfg.modalities]
    if unknown:
        raise InputError("average_without", f"{unknown} are not inputs of this model (it uses {list(cfg.modalities)})")
    left_out = [cfg.modalities.index(m) for m in average_without
                if modalities_present is None or m in modalities_present]
    members = bundle.members if ensemble == "full" else bundle.members[:1]
    flips = (False, True) if tta else (False,)

    crop = brain_crop(brain_mask, cfg.multiple)
    crop_img = np.ascontiguousarray(images[(slice(None), *crop)], dtype=np.float32)
    crop_ana = np.ascontiguousarray(anatomy[(slice(None), *crop)], dtype=np.float32)
    if not (np.isfinite(crop_img).all() and np.isfinite(crop_ana).all()):
        raise InputError("images", "non-finite values (NaN/inf) in the images or anatomy maps")
    crop_shape = crop_img.shape[1:]
    patch = choose_patch(members[0], crop_shape, dev, patch_size)
    whole = tuple(patch) == tuple(crop_shape)
    n_windows = 1 if whole else int(np.prod([len(window_starts(n, p)) for n, p in zip(crop_shape, patch)]))
    n_passes = len(flips) * (2 if left_out else 1)
    total_steps = len(members) * n_passes * n_windows
    done = [0]

    def on_window(member: int, flip: int) -> None:
        done[0] += 1
        if progress is not None:
            lo, hi = progress_span
            progress.update(lo + (hi - lo) * done[0] / total_steps,
                            f"member {member + 1}/{len(members)}"
                            + (f", pass {flip + 1}/{n_passes}" if left_out else
                               f", flip {flip + 1}/{len(flips)}" if tta else "")
                            + ("" if whole else f", window {(done[0] - 1) % n_windows + 1}/{n_windows}"))

    prob_sum = np.zeros(crop_shape, dtype=np.float32)
    sphere_sum = np.zeros(crop_shape, dtype=np.float32) if cfg.sphere_head else None
    votes = np.zeros(crop_shape, dtype=np.int32)
    autocast, precision = _autocast(dev)
    with _deterministic(dev), torch.inference_mode(), autocast:
        img_t = torch.from_numpy(crop_img)[None].to(dev).contiguous(memory_format=torch.channels_last_3d)
        ana_t = torch.from_numpy(crop_ana)[None].to(dev).contiguous(memory_format=torch.channels_last_3d)
        weight = None if whole else gaussian_importance(patch).to(dev)
        reduced_t = None
        if left_out:
            reduced_t = img_t.clone()
            reduced_t[:, left_out] = 0.0
        for index, member in enumerate(members):
            net = fused_for_inference(member).to(dev)
            member_probs = _flip_mean(net, img_t, ana_t, flips, patch, weight,
                                      lambda f: on_window(index, f), sphere=sphere_sum is not None)
            member_prob = member_probs[0]
            if reduced_t is not None:  # the same member without those modalities, lesion head only
                reduced = _flip_mean(net, reduced_t, ana_t, flips, patch, weight,
                                     lambda f: on_window(index, len(flips) + f), sphere=False)
                member_prob = (member_prob + reduced[0]) / 2
            prob_sum += member_prob
            if sphere_sum is not None and member_probs.shape[0] > 1:
                sphere_sum += member_probs[1]
            elif sphere_sum is not None:  # a member without sphere output: no lesion scores
                sphere_sum = None
            votes += member_prob > threshold
            del net
    inside = brain_mask[crop] > 0
    probability = np.zeros(brain_mask.shape, dtype=np.float32)
    mask = np.zeros(brain_mask.shape, dtype=np.uint8)
    probability[crop] = np.where(inside, prob_sum / len(members), 0.0).astype(np.float32)
    mask[crop] = ((2 * votes > len(members)) & inside).astype(np.uint8)
    sphere = None
    if sphere_sum is not None:
        sphere = np.zeros(brain_mask.shape, dtype=np.float32)
        sphere[crop] = np.where(inside, sphere_sum / len(members), 0.0).astype(np.float32)
    return Prediction(probability=probability, mask=mask, n_members=len(members),
                      device_used=str(dev), seconds=time.perf_counter() - start,
                      mode="whole" if whole else "sliding", patch_size=tuple(int(p) for p in patch),
                      n_windows=n_windows, crop=crop, sphere_probability=sphere, precision=precision)
