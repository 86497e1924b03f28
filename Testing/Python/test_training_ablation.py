"""Ablation: four variants on the same folds and seeds, table in the layout of Table 4."""
from __future__ import annotations

from allnet_training.ablation import TABLE_COLUMNS, VARIANTS, run_ablation
from allnet_training.trainer import TrainConfig

from helpers_training import tiny_case, tiny_model_config, tiny_sampler_config


def test_ablation_trains_every_variant_and_writes_table_4(tmp_path):
    cases = [tiny_case(0), tiny_case(1)]
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1)
    md = run_ablation(cases, tmp_path, tiny_model_config(), cfg, tiny_sampler_config(), [0],
                      progress=False, log=lambda *_: None)
    lines = md.strip().splitlines()
    assert lines[0] == "| Method | " + " | ".join(c for c, _ in TABLE_COLUMNS) + " |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == [v[0] for v in VARIANTS]
    assert (tmp_path / "ablation.csv").is_file()
    # each variant really has its own architecture
    from allnet.model import load_model_file

    base = load_model_file(tmp_path / "base" / "fold_case0" / "bundle.pt").config
    full = load_model_file(tmp_path / "ALLNet" / "fold_case0" / "bundle.pt").config
    assert (base.anaconv, base.sphere_head) == (False, False)
    assert (full.anaconv, full.sphere_head) == (True, True)


def test_ablation_variants_can_run_separately_and_share_one_table(tmp_path):
    cases = [tiny_case(0), tiny_case(1)]
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1)
    args = (cases, tmp_path, tiny_model_config(), cfg, tiny_sampler_config(), [0])
    md = run_ablation(*args, progress=False, variants=["ALL-Net"], log=lambda *_: None)
    assert [line.split("|")[1].strip() for line in md.strip().splitlines()[2:]] == ["ALL-Net"]
    assert not (tmp_path / "base").exists()
    md = run_ablation(*args, progress=False, variants=["base"], log=lambda *_: None)
    assert [line.split("|")[1].strip() for line in md.strip().splitlines()[2:]] == ["base", "ALL-Net"]


def test_ablation_table_includes_variants_finished_by_another_process_meanwhile(tmp_path, monkeypatch):
    import shutil

    import allnet_training.ablation as ablation

    cases = [tiny_case(0), tiny_case(1)]
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1)
    other = tmp_path / "other"
    run_ablation(cases, other, tiny_model_config(), cfg, tiny_sampler_config(), [0], progress=False,
                 variants=["base"], log=lambda *_: None)
    real = ablation.run_crossval

    def while_base_finishes_elsewhere(*args, **kwargs):
        result = real(*args, **kwargs)
        shutil.copytree(other / "base", tmp_path / "out" / "base")  # the other process is done
        return result

    monkeypatch.setattr(ablation, "run_crossval", while_base_finishes_elsewhere)
    md = run_ablation(cases, tmp_path / "out", tiny_model_config(), cfg, tiny_sampler_config(), [0],
                      progress=False, variants=["ALL-Net"], log=lambda *_: None)
    assert [line.split("|")[1].strip() for line in md.strip().splitlines()[2:]] == ["base", "ALL-Net"]
