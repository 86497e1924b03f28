"""Training options for speed and staging: CPU bfloat16 autocast, channels-last, warm start,
snapshots."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from allnet.model import load_model_file
from allnet_training.patches import CropSampler
from allnet_training.trainer import TrainConfig, train

from helpers_training import tiny_case, tiny_model_config, tiny_sampler_config

pytestmark = pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                                reason="this CPU has no bfloat16 support")


@pytest.fixture(scope="module")
def sampler():
    return CropSampler([tiny_case(0), tiny_case(1)], tiny_sampler_config())


def test_bf16_channels_last_training_learns_and_is_deterministic(sampler):
    cfg = TrainConfig(epochs=2, steps_per_epoch=6, batch_size=2, lr=3e-3, device="cpu",
                      precision="bf16", channels_last=True)
    a = train(tiny_model_config(), cfg, sampler, progress=False)
    b = train(tiny_model_config(), cfg, sampler, progress=False)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert all(v.dtype == torch.float32 for v in a.state_dict.values() if v.is_floating_point())
    first = sum(r["total"] for r in a.log[:3])
    last = sum(r["total"] for r in a.log[-3:])
    assert last < first


def test_unknown_precision_is_refused(sampler):
    with pytest.raises(ValueError, match="precision"):
        train(tiny_model_config(), TrainConfig(epochs=1, steps_per_epoch=1, device="cpu", precision="fp8"),
              sampler, progress=False)


def test_warm_start_begins_from_the_given_weights_and_snapshots_are_model_files(sampler, tmp_path):
    cfg = TrainConfig(epochs=2, steps_per_epoch=2, batch_size=2, device="cpu", snapshot_every=1)
    start = train(tiny_model_config(), replace(cfg, seed=5, lr=0.0), sampler, progress=False)
    warm = train(tiny_model_config(), replace(cfg, lr=0.0), sampler, tmp_path / "run",
                 progress=False, init_state=start.state_dict)
    # lr 0: weights stay where the warm start put them, not at seed 0's initialisation
    assert all(torch.equal(warm.state_dict[k], start.state_dict[k]) for k in start.state_dict
               if start.state_dict[k].is_floating_point() and "running" not in k)
    snaps = sorted((tmp_path / "run" / "snapshots").glob("step*.pt"))
    assert [p.name for p in snaps] == ["step2.pt", "step4.pt"]
    assert load_model_file(snaps[-1]).meta["step"] == 4


def test_crossval_warm_start_uses_the_same_folds_model(tmp_path):
    from allnet_training.crossval import run_crossval

    cases = [tiny_case(0, "A"), tiny_case(1, "B")]
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, device="cpu", lr=3e-3)
    first = run_crossval(cases, tmp_path / "stage1", tiny_model_config(), cfg, tiny_sampler_config(), [0],
                         progress=False, log=lambda *_: None)
    second = run_crossval(cases, tmp_path / "stage2", tiny_model_config(), replace(cfg, lr=0.0),
                          tiny_sampler_config(), [0], progress=False, log=lambda *_: None,
                          init_from=tmp_path / "stage1")
    for a, b in zip(first, second):
        assert a.subject == b.subject
        start = load_model_file(a.bundle_path).members[0].state_dict()
        end = load_model_file(b.bundle_path).members[0].state_dict()
        assert all(torch.equal(start[k], end[k]) for k in start if start[k].is_floating_point() and "running" not in k)
