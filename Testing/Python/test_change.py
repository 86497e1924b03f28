"""Lesion-wise change rules (allnet.change) on two synthetic visits with known changes."""
from __future__ import annotations

import numpy as np

from allnet.change import (CHANGE_MIN_MM3, CHANGE_MIN_Z, ENLARGING, NEW, RESOLVED, SHRINKING, STABLE,
                           classify_changes, counts)
from allnet.contract import CHANGE_CODES

SHAPE = (40, 60, 60)  # KJI, 1 mm voxels


def ball(centre: tuple[int, int, int], radius: float) -> np.ndarray:
    k, j, i = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius ** 2


def two_visits(seed: int = 0):
    """Baseline and follow-up lesion ids and a FLAIR change (z) with known truth:
    A stable, B enlarging, C resolved, N new, S segmented only at follow-up without any
    FLAIR change (a miss of the baseline segmentation, not a new lesion), M segmented only
    at baseline, FLAIR unchanged (a miss at follow-up), D shrinking."""
    rng = np.random.default_rng(seed)
    base = np.zeros(SHAPE, np.uint16)
    follow = np.zeros(SHAPE, np.uint16)
    change = rng.normal(0.0, 0.3, SHAPE).astype(np.float32)  # noise of two visits' FLAIRs
    a, b_small, b_big = ball((10, 15, 15), 3), ball((10, 15, 40), 2.5), ball((10, 15, 40), 5)
    c, n, s = ball((28, 15, 15), 3), ball((28, 40, 40), 3), ball((10, 45, 15), 3)
    m, d_big, d_small = ball((30, 45, 15), 3), ball((20, 30, 30), 5), ball((20, 30, 30), 2.5)
    for i, region in enumerate((a, b_small, c, m, d_big), start=1):
        base[region] = i
    for i, region in enumerate((a, b_big, n, s, d_small), start=1):
        follow[region] = i
    change[b_big & ~b_small] += 3.0   # the growth is new FLAIR signal
    change[n] += 3.0
    change[c] -= 3.0
    change[d_big & ~d_small] -= 3.0
    truth = {"A": a, "B": b_big, "C": c, "N": n, "S": s, "M": m, "D": d_small}
    return base, follow, change, truth


def class_at(result, region: np.ndarray) -> str:
    codes = np.unique(result.class_map[region])
    assert codes.size == 1, codes
    return {v: k for k, v in CHANGE_CODES.items()}[int(codes[0])]


def test_known_changes_are_classified() -> None:
    base, follow, change, truth = two_visits()
    result = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert class_at(result, truth["A"]) == STABLE
    assert class_at(result, truth["B"]) == ENLARGING
    assert class_at(result, truth["C"]) == RESOLVED
    assert class_at(result, truth["N"]) == NEW
    assert class_at(result, truth["D"]) == SHRINKING
    assert counts(result.changes) == {NEW: 1, ENLARGING: 1, STABLE: 3, SHRINKING: 1, RESOLVED: 1}


def test_noise_of_two_segmentations_is_not_a_new_lesion() -> None:
    base, follow, change, truth = two_visits()
    result = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert class_at(result, truth["S"]) == STABLE       # segmented at follow-up only, FLAIR steady
    assert class_at(result, truth["M"]) == STABLE       # segmented at baseline only, FLAIR steady
    # Without FLAIR evidence the very same lesion would have been new.
    change[truth["S"]] += 2 * CHANGE_MIN_Z
    again = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert class_at(again, truth["S"]) == NEW


def test_change_mask_holds_new_lesions_and_growth_only() -> None:
    base, follow, change, truth = two_visits()
    result = classify_changes(base, follow, change, voxel_mm3=1.0)
    expected = truth["N"] | (truth["B"] & ~(base == 2))
    assert np.array_equal(result.new_enlarged.astype(bool), expected)


def test_volumes_and_evidence_are_reported() -> None:
    base, follow, change, truth = two_visits()
    result = classify_changes(base, follow, change, voxel_mm3=2.0)
    enlarging = next(c for c in result.changes if c.change_class == ENLARGING)
    assert enlarging.volume_baseline_mm3 == 2.0 * (base == 2).sum()
    assert enlarging.volume_followup_mm3 == 2.0 * truth["B"].sum()
    assert enlarging.change_percent > 50.0
    assert enlarging.flair_change_z > 2.0 and enlarging.confidence > 0.9
    new = next(c for c in result.changes if c.change_class == NEW)
    assert new.volume_baseline_mm3 == 0.0 and new.change_percent is None


def test_a_border_that_moves_without_flair_change_is_not_enlargement() -> None:
    """A lesion segmented one voxel larger all round (partial-volume jitter of two
    segmentations) with no FLAIR change there stays stable, although its volume nearly doubles."""
    base = ball((20, 30, 30), 4).astype(np.uint16)
    follow = ball((20, 30, 30), 5).astype(np.uint16)
    change = np.random.default_rng(1).normal(0.0, 0.3, SHAPE).astype(np.float32)
    result = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert [c.change_class for c in result.changes] == [STABLE]
    assert not result.new_enlarged.any()


def test_an_enlarging_lesion_draws_its_growth_not_its_jittering_rim() -> None:
    """Growth on one side where the FLAIR rose, plus a one-voxel rim all round without FLAIR
    change: the change mask holds the growth only."""
    base = ball((20, 30, 30), 5).astype(np.uint16)
    growth = ball((20, 30, 38), 4) & ~ball((20, 30, 30), 5)
    follow = (ball((20, 30, 30), 6) | growth).astype(np.uint16)
    change = np.where(growth, 3.0, 0.0).astype(np.float32)
    result = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert [c.change_class for c in result.changes] == [ENLARGING]
    drawn = result.new_enlarged.astype(bool)
    assert np.array_equal(drawn, growth)
    assert not (drawn & (base > 0)).any()


def test_local_growth_of_a_confluent_lesion_is_enlargement() -> None:
    """A large lesion that grows locally by far less than half its volume, where the FLAIR
    rose, is enlarging; the same lesion whose segmented volume shrinks elsewhere (it is
    outlined differently at the follow-up) still shows that growth."""
    big = ball((20, 30, 30), 12)
    growth = ball((20, 30, 44), 3) & ~big
    base = big.astype(np.uint16)
    follow = (big | growth).astype(np.uint16)
    change = np.random.default_rng(2).normal(0.0, 0.3, SHAPE).astype(np.float32)
    change[growth] += 2.0
    assert growth.sum() < 0.1 * big.sum()
    result = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert [c.change_class for c in result.changes] == [ENLARGING]
    assert result.new_enlarged[growth].mean() > 0.9
    follow[ball((20, 30, 18), 4) & big] = 0  # outlined smaller on the other side, FLAIR steady
    again = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert [c.change_class for c in again.changes] == [ENLARGING]


def test_a_change_region_needs_the_minimum_volume() -> None:
    """A new lesion whose FLAIR rose over fewer voxels than CHANGE_MIN_MM3 stays stable: a few
    bright voxels are noise or misregistration, not a lesion."""
    base = np.zeros(SHAPE, np.uint16)
    follow = ball((20, 30, 30), 3).astype(np.uint16)
    change = np.zeros(SHAPE, np.float32)
    change[20, 30, 28:33] = 2.0  # 5 voxels of 1 mm3
    assert 5 < CHANGE_MIN_MM3
    result = classify_changes(base, follow, change, voxel_mm3=1.0)
    assert [c.change_class for c in result.changes] == [STABLE]
    change[19:22, 29:32, 28:33] = 2.0  # 45 voxels
    assert [c.change_class for c in classify_changes(base, follow, change, voxel_mm3=1.0).changes] == [NEW]


def test_deterministic() -> None:
    base, follow, change, _ = two_visits()
    one = classify_changes(base, follow, change, voxel_mm3=1.0)
    two = classify_changes(base.copy(), follow.copy(), change.copy(), voxel_mm3=1.0)
    assert np.array_equal(one.class_map, two.class_map)
    assert [c.rule for c in one.changes] == [c.rule for c in two.changes]
