"""Training losses: BCE + soft Dice on the lesion head, LesLoss on the sphere head.

LesLoss is the sigmoid focal loss (Lin et al. 2017; alpha 0.25, gamma 2, the formula of
``torchvision.ops.sigmoid_focal_loss``) of the sphere-head logits against the sphere map
(``spheres.sphere_map``). The total is ``w_bce * BCE + w_dice * Dice + w_les * LesLoss``
with weights 1/1/1 by default; the LesLoss term is dropped when the model has no sphere head.
All inputs are logits/targets of shape (B, 1, D, H, W).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0,
               reduction: str = "mean") -> Tensor:
    """Sigmoid focal loss: ``alpha_t * (1 - p_t)**gamma * BCE`` per voxel."""
    logits, target = logits.float(), target.float()
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Voxel-mean binary cross-entropy on logits."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - soft Dice over the whole batch (sums over all voxels of all samples), so
    crops without lesions do not produce a 0/0 term; ``smooth`` in voxels."""
    p = torch.sigmoid(logits.float()).flatten()
    t = target.float().flatten()
    inter = (p * t).sum()
    return 1 - (2 * inter + smooth) / (p.sum() + t.sum() + smooth)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three loss terms (paper: equal)."""

    bce: float = 1.0
    dice: float = 1.0
    lesloss: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def total_loss(outputs: dict[str, Tensor | None], lesion_target: Tensor,
               sphere_target: Tensor | None, weights: LossWeights = LossWeights()
               ) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of the terms and a dict of the term values (floats, for the log).

    ``outputs`` is the model's ``{'lesion': logits, 'sphere': logits or None}``.
    """
    lesion = outputs["lesion"]
    terms: dict[str, Tensor] = {"bce": bce_loss(lesion, lesion_target),
                                "dice": soft_dice_loss(lesion, lesion_target)}
    total = weights.bce * terms["bce"] + weights.dice * terms["dice"]
    sphere = outputs.get("sphere")
    if sphere is not None and weights.lesloss > 0:
        if sphere_target is None:
            raise ValueError("the model has a sphere head but no sphere target was given")
        terms["lesloss"] = focal_loss(sphere, sphere_target)
        total = total + weights.lesloss * terms["lesloss"]
    values = {k: float(v.detach()) for k, v in terms.items()}
    values["total"] = float(total.detach())
    return total, values
