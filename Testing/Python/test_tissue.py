"""Tests of allnet.tissue: EM tissue segmentation with spatial priors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from allnet.errors import InputError
from allnet.tissue import CSF, GM, WM, segment_tissue

SHAPE = (48, 48, 48)
INTENSITY = {CSF: 0.3, GM: 0.6, WM: 0.9}  # T1W-like ordering


def _phantom(seed: int = 0, noise: float = 0.08):
    """Spherical 'brain' (radius 21): CSF core (r < 7), WM (7-15), GM (15-19), pial CSF (19-21).
    Priors: the true label maps smoothed (sigma 2 voxels) and shifted by (2, 1, 0) voxels,
    like atlas priors after an imperfect affine registration."""
    k, j, i = np.indices(SHAPE)
    r = np.sqrt((k - 23.5) ** 2 + (j - 23.5) ** 2 + (i - 23.5) ** 2)
    truth = np.zeros(SHAPE, dtype=np.uint8)
    truth[r < 21] = CSF
    truth[r < 19] = GM
    truth[r < 15] = WM
    truth[r < 7] = CSF
    mask = (truth > 0).astype(np.uint8)
    rng = np.random.default_rng(seed)
    t1 = np.zeros(SHAPE, dtype=np.float32)
    for label, value in INTENSITY.items():
        t1[truth == label] = value
    t1 = np.where(mask > 0, t1 + rng.normal(0.0, noise, SHAPE), 0.0).astype(np.float32)
    priors = np.stack([ndimage.gaussian_filter((truth == c).astype(np.float32), 2.0) for c in (CSF, GM, WM)])
    priors = np.roll(priors, shift=(2, 1, 0), axis=(1, 2, 3))
    return t1, mask, truth, priors


def test_phantom_accuracy_and_outputs():
    t1, mask, truth, priors = _phantom()
    seg = segment_tissue(t1, mask, priors)
    inside = mask > 0
    accuracy = np.mean(seg.labels[inside] == truth[inside])
    assert accuracy > 0.9, accuracy
    for label in (CSF, GM, WM):  # each class is found, not just the majority class
        assert np.mean(seg.labels[truth == label] == label) > 0.8, label
    assert seg.labels.dtype == np.uint8 and not seg.labels[~inside].any()
    assert seg.posteriors.shape == (3,) + SHAPE and seg.posteriors.dtype == np.float32
    assert np.allclose(seg.posteriors[:, inside].sum(axis=0), 1.0, atol=1e-4)
    assert not seg.posteriors[:, ~inside].any()
    assert np.array_equal(np.argmax(seg.posteriors[:, inside], axis=0) + 1, seg.labels[inside])
    assert np.allclose(seg.means, [INTENSITY[CSF], INTENSITY[GM], INTENSITY[WM]], atol=0.03)


def test_neighbourhood_step_removes_noise():
    # with heavy noise the classes overlap in intensity; the final neighbourhood step must
    # recover voxels that priors and intensity alone get wrong
    t1, mask, truth, priors = _phantom(seed=1, noise=0.16)
    inside = mask > 0
    voxelwise = segment_tissue(t1, mask, priors, neighbourhood_sigma_vox=0).labels
    full = segment_tissue(t1, mask, priors).labels
    voxelwise_accuracy = np.mean(voxelwise[inside] == truth[inside])
    accuracy = np.mean(full[inside] == truth[inside])
    assert accuracy > voxelwise_accuracy + 0.03, (accuracy, voxelwise_accuracy)
    assert accuracy > 0.9


def test_deterministic_and_scale_invariant():
    t1, mask, _, priors = _phantom(seed=2)
    first = segment_tissue(t1, mask, priors)
    second = segment_tissue(t1.copy(), mask.copy(), priors.copy())
    assert np.array_equal(first.labels, second.labels)
    assert np.array_equal(first.posteriors, second.posteriors)
    rescaled = segment_tissue(t1 * 1000.0 + 200.0, mask, priors)
    inside = mask > 0
    assert np.mean(rescaled.labels[inside] == first.labels[inside]) > 0.999


def test_bad_inputs():
    t1, mask, _, priors = _phantom()
    with pytest.raises(InputError, match="differ"):
        segment_tissue(t1, mask[:-1], priors)
    with pytest.raises(InputError, match="empty"):
        segment_tissue(t1, np.zeros_like(mask), priors)
    with pytest.raises(InputError, match="priors shape"):
        segment_tissue(t1, mask, priors[:2])
    with pytest.raises(InputError, match="working grid"):
        segment_tissue(t1, mask)  # template priors need the working grid
    broken = t1.copy()
    broken[24, 24, 24] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segment_tissue(broken, mask, priors)
