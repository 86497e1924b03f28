"""A model restricted to FLAIR + T1W computes what the three-modality model computes with a
zero T2W channel; warm starts and export carry the restriction."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from allnet.inference import predict
from allnet.model import ModelConfig, load_model_file, random_bundle, save_model_file

from allnet_training.cli import main as train_main
from allnet_training.modalities import first_conv_key, restrict_modalities, warm_start_states

TINY = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))


def _inputs(shape=(16, 24, 20), seed=3):
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 1.0, (3, *shape)).astype(np.float32)
    anatomy = rng.normal(0.0, 1.0, (6, *shape)).astype(np.float32)
    brain = np.zeros(shape, np.uint8)
    brain[2:-2, 3:-3, 2:-2] = 1
    return images, anatomy, brain


def test_restricted_model_equals_zeroed_channel():
    bundle = random_bundle(ModelConfig(**TINY, modality_dropout=True), n=2, seed=5)
    config, states = restrict_modalities(bundle.config, [m.state_dict() for m in bundle.members], ("flair", "t1"))
    assert config.modalities == ("flair", "t1") and not config.modality_dropout
    assert states[0][first_conv_key(config)].shape[1] == 2
    restricted = random_bundle(config, n=2)
    for member, state in zip(restricted.members, states):
        member.load_state_dict(state)
    images, anatomy, brain = _inputs()
    t2 = bundle.config.modalities.index("t2")
    zeroed = images.copy()
    zeroed[t2] = 0.0
    order = [bundle.config.modalities.index(m) for m in config.modalities]
    anatomy_t = torch.from_numpy(anatomy)[None]
    with torch.no_grad():
        for full_net, small_net in zip(bundle.members, restricted.members):
            full = full_net(torch.from_numpy(zeroed)[None], anatomy_t)["lesion"]
            small = small_net(torch.from_numpy(images[order])[None], anatomy_t)["lesion"]
            with_t2 = full_net(torch.from_numpy(images)[None], anatomy_t)["lesion"]
            same = float((full - small).abs().max())
            assert same < 1e-5 * float(full.abs().max())
            # the T2W channel acts on the unrestricted network far beyond that difference, so the
            # equality is not trivial (a random network damps its inputs, hence no absolute bound)
            assert float((with_t2 - full).abs().max()) > 100 * same
    # and the product's inference path: the same probabilities as a zeroed T2W channel
    full_p = predict(bundle, images, anatomy, brain, device="cpu", modalities_present=["flair", "t1"])
    small_p = predict(restricted, images[order], anatomy, brain, device="cpu")
    assert np.abs(full_p.probability - small_p.probability).max() < 1e-2


def test_restrict_refuses_unknown_or_empty():
    bundle = random_bundle(ModelConfig(**TINY), n=1)
    states = [bundle.members[0].state_dict()]
    with pytest.raises(ValueError, match="cannot restrict"):
        restrict_modalities(bundle.config, states, ())
    two, two_states = restrict_modalities(bundle.config, states, ("flair", "t1"))
    with pytest.raises(ValueError, match="cannot restrict"):
        restrict_modalities(two, two_states, ("flair", "t2"))


def test_warm_start_keeps_weights_of_the_kept_modalities():
    start = random_bundle(ModelConfig(**TINY, modality_dropout=True), n=1, seed=9)
    target = ModelConfig(**TINY, modalities=("flair", "t1"))
    state = warm_start_states(start, target, "start.pt")[0]
    key = first_conv_key(target)
    original = start.members[0].state_dict()[key]
    assert np.array_equal(state[key].numpy(), original[:, :2].numpy())  # flair, t1 are channels 0, 1
    with pytest.raises(ValueError, match="start.pt.*no input weights for \\['t2'\\]"):
        two = random_bundle(target, n=1)
        warm_start_states(two, ModelConfig(**TINY), "start.pt")


def test_export_with_modalities(tmp_path):
    bundle = random_bundle(ModelConfig(**TINY, modality_dropout=True), n=1, seed=1)
    source = tmp_path / "three.pt"
    save_model_file(source, bundle.config, [m.state_dict() for m in bundle.members], {})
    out = tmp_path / "two.pt"
    assert train_main(["export", str(source), "--out", str(out), "--modalities", "flair", "t1"]) == 0
    loaded = load_model_file(out)
    assert loaded.config.modalities == ("flair", "t1")
    images, anatomy, brain = _inputs()
    prediction = predict(loaded, images[:2], anatomy, brain, device="cpu")
    assert prediction.probability.shape == brain.shape


def test_rescore_scores_each_fold_model_without_t2(tmp_path, capsys):
    """Each fold model restricted to FLAIR + T1W predicts its held-out case as the full model
    does with the T2W zeroed (same stored prediction), with reports and a plan; a missing
    fold model is named."""
    from allnet_training.crossval import predict_cached
    from allnet_training.plan_tuning import load_oof

    from helpers_training import tiny_case, tiny_model_config

    cases = [tiny_case(1, "s0"), tiny_case(2, "s1")]
    source = tmp_path / "cv"
    bundles = {}
    for index, case in enumerate(cases):
        bundle = random_bundle(tiny_model_config(), n=1, seed=10 + index)
        save_model_file(source / f"fold_{case.subject_id}" / "bundle.pt", bundle.config,
                        [m.state_dict() for m in bundle.members], {})
        bundles[case.case_id] = load_model_file(source / f"fold_{case.subject_id}" / "bundle.pt")
    from allnet_training.rescore import rescore_crossval

    tuned = rescore_crossval(source, tmp_path / "out", cases, modalities=("flair", "t1"), log=lambda *_: None)
    assert tuned is not None and set(tuned["cases"]) == {"s0", "s1"}
    assert (tmp_path / "out" / "crossval.json").is_file() and (tmp_path / "out" / "plan.json").is_file()
    stored = load_oof(tmp_path / "out")
    for case in cases:
        restricted = load_model_file(tmp_path / "out" / f"fold_{case.subject_id}" / "bundle.pt")
        assert restricted.config.modalities == ("flair", "t1")
        without_t2 = dataclasses.replace(case, present=("flair", "t1"))  # the full model zeroes the T2W
        zeroed = predict_cached(bundles[case.case_id], without_t2).probability
        restored = stored[case.case_id]["probability"].astype(np.float32)
        assert np.abs(restored - zeroed).max() < 2e-3  # float16 storage, bfloat16 inference
    (source / "fold_s1" / "bundle.pt").unlink()
    with pytest.raises(ValueError, match="fold_s1.*no fold model"):
        rescore_crossval(source, tmp_path / "again", cases, modalities=("flair", "t1"), log=lambda *_: None)


def test_rescore_and_export_store_the_averaged_pass_without_t2(tmp_path):
    """``--average-without t2``: the fold models (and an exported file) carry it in their
    config, and the held-out predictions are the mean of the full and the zeroed-T2W pass."""
    from allnet_training.crossval import predict_cached
    from allnet_training.plan_tuning import load_oof
    from allnet_training.rescore import rescore_crossval

    from helpers_training import tiny_case, tiny_model_config

    cases = [tiny_case(1, "s0"), tiny_case(2, "s1")]
    source = tmp_path / "cv"
    for index, case in enumerate(cases):
        bundle = random_bundle(tiny_model_config(), n=1, seed=20 + index)
        save_model_file(source / f"fold_{case.subject_id}" / "bundle.pt", bundle.config,
                        [m.state_dict() for m in bundle.members], {})
    rescore_crossval(source, tmp_path / "avg", cases, average_without=("t2",), log=lambda *_: None)
    stored = load_oof(tmp_path / "avg")
    for case in cases:
        original = load_model_file(source / f"fold_{case.subject_id}" / "bundle.pt")
        changed = load_model_file(tmp_path / "avg" / f"fold_{case.subject_id}" / "bundle.pt")
        assert changed.config.average_without == ("t2",) and original.config.average_without == ()
        full = predict_cached(original, case).probability
        reduced = predict_cached(original, dataclasses.replace(case, present=("flair", "t1"))).probability
        np.testing.assert_allclose(stored[case.case_id]["probability"].astype(np.float32), (full + reduced) / 2,
                                   atol=2e-3)
    out = tmp_path / "exported.pt"
    assert train_main(["export", str(source / "fold_s0" / "bundle.pt"), "--out", str(out),
                       "--average-without", "t2"]) == 0
    assert load_model_file(out).config.average_without == ("t2",)


def test_average_without_must_name_some_of_the_model_inputs():
    with pytest.raises(ValueError, match="average_without"):
        ModelConfig(**TINY, average_without=("dwi",))
    with pytest.raises(ValueError, match="average_without"):
        ModelConfig(**TINY, modalities=("flair",), average_without=("flair",))
    config, _ = restrict_modalities(ModelConfig(**TINY, average_without=("t2",)),
                                    [random_bundle(ModelConfig(**TINY, average_without=("t2",))).members[0].state_dict()],
                                    ("flair", "t1"))
    assert config.average_without == ()  # nothing left to average out
