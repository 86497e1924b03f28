"""Sphere transform (phi) and the training losses on known shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from allnet_training.losses import LossWeights, bce_loss, focal_loss, soft_dice_loss, total_loss
from allnet_training.spheres import draw_balls, lesion_centres, lesion_components, sphere_map


def test_single_voxel_gives_ball_of_radius_5mm():
    mask = np.zeros((31, 31, 31), np.uint8)
    mask[15, 15, 15] = 1
    ball = sphere_map(mask)
    k, j, i = np.nonzero(ball)
    dist = np.sqrt((k - 15) ** 2 + (j - 15) ** 2 + (i - 15) ** 2)
    assert dist.max() == pytest.approx(5.0)
    # every voxel within 5 mm is in, none beyond
    kk, jj, ii = np.meshgrid(*(np.arange(31),) * 3, indexing="ij")
    inside = np.sqrt((kk - 15) ** 2 + (jj - 15) ** 2 + (ii - 15) ** 2) <= 5.0
    assert np.array_equal(ball.astype(bool), inside)
    assert abs(ball.sum() - 4 / 3 * math.pi * 125) / (4 / 3 * math.pi * 125) < 0.05


def test_anisotropic_spacing_gives_ellipsoid_in_voxels():
    mask = np.zeros((21, 41, 41), np.uint8)
    mask[10, 20, 20] = 1
    ball = sphere_map(mask, spacing_kji=(2.5, 0.5, 1.0))
    k, j, i = np.nonzero(ball)
    assert (k.max() - k.min() + 1, j.max() - j.min() + 1, i.max() - i.min() + 1) == (5, 21, 11)
    # physical extent is 10 mm along every axis
    assert (k.max() - k.min()) * 2.5 <= 10 and (j.max() - j.min()) * 0.5 == 10 and (i.max() - i.min()) == 10


def test_centre_of_mass_and_size_independence():
    mask = np.zeros((40, 40, 40), np.uint8)
    mask[5:15, 5:9, 5:9] = 1  # elongated lesion: centre (9.5, 6.5, 6.5)
    big = sphere_map(mask)
    small = sphere_map(np.pad(np.ones((1, 1, 1), np.uint8), ((9, 30), (6, 33), (6, 33))))
    np.testing.assert_allclose(lesion_centres(mask), [[9.5, 6.5, 6.5]])
    # same volume whatever the lesion size (10 mm ball at a half-voxel centre)
    assert abs(int(big.sum()) - int(small.sum())) < 0.15 * small.sum()


def test_overlapping_spheres_are_united_and_components_are_26_connected():
    mask = np.zeros((30, 30, 40), np.uint8)
    mask[15, 15, 14] = 1
    mask[15, 15, 20] = 1          # 6 mm apart: balls overlap
    mask[3, 3, 3] = mask[4, 4, 4] = 1  # diagonal neighbours: one 26-connected lesion
    labels, count = lesion_components(mask)
    assert count == 3
    out = sphere_map(mask)
    a = draw_balls(mask.shape, np.array([[15, 15, 14]]))
    b = draw_balls(mask.shape, np.array([[15, 15, 20]]))
    c = draw_balls(mask.shape, np.array([[3.5, 3.5, 3.5]]))
    assert np.array_equal(out, a | b | c)
    assert out.sum() < a.sum() + b.sum() + c.sum()  # the overlap counts once
    assert out[15, 15, 17] == 1  # between the two centres
    assert lesion_components(sphere_map(mask))[1] == 2  # overlapping balls merge


def test_empty_mask_gives_empty_map():
    assert sphere_map(np.zeros((8, 8, 8), np.uint8)).sum() == 0


def test_focal_loss_matches_hand_computed_formula():
    x = torch.tensor([2.0, -1.0, 0.5, -3.0])
    t = torch.tensor([1.0, 1.0, 0.0, 0.0])
    p = 1 / (1 + np.exp(-x.numpy().astype(np.float64)))
    tn = t.numpy()
    ce = -(tn * np.log(p) + (1 - tn) * np.log(1 - p))
    p_t = p * tn + (1 - p) * (1 - tn)
    alpha_t = 0.25 * tn + 0.75 * (1 - tn)
    expected = alpha_t * (1 - p_t) ** 2 * ce
    np.testing.assert_allclose(focal_loss(x, t, reduction="none").numpy(), expected, rtol=1e-5)
    assert float(focal_loss(x, t)) == pytest.approx(expected.mean(), rel=1e-5)
    # a confident correct voxel costs (almost) nothing, a confident wrong one a lot
    assert float(focal_loss(torch.tensor([8.0]), torch.tensor([1.0]))) < 1e-6
    assert float(focal_loss(torch.tensor([-8.0]), torch.tensor([1.0]))) > 1.0


def test_dice_and_bce_on_known_values():
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., :2] = 1
    perfect = (target * 2 - 1) * 20
    assert float(soft_dice_loss(perfect, target)) < 1e-3
    assert float(bce_loss(perfect, target)) < 1e-6
    half = torch.zeros_like(target)  # p = 0.5 everywhere: Dice = (2*16+1)/(32+32+1)
    assert float(soft_dice_loss(half, target)) == pytest.approx(1 - 33 / 65, rel=1e-6)
    assert float(bce_loss(half, target)) == pytest.approx(math.log(2), rel=1e-6)


def test_total_loss_weights_and_missing_sphere_head():
    torch.manual_seed(0)
    lesion, sphere = torch.randn(2, 1, 4, 4, 4), torch.randn(2, 1, 4, 4, 4)
    target = (torch.rand(2, 1, 4, 4, 4) > 0.7).float()
    st = (torch.rand(2, 1, 4, 4, 4) > 0.5).float()
    loss, terms = total_loss({"lesion": lesion, "sphere": sphere}, target, st)
    assert set(terms) == {"bce", "dice", "lesloss", "total"}
    assert float(loss) == pytest.approx(terms["bce"] + terms["dice"] + terms["lesloss"], rel=1e-6)
    loss2, terms2 = total_loss({"lesion": lesion, "sphere": sphere}, target, st,
                               LossWeights(bce=2.0, dice=0.5, lesloss=3.0))
    assert float(loss2) == pytest.approx(2 * terms["bce"] + 0.5 * terms["dice"] + 3 * terms["lesloss"], rel=1e-6)
    loss3, terms3 = total_loss({"lesion": lesion, "sphere": None}, target, None)
    assert "lesloss" not in terms3
    assert float(loss3) == pytest.approx(terms["bce"] + terms["dice"], rel=1e-6)
