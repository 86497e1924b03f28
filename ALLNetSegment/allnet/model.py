"""The ALL-Net network (3D U-Net with VGG blocks and AnaConv heads) and its model files.

All tensors are laid out (B, C, D, H, W) with D, H, W = the K, J, I axes of the working grid
(1 mm MNI152, see ``allnet.grid``). The anatomy input holds the 6 AnaConv channels of
``allnet.anatomy`` on the same grid as the image.

A model file is one ``.pt`` written by :func:`save_model_file` that contains only tensors and
plain Python containers, so :func:`load_model_file` reads it with ``torch.load(...,
weights_only=True)``; nothing in a model file can run code.
"""
from __future__ import annotations

import copy
import json
import os
import pickle
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .atomic import atomic_file
from .errors import ModelError

FORMAT_NAME = "allnet-model"
FORMAT_VERSION = 1
DEFAULT_MODEL_NAME = "allnet_default.pt"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
KNOWN_MODALITIES = ("flair", "t1", "t2")
_NORMS = ("batch", "none")
_UPSAMPLES = ("transpose", "trilinear")


@dataclass
class ModelConfig:
    """Architecture and data contract of one model (all members of a bundle share it).

    ``base_channels`` doubles per level up to ``max_channels``; ``depth`` counts resolution
    levels (depth 4 = three 2x poolings, so inputs are padded to a multiple of 8 voxels).
    ``head_mlp`` are the hidden widths of the 1x1x1-conv MLP that ends each head.
    ``modality_dropout`` records that training randomly zeroed whole modalities, so the
    model may be run with a missing modality (zeros in its channel). ``average_without``:
    modalities that a second pass of every member leaves out (zeroed), its probability
    averaged with the full pass's before the member votes (test-time averaging over the
    model's own modality dropout; skipped when those modalities are not given).
    """

    modalities: tuple[str, ...] = KNOWN_MODALITIES
    n_anatomy: int = 6
    base_channels: int = 8  # the shipped model; 16 costs ~3x the CPU time (benchmarks/bench_network.py)
    depth: int = 4
    max_channels: int = 128
    anaconv: bool = True
    sphere_head: bool = True
    norm: str = "batch"
    upsample: str = "transpose"
    head_channels: int = 8
    head_mlp: tuple[int, ...] = (8,)
    modality_dropout: bool = False
    grid: str = "mni152_1mm"
    normalisation: str = "robust-zscore"
    noise_target: float = 0.0  # allnet.plan: noisier inputs are smoothed to this noise level
    average_without: tuple[str, ...] = ()
    version: str = "0.1.0"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.average_without = tuple(self.average_without)
        self.head_mlp = tuple(int(w) for w in self.head_mlp)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError describing the first invalid field."""
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be non-empty and unique, got {self.modalities}")
        unknown = [m for m in self.modalities if m not in KNOWN_MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; known: {KNOWN_MODALITIES}")
        left_out = [m for m in self.average_without if m not in self.modalities]
        if left_out or len(set(self.average_without)) != len(self.average_without) \
                or len(self.average_without) >= len(self.modalities):
            raise ValueError(f"average_without must name some, not all, of the model's modalities "
                             f"{list(self.modalities)} once each, got {list(self.average_without)}")
        for name in ("n_anatomy", "base_channels", "depth", "max_channels", "head_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.depth > 6:
            raise ValueError(f"depth must be at most 6, got {self.depth}")
        if any(w < 1 for w in self.head_mlp):
            raise ValueError(f"head_mlp widths must be positive, got {self.head_mlp}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {self.norm!r}")
        if self.upsample not in _UPSAMPLES:
            raise ValueError(f"upsample must be one of {_UPSAMPLES}, got {self.upsample!r}")
        for name in ("anaconv", "sphere_head", "modality_dropout"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        from .plan import check_noise_target  # the plan's range, defined once

        check_noise_target(self.noise_target)  # SettingError is a ValueError
        for name in ("grid", "normalisation", "version"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")

    @property
    def multiple(self) -> int:
        """Spatial sizes the network needs (inputs are padded internally to this multiple)."""
        return 2 ** (self.depth - 1)

    def level_channels(self) -> list[int]:
        return [min(self.base_channels * 2**level, self.max_channels) for level in range(self.depth)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists instead of tuples) for model files and JSON."""
        out = asdict(self)
        out["modalities"] = list(self.modalities)
        out["average_without"] = list(self.average_without)
        out["head_mlp"] = list(self.head_mlp)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown or invalid keys raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"config must be a dict, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**data)


def _norm(config: ModelConfig, channels: int) -> nn.Module:
    return nn.BatchNorm3d(channels) if config.norm == "batch" else nn.Identity()


class ConvNormReLU(nn.Sequential):
    """conv (k x k x k, same padding) -> BatchNorm -> ReLU."""

    def __init__(self, config: ModelConfig, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__(
            nn.Conv3d(c_in, c_out, kernel, padding=kernel // 2, bias=config.norm == "none"),
            _norm(config, c_out),
            nn.ReLU(inplace=True),
        )


class VGGBlock(nn.Sequential):
    """Two 3x3x3 conv-BN-ReLU layers."""

    def __init__(self, config: ModelConfig, c_in: int, c_out: int) -> None:
        super().__init__(ConvNormReLU(config, c_in, c_out), ConvNormReLU(config, c_out, c_out))


class Head(nn.Module):
    """conv3-BN-ReLU -> AnaConv (concatenate anatomy, conv3-BN-ReLU) -> 1x1x1 MLP -> 1 logit.

    With ``anaconv=False`` the anatomy is not concatenated; the second conv stays, so the
    ablation differs from the full model only by the anatomy input.
    """

    def __init__(self, config: ModelConfig, c_in: int) -> None:
        super().__init__()
        h = config.head_channels
        self.use_anatomy = config.anaconv
        self.pre = ConvNormReLU(config, c_in, h)
        self.anaconv = ConvNormReLU(config, h + (config.n_anatomy if config.anaconv else 0), h)
        layers: list[nn.Module] = []
        width = h
        for hidden in config.head_mlp:
            layers += [nn.Conv3d(width, hidden, 1), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Conv3d(width, 1, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, anatomy: torch.Tensor) -> torch.Tensor:
        x = self.pre(features)
        if self.use_anatomy:
            x = torch.cat([x, anatomy.to(x.dtype)], dim=1)
        return self.mlp(self.anaconv(x))


class ALLNet(nn.Module):
    """3D U-Net (VGG blocks, max-pool down, transposed-conv or trilinear up, skip concat)
    with a lesion head and an optional sphere head, both AnaConv heads at full resolution."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        chans = config.level_channels()
        c_in = len(config.modalities)
        self.encoders = nn.ModuleList()
        for c in chans:
            self.encoders.append(VGGBlock(config, c_in, c))
            c_in = c
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(config.depth - 2, -1, -1):
            c_low, c = chans[level + 1], chans[level]
            if config.upsample == "transpose":
                self.ups.append(nn.ConvTranspose3d(c_low, c, kernel_size=2, stride=2))
            else:
                self.ups.append(nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                    ConvNormReLU(config, c_low, c, kernel=1)))
            self.decoders.append(VGGBlock(config, 2 * c, c))
        self.lesion_head = Head(config, chans[0])
        self.sphere_head = Head(config, chans[0]) if config.sphere_head else None

    def forward(self, image: torch.Tensor, anatomy: torch.Tensor, *,
                sphere: bool = True) -> dict[str, torch.Tensor | None]:
        """image (B, n_modalities, D, H, W), anatomy (B, n_anatomy, D, H, W) on the same grid.

        Returns ``{'lesion': logits (B,1,D,H,W), 'sphere': logits (B,1,D,H,W) or None}``;
        ``sphere=False`` skips the sphere head (it only serves training), saving inference time.
        Any D, H, W: the inputs are padded at the far end to a multiple of 2**(depth-1)
        (image with zeros = background after normalisation, anatomy by edge replication so the
        coordinate channels stay plausible) and the outputs are cropped back.
        """
        cfg = self.config
        if image.ndim != 5 or image.shape[1] != len(cfg.modalities):
            raise ValueError(f"image must be (B, {len(cfg.modalities)}, D, H, W), got {tuple(image.shape)}")
        if anatomy.ndim != 5 or anatomy.shape[1] != cfg.n_anatomy or anatomy.shape[2:] != image.shape[2:] \
                or anatomy.shape[0] != image.shape[0]:
            raise ValueError(f"anatomy must be (B, {cfg.n_anatomy}, D, H, W) matching image "
                             f"{tuple(image.shape)}, got {tuple(anatomy.shape)}")
        size = image.shape[2:]
        m = cfg.multiple
        pad = [0, 0, 0, 0, 0, 0]
        for axis, n in enumerate(size):  # F.pad lists the last axis first
            pad[2 * (2 - axis) + 1] = (-n) % m
        if any(pad):
            image = F.pad(image, pad)
            anatomy = F.pad(anatomy, pad, mode="replicate")

        skips = []
        x = image
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = F.max_pool3d(x, 2)
            x = encoder(x)
            skips.append(x)
        skips.pop()
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([up(x), skips.pop()], dim=1))
        out: dict[str, torch.Tensor | None] = {"lesion": self.lesion_head(x, anatomy), "sphere": None}
        if sphere and self.sphere_head is not None:
            out["sphere"] = self.sphere_head(x, anatomy)
        if any(pad):
            d, h, w = size
            out = {k: None if v is None else v[:, :, :d, :h, :w] for k, v in out.items()}
        return out

    def activation_bytes_per_voxel(self, bytes_per_value: int = 4) -> float:
        """Upper estimate of the peak memory of an inference forward pass (no_grad), in bytes
        per input voxel: the skip tensors of all levels plus the largest set of tensors alive
        together at full resolution (the top decoder block, then a head)."""
        cfg = self.config
        chans = cfg.level_channels()
        skips = sum(c / 8**level for level, c in enumerate(chans[:-1]))
        c0, h = chans[0], cfg.head_channels
        decoder_top = 5 * c0 + len(cfg.modalities) + cfg.n_anatomy
        head = c0 + 3 * h + 2 * cfg.n_anatomy + 2 * max((h, *cfg.head_mlp)) + 2
        return bytes_per_value * (skips + max(decoder_top, head) + c0 + 4)


def fused_for_inference(net: ALLNet) -> ALLNet:
    """A copy of ``net`` for fast CPU/GPU inference: every eval-mode conv-BN pair folded into
    one conv (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and weights in channels-last-3d
    layout, which oneDNN runs ~2x faster on CPU. Outputs match ``net.eval()`` to float32
    rounding (~1e-6 relative)."""
    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        if isinstance(module, ConvNormReLU) and isinstance(module[1], nn.BatchNorm3d):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused.to(memory_format=torch.channels_last_3d)


@dataclass
class ModelBundle:
    """A loaded model: config, ensemble members (eval mode, CPU, float32) and metadata."""

    config: ModelConfig
    members: list[ALLNet]
    meta: dict[str, Any]
    path: Path | None = None


def _check_plain(value: Any, where: str) -> None:
    """Only JSON-like containers are allowed in meta (they load under weights_only)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} must contain only str/int/float/bool/None/list/dict: {exc}") from exc


def save_model_file(path: str | Path, config: ModelConfig, state_dicts: list[dict],
                    meta: dict | None = None, *, fp16: bool = False) -> None:
    """Write a model file atomically (temporary file in the target folder, then rename).

    ``state_dicts`` are the members' ``state_dict()``s; ``fp16=True`` stores floating
    tensors as float16 (half the size; cast back to float32 on load).
    """
    path = Path(path)
    if not state_dicts:
        raise ValueError("a model file needs at least one member")
    meta = dict(meta or {})
    _check_plain(meta, "meta")
    config_dict = config.to_dict()
    _check_plain(config_dict, "config")
    members = []
    for sd in state_dicts:
        members.append({
            k: (v.detach().to("cpu", torch.float16) if fp16 and v.is_floating_point() else v.detach().cpu())
            .contiguous().clone()
            for k, v in sd.items()
        })
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": config_dict,
               "members": members, "meta": meta, "fp16": bool(fp16)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, tmp.open("wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())


def load_model_file(path: str | Path) -> ModelBundle:
    """Load a model file with ``torch.load(weights_only=True)`` only.

    Raises ModelError (message names the file) for a missing, truncated or malformed file,
    a pickle that holds anything but tensors and plain containers, a wrong format version,
    missing keys or weights that do not fit the config.
    """
    path = Path(path)
    name = str(path)
    if path.is_dir():
        raise ModelError(f"{name}: is a folder, not a model file (.pt)")
    if not path.is_file():
        raise ModelError(f"{name}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False, which must never be done with an
        # untrusted file; keep only its diagnosis line.
        detail = [ln.strip().split(" Please")[0].split(" Check the")[0].rstrip(". ")
                  for ln in str(exc).splitlines()
                  if "unsupported" in ln.lower() and "weights_only" not in ln]
        raise ModelError(f"{name}: not a valid ALLNet model file: it is corrupt or holds objects "
                         f"other than tensors and plain containers, and was not loaded"
                         + (f" ({detail[0][:200]})" if detail else "")) from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a weights-only load is a bad file
        raise ModelError(f"{name}: not a readable model file: truncated, corrupt or not written by "
                         f"ALLNet ({type(exc).__name__}"
                         f"{': ' + str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelError(f"{name}: not an ALLNet model file (no '{FORMAT_NAME}' format tag)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{name}: model file format version {payload.get('format_version')!r} is "
                         f"not supported (this ALLNet reads version {FORMAT_VERSION})")
    missing = [k for k in ("config", "members", "meta") if k not in payload]
    if missing:
        raise ModelError(f"{name}: model file lacks {missing}")
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{name}: invalid model config: {exc}") from exc
    states = payload["members"]
    if not isinstance(states, list) or not states or not all(isinstance(s, dict) for s in states):
        raise ModelError(f"{name}: 'members' must be a non-empty list of state dicts")
    members = []
    for index, state in enumerate(states):
        net = ALLNet(config)
        try:
            state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
            net.load_state_dict(state, strict=True)
        except (RuntimeError, AttributeError, TypeError) as exc:
            raise ModelError(f"{name}: member {index} does not match its config: "
                             f"{str(exc).splitlines()[0][:300]}") from exc
        members.append(net.eval())
    meta = payload["meta"] if isinstance(payload["meta"], dict) else {}
    return ModelBundle(config=config, members=members, meta=meta, path=path)


def set_inference_plan(path: str | Path, plan: dict[str, Any]) -> None:
    """Store ``plan`` (``allnet.plan.InferencePlan`` entries) as the inference plan of the
    model file at ``path``; weights and everything else stay byte-identical tensors.
    The file is read with ``weights_only=True`` and rewritten atomically."""
    from .plan import MODEL_INPUT_KEYS, PLAN_META_KEY, InferencePlan

    checked = InferencePlan.from_dict(plan).to_dict()  # refuse values the core cannot apply
    load_model_file(path)  # the same checks as a run: a broken file is a ModelError here too
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    payload["meta"] = dict(payload.get("meta") or {}) | {
        PLAN_META_KEY: {k: v for k, v in checked.items() if k not in MODEL_INPUT_KEYS}}
    _check_plain(payload["meta"], "meta")
    with atomic_file(Path(path)) as tmp, tmp.open("wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())


def bundled_model_path() -> Path | None:
    """The model file shipped in ``allnet/weights/``, or None while none is shipped."""
    candidate = WEIGHTS_DIR / DEFAULT_MODEL_NAME
    return candidate if candidate.is_file() else None


def random_bundle(config: ModelConfig | None = None, n: int = 1, seed: int = 0) -> ModelBundle:
    """Randomly initialised members (member i seeded with ``seed + i``) for tests and plumbing.

    The global torch RNG is left untouched. Members are in eval mode.
    """
    config = config or ModelConfig()
    members = []
    for index in range(n):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + index)
            members.append(ALLNet(config).eval())
    meta = {"training": "untrained", "seed": seed, "members": n}
    return ModelBundle(config=config, members=members, meta=meta, path=None)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = [
    "ALLNet", "ModelBundle", "ModelConfig", "ModelError", "bundled_model_path", "count_parameters",
    "fused_for_inference", "load_model_file", "random_bundle", "save_model_file", "set_inference_plan",
    "DEFAULT_MODEL_NAME",
    "FORMAT_VERSION", "KNOWN_MODALITIES",
]
