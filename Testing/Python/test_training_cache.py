"""Training cache on a real development case (preprocessing + anatomy of the core)."""
from __future__ import annotations

import numpy as np
import pytest

from allnet_training.cache import cache_path, load_cached, prepare_cases
from allnet_training.data import dev_cases


@pytest.mark.realdata
@pytest.mark.slow
def test_prepare_and_reload_a_real_case(shared_data, tmp_path):
    case = [c for c in dev_cases(shared_data) if c.case_id == "P14_T1"][0]  # the case without T2W
    paths = prepare_cases([case], tmp_path, log=lambda *_: None)
    assert paths == [cache_path(case, tmp_path)] and paths[0].is_file()
    cached = load_cached(paths[0])
    assert cached.case_id == "P14_T1" and cached.subject_id == "P14"
    assert cached.present == ("flair", "t1")
    assert cached.images.shape == (3, 182, 218, 182) and cached.images.dtype == np.float16
    assert not cached.images[2].any()  # no T2W: zero channel
    assert cached.anatomy.shape == (6, 182, 218, 182)
    brain = cached.brain > 0
    assert 800_000 < brain.sum() < 2_500_000  # 0.8-2.5 L of brain at 1 mm
    assert (cached.mask > 0).sum() == 24799 and not (cached.mask.astype(bool) & ~brain).any()
    assert set(np.unique(cached.tissue)) <= {0, 1, 2, 3}
    # lesions are FLAIR-hyperintense after normalisation
    flair = cached.images[0].astype(np.float32)
    assert np.median(flair[cached.mask > 0]) > np.median(flair[brain]) + 1.0
    # a second call reuses the entry
    mtime = paths[0].stat().st_mtime_ns
    assert prepare_cases([case], tmp_path, log=lambda *_: None) == paths
    assert paths[0].stat().st_mtime_ns == mtime


def test_cached_cases_convert_to_the_model_normalisation_once():
    """Training crops and held-out predictions see the images as ``allnet segment`` would
    give them to a 'wm-csf' model: WM median at 0, from the stored robust z-score."""
    from allnet_training.cache import with_normalisation
    from helpers_training import tiny_case

    case = tiny_case(3)
    converted = with_normalisation(case, "wm-csf")
    assert converted.normalisation == "wm-csf" and case.normalisation == "robust-zscore"
    wm = (case.tissue == 3) & (case.brain > 0)
    for index in range(3):
        assert abs(float(np.median(converted.images[index].astype(np.float32)[wm]))) < 0.01
    assert with_normalisation(converted, "wm-csf") is converted
    assert with_normalisation(case, "robust-zscore") is case
    with pytest.raises(ValueError, match="cannot convert"):
        with_normalisation(converted, "robust-zscore")


def test_cached_cases_are_harmonised_to_the_model_noise_target():
    """Training and held-out prediction see a noisy case as ``allnet segment`` gives it to a
    model with a noise target: smoothed to the target, through the same core function."""
    from allnet.preprocessing.noise import model_inputs, noise_level, white_matter_core
    from allnet_training.cache import MODALITIES, with_normalisation
    from helpers_training import tiny_case

    case = tiny_case(3)
    core = white_matter_core(case.brain, case.tissue)
    before = noise_level(case.images[0].astype(np.float32), core)
    target = round(before * 0.6, 3)
    converted = with_normalisation(case, "robust-zscore", target)
    assert converted.noise_target == target and case.noise_target == 0.0
    images = {m: case.images[i].astype(np.float32) for i, m in enumerate(MODALITIES) if m in case.present}
    expected, _ = model_inputs(images, case.brain, case.tissue, "robust-zscore", target)
    assert np.array_equal(converted.images[0], expected["flair"].astype(case.images.dtype))
    assert not np.array_equal(converted.images[0], case.images[0])  # the FLAIR was smoothed
    assert with_normalisation(converted, "robust-zscore", target) is converted
    with pytest.raises(ValueError, match="cannot convert"):
        with_normalisation(converted, "robust-zscore", 0.0)


def test_cache_key_follows_the_code_that_makes_cached_tensors_only():
    """Editing the normalisation invalidates cached cases; editing the longitudinal pair
    preprocessing, which no cached tensor goes through, does not."""
    from allnet_training.cache import hashed_core_files

    names = {f.as_posix().split("/allnet/", 1)[1] for f in hashed_core_files()}
    assert {"preprocessing/intensity.py", "preprocessing/pipeline.py", "anatomy.py", "tissue.py"} <= names
    assert "preprocessing/pair.py" not in names
    assert "preprocessing/noise.py" not in names  # applied to cached cases at load time
