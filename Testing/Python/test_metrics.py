"""Tests of allnet.metrics: hand-counted examples, edge cases, a brute-force lesion matcher,
and (when installed) independent packages: medpy (voxel-wise), lesion-metrics (LTPR/LFDR at
26-connectivity) and scikit-learn (average precision)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet import metrics as M


def vol(shape=(12, 12, 12)) -> np.ndarray:
    return np.zeros(shape, dtype=bool)


def random_lesion_mask(rng: np.random.Generator, shape=(32, 32, 32), n_blobs=12, noise=0.004) -> np.ndarray:
    """Blobs of random size, some touching only diagonally, plus scattered single voxels."""
    mask = np.zeros(shape, dtype=bool)
    for _ in range(n_blobs):
        c = rng.integers(2, np.array(shape) - 4)
        size = rng.integers(1, 4, size=3)
        mask[c[0]:c[0] + size[0], c[1]:c[1] + size[1], c[2]:c[2] + size[2]] = True
    mask |= rng.random(shape) < noise
    return mask


# ----------------------------------------------------------------------------- hand-counted cases

def test_identical_masks_are_perfect():
    g = vol()
    g[2:4, 2:4, 2:4] = True
    g[8, 8, 8] = True
    m = M.evaluate_case(g, g.copy())
    assert (m.dsc, m.ppv, m.tpr, m.vf1, m.ltpr, m.lfpr, m.lf1, m.mr_lesion_f1) == (1, 1, 1, 1, 1, 0, 1, 1)
    assert (m.n_ref_lesions, m.n_pred_lesions) == (2, 2)
    assert m.isbi_partial == pytest.approx(0.75)


def test_reference_lesion_split_in_two_predictions():
    g = vol()
    g[5, 5, 1:9] = True                    # one 8-voxel bar
    p = vol()
    p[5, 5, 1:4] = True                    # two predicted pieces with a 2-voxel gap
    p[5, 5, 6:9] = True
    m = M.evaluate_case(p, g)
    assert (m.n_ref_lesions, m.n_pred_lesions) == (1, 2)
    assert (m.dsc, m.ppv, m.tpr) == (pytest.approx(12 / 14), 1.0, 6 / 8)
    assert (m.ltpr, m.lfpr, m.lf1) == (1.0, 0.0, 1.0)       # ISBI counting does not punish splits
    assert (m.mr_tp, m.mr_fp, m.mr_fn) == (1, 1, 0)          # one-to-one matching does
    assert m.mr_lesion_f1 == pytest.approx(1 / (1 + 0.5))


def test_merged_prediction_covering_two_reference_lesions():
    g = vol()
    g[5, 5, 1:4] = True
    g[5, 5, 6:9] = True
    p = vol()
    p[5, 5, 1:9] = True
    m = M.evaluate_case(p, g)
    assert (m.n_ref_lesions, m.n_pred_lesions, m.n_ref_detected, m.n_pred_false) == (2, 1, 2, 0)
    assert (m.ltpr, m.lfpr) == (1.0, 0.0)
    assert (m.mr_tp, m.mr_fp, m.mr_fn) == (1, 0, 1)
    assert m.mr_lesion_f1 == pytest.approx(2 / 3)
    assert (m.ppv, m.tpr) == (6 / 8, 1.0)


def test_missed_lesion_and_false_positive_lesion():
    g = vol()
    g[1:3, 1:3, 1:3] = True                # A: 8 voxels, found
    g[8, 8, 8] = True                      # B: 1 voxel, missed
    p = vol()
    p[1:3, 1:3, 1:2] = True                # 4 voxels inside A
    p[6:8, 1, 1] = True                    # C: 2 voxels, false positive
    m = M.evaluate_case(p, g)
    assert (m.n_ref_lesions, m.n_pred_lesions, m.n_ref_detected, m.n_pred_false) == (2, 2, 1, 1)
    assert (m.ltpr, m.lfpr, m.lf1) == (0.5, 0.5, 0.5)
    assert m.dsc == pytest.approx(2 * 4 / (6 + 9))
    assert (m.ppv, m.tpr) == (pytest.approx(4 / 6), pytest.approx(4 / 9))
    assert m.mr_lesion_f1 == pytest.approx(1 / (1 + (1 + 1) / 2))
    assert m.isbi_partial == pytest.approx(m.dsc / 8 + (4 / 6) / 8 + 0.5 / 4 + 0.5 / 4)


@pytest.mark.parametrize(
    "second, n6, n18, n26",
    [((3, 4, 4), 1, 1, 1),     # face neighbour
     ((3, 5, 4), 2, 1, 1),     # edge (2D-diagonal) neighbour
     ((3, 5, 5), 2, 2, 1)],    # corner (3D-diagonal) neighbour
)
def test_connectivity_of_touching_voxels(second, n6, n18, n26):
    g = vol()
    g[2, 4, 4] = True
    g[second] = True
    for conn, expected in ((6, n6), (18, n18), (26, n26)):
        assert M.label_components(g, conn)[1] == expected
        m = M.evaluate_case(g, g, connectivity=conn)
        assert m.n_ref_lesions == expected
    # A prediction of one of the two voxels detects 1 of 2 lesions only where they are separate.
    p = vol()
    p[2, 4, 4] = True
    assert M.evaluate_case(p, g, connectivity=6).ltpr == 1.0 / n6
    assert M.evaluate_case(p, g, connectivity=26).ltpr == 1.0


def test_invalid_connectivity():
    with pytest.raises(ValueError, match="connectivity"):
        M.evaluate_case(vol(), vol(), connectivity=8)


# ----------------------------------------------------------------------------- edge cases

def test_both_empty():
    m = M.evaluate_case(vol(), vol())
    assert (m.dsc, m.ppv, m.tpr, m.vf1, m.ltpr, m.lfpr, m.lf1, m.mr_lesion_f1) == (1, 1, 1, 1, 1, 0, 1, 1)


def test_empty_prediction():
    g = vol()
    g[3:5, 3:5, 3:5] = True
    m = M.evaluate_case(vol(), g)
    assert (m.dsc, m.ppv, m.tpr, m.vf1) == (0, 1, 0, 0)
    assert (m.ltpr, m.lfpr, m.lf1, m.mr_lesion_f1) == (0, 0, 0, 0)
    assert (m.pred_volume_mm3, m.ref_volume_mm3) == (0, 8)


def test_empty_reference():
    p = vol()
    p[3:5, 3:5, 3:5] = True
    m = M.evaluate_case(p, vol())
    assert (m.dsc, m.ppv, m.tpr, m.vf1) == (0, 0, 1, 0)
    assert (m.ltpr, m.lfpr, m.lf1, m.mr_lesion_f1) == (1, 1, 0, 0)


def test_minimum_lesion_size_uses_mm3_and_applies_to_both_masks():
    g = vol()
    g[1, 1, 1] = True                      # 1 voxel = 2 mm^3 with spacing (1, 1, 2)
    g[5, 5, 5:7] = True                    # 2 voxels = 4 mm^3
    p = g.copy()
    p[9, 9, 9] = True                      # 2 mm^3 false positive
    spacing = (1.0, 1.0, 2.0)
    raw = M.evaluate_case(p, g, spacing)
    assert (raw.n_ref_lesions, raw.n_pred_lesions, raw.lfpr, raw.ref_volume_mm3) == (2, 3, 1 / 3, 6.0)
    kept = M.evaluate_case(p, g, spacing, min_lesion_mm3=3.0)
    assert (kept.n_ref_lesions, kept.n_pred_lesions, kept.lfpr, kept.dsc) == (1, 1, 0.0, 1.0)
    assert kept.ref_volume_mm3 == 4.0
    assert M.evaluate_case(p, g, spacing, min_lesion_mm3=4.0).n_ref_lesions == 1  # ">=" keeps it
    with pytest.raises(ValueError, match="spacing"):
        M.evaluate_case(p, g, min_lesion_mm3=3.0)


def test_sitk_images_bring_their_spacing_and_must_share_a_grid():
    g = vol()
    g[2:4, 2:4, 2:4] = True
    img_g = sitk.GetImageFromArray(g.astype(np.uint8))
    img_g.SetSpacing((0.5, 0.5, 2.0))
    img_p = sitk.GetImageFromArray(g.astype(np.uint8))
    img_p.CopyInformation(img_g)
    m = M.evaluate_case(img_p, img_g)
    assert m.ref_volume_mm3 == pytest.approx(8 * 0.5)
    img_p.SetOrigin((0.0, 0.0, 3.0))
    with pytest.raises(ValueError, match="origin"):
        M.evaluate_case(img_p, img_g)
    with pytest.raises(ValueError, match="shape"):
        M.evaluate_case(vol((4, 4, 4)), vol((4, 4, 5)))


# ----------------------------------------------------------------------------- summaries

def _case(name: str, ref_voxels: int, pred_voxels: int) -> M.CaseMetrics:
    g, p = vol((10, 10, 10)).ravel(), vol((10, 10, 10)).ravel()
    g[:ref_voxels] = True
    p[:pred_voxels] = True
    return M.evaluate_case(p.reshape(10, 10, 10), g.reshape(10, 10, 10), (1, 1, 1), case=name)


def test_summary_volume_correlation_and_isbi_score():
    cases = [_case("a", 100, 90), _case("b", 200, 230), _case("c", 40, 70)]
    s = M.summarise(cases)
    pred, ref = np.array([90, 230, 70.0]), np.array([100, 200, 40.0])
    vc = np.sum((pred - pred.mean()) * (ref - ref.mean())) / math.sqrt(
        np.sum((pred - pred.mean()) ** 2) * np.sum((ref - ref.mean()) ** 2))
    assert s["volume_correlation"] == pytest.approx(vc)
    partial = np.mean([c.dsc / 8 + c.ppv / 8 + (1 - c.lfpr) / 4 + c.ltpr / 4 for c in cases])
    assert s["isbi_score"] == pytest.approx(partial + vc / 4)
    assert s["mean"]["dsc"] == pytest.approx(np.mean([2 * 90 / 190, 2 * 200 / 430, 2 * 40 / 110]))
    assert s["pooled"]["ref_lesions"] == 3
    assert M.isbi_score_over_raters([cases, cases[:2]]) == pytest.approx(
        (s["isbi_score"] + M.summarise(cases[:2])["isbi_score"]) / 2)


def test_summary_of_one_case_has_no_volume_correlation():
    s = M.summarise([_case("a", 10, 12)])
    assert s["volume_correlation"] is None and s["isbi_score"] is None
    assert s["isbi_score_without_vc"] == pytest.approx(M.summarise([_case("a", 10, 12)])["mean"]["isbi_partial"])


def test_paired_tests_match_the_hand_formula():
    a = [_case("a", 100, 90), _case("b", 200, 230), _case("c", 40, 70), _case("d", 60, 60)]
    b = [_case("a", 100, 50), _case("b", 200, 120), _case("c", 40, 90), _case("d", 60, 20)]
    row = {r["metric"]: r for r in M.paired_tests(a, b)}["dsc"]
    d = np.array([x.dsc - y.dsc for x, y in zip(a, b)])
    assert row["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(len(d))))
    assert 0 < row["p"] < 1 and row["n"] == 4
    assert {r["metric"]: r for r in M.paired_tests(a, b)}["ref_volume_ml"]["t"] is None  # no variation
    with pytest.raises(ValueError, match="same cases"):
        M.paired_tests(a, b[:3])


# ----------------------------------------------------------------------------- brute force

def brute_force_lesion_counts(p: np.ndarray, g: np.ndarray, connectivity: int) -> tuple[int, int, int, int]:
    """Python loops over components: (ref lesions, pred lesions, ref detected, pred false)."""
    st = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    gl, ng = ndimage.label(g, st)
    pl, npred = ndimage.label(p, st)
    detected = sum(1 for i in range(1, ng + 1) if p[gl == i].any())
    false = sum(1 for j in range(1, npred + 1) if not g[pl == j].any())
    return ng, npred, detected, false


def brute_force_mr_tp(p: np.ndarray, g: np.ndarray, connectivity: int) -> int | None:
    """Matched pairs of the assignment with maximum total IoU, found by enumeration."""
    st = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    gl, ng = ndimage.label(g, st)
    pl, npred = ndimage.label(p, st)
    iou = np.zeros((ng, npred))
    for i in range(ng):
        for j in range(npred):
            a, b = gl == i + 1, pl == j + 1
            iou[i, j] = (a & b).sum() / (a | b).sum()
    rows = [i for i in range(ng) if iou[i].any()]
    cols = [j for j in range(npred) if iou[:, j].any()]
    best, best_n = -1.0, 0
    small, large = (rows, cols) if len(rows) <= len(cols) else (cols, rows)
    if len(large) > 8:
        return None  # too many to enumerate
    for perm in itertools.permutations(large, len(small)):
        pairs = [(s, l) if small is rows else (l, s) for s, l in zip(small, perm)]
        total = sum(iou[i, j] for i, j in pairs)
        if total > best + 1e-12:
            best, best_n = total, sum(iou[i, j] > 0 for i, j in pairs)
    return best_n


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_lesion_counts_match_brute_force(seed, connectivity):
    rng = np.random.default_rng(seed)
    g = random_lesion_mask(rng)
    p = random_lesion_mask(rng) | (g & (rng.random(g.shape) < 0.5))
    m = M.evaluate_case(p, g, connectivity=connectivity)
    ng, npred, detected, false = brute_force_lesion_counts(p, g, connectivity)
    assert (m.n_ref_lesions, m.n_pred_lesions, m.n_ref_detected, m.n_pred_false) == (ng, npred, detected, false)
    assert m.ltpr == detected / ng and m.lfpr == false / npred
    assert m.vf1 == pytest.approx(m.dsc)  # the voxel F1 is the Dice coefficient


@pytest.mark.parametrize("seed", range(6))
def test_mr_matching_matches_enumeration(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_lesion_mask(rng, (16, 16, 16), n_blobs=5, noise=0.0005)
    p = random_lesion_mask(rng, (16, 16, 16), n_blobs=5, noise=0.0005) | (g & (rng.random(g.shape) < 0.6))
    m = M.evaluate_case(p, g, connectivity=26)
    expected = brute_force_mr_tp(p, g, 26)
    if expected is None:
        pytest.skip("too many overlapping lesions to enumerate")
    assert m.mr_tp == expected


# ----------------------------------------------------------------------------- independent packages

@pytest.mark.parametrize("seed", range(3))
def test_voxel_metrics_agree_with_medpy(seed):
    binary = pytest.importorskip("medpy.metric.binary", reason="medpy not installed (test extra)")
    rng = np.random.default_rng(seed)
    g, p = random_lesion_mask(rng), random_lesion_mask(rng)
    p |= g & (rng.random(g.shape) < 0.7)
    m = M.evaluate_case(p, g)
    assert m.dsc == pytest.approx(binary.dc(p, g))
    assert m.ppv == pytest.approx(binary.precision(p, g))
    assert m.tpr == pytest.approx(binary.recall(p, g))


@pytest.mark.parametrize("seed", range(3))
def test_lesion_rates_agree_with_lesion_metrics_package(seed):
    lm = pytest.importorskip("lesion_metrics.metrics", reason="lesion-metrics not installed (test extra)")
    rng = np.random.default_rng(10 + seed)
    g, p = random_lesion_mask(rng), random_lesion_mask(rng)
    p |= g & (rng.random(g.shape) < 0.5)
    m = M.evaluate_case(p, g, connectivity=26)  # lesion-metrics labels with full (26) connectivity
    assert m.ltpr == pytest.approx(lm.ltpr(p, g))
    assert m.lfpr == pytest.approx(lm.lfdr(p, g))
    assert m.isbi_partial == pytest.approx(lm.isbi15_score(p, g, reweighted=False))


# ----------------------------------------------------------------------------- curves

def _prob_cases(seed: int, n: int = 2):
    rng = np.random.default_rng(seed)
    probs, refs = [], []
    for _ in range(n):
        g = random_lesion_mask(rng, (24, 24, 24), n_blobs=8)
        blur = ndimage.gaussian_filter(g.astype(np.float32), 1.0)
        prob = np.clip(0.8 * blur / max(blur.max(), 1e-6) + 0.25 * rng.random(g.shape), 0, 1)
        prob[rng.random(g.shape) < 0.5] = 0.0
        probs.append(np.round(prob, 2).astype(np.float32))
        refs.append(g)
    return probs, refs


def test_average_precision_matches_a_direct_threshold_loop():
    probs, refs = _prob_cases(1)
    curve = M.precision_recall(probs, refs)
    s = np.concatenate([p.ravel() for p in probs])
    y = np.concatenate([g.ravel() for g in refs])
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        sel = s >= t
        recall = (sel & y).sum() / y.sum()
        ap += (recall - prev_recall) * (sel & y).sum() / sel.sum()
        prev_recall = recall
    assert curve.average_precision == pytest.approx(ap)
    assert curve.recall[-1] == pytest.approx(1.0) and np.all(np.diff(curve.thresholds) < 0)


def test_average_precision_agrees_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")
    probs, refs = _prob_cases(3, n=3)
    s = np.concatenate([p.ravel() for p in probs])
    y = np.concatenate([g.ravel() for g in refs])
    assert M.precision_recall(probs, refs).average_precision == pytest.approx(
        sklearn_metrics.average_precision_score(y, s))


def test_precision_recall_without_lesions_has_no_average_precision():
    curve = M.precision_recall([np.full((4, 4, 4), 0.3, np.float32)], [vol((4, 4, 4))])
    assert math.isnan(curve.average_precision)


def test_all_zero_probability_gives_the_prevalence():
    g = vol((4, 4, 4))
    g[0, 0, :3] = True
    curve = M.precision_recall([np.zeros((4, 4, 4), np.float32)], [g])
    assert curve.average_precision == pytest.approx(3 / 64)
    assert curve.thresholds.tolist() == [0.0] and curve.recall.tolist() == [1.0]


def test_lesion_curve_equals_thresholded_case_metrics():
    probs, refs = _prob_cases(2)
    thresholds = (0.2, 0.5, 0.8)
    curve = M.lesion_curve(probs, refs, [1.0, 1.0], thresholds, connectivity=18)
    for i, t in enumerate(thresholds):
        cases = [M.evaluate_case(p >= t, g) for p, g in zip(probs, refs)]
        detected = sum(c.n_ref_detected for c in cases)
        assert curve.ltpr[i] == pytest.approx(detected / sum(c.n_ref_lesions for c in cases))
        assert curve.fp_per_scan[i] == pytest.approx(sum(c.n_pred_false for c in cases) / 2)
        assert curve.lfpr[i] == pytest.approx(
            sum(c.n_pred_false for c in cases) / max(sum(c.n_pred_lesions for c in cases), 1))
    assert np.all(np.diff(curve.ltpr) <= 0)  # higher thresholds cannot find more lesions
