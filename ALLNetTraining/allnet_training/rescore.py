"""A finished cross-validation's fold models, changed at inference only, scored again.

Two changes that need no training: fewer input modalities (``--modalities``: the first
convolution's input weights of the others removed, ``allnet_training.modalities``) and
test-time averaging over the model's own modality dropout (``--average-without``: each
member also runs with those modalities zeroed and the two probabilities are averaged,
``allnet.model.ModelConfig.average_without``). Each fold model is re-exported so changed and
scored on its held-out cases exactly as ``allnet-train crossval`` scores (reports,
out-of-fold predictions, the plan chosen on them), which is the leave-one-subject-out
estimate of shipping the model so.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from allnet.model import ModelConfig, load_model_file

from .crossval import evaluate_fold, folds_of, load_fold, write_reports
from .ensemble import export_bundle
from .modalities import restrict_modalities
from .plan_tuning import tune_plan


def changed_model(config: ModelConfig, states: list[dict], modalities: tuple[str, ...] | None = None,
                  average_without: tuple[str, ...] | None = None) -> tuple[ModelConfig, list[dict]]:
    """``config`` and member ``states`` restricted to ``modalities`` (None: all kept) and with
    ``average_without`` set (None: unchanged). ValueError for a combination the model cannot
    run (a modality it does not have, all of them averaged out)."""
    if modalities:
        config, states = restrict_modalities(config, states, modalities)
    if average_without is not None:
        config = dataclasses.replace(config, average_without=tuple(average_without))
    return config, states


def rescore_crossval(source_dir: str | Path, out_dir: str | Path, cases: list, *,
                     modalities: tuple[str, ...] | None = None,
                     average_without: tuple[str, ...] | None = None, log=print) -> dict | None:
    """Every fold model of ``source_dir`` changed by :func:`changed_model`, written to
    ``out_dir/fold_<subject>/bundle.pt`` and scored on its held-out ``cases``; returns the
    plan tuned on the new held-out predictions (``plan_tuning.tune_plan``). ValueError naming
    the file when a fold model is missing."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    results = []
    for subject, train_cases, test_cases in folds_of(cases):
        source = source_dir / f"fold_{subject}" / "bundle.pt"
        if not source.is_file():
            raise ValueError(f"{source}: no fold model; finish the cross-validation first")
        start = load_model_file(source)
        config, states = changed_model(start.config, [m.state_dict() for m in start.members],
                                       modalities, average_without)
        path = export_bundle(out_dir / f"fold_{subject}" / "bundle.pt", config, states,
                             {**start.meta, "rescored_from": str(source)})
        trained = load_fold(source.parent)
        results.append(evaluate_fold(subject, path, train_cases, test_cases,
                                     trained.train_seconds if trained else 0.0, log=log))
    write_reports(results, out_dir)
    return tune_plan(out_dir)
