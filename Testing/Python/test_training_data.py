"""Case lists, development cases, augmentation and crop sampling."""
from __future__ import annotations

import pytest
import torch

from allnet.errors import InputError
import numpy as np

from allnet_training.augment import NO_AUGMENTATION, AugmentConfig, augment, tissue_contrast
from allnet_training.data import Case, dev_cases, leave_one_subject_out, read_case_list, write_case_list
from allnet_training.patches import CropSampler, SamplerConfig

from helpers_training import tiny_case, tiny_sampler_config


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_case_list_round_trip_and_relative_paths(tmp_path):
    d = tmp_path / "data"
    files = {n: _touch(d / "a" / f"{n}.nii.gz") for n in ("t1", "t2", "flair", "mask")}
    _touch(d / "b" / "t1.nii.gz"), _touch(d / "b" / "flair.nii.gz"), _touch(d / "b" / "mask.nii.gz")
    csv = d / "cases.csv"
    csv.write_text("case_id,subject_id,t1,t2,flair,mask\n"
                   "a,s1,a/t1.nii.gz,a/t2.nii.gz,a/flair.nii.gz,a/mask.nii.gz\n"
                   "b,s1,b/t1.nii.gz,,b/flair.nii.gz,b/mask.nii.gz\n")
    cases = read_case_list(csv)
    assert [c.case_id for c in cases] == ["a", "b"]
    assert cases[0].t2 == files["t2"].resolve() and cases[1].t2 is None
    out = tmp_path / "other" / "copy.csv"
    write_case_list(cases, out)
    assert read_case_list(out) == cases


def test_case_list_errors_name_the_file(tmp_path):
    csv = tmp_path / "cases.csv"
    csv.write_text("case_id,t1,flair\nx,t1.nii.gz,f.nii.gz\n")
    with pytest.raises(InputError, match="mask"):
        read_case_list(csv)
    csv.write_text("case_id,subject_id,t1,t2,flair,mask\nx,s,t1.nii.gz,,f.nii.gz,m.nii.gz\n")
    with pytest.raises(InputError, match="t1.nii.gz"):
        read_case_list(csv)


def test_leave_one_subject_out_keeps_visits_together():
    def case(name: str, subject: str) -> Case:
        return Case(name, subject, *(f"/{name}/{r}" for r in ("t1", "flair", "mask")))

    cases = [case("P14_T1", "P14"), case("p07", "p07"), case("P14_T2", "P14"), case("p19", "p19")]
    folds = leave_one_subject_out(cases)
    assert [f[0] for f in folds] == ["P14", "p07", "p19"]
    assert [c.case_id for c in folds[0][2]] == ["P14_T1", "P14_T2"]
    for subject, train, test in folds:
        assert {c.subject_id for c in test} == {subject}
        assert subject not in {c.subject_id for c in train}


def test_dev_cases(shared_data):
    cases = dev_cases(shared_data)
    assert [c.case_id for c in cases] == ["patient07", "patient19", "P14_T1", "P14_T2", "P14_T3"]
    assert [c.subject_id for c in cases] == ["patient07", "patient19", "P14", "P14", "P14"]
    assert cases[2].t2 is None and all(c.t2 is not None for c in cases if c.case_id != "P14_T1")
    assert len(leave_one_subject_out(cases)) == 3


def _ramp_region(shape=(20, 30, 30)):
    k, j, i = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    images = torch.stack([i, j, k]) / 10
    anatomy = torch.stack([i, j, k, i + j, j + k, k + i]) / 100
    labels = torch.zeros(2, *shape)
    labels[0, 8:12, 13:17, 5:9] = 1
    labels[1] = labels[0]
    brain = torch.ones(1, *shape)
    return images, anatomy, labels, brain


def test_identity_augmentation_is_a_centre_crop():
    images, anatomy, labels, brain = _ramp_region()
    out = augment(images, anatomy, labels, brain, (10, 20, 20), NO_AUGMENTATION, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0], images[:, 5:15, 5:25, 5:25], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], anatomy[:, 5:15, 5:25, 5:25], atol=1e-4, rtol=0)
    assert torch.equal(out[2], labels[:, 5:15, 5:25, 5:25])


def test_augmentation_moves_everything_together_and_is_deterministic():
    images, anatomy, labels, brain = _ramp_region()
    cfg = AugmentConfig(flip_p=1.0, intensity_scale=0.0, intensity_shift=0.0, t2_dropout=0.0)
    a = augment(images, anatomy, labels, brain, (12, 20, 20), cfg, torch.Generator().manual_seed(3))
    b = augment(images, anatomy, labels, brain, (12, 20, 20), cfg, torch.Generator().manual_seed(3))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    img, ana, lab, _ = a
    # channel 0 of images and anatomy are both the i coordinate (scaled): still proportional
    torch.testing.assert_close(img[0] / 10, ana[0], atol=1e-4, rtol=0)
    # after the LR flip, i decreases along the last axis
    assert (img[0][..., 0] > img[0][..., -1]).float().mean() > 0.9
    # the lesion label sits where the warped coordinates say the lesion was
    inside = lab[0] > 0
    assert inside.any()
    assert ((img[0][inside] * 10 >= 4) & (img[0][inside] * 10 <= 10)).all()


def test_intensity_augmentation_and_modality_dropout():
    images, anatomy, labels, brain = _ramp_region()
    brain[:, :, :, :3] = 0
    cfg = AugmentConfig(flip_p=0, rotate_deg=0, scale=(1, 1), elastic_p=0, intensity_scale=0.2,
                        intensity_shift=0.2, t2_dropout=1.0)
    img, _, _, brn = augment(images, anatomy, labels, brain, (20, 30, 30), cfg,
                             torch.Generator().manual_seed(1), t2_channel=2, absent=(1,))
    assert torch.all(img[2] == 0) and torch.all(img[1] == 0)
    assert torch.all(img[0][brn[0] == 0] == 0)
    assert not torch.allclose(img[0], images[0])


def test_sampler_is_a_function_of_the_seed_and_finds_lesions():
    cases = [tiny_case(0), tiny_case(1, with_t2=False)]
    sampler = CropSampler(cases, SamplerConfig(crop=(16, 24, 24), lesion_p=1.0,
                                               augment=NO_AUGMENTATION,
                                               synthetic=tiny_sampler_config().synthetic))
    a, b = sampler.sample(11), sampler.sample(11)
    for key in a:
        assert torch.equal(a[key], b[key])
    assert a["image"].shape == (3, 16, 24, 24) and a["anatomy"].shape == (6, 16, 24, 24)
    hits = [sampler.sample(s)["lesion"].sum() > 0 for s in range(10)]
    assert all(hits)  # lesion-centred crops always contain lesion voxels
    spheres = sampler.sample(5)["sphere"]
    assert spheres.sum() > sampler.sample(5)["lesion"].sum()  # 10 mm balls around small lesions


def _tissue_region():
    """Layers along K: CSF, GM, WM (with a lesion inside) and background outside the brain."""
    tissue = np.zeros((24, 16, 16), np.uint8)
    tissue[2:8], tissue[8:14], tissue[14:22] = 1, 2, 3
    lesion = np.zeros_like(tissue)
    lesion[16:20, 6:10, 6:10] = 1
    brain = (tissue > 0).astype(np.uint8)
    base = {1: -2.0, 2: 0.3, 3: 0.0}
    flair = np.vectorize(lambda t: base.get(int(t), 0.0))(tissue).astype(np.float32)
    flair[lesion > 0] = 2.0
    images = np.stack([flair, -flair, np.zeros_like(flair)])  # third modality absent
    return images, tissue, lesion, brain


def test_tissue_contrast_moves_grey_matter_csf_and_lesion_contrast():
    images, tissue, lesion, brain = _tissue_region()
    cfg = AugmentConfig(gm_shift=0.8, csf_shift=0.5, lesion_contrast=(0.5, 0.5))
    gen = torch.Generator().manual_seed(0)
    out = tissue_contrast(images, tissue, lesion, brain, cfg, gen)
    gen = torch.Generator().manual_seed(0)
    from allnet_training.augment import _uniform
    gm, csf = (_uniform(gen, -1, 1, 3) * 0.8).numpy(), (_uniform(gen, -1, 1, 3) * 0.5).numpy()
    core_gm, core_csf, core_wm = (slice(10, 12),), (slice(4, 6),), (slice(17, 19), slice(0, 3))
    for c in range(2):
        assert np.allclose(out[c][core_gm] - images[c][core_gm], gm[c], atol=1e-3)
        assert np.allclose(out[c][core_csf] - images[c][core_csf], csf[c], atol=1e-3)
        assert np.allclose(out[c][core_wm], images[c][core_wm], atol=1e-3)
        # the lesion centre keeps half of its difference from white matter (factor 0.5)
        assert out[c][17, 7, 7] == pytest.approx(images[c][17, 7, 7] * 0.5, abs=0.05)
    assert np.all(out[2] == 0)                      # absent modality stays empty
    assert np.all(out[:, brain == 0] == 0)          # nothing outside the brain
    assert np.array_equal(images, _tissue_region()[0])  # input untouched


def test_tissue_contrast_off_is_identity():
    images, tissue, lesion, brain = _tissue_region()
    out = tissue_contrast(images, tissue, lesion, brain, NO_AUGMENTATION, torch.Generator().manual_seed(0))
    assert np.array_equal(out, images)


def test_contrast_augmentation_is_an_option_off_by_default():
    from allnet_training.augment import CONTRAST_AUGMENTATION
    from allnet_training.cli import _configs, build_parser

    base = ["train", "--dev-data", "data", "--out", "runs"]
    _, plain, _ = _configs(build_parser().parse_args(base))
    _, contrast, _ = _configs(build_parser().parse_args(base + ["--contrast-augment"]))
    assert (plain.augment.gm_shift, plain.augment.lesion_contrast) == (0.0, (1.0, 1.0))
    for key, value in CONTRAST_AUGMENTATION.items():
        assert getattr(contrast.augment, key) == value
    # switched off, it leaves the crop and the random stream untouched
    images, tissue, lesion, brain = _tissue_region()
    gen = torch.Generator().manual_seed(5)
    assert tissue_contrast(images, tissue, lesion, brain, plain.augment, gen) is images
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(5)))


def _noisy_region(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (3, 16, 24, 24): two noisy channels of std 1 and an absent (zero) one, and a
    brain mask (1, ...) that leaves a 3-voxel border out."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn((3, 16, 24, 24), generator=gen)
    images[1] = 0
    brain = torch.zeros((1, 16, 24, 24))
    brain[:, 3:-3, 3:-3, 3:-3] = 1
    return images * brain, brain


def test_acquisition_augmentation_blurs_or_adds_noise_inside_the_brain_only():
    from allnet_training.augment import acquisition

    images, brain = _noisy_region()
    inside = brain[0] > 0
    blurred = acquisition(images, brain, AugmentConfig(blur_p=1.0, blur_sigma=(0.8, 0.8)),
                          torch.Generator().manual_seed(0))
    noisier = acquisition(images, brain, AugmentConfig(noise_p=1.0, noise_sd=(0.5, 0.5)),
                          torch.Generator().manual_seed(0))
    assert float(blurred[0][inside].std()) < 0.5          # white noise of std 1, smoothed
    assert abs(float(noisier[0][inside].std()) - (1 + 0.5 ** 2) ** 0.5) < 0.05
    # the brain's edge keeps its level: a constant image stays constant when blurred
    flat = acquisition(brain.expand(3, -1, -1, -1).clone(), brain, AugmentConfig(blur_p=1.0),
                       torch.Generator().manual_seed(1))
    torch.testing.assert_close(flat[0][inside], torch.ones(int(inside.sum())), atol=1e-4, rtol=0)
    for out in (blurred, noisier):
        assert torch.all(out[:, ~inside] == 0) and torch.all(out[1] == 0)  # outside, absent channel
    again = acquisition(images, brain, AugmentConfig(noise_p=1.0, noise_sd=(0.5, 0.5)),
                        torch.Generator().manual_seed(0))
    assert torch.equal(noisier, again)


def test_acquisition_augmentation_is_an_option_off_by_default():
    from allnet_training.augment import ACQUISITION_AUGMENTATION, acquisition
    from allnet_training.cli import _configs, build_parser

    base = ["train", "--dev-data", "data", "--out", "runs"]
    _, plain, _ = _configs(build_parser().parse_args(base))
    _, on, _ = _configs(build_parser().parse_args(base + ["--acquisition-augment"]))
    assert (plain.augment.noise_p, plain.augment.blur_p) == (0.0, 0.0)
    assert all(getattr(on.augment, k) == v for k, v in ACQUISITION_AUGMENTATION.items())
    assert (on.domain_augment.noise_p, on.domain_augment.blur_p) == (0.0, 0.0)  # synthetic: own noise
    images, brain = _noisy_region()
    gen = torch.Generator().manual_seed(5)
    assert acquisition(images, brain, plain.augment, gen) is images
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(5)))
