"""Tests of allnet.synthesis: MR contrasts from tissue maps, lesion shapes and lesion insertion."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet import synthesis
from allnet.synthesis import (LesionShapeBank, add_rician_noise, bias_field, ellipsoid_lesions,
                              insert_lesions, sample_lesion_shapes, synthesize_contrasts)

CONN26 = np.ones((3, 3, 3), bool)


def _phantom(size: int = 64) -> dict[str, np.ndarray]:
    """Spherical head phantom (1 mm voxels): CSF ventricle, WM, GM cortex, brain radius 22 mm.

    Tissue boundaries are smooth (partial volume), like template probability maps.
    """
    centre = (size - 1) / 2.0
    k, j, i = np.meshgrid(*(np.arange(size),) * 3, indexing="ij")
    r = np.sqrt((k - centre) ** 2 + (j - centre) ** 2 + (i - centre) ** 2)

    def inside(radius: float) -> np.ndarray:
        return np.clip(radius + 0.5 - r, 0.0, 1.0).astype(np.float32)

    brain = inside(22.0)
    csf = inside(5.0) + (brain - inside(20.0))  # ventricle + subarachnoid CSF
    gm = inside(20.0) - inside(16.0)
    wm = inside(16.0) - inside(5.0)
    return {"gm": gm, "wm": wm, "csf": csf, "brain": (brain > 0.5).astype(np.uint8), "r": r}


@pytest.fixture(scope="module")
def phantom() -> dict[str, np.ndarray]:
    return _phantom()


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
            assert out[name][lesion].mean() > images[name][around].mean() * 1.15, name
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


def test_ellipsoid_lesions_sizes_and_placement(phantom):
    rng = np.random.default_rng(11)
    wm = phantom["wm"]
    existing = np.zeros(wm.shape, np.uint8)
    existing[30:34, 30:34, 45:49] = 1
    mask = ellipsoid_lesions(wm.shape, wm, 8, rng, (1.5, 3.0), existing=existing)
    labels, n = ndimage.label(mask, structure=CONN26)
    assert n == 8
    assert (wm[mask > 0] >= 0.5).all()
    volumes = np.bincount(labels.ravel())[1:]
    assert volumes.max() <= 4 / 3 * np.pi * 3.0 ** 3 + 1
    assert volumes.min() >= 0.5 * 4 / 3 * np.pi * 1.5 ** 3 - 1
    touching = ndimage.binary_dilation(existing, structure=CONN26)
    assert not (touching & (mask > 0)).any()
    again = ellipsoid_lesions(wm.shape, wm, 8, np.random.default_rng(11), (1.5, 3.0), existing=existing)
    np.testing.assert_array_equal(mask, again)


def _blob_masks() -> list[np.ndarray]:
    """Two lesion masks with distinctive component sizes (voxels: 27, 45, 12 and 64)."""
    a = np.zeros((40, 40, 40), np.uint8)
    a[5:8, 5:8, 5:8] = 1
    a[20:25, 20:23, 10:13] = 1
    b = np.zeros((40, 40, 40), np.uint8)
    b[10:12, 10:16, 10:11] = 1
    b[30:34, 30:34, 30:34] = 1
    b[2, 2, 2] = 1  # too small for the bank (1 mm3 < 10 mm3)
    return [a, b]


def test_sample_lesion_shapes_places_bank_components(phantom):
    wm = phantom["wm"]
    bank = LesionShapeBank(_blob_masks())
    assert len(bank) == 4
    existing = np.zeros(wm.shape, np.uint8)
    existing[31, 20:40, 31] = 1
    placed = sample_lesion_shapes(bank, wm, 6, np.random.default_rng(3), existing=existing)
    labels, n = ndimage.label(placed, structure=CONN26)
    assert n == 6
    assert set(np.bincount(labels.ravel())[1:]) <= {27, 45, 12, 64}
    assert not (ndimage.binary_dilation(existing, structure=CONN26) & (placed > 0)).any()
    for index in range(1, n + 1):
        assert (wm[labels == index] >= 0.5).mean() >= 0.5
    same = sample_lesion_shapes(_blob_masks(), wm, 6, np.random.default_rng(3), existing=existing)
    np.testing.assert_array_equal(placed, same)


@pytest.mark.realdata
def test_sample_lesion_shapes_from_real_mni_masks(shared_data):
    import nibabel as nib

    from allnet.templates import load_template

    folder = shared_data / "lesjak2018" / "lesion_masks_mni"
    paths = sorted(folder.glob("*.nii.gz"))[:4]
    assert paths, f"no lesion masks in {folder}"
    # nibabel arrays are (i, j, k); the working grid's KJI arrays are their transpose.
    masks = [np.asarray(nib.load(p).dataobj).transpose(2, 1, 0) > 0 for p in paths]
    wm = sitk.GetArrayFromImage(load_template().wm)
    assert masks[0].shape == wm.shape
    bank = LesionShapeBank(masks)
    assert len(bank) >= 10
    sizes = {int(shape.sum()) for shape in bank.shapes}
    placed = bank.place(wm, 12, np.random.default_rng(0))
    labels, n = ndimage.label(placed, structure=CONN26)
    assert n == 12
    assert set(np.bincount(labels.ravel())[1:]) <= sizes
    in_wm = (wm[placed > 0] >= 0.5).mean()
    assert in_wm > 0.6


def test_bad_inputs_are_rejected(phantom):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="one shape"):
        synthesize_contrasts(phantom["gm"][:10], phantom["wm"], phantom["csf"], phantom["brain"], rng)
    with pytest.raises(ValueError, match="unknown modalities"):
        synthesize_contrasts(phantom["gm"], phantom["wm"], phantom["csf"], phantom["brain"], rng,
                             modalities=("pd",))
    with pytest.raises(ValueError, match="no white-matter"):
        ellipsoid_lesions(phantom["wm"].shape, np.zeros_like(phantom["wm"]), 2, rng)
    assert synthesis.MODALITIES == ("t1", "t2", "flair")
