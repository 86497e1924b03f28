"""Restricting a model to a subset of its input modalities.

A network trained with T2W dropout, or with T2W always absent, computes without T2W exactly
what it computes with a zero T2W channel. Its first convolution is the only layer that sees
the image channels, and a BatchNorm follows it, so removing that channel's input weights
gives the same network without the channel (up to float summation order). Used to export a
model that reads fewer modalities (`allnet-train export --modalities flair t1`), to score
fold models so (`allnet-train rescore`) and to warm-start such a model from a
three-modality one.
"""
from __future__ import annotations

import dataclasses

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
                                     modality_dropout=config.modality_dropout and "t2" in keep,
                                     average_without=tuple(m for m in config.average_without if m in keep))
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
