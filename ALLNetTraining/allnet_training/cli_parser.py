"""The command line of ``allnet-train``: every command and option, with help texts and
defaults (``build_parser``); ``cli`` runs what it parses. Value ranges are checked here by
argparse types (``checks``), paths by ``cli`` before any work."""
from __future__ import annotations

import argparse
from pathlib import Path

from allnet.plan import NORMALISATION_ROBUST_ZSCORE, SUPPORTED_NORMALISATIONS

from . import checks

DEFAULT_CACHE = "cache/training"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--cases", type=Path, help="case-list CSV (case_id, subject_id, t1, t2, flair, mask)")
    g.add_argument("--dev-data", type=Path, help="the development data folder (../shared/data)")
    p.add_argument("--cache", type=Path, default=Path(DEFAULT_CACHE),
                   help=f"folder of preprocessed tensors (default {DEFAULT_CACHE})")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from allnet.model import KNOWN_MODALITIES, ModelConfig  # architecture defaults come from the core

    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoints, logs, model)")
    p.add_argument("--epochs", type=checks.positive_int, default=10, help="training epochs (learning-rate steps at 50/70/90 %%)")
    p.add_argument("--steps-per-epoch", type=checks.positive_int, default=50, help="optimizer steps per epoch")
    p.add_argument("--batch-size", type=checks.positive_int, default=2, help="global batch (split over DDP ranks)")
    p.add_argument("--micro-batch", type=checks.positive_int, default=None, help="gradient-accumulation chunk size (default: the whole batch at once)")
    p.add_argument("--lr", type=checks.positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--prior", type=checks.prior, default=0.01,
                   help="initial foreground probability of the heads' output bias (0 = PyTorch default)")
    p.add_argument("--crop", type=checks.positive_int, nargs=3, default=(48, 128, 128), metavar=("K", "J", "I"),
                   help="crop size in voxels, KJI order (paper: 48 128 128)")
    p.add_argument("--lesion-p", type=checks.probability, default=0.5, help="probability a crop is centred on a lesion")
    p.add_argument("--synthetic-p", type=checks.probability, default=0.5,
                   help="probability a crop gets synthetic lesions (0 = off)")
    p.add_argument("--lesion-masks", type=Path, default=None,
                   help="folder of lesion masks for synthetic lesions "
                        "(default: <dev-data>/lesjak2018/lesion_masks_mni)")
    p.add_argument("--synthetic-ratio", type=checks.probability, default=0.0,
                   help="share of crops rendered by the domain-randomised generator (0 = off)")
    p.add_argument("--gm-bright-p", type=checks.probability, default=None,
                   help="with --synthetic-ratio: probability that a synthetic FLAIR draws grey matter "
                        "near the lesions' level (default: the generator's, 0.3)")
    p.add_argument("--synth-flair-lesion", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="with --synthetic-ratio: range of a synthetic FLAIR lesion's mean relative to WM "
                        "(default: the generator's, 1.3 2.4; LOW must exceed 1)")
    p.add_argument("--t2-missing-p", type=checks.probability, default=None,
                   help="with --synthetic-ratio: probability that a synthetic sample has no T2W "
                        "(default: the generator's, 0.3; 1 with --t2-dropout 1 trains a T1W+FLAIR model)")
    p.add_argument("--synth-data", type=Path, default=None,
                   help="folder with lesjak2018/native scans used as extra brains for --synthetic-ratio "
                        "(default: --dev-data)")
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument("--t2-dropout", type=checks.probability, default=0.3,
                   help="probability a crop is trained without its T2W (so models run without T2W)")
    p.add_argument("--contrast-augment", action="store_true",
                   help="also vary grey-matter/CSF and lesion contrast per modality (see README)")
    p.add_argument("--acquisition-augment", action="store_true",
                   help="also blur (30 %%) or add noise to (30 %%) real crops, so noise level is no cue "
                        "(see README)")
    p.add_argument("--seeds", type=checks.non_negative_int, nargs="+", default=[0], help="one ensemble member per seed")
    p.add_argument("--modalities", choices=KNOWN_MODALITIES, nargs="+", default=list(ModelConfig.modalities),
                   help="input modalities of the model, in channel order (e.g. 'flair t1': a model that "
                        "never sees T2W; a warm start from a model with more keeps their weights)")
    p.add_argument("--base-channels", type=checks.positive_int, default=ModelConfig.base_channels,
                   help="channels of the first U-Net level (doubling per level)")
    p.add_argument("--depth", type=checks.positive_int, default=ModelConfig.depth, help="U-Net resolution levels")
    p.add_argument("--head-channels", type=checks.positive_int, default=ModelConfig.head_channels,
                   help="channels of the lesion and sphere heads")
    p.add_argument("--normalisation", choices=SUPPORTED_NORMALISATIONS, default=NORMALISATION_ROBUST_ZSCORE,
                   help="intensity normalisation the model is trained in and stored with: the robust "
                        "z-score of the brain, or WM/CSF-referenced from the T1W tissue segmentation "
                        "(robust to grey matter brighter than WM on FLAIR; 'wm-csf-calibrated' puts "
                        "FLAIR and T1W tissues where the robust z-score has them on a typical scan, "
                        "for a warm start from a robust z-score model)")
    p.add_argument("--noise-target", type=float, default=0.0, metavar="UNITS",
                   help="noise harmonisation the model is trained with and stored with: real scans "
                        "noisier than this (voxel-scale noise in white matter, normalised units; the "
                        "MSLesSeg scans measure 0.06-0.12, the Lesjak et al. FLAIRs 0.28-0.31) are "
                        "smoothed down to it, in training and at inference; 0 = off")
    p.add_argument("--no-anaconv", action="store_true", help="heads without the anatomy channels (ablation)")
    p.add_argument("--no-sphere-head", action="store_true",
                   help="no sphere head and no LesLoss (ablation; the model then gives no lesion scores)")
    p.add_argument("--loss-weights", type=checks.non_negative_float, nargs=3, default=(1.0, 1.0, 1.0),
                   metavar=("BCE", "DICE", "LESLOSS"), help="weights of BCE, soft Dice and LesLoss")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="CPU: forward pass under bfloat16 autocast; auto = bf16 where the CPU "
                        "has bfloat16 instructions (2.6x faster per step here, see README)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep NCDHW activations (default on CPU: NDHWC, faster)")
    p.add_argument("--snapshot-every", type=checks.non_negative_int, default=0,
                   help="keep a model file every N epochs (learning curves)")
    p.add_argument("--threads", type=checks.positive_int, default=None, help="torch CPU threads (default: PyTorch's choice, usually all cores)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out where they exist; a seed without one "
                        "starts from the beginning (the log says which)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for log files)")


DESCRIPTION = """Train, validate and export ALLNet models.

Commands: prepare, train, crossval, ensemble-cv, ablation, stress, curve, audit, export, plan, sidecar, rescore.
Cases come from a case-list CSV (--cases) or the development data (--dev-data ../shared/data);
preprocessed tensors are cached in --cache. Several processes or GPUs:
torchrun --nproc_per_node N -m allnet_training.cli train ..."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default after its help (unless the help already names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or "(default" in text or isinstance(action, argparse._HelpAction)):
            return text
        shown = " ".join(str(v) for v in default) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def build_parser() -> argparse.ArgumentParser:
    from allnet.model import KNOWN_MODALITIES

    parser = argparse.ArgumentParser(prog="allnet-train", description=DESCRIPTION,
                                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="preprocess and cache the cases")
    _add_data_args(p)
    p = sub.add_parser("train", help="train on all cases (one member per seed) and export a bundle")
    _add_data_args(p)
    _add_train_args(p)
    p.add_argument("--bundle", type=Path, default=None, help="write the ensemble bundle here too")
    p.add_argument("--init-from", type=Path, default=None,
                   help="warm start: the member of seed s starts from member s (mod their number) of this model file "
                        "(never for cross-validation: it would carry the held-out subjects in)")
    p = sub.add_parser("crossval", help="leave-one-subject-out cross-validation vs a FLAIR-threshold baseline")
    p.add_argument("--holdout", nargs="+", default=None, metavar="SUBJECT",
                   help="run only the folds holding out these subjects (reports cover every finished fold)")
    p.add_argument("--init-from-crossval", type=Path, default=None,
                   help="warm start each fold from the same fold's model of this finished cross-validation "
                        "(validates a staged recipe)")
    _add_data_args(p)
    _add_train_args(p)
    p = sub.add_parser("ablation", help="base / +AnaConv / +LesLoss / ALL-Net, table in the layout of Table 4")
    p.add_argument("--variants", nargs="+", default=None,
                   choices=["base", "+AnaConv", "+LesLoss", "ALL-Net"],
                   help="train only these variants (the table lists every finished one)")
    _add_data_args(p)
    _add_train_args(p)
    p = sub.add_parser("stress", help="stress set and false-positive audit of a finished cross-validation")
    p.add_argument("--crossval", type=Path, required=True, help="cross-validation folder (fold_*/bundle.pt)")
    _add_data_args(p)
    p = sub.add_parser("curve", help="learning curve: held-out DSC / L-F1 of every snapshot of a cross-validation")
    p.add_argument("--crossval", type=Path, required=True, help="cross-validation folder run with --snapshot-every")
    p.add_argument("--seed", type=checks.non_negative_int, default=0, help="which member's snapshots (the seed it was trained with)")
    _add_data_args(p)
    p = sub.add_parser("audit", help="false-positive audit of a model on the native scans (normal-tissue regions)")
    p.add_argument("--model", type=Path, required=True, help="model file")
    p.add_argument("--dev-data", type=Path, required=True, help="the development data folder (../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="folder for audit_native.json/.md")
    p.add_argument("--cache", type=Path, default=Path(DEFAULT_CACHE),
                   help="folder for the preprocessed native scans (reused across models)")
    p = sub.add_parser("export", help="combine single-member model files into one fp16 bundle")
    p.add_argument("models", type=Path, nargs="+", help="model files (model.pt of each seed)")
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--meta", type=Path, default=None, help="JSON file of extra metadata")
    p.add_argument("--modalities", choices=KNOWN_MODALITIES, nargs="+", default=None,
                   help="keep only these input modalities, in this order (e.g. 'flair t1': the model's "
                        "T2W input weights are removed, so it never takes a T2W)")
    p.add_argument("--average-without", choices=KNOWN_MODALITIES, nargs="*", default=None,
                   help="store that each member also runs with these modalities zeroed, the two "
                        "probabilities averaged (e.g. 't2'; none given: off; default: as the models)")
    p = sub.add_parser("plan", help="choose the inference plan on a finished cross-validation's held-out "
                                    "predictions and (optionally) store it in a model file")
    p.add_argument("--crossval", type=Path, required=True,
                   help="cross-validation folder (its fold_*/oof/ predictions; writes plan.json there)")
    p.add_argument("--model", type=Path, default=None,
                   help="model file to store the plan in (default: only write plan.json)")
    p.add_argument("--dev-data", type=Path, default=None,
                   help="the development data folder: held-out predictions saved without their FLAIR-contrast "
                        "or grey-matter map get them from the cached cases first (so the contrast floor and "
                        "the grey-matter fraction can be tuned)")
    p.add_argument("--cache", type=Path, default=Path(DEFAULT_CACHE),
                   help=f"folder of preprocessed tensors, with --dev-data (default {DEFAULT_CACHE})")
    p.add_argument("--min-flair-contrast", type=float, default=None, metavar="FLOOR",
                   help="fix the FLAIR-contrast floor at FLOOR (a rule, e.g. 0.3) and choose only the other "
                        "plan values (default: search 0, 0.2, 0.3, 0.4)")
    p.add_argument("--max-grey-matter-fraction", type=float, default=None, metavar="FRACTION",
                   help="fix the grey-matter fraction at FRACTION (a rule; 1 keeps all) and choose only the "
                        "other plan values (default: search 1, 0.99, 0.95, 0.9, 0.8)")
    p = sub.add_parser("rescore", help="a finished cross-validation's fold models changed at inference (fewer input "
                                       "modalities, averaged passes without some), scored on their held-out cases")
    p.add_argument("--crossval", type=Path, required=True, help="finished cross-validation folder (fold_*/bundle.pt)")
    p.add_argument("--modalities", choices=KNOWN_MODALITIES, nargs="+", default=None,
                   help="keep only these input modalities, in channel order (e.g. 'flair t1'; default: all)")
    p.add_argument("--average-without", choices=KNOWN_MODALITIES, nargs="*", default=None,
                   help="each member also runs with these modalities zeroed, the two probabilities averaged "
                        "(e.g. 't2'; none given: switch it off; default: as the fold models)")
    p.add_argument("--out", type=Path, required=True, help="folder for the changed folds and their scores")
    _add_data_args(p)
    p = sub.add_parser("ensemble-cv", help="leave-one-subject-out estimate of an ensemble whose members were "
                                           "cross-validated separately (same folds): averages their held-out "
                                           "predictions, chooses the ensemble's plan, scores every case")
    p.add_argument("--crossval", type=Path, nargs="+", required=True,
                   help="finished cross-validation folders, one per member (seed or recipe)")
    p.add_argument("--out", type=Path, required=True, help="folder for the ensemble's predictions and scores")
    p = sub.add_parser("sidecar", help="write the JSON sidecar of a model file (hash, training, validation)")
    p.add_argument("model", type=Path, help="model file (.pt)")
    p.add_argument("--crossval", type=Path, default=None, help="cross-validation folder (its crossval.json)")
    p.add_argument("--out", type=Path, default=None, help="sidecar path (default: the model's name, .json)")
    p.add_argument("--relative-to", type=Path, nargs="*", default=[],
                   help="folders whose absolute paths the recorded command should not show")
    for subparser in sub.choices.values():
        subparser.formatter_class = _HelpFormatter
    return parser
