"""Ensembles: N networks trained with different seeds, exported as one model bundle.

The bundle is an ``allnet`` model file (``allnet.model.save_model_file``) with one state
dict per member, stored as float16. ``allnet segment`` majority-votes the members
(``--ensemble full``) or uses the first one (``fast``).
"""
from __future__ import annotations

import datetime as _dt
import sys
from dataclasses import replace
from pathlib import Path

import torch

from allnet.model import ModelConfig, save_model_file

from .patches import CropSampler
from .trainer import TrainConfig, TrainResult, hardware_description, resolve_device, train

TRAINING_DATA_CREDITS = [
    "Lesjak Z. et al., A novel public MR image dataset of multiple sclerosis patients with lesion "
    "segmentations based on multi-rater consensus, Neuroinformatics 16:51-63 (2018), CC-BY "
    "(MNI-space copies prepared by J. Muschelli, open_ms_data)",
    "MSLesSeg: Guarnera F. et al., Scientific Data 12:920 (2025), doi 10.1038/s41597-025-05250-y, CC BY 4.0",
]


def train_ensemble(model_config: ModelConfig, cfg: TrainConfig, sampler: CropSampler,
                   out_dir: str | Path, seeds: list[int], *, resume: bool = False,
                   progress: bool = True, meta: dict | None = None,
                   init_states: list[dict[str, torch.Tensor]] | None = None) -> list[TrainResult]:
    """Train one member per seed in ``out_dir/seed<N>/`` (each resumable). ``init_states``:
    warm-start weights, the member of seed ``s`` starting from ``init_states[s % len]`` (so
    members trained by separate processes, one seed each, still start from different ones)."""
    out = Path(out_dir)
    return [train(model_config, replace(cfg, seed=s), sampler, out / f"seed{s}", resume=resume,
                  progress=progress, meta=meta,
                  init_state=init_states[s % len(init_states)] if init_states else None)
            for s in seeds]


def bundle_meta(results: list[TrainResult], cfg: TrainConfig, *, seeds: list[int], cases: list[str],
                command: str | None = None, extra: dict | None = None) -> dict:
    """Plain-JSON metadata of a trained bundle: data credits, command, date, hardware, time."""
    return {
        "training_data": TRAINING_DATA_CREDITS,
        "training_cases": list(cases),
        "command": command if command is not None else " ".join(sys.argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_description(resolve_device(cfg.device)),
        "training_seconds": [round(r.seconds, 1) for r in results],
        "seeds": [int(s) for s in seeds],
        "train_config": cfg.to_dict(),
        **(extra or {}),
    }


def export_bundle(path: str | Path, model_config: ModelConfig,
                  state_dicts: list[dict[str, torch.Tensor]], meta: dict) -> Path:
    """Write the members as one float16 model file (atomic)."""
    save_model_file(path, model_config, state_dicts, meta, fp16=True)
    return Path(path)


def state_dicts_from_model_files(paths: list[str | Path]) -> tuple[ModelConfig, list[dict]]:
    """Members of several single-member model files (same config) for :func:`export_bundle`."""
    from allnet.model import load_model_file

    config, states = None, []
    for p in paths:
        bundle = load_model_file(p)
        if config is not None and bundle.config.to_dict() != config.to_dict():
            raise ValueError(f"{p}: model config differs from {paths[0]}")
        config = bundle.config
        states += [m.state_dict() for m in bundle.members]
    if config is None:
        raise ValueError("no model files given")
    return config, states
