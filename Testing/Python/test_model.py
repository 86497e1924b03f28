"""Tests of allnet.model: network shapes, AnaConv, BN folding, model files (safe loading)."""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import pytest
import torch

from allnet import model as model_mod
from allnet.errors import ModelError
from allnet.model import (ALLNet, ModelBundle, ModelConfig, bundled_model_path, fused_for_inference,
                          load_model_file, random_bundle, save_model_file)


def tiny_config(**kw) -> ModelConfig:
    base = dict(base_channels=4, depth=3, head_channels=4, head_mlp=(4,))
    base.update(kw)
    return ModelConfig(**base)


def randomise_bn(net: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give BatchNorm layers non-trivial running statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return net


def inputs(shape=(32, 32, 32), seed: int = 0, n_mod: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, n_mod, *shape, generator=g), torch.randn(1, 6, *shape, generator=g)


@pytest.mark.parametrize("anaconv", [True, False])
@pytest.mark.parametrize("sphere_head", [True, False])
@pytest.mark.parametrize("upsample", ["transpose", "trilinear"])
def test_forward_shapes_all_variants(anaconv, sphere_head, upsample):
    torch.manual_seed(0)
    net = ALLNet(tiny_config(anaconv=anaconv, sphere_head=sphere_head, upsample=upsample)).eval()
    x, a = inputs((32, 32, 32))
    with torch.no_grad():
        out = net(x, a)
    assert out["lesion"].shape == (1, 1, 32, 32, 32)
    if sphere_head:
        assert out["sphere"].shape == (1, 1, 32, 32, 32)
        assert not torch.equal(out["sphere"], out["lesion"])  # separate heads
    else:
        assert out["sphere"] is None


@pytest.mark.parametrize("shape", [(17, 30, 23), (33, 32, 31), (5, 7, 9)])
def test_odd_sizes_are_padded_and_cropped_back(shape):
    torch.manual_seed(0)
    net = ALLNet(tiny_config(depth=4)).eval()
    x, a = inputs(shape)
    with torch.no_grad():
        out = net(x, a)
        no_sphere = net(x, a, sphere=False)
    assert out["lesion"].shape == (1, 1, *shape)
    assert out["sphere"].shape == (1, 1, *shape)
    assert no_sphere["sphere"] is None
    assert torch.equal(no_sphere["lesion"], out["lesion"])


def test_batch_of_two_and_wrong_channel_count():
    net = ALLNet(tiny_config()).eval()
    x, a = inputs((16, 16, 16))
    with torch.no_grad():
        out = net(torch.cat([x, x]), torch.cat([a, a]))
    assert out["lesion"].shape == (2, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="image must be"):
        net(x[:, :2], a)
    with pytest.raises(ValueError, match="anatomy must be"):
        net(x, a[:, :5])


def test_anaconv_uses_the_anatomy_channels():
    torch.manual_seed(0)
    with_ana = randomise_bn(ALLNet(tiny_config(anaconv=True))).eval()
    torch.manual_seed(0)
    without = randomise_bn(ALLNet(tiny_config(anaconv=False))).eval()
    x, a = inputs((24, 24, 24))
    a2 = a.clone()
    a2[:, 4] += 1.0  # e.g. every voxel 20 mm further from CSF
    with torch.no_grad():
        for head in ("lesion", "sphere"):
            diff = (with_ana(x, a)[head] - with_ana(x, a2)[head]).abs()
            assert diff.mean() > 1e-3, head
            assert torch.equal(without(x, a)[head], without(x, a2)[head]), head
    # only the AnaConv layer's input width differs between the variants
    widths = {n: p.shape for n, p in with_ana.named_parameters()}
    widths_off = {n: p.shape for n, p in without.named_parameters()}
    differing = sorted(n for n in widths if widths[n] != widths_off[n])
    assert differing == ["lesion_head.anaconv.0.weight", "sphere_head.anaconv.0.weight"]


def test_fused_for_inference_matches_eval_network():
    torch.manual_seed(3)
    net = randomise_bn(ALLNet(tiny_config())).eval()
    x, a = inputs((20, 24, 28))
    fused = fused_for_inference(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())  # original untouched
    with torch.no_grad():
        ref, out = net(x, a), fused(x, a)
    for head in ("lesion", "sphere"):
        torch.testing.assert_close(out[head], ref[head], rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_validation():
    cfg = ModelConfig(modalities=("flair", "t1"), base_channels=8, head_mlp=(16, 8),
                      modality_dropout=True, meta={"data": ["lesjak2018"], "seed": 3})
    d = cfg.to_dict()
    assert d["modalities"] == ["flair", "t1"] and d["head_mlp"] == [16, 8]
    again = ModelConfig.from_dict(d)
    assert again == cfg and again.modalities == ("flair", "t1")
    assert ModelConfig().multiple == 8 and ModelConfig().depth == 4
    with pytest.raises(ValueError, match="unknown config keys"):
        ModelConfig.from_dict({**d, "colour": "red"})
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(norm="group")
    with pytest.raises(ValueError, match="unknown modalities"):
        ModelConfig(modalities=("flair", "dwi"))
    with pytest.raises(ValueError, match="base_channels"):
        ModelConfig(base_channels=0)
    with pytest.raises(ValueError, match="anaconv"):
        ModelConfig(anaconv="yes")


def test_save_load_round_trip_fp32_identical(tmp_path):
    cfg = tiny_config(meta={"training_data": "synthetic"})
    bundle = random_bundle(cfg, n=2, seed=5)
    for m in bundle.members:
        randomise_bn(m)
    path = tmp_path / "m.pt"
    save_model_file(path, cfg, [m.state_dict() for m in bundle.members], {"command": "allnet-train x", "epochs": 3})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left
    loaded = load_model_file(path)
    assert isinstance(loaded, ModelBundle) and loaded.path == path
    assert loaded.config == cfg and loaded.meta == {"command": "allnet-train x", "epochs": 3}
    assert len(loaded.members) == 2 and all(not m.training for m in loaded.members)
    x, a = inputs((16, 24, 16))
    with torch.no_grad():
        for orig, new in zip(bundle.members, loaded.members):
            assert torch.equal(orig(x, a)["lesion"], new(x, a)["lesion"])
            assert torch.equal(orig(x, a)["sphere"], new(x, a)["sphere"])
    with torch.no_grad():  # members differ from each other
        assert not torch.equal(loaded.members[0](x, a)["lesion"], loaded.members[1](x, a)["lesion"])


def test_save_load_fp16_storage_is_smaller_and_close(tmp_path):
    cfg = tiny_config()
    net = randomise_bn(random_bundle(cfg, 1, seed=2).members[0])
    p32, p16 = tmp_path / "a.pt", tmp_path / "b.pt"
    save_model_file(p32, cfg, [net.state_dict()], {})
    save_model_file(p16, cfg, [net.state_dict()], {}, fp16=True)
    assert p16.stat().st_size < 0.75 * p32.stat().st_size
    loaded = load_model_file(p16).members[0]
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x, a = inputs((16, 16, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, a)["lesion"], net(x, a)["lesion"], rtol=1e-2, atol=1e-2)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('ALLNET_TEST_MARKER', '/nonexistent/x')}",))


class _Innocent:
    def __init__(self) -> None:
        self.value = 3


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("payload_kind", ["reduce", "instance"])
def test_pickle_with_code_is_refused_and_not_executed(tmp_path, monkeypatch, payload_kind):
    marker = tmp_path / "executed"
    monkeypatch.setenv("ALLNET_TEST_MARKER", str(marker))
    cfg = tiny_config()
    payload = {"format": "allnet-model", "format_version": 1, "config": cfg.to_dict(),
               "members": [random_bundle(cfg).members[0].state_dict()],
               "meta": {"x": _Evil() if payload_kind == "reduce" else _Innocent()}, "fp16": False}
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    with pytest.raises(ModelError, match="evil.pt") as info:
        load_model_file(path)
    assert not marker.exists()
    # torch's advice to allow the class (add_safe_globals / weights_only=False) is not passed on
    assert "add_safe_globals" not in str(info.value) and "weights_only" not in str(info.value)
    # the same object as a bare pickle file (not torch's zip format) is refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ModelError, match="raw.pt"):
        load_model_file(raw)
    assert not marker.exists()


def test_truncated_garbage_and_missing_files(tmp_path):
    cfg = tiny_config()
    good = tmp_path / "good.pt"
    save_model_file(good, cfg, [random_bundle(cfg).members[0].state_dict()], {})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    rng = random.Random(0)
    garbage = []
    for index in range(60):  # random bytes break the unpickler in many different ways
        garbage.append(tmp_path / f"garbage{index}.pt")
        garbage[-1].write_bytes(rng.randbytes(rng.randint(1, 3000)))
    for path in (truncated, empty, tmp_path / "absent.pt", *garbage):
        with pytest.raises(ModelError, match=path.name):
            load_model_file(path)
    with pytest.raises(ModelError, match="is a folder, not a model file"):
        load_model_file(tmp_path)


def _write(path: Path, **changes) -> Path:
    cfg = tiny_config()
    payload = {"format": "allnet-model", "format_version": 1, "config": cfg.to_dict(),
               "members": [random_bundle(cfg).members[0].state_dict()], "meta": {}, "fp16": False}
    payload.update(changes)
    for key in [k for k, v in payload.items() if v is _DROP]:
        del payload[key]
    torch.save(payload, path)
    return path


_DROP = object()


@pytest.mark.parametrize("changes, message", [
    ({"format_version": 99}, "format version 99"),
    ({"format": "something-else"}, "not an ALLNet model file"),
    ({"members": _DROP}, "lacks"),
    ({"members": []}, "non-empty list"),
    ({"config": {"base_channels": 4, "depth": 3, "bogus": 1}}, "invalid model config"),
    ({"config": tiny_config(base_channels=8).to_dict()}, "does not match its config"),
])
def test_malformed_model_files(tmp_path, changes, message):
    path = _write(tmp_path / "bad.pt", **changes)
    with pytest.raises(ModelError, match=message) as err:
        load_model_file(path)
    assert "bad.pt" in str(err.value)


def test_save_rejects_non_plain_meta_and_leaves_nothing(tmp_path):
    cfg = tiny_config()
    with pytest.raises(ValueError, match="meta"):
        save_model_file(tmp_path / "m.pt", cfg, [random_bundle(cfg).members[0].state_dict()],
                        {"obj": _Innocent()})
    assert list(tmp_path.iterdir()) == []


def test_bundled_model_path(tmp_path, monkeypatch):
    monkeypatch.setattr(model_mod, "WEIGHTS_DIR", tmp_path)
    assert bundled_model_path() is None
    (tmp_path / model_mod.DEFAULT_MODEL_NAME).write_bytes(b"x")
    assert bundled_model_path() == tmp_path / model_mod.DEFAULT_MODEL_NAME


def test_random_bundle_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = random_bundle(tiny_config(), n=2, seed=7)
    after = torch.rand(1)
    b = random_bundle(tiny_config(), n=2, seed=7)
    assert torch.equal(before, after)
    assert a.meta["training"] == "untrained" and len(a.members) == 2
    sa, sb = a.members[1].state_dict(), b.members[1].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    s0 = a.members[0].state_dict()
    assert not all(torch.equal(sa[k], s0[k]) for k in sa if sa[k].is_floating_point())
