"""Tests of allnet.synthesis: MR contrasts from tissue maps, lesion shapes and lesion insertion."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet import synthesis
from allnet.synthesis import (add_rician_noise, bias_field, ellipsoid_lesions, insert_lesions,
                              sample_lesion_shapes, synthesize_contrasts)
from helpers_synthesis import CONN26, phantom_maps


@pytest.fixture(scope="module")
def phantom() -> dict[str, np.ndarray]:
    return phantom_maps()


@pytest.fixture(scope="module")
def template_crop() -> dict[str, np.ndarray]:
    """A 64 x 80 x 64 mm block of the template's tissue maps around the lateral ventricles."""
    from allnet.templates import load_template

    template = load_template()
    box = (slice(70, 134), slice(80, 160), slice(59, 123))
    maps = {name: sitk.GetArrayFromImage(getattr(template, name))[box]
            for name in ("gm", "wm", "csf", "brain_mask")}
    assert maps["csf"].max() > 0.9 and maps["wm"].max() > 0.9  # ventricles and WM are inside
    return maps


def test_contrast_order_on_template_tissue(template_crop):
    maps = template_crop
    images = synthesize_contrasts(maps["gm"], maps["wm"], maps["csf"], maps["brain_mask"],
                                  np.random.default_rng(3))
    assert set(images) == {"t1", "t2", "flair"}
    pure = {name: maps[name] > 0.9 for name in ("wm", "gm", "csf")}
    assert all(mask.sum() > 200 for mask in pure.values())
    med = {(m, t): float(np.median(images[m][pure[t]])) for m in images for t in pure}
    assert med["t1", "wm"] > med["t1", "gm"] > med["t1", "csf"]
    assert med["t2", "csf"] > med["t2", "gm"] > med["t2", "wm"]
    assert med["flair", "gm"] > med["flair", "wm"] > med["flair", "csf"]
    # CSF is dark on FLAIR (fluid suppressed), much darker than on T2W relative to WM.
    assert med["flair", "csf"] < 0.5 * med["flair", "wm"]
    for image in images.values():
        assert image.dtype == np.float32 and np.isfinite(image).all()


def test_partial_volume_mixing_is_between_tissues(phantom):
    images = synthesize_contrasts(phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"],
                                  np.random.default_rng(0), bias=0, noise=0, texture=0, head=False)
    t1 = images["t1"]
    r = phantom["r"]
    gm_val, wm_val = float(np.median(t1[(r > 17) & (r < 19)])), float(np.median(t1[(r > 7) & (r < 15)]))
    boundary = t1[np.abs(r - 16.0) < 0.2]  # voxels shared by GM and WM
    assert boundary.size > 0
    assert np.all(boundary > gm_val - 1e-3) and np.all(boundary < wm_val + 1e-3)
    assert (boundary > gm_val + 0.02).any() and (boundary < wm_val - 0.02).any()


def test_head_shell_surrounds_the_brain(phantom):
    images = synthesize_contrasts(phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"],
                                  np.random.default_rng(1), bias=0, texture=0)
    t1, r = images["t1"], phantom["r"]
    wm_t1 = float(np.median(t1[phantom["wm"] > 0.9]))
    background = t1[r > 22.0 + 17.0]
    assert np.median(background) < 0.1 * wm_t1  # air: noise only
    # Along the radius: a dark bone layer, then bright scalp fat (T1W), then air.
    shell = [float(np.median(t1[np.abs(r - 22.0 - d) < 0.5])) for d in np.arange(1, 16)]
    brightest = int(np.argmax(shell))
    assert shell[brightest] > wm_t1 and brightest >= 4
    assert min(shell[:brightest]) < 0.35 * wm_t1
    assert shell[-1] < 0.1 * wm_t1


def test_synthesis_is_deterministic_for_a_seed(phantom):
    args = (phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"])
    a = synthesize_contrasts(*args, np.random.default_rng(7))
    b = synthesize_contrasts(*args, np.random.default_rng(7))
    c = synthesize_contrasts(*args, np.random.default_rng(8))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])


def test_bias_field_and_noise_statistics():
    rng = np.random.default_rng(0)
    field = bias_field((40, 48, 40), rng, strength=0.2)
    assert field.min() >= np.exp(-0.2) - 1e-5 and field.max() <= np.exp(0.2) + 1e-5
    assert field.max() / field.min() > 1.1  # not flat
    # Smooth: neighbouring voxels differ far less than the field's range.
    assert np.abs(np.diff(field, axis=0)).max() < 0.02
    noisy = add_rician_noise(np.zeros((32, 32, 32), np.float32), 0.05, rng)
    # Rician noise on zero signal is Rayleigh distributed: mean sigma * sqrt(pi / 2).
    assert noisy.min() >= 0
    assert abs(noisy.mean() - 0.05 * np.sqrt(np.pi / 2)) < 0.003


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    return (ndimage.binary_dilation(mask, iterations=outer)
            & ~ndimage.binary_dilation(mask, iterations=inner))


def test_insert_lesions_contrast_and_mask(template_crop):
    maps = template_crop
    rng = np.random.default_rng(5)
    images = synthesize_contrasts(maps["gm"], maps["wm"], maps["csf"], maps["brain_mask"], rng)
    lesions = ellipsoid_lesions(maps["wm"].shape, maps["wm"], 6, rng, (2.0, 4.0))
    out, mask = insert_lesions(images, lesions, maps["wm"], rng, brain_mask=maps["brain_mask"])
    assert mask.dtype == np.uint8 and mask.sum() > 0
    assert not (mask.astype(bool) & ~lesions.astype(bool)).any()
    assert (maps["wm"][mask > 0] >= 0.5).all()
    labels, n = ndimage.label(mask, structure=CONN26)
    assert n == 6
    for index in range(1, n + 1):
        lesion = labels == index
        around = _ring(lesion, 2, 4) & (maps["wm"] > 0.9) & (lesions == 0)
        for name in ("flair", "t2"):
            # At least half the weakest documented contrast (0.15-0.2 of the brain's span).
            brain_values = images[name][maps["brain_mask"] > 0]
            span = np.percentile(brain_values, 95) - np.percentile(brain_values, 5)
            assert out[name][lesion].mean() > images[name][around].mean() + 0.08 * span, name
        assert out["t1"][lesion].mean() <= out["t1"][around].mean() * 1.02
    # Nothing changes where there is no white matter, inputs are untouched.
    no_wm = maps["wm"] <= 0
    for name in images:
        np.testing.assert_array_equal(out[name][no_wm], images[name][no_wm])
    assert not np.shares_memory(out["flair"], images["flair"])


def test_insert_lesions_needs_white_matter(phantom):
    rng = np.random.default_rng(2)
    images = synthesize_contrasts(phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"], rng)
    in_gm = (np.abs(phantom["r"] - 18.0) < 1.5).astype(np.uint8)  # a lesion-shaped band in cortex
    out, mask = insert_lesions(images, in_gm, phantom["wm"], rng, brain_mask=phantom["brain"])
    assert mask.sum() == 0
    pure_gm = phantom["gm"] >= 1.0
    for name in images:
        np.testing.assert_array_equal(out[name][pure_gm], images[name][pure_gm])


def test_insert_lesions_works_at_any_intensity_scale(phantom):
    """Normalised images (zero outside the brain, any scale, negative values) get the same
    relative lesion contrast."""
    rng = np.random.default_rng(4)
    images = synthesize_contrasts(phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"], rng,
                                  head=False)
    brain = phantom["brain"] > 0
    zscored = {}
    for name, image in images.items():
        values = image[brain]
        zscored[name] = np.where(brain, (image - values.mean()) / values.std(), 0).astype(np.float32)
    lesions = ellipsoid_lesions(brain.shape, phantom["wm"], 3, rng, (2.0, 3.0))
    a, mask_a = insert_lesions(zscored, lesions, phantom["wm"], np.random.default_rng(9))
    scaled = {name: 250.0 * image for name, image in zscored.items()}
    b, mask_b = insert_lesions(scaled, lesions, phantom["wm"], np.random.default_rng(9))
    np.testing.assert_array_equal(mask_a, mask_b)
    for name in a:
        np.testing.assert_allclose(250.0 * a[name], b[name], rtol=1e-4, atol=1e-2)
    inside = mask_a > 0
    around = _ring(inside, 2, 4) & (phantom["wm"] > 0.9) & (lesions == 0)
    assert a["flair"][inside].mean() > a["flair"][around].mean() + 0.5  # z-score units
    assert a["t1"][inside].mean() <= a["t1"][around].mean() + 0.05
    with pytest.raises(ValueError, match="brain_mask"):
        insert_lesions(images, lesions, phantom["wm"], rng)  # raw image: no zero background


def test_insert_lesions_is_deterministic_and_keeps_base_mask(phantom):
    rng = np.random.default_rng(6)
    images = synthesize_contrasts(phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"], rng)
    lesions = ellipsoid_lesions(phantom["brain"].shape, phantom["wm"], 3, rng, (2.0, 3.0))
    base = np.zeros_like(lesions)
    base[5, 5, 5] = 1
    run = [insert_lesions(images, lesions, phantom["wm"], np.random.default_rng(1),
                          brain_mask=phantom["brain"], base_mask=base) for _ in range(2)]
    np.testing.assert_array_equal(run[0][1], run[1][1])
    for name in images:
        np.testing.assert_array_equal(run[0][0][name], run[1][0][name])
    assert run[0][1][5, 5, 5] == 1


def test_bad_inputs_are_rejected(phantom):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="one shape"):
        synthesize_contrasts(phantom["gm"][:10], phantom["wm"], phantom["csf"], phantom["brain"], rng)
    with pytest.raises(ValueError, match="unknown modalities"):
        synthesize_contrasts(phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"], rng,
                             modalities=("pd",))
    assert synthesis.MODALITIES == ("t1", "t2", "flair")


@pytest.mark.realdata
def test_inserted_lesions_resemble_real_lesions_of_the_same_scan(shared_data):
    """Training use: real lesion shapes painted into a real preprocessed MNI case."""
    import nibabel as nib

    from allnet.templates import load_template

    case = shared_data / "lesjak2018" / "mni" / "patient19"

    def kji(path):
        return np.asarray(nib.load(path).dataobj, dtype=np.float32).transpose(2, 1, 0)

    images = {name: kji(case / f"{file}.nii.gz") for name, file in
              (("flair", "FLAIR"), ("t1", "T1"), ("t2", "T2"))}
    real = kji(case / "lesions.nii.gz") > 0
    wm = sitk.GetArrayFromImage(load_template().wm)
    masks = [kji(p) > 0 for p in sorted((shared_data / "lesjak2018" / "lesion_masks_mni").glob("*.nii.gz"))[:3]]
    rng = np.random.default_rng(1)
    new = sample_lesion_shapes(masks, wm, 12, rng, existing=real)
    out, mask = insert_lesions(images, new, wm, rng, base_mask=real)
    assert (mask[real] == 1).all()
    painted = (new > 0) & (mask > 0)
    assert painted.sum() > 100
    flair_real = np.percentile(images["flair"][real], [5, 95])
    assert flair_real[0] < np.median(out["flair"][painted]) < flair_real[1]
    wm_flair = np.median(images["flair"][(wm > 0.9) & ~real & (images["flair"] > 0)])
    assert np.median(out["flair"][painted]) > wm_flair
    assert np.median(out["t1"][painted]) <= np.median(images["t1"][(wm > 0.9) & ~real & (images["t1"] > 0)])
    background = images["flair"] == 0
    for name in out:
        assert (out[name][background] == 0).all()  # nothing painted outside the brain
