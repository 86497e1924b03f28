"""Noise harmonisation (``allnet.preprocessing.noise``): noisier scans are smoothed down to
the model's noise target, cleaner ones pass untouched, in the core, in training's cached
cases and in ``allnet segment`` with a model that carries a target."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from allnet import outputs, pipeline
from allnet.contract import SettingError
from allnet.model import ModelConfig, load_model_file, random_bundle, save_model_file, set_inference_plan
from allnet.pipeline import model_plan
from allnet.plan import NORMALISATION_ROBUST_ZSCORE, InferencePlan
from allnet.preprocessing.intensity import apply_normalisation, normalise
from allnet.preprocessing.noise import (harmonise_images, harmonise_noise, model_inputs, noise_level,
                                        white_matter_core)
from allnet.tissue import CSF, GM, WM

from helpers_synthesis import ellipsoid_radius, write_mni_case

SHAPE = (40, 48, 48)
TINY = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))


def _phantom(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A robust z-scored FLAIR-like phantom with white noise of ``noise`` (z units): CSF
    centre, WM with a lesion, a GM shell. Returns image, brain, tissue, lesion."""
    rng = np.random.default_rng(seed)
    r, (_, _, i), c = ellipsoid_radius(SHAPE, (18, 22, 22))
    tissue = np.zeros(SHAPE, np.uint8)
    tissue[r < 1.0] = GM
    tissue[r < 0.7] = WM
    tissue[r < 0.2] = CSF
    lesion = (np.abs(r - 0.45) < 0.08) & (i > c[2] + 4)
    tissue[lesion] = GM  # T1W-hypointense lesions: not in the white matter the noise is measured in
    level = {CSF: -2.5, GM: 0.8, WM: 0.0}
    image = np.zeros(SHAPE, np.float32)
    for label, value in level.items():
        image[tissue == label] = value
    image[lesion] = 2.0
    brain = tissue > 0
    image = (image + rng.normal(0, noise, SHAPE)) * brain
    return image.astype(np.float32), brain, tissue, lesion


def test_a_noisy_scan_is_smoothed_to_the_target_and_a_clean_one_is_left_alone() -> None:
    noisy, brain, tissue, lesion = _phantom(0.3)
    core = white_matter_core(brain, tissue)
    assert noise_level(noisy, core) == pytest.approx(0.3, rel=0.1)
    out, record = harmonise_noise(noisy, brain, tissue, 0.12)
    assert record["sigma_voxels"] > 0
    assert 0.08 < record["noise_after"] <= 0.12 == pytest.approx(0.12)
    assert noise_level(out, core) == pytest.approx(record["noise_after"], abs=1e-4)
    # lesions keep their contrast: smoothing removes noise, not the 2-unit step to WM
    assert np.median(out[lesion]) - np.median(out[core]) > 1.5
    assert np.all(out[~brain] == 0)  # confined to the brain ...
    edge = brain & ~ndimage.binary_erosion(brain)  # the outermost brain voxels
    assert abs(np.mean(out[edge]) - np.mean(noisy[edge])) < 0.05  # ... and the edge not darkened
    clean, brain, tissue, _ = _phantom(0.05)
    same, record = harmonise_noise(clean, brain, tissue, 0.12)
    assert record["sigma_voxels"] == 0 and np.array_equal(same, clean)


def test_harmonisation_is_deterministic_and_a_zero_target_is_off() -> None:
    noisy, brain, tissue, _ = _phantom(0.3, seed=3)
    first, _ = harmonise_images({"flair": noisy}, brain, tissue, 0.12)
    second, _ = harmonise_images({"flair": noisy.copy()}, brain, tissue, 0.12)
    assert np.array_equal(first["flair"], second["flair"])
    images = {"flair": noisy}
    off, records = harmonise_images(images, brain, tissue, 0.0)
    assert off is images and records == {}
    # the plan's steps in order: with no target, exactly the normalisation
    z = {"flair": normalise(noisy, brain)}
    only_norm = apply_normalisation(z, brain, tissue, NORMALISATION_ROBUST_ZSCORE)
    both, _ = model_inputs(z, brain, tissue, NORMALISATION_ROBUST_ZSCORE, 0.0)
    assert both is only_norm


def test_a_smoothed_modality_is_robust_zscored_again() -> None:
    noisy, brain, tissue, _ = _phantom(0.3)
    z = normalise(noisy, brain)
    out, records = harmonise_images({"flair": z}, brain, tissue, 0.12)
    values = out["flair"][brain]
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    assert records["flair"]["sigma_voxels"] > 0
    assert q50 == pytest.approx(0.0, abs=1e-3) and (q75 - q25) / 1.349 == pytest.approx(1.0, abs=1e-3)


def test_too_little_white_matter_leaves_the_image_alone() -> None:
    noisy, brain, tissue, _ = _phantom(0.3)
    out, record = harmonise_noise(noisy, brain, np.where(tissue == WM, GM, tissue).astype(np.uint8), 0.12)
    assert record["noise_before"] is None and record["sigma_voxels"] == 0
    assert np.array_equal(out, noisy)
    json.dumps(record, allow_nan=False)  # goes into summary.json as is


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.1"])
def test_noise_targets_the_core_cannot_apply_are_refused(bad) -> None:
    with pytest.raises(SettingError, match="noise_target"):
        InferencePlan(noise_target=bad)
    with pytest.raises(ValueError, match="noise_target"):
        ModelConfig(**TINY, noise_target=bad)


def test_the_target_travels_in_the_model_config_not_in_the_tuned_plan(tmp_path) -> None:
    bundle = random_bundle(ModelConfig(**TINY, noise_target=0.12), n=1)
    path = tmp_path / "m.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members], {"name": "m"})
    assert model_plan(load_model_file(path))["noise_target"] == 0.12
    set_inference_plan(path, {"threshold": 0.6, "noise_target": 0.3})  # a tuned plan cannot change it
    loaded = load_model_file(path)
    assert "noise_target" not in loaded.meta["inference_plan"]
    assert InferencePlan.from_dict(model_plan(loaded)).noise_target == 0.12


@pytest.fixture(scope="module")
def mni_case(tmp_path_factory):
    return write_mni_case(tmp_path_factory.mktemp("noise_case"), seed=7, n_lesions=6)


def test_segment_smooths_a_noisy_flair_for_a_model_with_a_target(mni_case, tmp_path, monkeypatch) -> None:
    """``allnet segment`` harmonises the inputs of a model that carries a noise target (and
    records it in summary.json), and leaves them alone for one that does not."""
    seen = []
    real_predict = pipeline.predict

    def spy_predict(bundle, images, anatomy, brain_mask, **kwargs):
        seen.append(images.copy())
        return real_predict(bundle, images, anatomy, brain_mask, **kwargs)

    monkeypatch.setattr(pipeline, "predict", spy_predict)
    summaries = {}
    for target in (0.0, 0.05):
        bundle = random_bundle(ModelConfig(**TINY, noise_target=target), n=1, seed=1)
        model = tmp_path / f"m{target}.pt"
        save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members], {"name": "tiny"})
        out = tmp_path / f"out{target}"
        pipeline.segment(mni_case["t1"], mni_case["flair"], mni_case["t2"], out, model=str(model),
                         preprocessed=True, device="cpu", report=False)
        summaries[target] = json.loads((out / outputs.SUMMARY_FILE).read_text())
    plain, smoothed = seen
    assert "noise_harmonisation" not in summaries[0.0]["qc"]
    record = summaries[0.05]["qc"]["noise_harmonisation"]
    flair = record["flair"]
    assert flair["sigma_voxels"] > 0 and flair["noise_after"] <= 0.05 < flair["noise_before"]
    # the model's FLAIR channel is smoother than the plain one
    diff = lambda a: np.abs(np.diff(a, axis=2)).mean()  # noqa: E731
    assert diff(smoothed[0]) < 0.8 * diff(plain[0])


def test_bisection_on_the_white_matter_box_gives_what_the_whole_volume_gives(monkeypatch) -> None:
    from allnet.preprocessing import noise

    padded = [np.pad(a, ((4, 4), (14, 14), (10, 10))) for a in _phantom(0.25, seed=4)[:3]]
    boxed = noise.harmonise_noise(*padded, 0.12)
    monkeypatch.setattr(noise, "_BOX_MARGIN", 10_000)
    whole = noise.harmonise_noise(*padded, 0.12)
    assert boxed[1] == whole[1] and boxed[1]["sigma_voxels"] > 0
    assert np.array_equal(boxed[0], whole[0])
