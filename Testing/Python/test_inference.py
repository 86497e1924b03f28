"""Tests of allnet.inference: cropping, sliding windows, ensembles and votes, flip TTA,
missing modalities, devices, determinism."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from allnet import inference
from allnet.errors import InputError, ResourceError
from allnet.inference import brain_crop, predict, window_starts
from allnet.model import ModelBundle, ModelConfig, random_bundle
from allnet.progress import Progress

SHAPE = (40, 48, 44)  # K, J, I


def tiny_config(**kw) -> ModelConfig:
    base = dict(base_channels=4, depth=3, head_channels=4, head_mlp=(4,))
    base.update(kw)
    return ModelConfig(**base)


def ellipsoid_mask(shape=SHAPE) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    r = ((k - c[0]) / (shape[0] * 0.4)) ** 2 + ((j - c[1]) / (shape[1] * 0.4)) ** 2 \
        + ((i - c[2]) / (shape[2] * 0.4)) ** 2
    return (r < 1).astype(np.uint8)


def case(seed: int = 0, shape=SHAPE, smooth: float = 0.0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((3, *shape)).astype(np.float32)
    if smooth:
        images = np.stack([ndimage.gaussian_filter(c, smooth) * smooth * 2 for c in images])
    mask = ellipsoid_mask(shape)
    images *= mask
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    anatomy = np.stack([(shape[2] / 2 - i) / 100, j / 100, k / 100, np.hypot(i, j) / 100,
                        ndimage.distance_transform_edt(mask) / 20, 1 - mask]).astype(np.float32)
    return images.astype(np.float32), anatomy, mask


class FunctionNet(nn.Module):
    """A stand-in member whose lesion logits are ``fn(image, anatomy)`` (pointwise, no context)."""

    def __init__(self, config: ModelConfig, fn) -> None:
        super().__init__()
        self.config = config
        self.fn = fn

    def forward(self, image, anatomy, *, sphere=True):
        return {"lesion": self.fn(image, anatomy), "sphere": None}

    def activation_bytes_per_voxel(self, bytes_per_value: int = 4) -> float:
        return 100.0 * bytes_per_value


def fn_bundle(*fns, config: ModelConfig | None = None) -> ModelBundle:
    config = config or tiny_config()
    return ModelBundle(config=config, members=[FunctionNet(config, f) for f in fns], meta={})


def test_window_starts_cover_the_axis():
    for size, patch in [(100, 32), (64, 32), (33, 32), (20, 32), (150, 96)]:
        starts = window_starts(size, patch)
        assert starts[0] == 0
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + patch] = True
        assert covered.all()
        assert min(starts[-1] + patch, size) == size
        if len(starts) > 1:  # overlap is at least half a patch
            assert max(np.diff(starts)) <= patch // 2


def test_brain_crop_contains_mask_and_is_a_multiple():
    mask = np.zeros((60, 70, 50), np.uint8)
    mask[20:35, 9:61, 3:40] = 1
    crop = brain_crop(mask, multiple=8, margin=4)
    sizes = [s.stop - s.start for s in crop]
    assert all(n % 8 == 0 for n in sizes), sizes
    assert crop[0].start <= 16 and crop[0].stop >= 39
    assert crop[1].start <= 5 and crop[1].stop >= 65
    assert crop[2].start == 0 and crop[2].stop >= 44  # margin clipped at the volume edge
    assert all(0 <= s.start < s.stop <= n for s, n in zip(crop, mask.shape))
    with pytest.raises(InputError, match="brain mask is empty"):
        brain_crop(np.zeros((8, 8, 8), np.uint8), 8)


def test_majority_vote_and_mean_probability_of_three_members():
    images, anatomy, mask = case()
    rng = np.random.default_rng(1)
    fields = [rng.choice([-2.0, 2.0], size=SHAPE).astype(np.float32) for _ in range(3)]
    anatomy[3:6] = np.stack(fields)  # the 3 members' logits ride on anatomy channels 3..5
    bundle = fn_bundle(*(lambda x, a, c=c: a[:, c:c + 1] for c in (3, 4, 5)))
    pred = predict(bundle, images, anatomy, mask, device="cpu", threshold=0.5)
    p = 1 / (1 + np.exp(-np.stack(fields)))
    expected_mask = ((p > 0.5).sum(0) >= 2) & (mask > 0)
    np.testing.assert_array_equal(pred.mask, expected_mask.astype(np.uint8))
    np.testing.assert_allclose(pred.probability, np.where(mask > 0, p.mean(0), 0), atol=1e-6)
    assert pred.mask.dtype == np.uint8 and pred.probability.dtype == np.float32
    assert pred.probability.shape == SHAPE and pred.n_members == 3 and pred.device_used == "cpu"
    # voxels with 2 of 3 votes are lesion, voxels with 1 of 3 are not
    two_votes = ((np.stack(fields) > 0).sum(0) == 2) & (mask > 0)
    assert two_votes.any() and pred.mask[two_votes].all()
    one_vote = ((np.stack(fields) > 0).sum(0) == 1) & (mask > 0)
    assert not pred.mask[one_vote].any()
    # 'fast' uses the first member only
    fast = predict(bundle, images, anatomy, mask, device="cpu", ensemble="fast")
    assert fast.n_members == 1
    np.testing.assert_array_equal(fast.mask, ((fields[0] > 0) & (mask > 0)).astype(np.uint8))


def test_even_ensemble_tie_is_background():
    images, anatomy, mask = case()
    bundle = fn_bundle(lambda x, a: torch.full_like(a[:, :1], 3.0), lambda x, a: torch.full_like(a[:, :1], -3.0))
    pred = predict(bundle, images, anatomy, mask, device="cpu")
    assert pred.mask.sum() == 0
    np.testing.assert_allclose(pred.probability[mask > 0], 0.5, atol=1e-6)


def test_flip_tta_maps_back_to_the_right_voxels():
    images, anatomy, mask = case()
    mask[:, :, : SHAPE[2] // 2 - 6] = 0  # asymmetric brain: left-right errors would show
    # logits a function of true position (anatomy x channel) and of the image
    pos_net = fn_bundle(lambda x, a: 30 * a[:, :1] + x[:, :1])
    plain = predict(pos_net, images, anatomy, mask, device="cpu")
    tta = predict(pos_net, images, anatomy, mask, device="cpu", tta=True)
    np.testing.assert_allclose(tta.probability, plain.probability, atol=1e-6)
    np.testing.assert_array_equal(tta.mask, plain.mask)
    assert 0 < plain.mask.sum() < mask.sum()
    # a net that only sees the tensor index along W: TTA averages it with its mirror
    ramp = torch.linspace(-3, 3, SHAPE[2])
    idx_net = fn_bundle(lambda x, a: ramp.to(x.device)[: x.shape[-1]].expand_as(x[:, :1]).clone())
    crop = brain_crop(mask, 4)
    r = np.linspace(-3, 3, SHAPE[2])[: crop[2].stop - crop[2].start]
    expected = 0.5 * (1 / (1 + np.exp(-r)) + 1 / (1 + np.exp(-r[::-1])))
    out = predict(idx_net, images, anatomy, mask, device="cpu", tta=True)
    inside = mask[crop] > 0
    got = out.probability[crop]
    np.testing.assert_allclose(got[inside], np.broadcast_to(expected, inside.shape)[inside], atol=1e-6)


def test_whole_volume_and_sliding_window_agree_on_a_smooth_model():
    images, anatomy, mask = case(seed=2, smooth=3.0)
    bundle = random_bundle(tiny_config(depth=3), n=1, seed=4)
    net = bundle.members[0]
    with torch.no_grad():  # amplify and centre the logits so probabilities vary over the brain
        last = net.lesion_head.mlp[-1]
        last.weight.mul_(10.0)
        logits = net(torch.from_numpy(images)[None], torch.from_numpy(anatomy)[None])["lesion"]
        last.bias.sub_(float(logits[0, 0].numpy()[mask > 0].mean()))
    whole = predict(bundle, images, anatomy, mask, device="cpu")
    sliding = predict(bundle, images, anatomy, mask, device="cpu", patch_size=(24, 24, 24))
    assert whole.mode == "whole" and sliding.mode == "sliding" and sliding.n_windows >= 12
    inside = mask > 0
    spread = whole.probability[inside].std()
    assert spread > 0.01  # the model's output varies over the brain
    diff = np.abs(whole.probability - sliding.probability)[inside]
    # differences come only from zero padding at window borders, damped by the Gaussian
    # weights; a window misplaced by even 2 voxels would give a mean difference ~1.5 spread
    assert diff.mean() < 0.02 * spread
    assert np.percentile(diff, 99) < 0.15 * spread
    # a pointwise model is reproduced exactly by the Gaussian-weighted blend
    point = fn_bundle(lambda x, a: 2 * x[:, :1] - a[:, 4:5])
    a = predict(point, images, anatomy, mask, device="cpu")
    b = predict(point, images, anatomy, mask, device="cpu", patch_size=(16, 20, 12))
    np.testing.assert_allclose(a.probability, b.probability, atol=1e-6)


def test_low_memory_switches_to_sliding_windows(monkeypatch):
    bundle = random_bundle(tiny_config(), n=1)
    images, anatomy, mask = case()
    per_voxel = bundle.members[0].activation_bytes_per_voxel() * inference.MEMORY_SAFETY
    monkeypatch.setattr(inference, "_available_bytes", lambda dev: int(per_voxel * 33 ** 3))
    pred = predict(bundle, images, anatomy, mask, device="cpu")
    assert pred.mode == "sliding" and max(pred.patch_size) <= 32
    monkeypatch.setattr(inference, "_available_bytes", lambda dev: 1000)
    with pytest.raises(ResourceError, match="memory"):
        predict(bundle, images, anatomy, mask, device="cpu")


def test_repeated_predict_is_bit_identical_on_cpu():
    bundle = random_bundle(tiny_config(), n=2, seed=1)
    images, anatomy, mask = case(seed=3, shape=(32, 32, 32))
    runs = [predict(bundle, images, anatomy, mask, device="cpu", tta=True) for _ in range(2)]
    assert np.array_equal(runs[0].probability, runs[1].probability)
    assert np.array_equal(runs[0].mask, runs[1].mask)
    s = [predict(bundle, images, anatomy, mask, device="cpu", ensemble="fast", patch_size=(16, 32, 24))
         for _ in range(2)]
    assert s[0].n_windows == 6
    assert np.array_equal(s[0].probability, s[1].probability)
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is restored


def test_outputs_zero_outside_the_brain():
    images, anatomy, mask = case()
    bundle = fn_bundle(lambda x, a: torch.full_like(a[:, :1], 5.0))
    pred = predict(bundle, images, anatomy, mask, device="cpu")
    assert pred.probability[mask == 0].max() == 0 and pred.mask[mask == 0].max() == 0
    assert pred.mask[mask > 0].all()


def test_missing_modality_is_zeroed_and_warned_unless_trained_for_it():
    images, anatomy, mask = case()
    images[2] = 7.0 * mask  # a T2 channel the caller forgot to zero
    get_t2 = lambda x, a: x[:, 2:3]  # noqa: E731
    bundle = fn_bundle(get_t2)
    with pytest.warns(RuntimeWarning, match=r"\['t2'\]"):
        pred = predict(bundle, images, anatomy, mask, device="cpu", modalities_present=["flair", "t1"])
    np.testing.assert_allclose(pred.probability[mask > 0], 0.5)  # sigmoid(0): channel was zeroed
    trained = fn_bundle(get_t2, config=tiny_config(modality_dropout=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(trained, images, anatomy, mask, device="cpu", modalities_present=["flair", "t1"])
    with pytest.raises(InputError, match="dwi"):
        predict(bundle, images, anatomy, mask, device="cpu", modalities_present=["flair", "dwi"])
    with pytest.raises(InputError, match="no input modality"):
        predict(bundle, images, anatomy, mask, device="cpu", modalities_present=[])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU exists")
def test_cuda_without_gpu_is_a_clear_input_error():
    images, anatomy, mask = case()
    bundle = fn_bundle(lambda x, a: x[:, :1])
    with pytest.raises(InputError, match="no CUDA GPU"):
        predict(bundle, images, anatomy, mask, device="cuda")
    assert predict(bundle, images, anatomy, mask, device="auto").device_used == "cpu"


def test_bad_arguments_are_input_errors():
    images, anatomy, mask = case()
    bundle = fn_bundle(lambda x, a: x[:, :1])
    bad = [dict(images=images[:2]), dict(anatomy=anatomy[:5]), dict(brain_mask=mask[:-1]),
           dict(device="tpu"), dict(ensemble="all"), dict(threshold=1.5),
           dict(brain_mask=np.zeros_like(mask)), dict(patch_size=(16, 16))]
    for change in bad:
        args = dict(images=images, anatomy=anatomy, brain_mask=mask, device="cpu") | change
        with pytest.raises(InputError):
            predict(bundle, args.pop("images"), args.pop("anatomy"), args.pop("brain_mask"), **args)
    nan_images = images.copy()
    nan_images[0, SHAPE[0] // 2, SHAPE[1] // 2, SHAPE[2] // 2] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        predict(bundle, nan_images, anatomy, mask, device="cpu")


def test_progress_reports_every_member_flip_and_window():
    images, anatomy, mask = case()
    bundle = fn_bundle(lambda x, a: x[:, :1], lambda x, a: x[:, 1:2])
    seen: list[tuple[float, str]] = []
    progress = Progress(lambda stage, fraction, message: seen.append((fraction, message)))
    progress.stage("network", 0.6)
    seen.clear()
    pred = predict(bundle, images, anatomy, mask, device="cpu", tta=True, patch_size=(24, 48, 44),
                   progress=progress, progress_span=(0.6, 0.9))
    assert len(seen) == 2 * 2 * pred.n_windows
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(0.9) and fractions[0] > 0.6
    assert seen[-1][1].startswith("member 2/2, flip 2/2, window")


@pytest.mark.realdata
def test_predict_on_a_real_mni_case_covers_the_whole_brain(shared_data):
    """A real skull-stripped case on the full working grid: the crop holds the whole brain."""
    import SimpleITK as sitk

    from allnet.grid import WORKING_SHAPE_KJI, mni_ras_coordinates

    folder = shared_data / "lesjak2018" / "mni" / "patient07"
    images = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{m}.nii.gz"), sitk.sitkFloat32))
                       for m in ("FLAIR", "T1", "T2")])
    mask = (images[0] > 0).astype(np.uint8)
    images = (images / images.reshape(3, -1).max(axis=1)[:, None, None, None]).astype(np.float32)
    xyz = mni_ras_coordinates() / 100.0
    anatomy = np.concatenate([xyz, np.linalg.norm(xyz, axis=0)[None],
                              np.zeros((2, *WORKING_SHAPE_KJI), np.float32)]).astype(np.float32)
    bundle = fn_bundle(lambda x, a: 4 * x[:, :1] - 1)  # bright FLAIR -> lesion
    pred = predict(bundle, images, anatomy, mask, device="cpu")
    assert pred.probability.shape == WORKING_SHAPE_KJI and pred.mask.shape == WORKING_SHAPE_KJI
    expected = 1 / (1 + np.exp(-(4 * images[0] - 1)))
    np.testing.assert_allclose(pred.probability[mask > 0], expected[mask > 0], atol=1e-5)
    assert pred.probability[mask == 0].max() == 0
    assert all((s.stop - s.start) % bundle.config.multiple == 0 for s in pred.crop)
    for axis, s in enumerate(pred.crop):
        nz = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        assert s.start <= nz[0] and s.stop > nz[-1]


def test_cpu_precision_follows_the_processor_and_stays_close_to_float32(monkeypatch) -> None:
    """On a CPU with native bfloat16 the network runs under bfloat16 autocast; its probabilities
    stay within a few hundredths of float32, and the choice is reported."""
    bundle = random_bundle(tiny_config(), n=1, seed=4)
    images, anatomy, mask = case(seed=2, smooth=1.5)
    chosen = predict(bundle, images, anatomy, mask, device="cpu")
    assert chosen.precision == ("bf16" if inference.cpu_supports_bf16() else "fp32")
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: False)
    fp32 = predict(bundle, images, anatomy, mask, device="cpu")
    assert fp32.precision == "fp32"
    assert np.abs(chosen.probability - fp32.probability).max() < 0.03


def test_average_without_t2_averages_a_pass_with_the_t2w_zeroed():
    """``average_without=('t2',)``: each member's probability is the mean of the full pass and
    a pass with the T2W channel zeroed, and the member votes on that mean; without a T2W the
    second pass would repeat the first and is skipped."""
    images, anatomy, mask = case()
    flair, t2 = (tiny_config().modalities.index(m) for m in ("flair", "t2"))
    bundle = fn_bundle(lambda x, a: 3 * x[:, flair:flair + 1] + 3 * x[:, t2:t2 + 1],
                       config=tiny_config(modality_dropout=True))
    inside = mask > 0
    full = 1 / (1 + np.exp(-(3 * images[flair] + 3 * images[t2])))
    reduced = 1 / (1 + np.exp(-3 * images[flair]))
    pred = predict(bundle, images, anatomy, mask, device="cpu", average_without=("t2",))
    np.testing.assert_allclose(pred.probability[inside], ((full + reduced) / 2)[inside], atol=2e-2)
    mean = (full + reduced) / 2
    sure = inside & (np.abs(mean - 0.5) > 2e-2)  # away from the threshold by more than bfloat16 rounding
    assert np.array_equal(pred.mask[sure] > 0, mean[sure] > 0.5)
    plain = predict(bundle, images, anatomy, mask, device="cpu")
    assert np.abs(plain.probability - pred.probability).max() > 0.1  # the averaging did something
    without_t2 = predict(bundle, images, anatomy, mask, device="cpu", average_without=("t2",),
                         modalities_present=["flair", "t1"])
    np.testing.assert_allclose(without_t2.probability[inside], reduced[inside], atol=2e-2)
    with pytest.raises(InputError, match="dwi"):
        predict(bundle, images, anatomy, mask, device="cpu", average_without=("dwi",))
