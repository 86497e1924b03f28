"""Restricting a model to a subset of its input modalities.

A network trained with T2W dropout, or with T2W always absent, computes without T2W exactly
what it computes with a zero T2W channel. Its first convolution is the only layer that sees
the image channels, and a BatchNorm follows it, so removing that channel's input weights
gives the same network without the channel (up to float summation order). Used to export a
model whose plan leaves T2W out (`allnet-train export --modalities flair t1`) and to
warm-start a FLAIR + T1W model from a three-modality one.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from allnet.model import ALLNet, ModelBundle, ModelConfig


def first_conv_key(config: ModelConfig) -> str:
    """State-dict key of the weight (out, n_modalities, k, k, k) of the one convolution that
    reads the image channels."""
    net = ALLNet(config)
    for name, module in net.encoders[0].named_modules():
        if isinstance(module, nn.Conv3d):
            return f"encoders.0.{name}.weight"
    raise ValueError("the model has no convolution in its first encoder block")


def restrict_modalities(config: ModelConfig, states: list[dict[str, torch.Tensor]],
                        keep: tuple[str, ...] | list[str]) -> tuple[ModelConfig, list[dict[str, torch.Tensor]]]:
    """``config`` and member ``states`` for the modalities ``keep`` only (in that order): the
    first convolution's input weights of the other modalities are removed. ValueError when
    ``keep`` asks for a modality the model does not have, is empty or repeats one.
    ``modality_dropout`` stays set only when T2W (the modality training drops) is kept."""
    keep = tuple(keep)
    unknown = [m for m in keep if m not in config.modalities]
    if unknown or not keep or len(set(keep)) != len(keep):
        raise ValueError(f"cannot restrict a model of {list(config.modalities)} to {list(keep)}")
    index = torch.tensor([config.modalities.index(m) for m in keep])
    key = first_conv_key(config)
    out = []
    for state in states:
        state = dict(state)
        if key not in state:
            raise ValueError(f"member weights lack {key}")
        state[key] = state[key].index_select(1, index).clone()
        out.append(state)
    new_config = dataclasses.replace(config, modalities=keep,
                                     modality_dropout=config.modality_dropout and "t2" in keep)
    return new_config, out


def warm_start_states(start: ModelBundle, config: ModelConfig, source: object) -> list[dict[str, torch.Tensor]]:
    """The members of ``start`` as warm-start weights for a model of ``config``: restricted
    (:func:`restrict_modalities`) when ``config`` uses fewer of the start's modalities.
    ValueError naming ``source`` when it lacks one of ``config``'s modalities."""
    states = [m.state_dict() for m in start.members]
    if tuple(config.modalities) == tuple(start.config.modalities):
        return states
    missing = [m for m in config.modalities if m not in start.config.modalities]
    if missing:
        raise ValueError(f"{source}: the warm start has no input weights for {missing} "
                         f"(it was trained on {list(start.config.modalities)})")
    return restrict_modalities(start.config, states, config.modalities)[1]


def restrict_crossval(source_dir: str | Path, out_dir: str | Path, cases: list, keep: tuple[str, ...] | list[str],
                      *, log=print) -> dict | None:
    """A finished cross-validation's fold models restricted to the modalities ``keep``
    (:func:`restrict_modalities`), each scored on its held-out cases as ``allnet-train
    crossval`` scores (reports, out-of-fold predictions, the plan chosen on them) in
    ``out_dir``: the leave-one-subject-out estimate of the model run without the other
    modalities. Returns the tuned plan (``plan_tuning.tune_plan``). ValueError naming the
    file when a fold model is missing."""
    from allnet.model import load_model_file

    from .crossval import evaluate_fold, folds_of, load_fold, write_reports
    from .ensemble import export_bundle
    from .plan_tuning import tune_plan

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    results = []
    for subject, train_cases, test_cases in folds_of(cases):
        source = source_dir / f"fold_{subject}" / "bundle.pt"
        if not source.is_file():
            raise ValueError(f"{source}: no fold model; finish the cross-validation first")
        start = load_model_file(source)
        config, states = restrict_modalities(start.config, [m.state_dict() for m in start.members], keep)
        path = export_bundle(out_dir / f"fold_{subject}" / "bundle.pt", config, states,
                             {**start.meta, "restricted_from": str(source), "modalities": list(keep)})
        trained = load_fold(source.parent)
        results.append(evaluate_fold(subject, path, train_cases, test_cases,
                                     trained.train_seconds if trained else 0.0, log=log))
    write_reports(results, out_dir)
    return tune_plan(out_dir)
