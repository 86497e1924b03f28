"""Trainer, resume, DDP (2 CPU processes, gloo), ensemble bundle round-trip, cross-validation."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from allnet.inference import predict
from allnet.model import ALLNet, ModelBundle, load_model_file
from allnet_training.cache import load_cached, save_cached
from allnet_training.crossval import choose_flair_threshold, flair_baseline, run_crossval
from allnet_training.distributed import spawn_cpu
from allnet_training.ensemble import TRAINING_DATA_CREDITS, bundle_meta, export_bundle, train_ensemble
from allnet_training.patches import CropSampler
from allnet_training.trainer import TrainConfig, train

from helpers_training import tiny_case, tiny_model_config, tiny_sampler_config


@pytest.fixture(scope="module")
def cases():
    return [tiny_case(0), tiny_case(1, with_t2=False), tiny_case(2)]


def test_a_few_steps_lower_the_loss_and_are_deterministic(cases):
    sampler = CropSampler(cases, tiny_sampler_config())
    cfg = TrainConfig(epochs=3, steps_per_epoch=8, batch_size=2, lr=3e-3, seed=1,
                      milestones=(0.99,), prior=None)
    a = train(tiny_model_config(), cfg, sampler, progress=False)
    first = np.mean([r["total"] for r in a.log[:4]])
    last = np.mean([r["total"] for r in a.log[-4:]])
    assert last < 0.9 * first
    b = train(tiny_model_config(), replace(cfg, epochs=1), sampler, progress=False)
    assert [r["total"] for r in b.log] == [r["total"] for r in a.log[:8]]


def test_output_prior_initialisation():
    from allnet_training.trainer import init_output_prior

    torch.manual_seed(0)
    net = ALLNet(tiny_model_config())
    init_output_prior(net, 0.01)
    x = torch.zeros(1, 3, 8, 8, 8)
    with torch.no_grad():
        out = net.eval()(x, torch.zeros(1, 6, 8, 8, 8))
    for key in ("lesion", "sphere"):
        p = torch.sigmoid(out[key])
        assert 0.0 < float(p.mean()) < 0.1  # starts near the prior instead of 0.5


def test_resume_continues_exactly(cases, tmp_path, capsys):
    sampler = CropSampler(cases, tiny_sampler_config(augment=True))
    cfg = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, seed=4, milestones=(0.5,))
    full = train(tiny_model_config(), cfg, sampler, tmp_path / "full", resume=True, progress=False)
    assert "no checkpoint at" in capsys.readouterr().out  # --resume on an empty folder says it starts afresh
    train(tiny_model_config(), replace(cfg, epochs=1), sampler, tmp_path / "part", progress=False)
    resumed = train(tiny_model_config(), cfg, sampler, tmp_path / "part", resume=True, progress=False)
    assert "at epoch 1 of 2" in capsys.readouterr().out
    assert len(resumed.log) == 6
    assert resumed.log[-1]["lr"] == pytest.approx(1e-4)  # milestone at epoch 1 applied after resume
    for k, v in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], v, rtol=0, atol=0)
    for name in ("log.csv", "log.json", "loss_curves.png", "model.pt", "checkpoint.pt"):
        assert (tmp_path / "part" / name).is_file()


def test_ddp_two_cpu_processes_match_single_process(cases, tmp_path):
    files = []
    for c in cases:
        files.append(tmp_path / f"{c.case_id}.npz")
        save_cached(c, files[-1])
    loaded = [load_cached(f) for f in files]
    model_cfg = tiny_model_config()
    sampler_cfg = tiny_sampler_config(augment=True)
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, seed=7, lr=1e-2)
    single = train(model_cfg, replace(cfg, micro_batch=1), CropSampler(loaded, sampler_cfg),
                   progress=False)
    spawn_cpu(2, model_cfg, cfg, sampler_cfg, files, tmp_path / "ddp")
    ddp = load_model_file(tmp_path / "ddp" / "model.pt").members[0].state_dict()
    torch.manual_seed(cfg.seed)
    initial = ALLNet(model_cfg).state_dict()
    moved = 0
    for k, v in single.state_dict.items():
        if v.is_floating_point() and "running" not in k:
            torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-5)
            moved += int(not torch.allclose(v, initial[k]))
    assert moved > 10  # the runs trained: compared weights are not just the shared init


def test_ensemble_bundle_round_trip_gives_identical_predictions(cases, tmp_path):
    sampler = CropSampler(cases, tiny_sampler_config())
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=1)
    results = train_ensemble(tiny_model_config(), cfg, sampler, tmp_path / "ens", [0, 1], progress=False)
    meta = bundle_meta(results, cfg, seeds=[0, 1], cases=[c.case_id for c in cases], command="test")
    path = export_bundle(tmp_path / "bundle.pt", tiny_model_config(), [r.state_dict for r in results], meta)
    a, b = load_model_file(path), load_model_file(path)
    assert len(a.members) == 2 and a.meta["training_data"] == TRAINING_DATA_CREDITS
    assert a.meta["seeds"] == [0, 1]
    payload = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in payload["members"][0].values() if v.is_floating_point())
    c = cases[0]
    args = (c.images.astype(np.float32), c.anatomy.astype(np.float32), c.brain)
    pa = predict(a, *args, device="cpu")
    pb = predict(b, *args, device="cpu")
    assert np.array_equal(pa.probability, pb.probability) and np.array_equal(pa.mask, pb.mask)
    # the fp16 members predict what the fp32 trained members predict, up to rounding
    fp32 = ModelBundle(a.config, [], {})
    for r in results:
        net = ALLNet(a.config)
        net.load_state_dict(r.state_dict)
        fp32.members.append(net.eval())
    p32 = predict(fp32, *args, device="cpu")
    assert np.abs(p32.probability - pa.probability).max() < 0.02


def test_flair_baseline_threshold_is_chosen_on_training_cases(cases):
    t = choose_flair_threshold(cases[:2])
    # lesions are +1.5 on FLAIR over WM 0 / GM 0.2: the best level lies between
    assert 0.5 <= t <= 1.4
    mask = flair_baseline(cases[2], t)
    dsc = 2 * (mask & cases[2].mask).sum() / (mask.sum() + cases[2].mask.sum())
    assert dsc > 0.8


def test_crossval_runs_and_writes_reports(cases, tmp_path):
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=1)
    folds = run_crossval(cases, tmp_path, tiny_model_config(), cfg, tiny_sampler_config(), [0],
                         progress=False, log=lambda *_: None)
    assert [f.subject for f in folds] == ["case0", "case1", "case2"]
    for name in ("crossval.csv", "crossval.json", "crossval.md"):
        assert (tmp_path / name).is_file()
    md = (tmp_path / "crossval.md").read_text()
    assert "case1" in md and "**mean (3 cases)**" in md and "FLAIR > t" in md


def test_crossval_folds_can_run_in_separate_processes(cases, tmp_path):
    """--holdout: each run trains its folds only; the reports gather every finished fold."""
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1)
    args = (tmp_path, tiny_model_config(), cfg, tiny_sampler_config(), [0])
    first = run_crossval(cases, *args, progress=False, holdout=["case1"], log=lambda *_: None)
    assert [f.subject for f in first] == ["case1"]
    assert not (tmp_path / "fold_case0").exists()
    rest = run_crossval(cases, *args, progress=False, holdout=["case0", "case2"], log=lambda *_: None)
    assert [f.subject for f in rest] == ["case0", "case1", "case2"]
    # the fold read back from disk is the one computed by the first run
    assert rest[1].model == first[0].model and rest[1].threshold == first[0].threshold
    md = (tmp_path / "crossval.md").read_text()
    assert "**mean (3 cases)**" in md
    with pytest.raises(ValueError, match="nobody"):
        run_crossval(cases, *args, progress=False, holdout=["nobody"], log=lambda *_: None)


def test_sidecar_names_the_file_its_training_and_validation(cases, tmp_path):
    import hashlib
    import json

    from allnet_training.cli import main
    from allnet_training.sidecar import write_sidecar

    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1)
    folds = run_crossval(cases, tmp_path / "cv", tiny_model_config(), cfg, tiny_sampler_config(), [0],
                         progress=False, log=lambda *_: None)
    model = folds[0].bundle_path
    bundle = load_model_file(model)
    bundle.meta["command"] = f"allnet-train train --out {tmp_path.resolve()}/runs/final"
    export_bundle(tmp_path / "m.pt", bundle.config, [m.state_dict() for m in bundle.members], bundle.meta)
    path = write_sidecar(tmp_path / "m.pt", tmp_path / "cv", anchors=[tmp_path])
    assert path == tmp_path / "m.json"
    card = json.loads(path.read_text())
    assert card["sha256"] == hashlib.sha256((tmp_path / "m.pt").read_bytes()).hexdigest()
    assert card["members"] == 1 and card["config"]["base_channels"] == tiny_model_config().base_channels
    assert card["training"]["command"] == "allnet-train train --out runs/final"
    assert [r["case"] for r in card["validation"]["per_case"]] == ["case0", "case1", "case2"]
    assert card["validation"]["mean"]["model"]["n_cases"] == 3
    plan = json.loads((tmp_path / "cv" / "plan.json").read_text())
    assert card["validation"]["with_plan"]["plan"] == plan["plan"]
    assert card["validation"]["nested_plan"]["mean_lf1"] == plan["nested"]["mean_lf1"]
    # the command-line form writes the same content
    assert main(["sidecar", str(tmp_path / "m.pt"), "--crossval", str(tmp_path / "cv"),
                 "--out", str(tmp_path / "cli.json"), "--relative-to", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "cli.json").read_text()) == card


def test_export_stores_the_extra_metadata_and_names_its_file_not_its_folder(tmp_path):
    import json

    from allnet.model import ModelConfig, random_bundle, save_model_file
    from allnet_training.cli import main

    for seed in (0, 1):
        member = random_bundle(tiny_model_config(), n=1, seed=seed)
        save_model_file(tmp_path / f"m{seed}.pt", member.config, [m.state_dict() for m in member.members], {})
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "meta.json").write_text(json.dumps({"stage": "stage 2", "seeds": [0, 1]}))
    assert main(["export", str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt"), "--out", str(tmp_path / "b.pt"),
                 "--meta", str(tmp_path / "card" / "meta.json")]) == 0
    bundle = load_model_file(tmp_path / "b.pt")
    assert len(bundle.members) == 2 and bundle.meta["stage"] == "stage 2" and bundle.meta["seeds"] == [0, 1]
    assert bundle.meta["command"].endswith("--meta meta.json") and str(tmp_path / "card") not in bundle.meta["command"]
    assert isinstance(bundle.config, ModelConfig)
