"""``allnet-train``: prepare | train | crossval | ensemble-cv | ablation | stress | curve | audit | export | sidecar | plan | rescore.

Cases come from a case-list CSV (``--cases``, see ``data.py``) or the development data
(``--dev-data ../shared/data``). Preprocessed tensors are cached in ``--cache``.
Multi-process training: ``torchrun --nproc_per_node N -m allnet_training.cli train ...``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from allnet.errors import AllnetError
from allnet.plan import NORMALISATION_ROBUST_ZSCORE, SUPPORTED_NORMALISATIONS

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
    p.add_argument("--epochs", type=int, default=10, help="training epochs (learning-rate steps at 50/70/90 %%)")
    p.add_argument("--steps-per-epoch", type=int, default=50, help="optimizer steps per epoch")
    p.add_argument("--batch-size", type=int, default=2, help="global batch (split over DDP ranks)")
    p.add_argument("--micro-batch", type=int, default=None, help="gradient-accumulation chunk size (default: the whole batch at once)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--prior", type=float, default=0.01,
                   help="initial foreground probability of the heads' output bias (0 = PyTorch default)")
    p.add_argument("--crop", type=int, nargs=3, default=(48, 128, 128), metavar=("K", "J", "I"),
                   help="crop size in voxels, KJI order (paper: 48 128 128)")
    p.add_argument("--lesion-p", type=float, default=0.5, help="probability a crop is centred on a lesion")
    p.add_argument("--synthetic-p", type=float, default=0.5,
                   help="probability a crop gets synthetic lesions (0 = off)")
    p.add_argument("--lesion-masks", type=Path, default=None,
                   help="folder of lesion masks for synthetic lesions "
                        "(default: <dev-data>/lesjak2018/lesion_masks_mni)")
    p.add_argument("--synthetic-ratio", type=float, default=0.0,
                   help="share of crops rendered by the domain-randomised generator (0 = off)")
    p.add_argument("--gm-bright-p", type=float, default=None,
                   help="with --synthetic-ratio: probability that a synthetic FLAIR draws grey matter "
                        "near the lesions' level (default: the generator's, 0.3)")
    p.add_argument("--synth-flair-lesion", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="with --synthetic-ratio: range of a synthetic FLAIR lesion's mean relative to WM "
                        "(default: the generator's, 1.3 2.4; LOW must exceed 1)")
    p.add_argument("--t2-missing-p", type=float, default=None,
                   help="with --synthetic-ratio: probability that a synthetic sample has no T2W "
                        "(default: the generator's, 0.3; 1 with --t2-dropout 1 trains a T1W+FLAIR model)")
    p.add_argument("--synth-data", type=Path, default=None,
                   help="folder with lesjak2018/native scans used as extra brains for --synthetic-ratio "
                        "(default: --dev-data)")
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument("--t2-dropout", type=float, default=0.3,
                   help="probability a crop is trained without its T2W (so models run without T2W)")
    p.add_argument("--contrast-augment", action="store_true",
                   help="also vary grey-matter/CSF and lesion contrast per modality (see README)")
    p.add_argument("--acquisition-augment", action="store_true",
                   help="also blur (30 %%) or add noise to (30 %%) real crops, so noise level is no cue "
                        "(see README)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one ensemble member per seed")
    p.add_argument("--modalities", choices=KNOWN_MODALITIES, nargs="+", default=list(ModelConfig.modalities),
                   help="input modalities of the model, in channel order (e.g. 'flair t1': a model that "
                        "never sees T2W; a warm start from a model with more keeps their weights)")
    p.add_argument("--base-channels", type=int, default=ModelConfig.base_channels,
                   help="channels of the first U-Net level (doubling per level)")
    p.add_argument("--depth", type=int, default=ModelConfig.depth, help="U-Net resolution levels")
    p.add_argument("--head-channels", type=int, default=ModelConfig.head_channels,
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
    p.add_argument("--loss-weights", type=float, nargs=3, default=(1.0, 1.0, 1.0),
                   metavar=("BCE", "DICE", "LESLOSS"), help="weights of BCE, soft Dice and LesLoss")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="CPU: forward pass under bfloat16 autocast; auto = bf16 where the CPU "
                        "has bfloat16 instructions (2.6x faster per step here, see README)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep NCDHW activations (default on CPU: NDHWC, faster)")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="keep a model file every N epochs (learning curves)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: PyTorch's choice, usually all cores)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
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
    p.add_argument("--seed", type=int, default=0, help="which member's snapshots (the seed it was trained with)")
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


def _cases(args):
    from .data import dev_cases, read_case_list

    return dev_cases(args.dev_data) if args.dev_data else read_case_list(args.cases)


def _load(args):
    from .cache import load_cached, prepare_cases

    cases = _cases(args)
    return cases, [load_cached(p) for p in prepare_cases(cases, args.cache)]


def _configs(args):
    from allnet.model import ModelConfig

    from .augment import ACQUISITION_AUGMENTATION, CONTRAST_AUGMENTATION, NO_AUGMENTATION, AugmentConfig
    from .losses import LossWeights
    from .patches import SamplerConfig
    from .synthetic import SyntheticConfig
    from .trainer import TrainConfig

    model = ModelConfig(modalities=tuple(args.modalities), base_channels=args.base_channels, depth=args.depth,
                        head_channels=args.head_channels, head_mlp=(args.head_channels,),
                        anaconv=not args.no_anaconv, sphere_head=not args.no_sphere_head,
                        modality_dropout=args.t2_dropout > 0 and not args.no_augment and "t2" in args.modalities,
                        normalisation=args.normalisation, noise_target=args.noise_target)
    extra = {**(CONTRAST_AUGMENTATION if args.contrast_augment else {}),
             **(ACQUISITION_AUGMENTATION if args.acquisition_augment else {})}
    aug = NO_AUGMENTATION if args.no_augment else AugmentConfig(t2_dropout=args.t2_dropout, **extra)
    sampler = SamplerConfig(crop=tuple(args.crop), lesion_p=args.lesion_p, augment=aug,
                            synthetic=SyntheticConfig(p=args.synthetic_p),
                            synthetic_ratio=args.synthetic_ratio)
    train = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        batch_size=args.batch_size, micro_batch=args.micro_batch, lr=args.lr,
                        seed=args.seeds[0], loss=LossWeights(*args.loss_weights), device=args.device,
                        precision=_precision(args), channels_last=not args.no_channels_last,
                        snapshot_every=args.snapshot_every,
                        prior=args.prior if args.prior > 0 else None)
    return model, sampler, train


def _architecture(config) -> dict:
    """The config entries a warm start must share: all but the input preparation (noise
    harmonisation may be switched on when continuing), meta and version."""
    return {k: v for k, v in config.to_dict().items()
            if k not in ("noise_target", "meta", "version", "modalities", "modality_dropout", "average_without")}


def _precision(args) -> str:
    """``--precision auto``: bf16 on a CPU with bfloat16 support, else fp32 (recorded resolved)."""
    if args.precision != "auto":
        return args.precision
    import torch

    from allnet.inference import cpu_supports_bf16

    if args.device not in ("auto", "cpu") or torch.cuda.is_available():
        return "fp32"  # CUDA runs use their own autocast (TrainConfig.amp)
    return "bf16" if cpu_supports_bf16() else "fp32"


def _bank(args, exclude):
    if args.synthetic_p <= 0:
        return None
    from .synthetic import load_shape_bank

    folder = args.lesion_masks or (args.dev_data / "lesjak2018" / "lesion_masks_mni" if args.dev_data else None)
    if folder is None:
        raise SystemExit("--lesion-masks is needed for synthetic lesions with --cases (or --synthetic-p 0)")
    return load_shape_bank(folder, exclude=exclude)


def _synth(args, cached, bank):
    """The domain-randomisation generator when ``--synthetic-ratio`` > 0, else None."""
    if args.synthetic_ratio <= 0:
        return None
    from .domain_synth import DomainSynthConfig, build_from_data

    cfg = DomainSynthConfig(normalisation=args.normalisation)
    if args.gm_bright_p is not None:
        cfg = replace(cfg, flair_gm_bright_p=args.gm_bright_p)
    if args.t2_missing_p is not None:
        cfg = replace(cfg, t2_missing_p=args.t2_missing_p)
    if args.synth_flair_lesion is not None:
        cfg = replace(cfg, flair_lesion=tuple(args.synth_flair_lesion))
    shared = args.synth_data or args.dev_data
    masks = args.lesion_masks or (shared / "lesjak2018" / "lesion_masks_mni" if shared else None)
    return build_from_data(cached, shared, args.cache, masks if masks and masks.is_dir() else None, bank, cfg)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "synth_flair_lesion", None) is not None:  # before any data is loaded
        from .domain_synth import check_flair_lesion

        try:
            check_flair_lesion(tuple(args.synth_flair_lesion))
        except ValueError as exc:
            parser.error(f"--synth-flair-lesion: {exc}")
    if getattr(args, "noise_target", None) is not None:
        from allnet.contract import SettingError
        from allnet.plan import check_noise_target

        try:
            check_noise_target(args.noise_target)
        except SettingError as exc:
            parser.error(f"--noise-target: {exc}")
    command_line = "allnet-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        if args.command == "export":
            from .ensemble import export_bundle, state_dicts_from_model_files
            from .rescore import changed_model

            config, states = state_dicts_from_model_files(args.models)
            config, states = changed_model(config, states, args.modalities, args.average_without)
            meta = json.loads(args.meta.read_text()) if args.meta else {}
            if args.meta:  # its content is stored; where it lay on one machine is not
                command_line = command_line.replace(shlex.quote(str(args.meta)), shlex.quote(args.meta.name))
            export_bundle(args.out, config, states, {"command": command_line, **meta})
            print(f"wrote {args.out} ({len(states)} members)")
            return 0
        if args.command == "plan":
            from allnet.model import set_inference_plan

            from .plan_tuning import tune_plan

            if args.dev_data is not None:
                from .crossval import add_case_maps

                _, cached = _load(args)
                print(f"FLAIR-contrast / grey-matter maps added to {add_case_maps(args.crossval, cached)} "
                      "held-out predictions")
            from allnet.contract import RunSettings, SettingError

            for name in ("min_flair_contrast", "max_grey_matter_fraction"):
                if getattr(args, name) is not None:
                    try:  # the range of the run setting, defined once
                        RunSettings(**{name: getattr(args, name)}).validate()
                    except SettingError as exc:
                        parser.error(f"--{name.replace('_', '-')}: {exc}")
            fixed = None if args.min_flair_contrast is None else (args.min_flair_contrast,)
            fixed_grey = None if args.max_grey_matter_fraction is None else (args.max_grey_matter_fraction,)
            tuned = tune_plan(args.crossval, flair_contrasts=fixed, grey_matter_fractions=fixed_grey)
            if tuned is None:
                print(f"allnet-train: error: {args.crossval}: no held-out predictions (fold_*/oof/*.npz); "
                      "run allnet-train crossval first", file=sys.stderr)
                return 2
            print(f"plan {tuned['plan']}: mean DSC {tuned['chosen']['mean_dsc']:.3f}, L-F1 "
                  f"{tuned['chosen']['mean_lf1']:.3f} (default plan: {tuned['default']['mean_dsc']:.3f}, "
                  f"{tuned['default']['mean_lf1']:.3f}) over {len(tuned['cases'])} held-out cases")
            if tuned.get("nested"):
                print(f"nested estimate (each fold's plan chosen without it): mean DSC "
                      f"{tuned['nested']['mean_dsc']:.3f}, L-F1 {tuned['nested']['mean_lf1']:.3f}")
            from allnet.plan import InferencePlan

            from .plan_tuning import CURVE_FIGURE, write_lesion_score_curve

            if write_lesion_score_curve(args.crossval, InferencePlan.from_dict(tuned["plan"])):
                print(f"lesion-score ROC: {args.crossval / CURVE_FIGURE}")
            if args.model:
                set_inference_plan(args.model, tuned["plan"])
                print(f"stored in {args.model}")
            return 0
        if args.command == "rescore":
            from .rescore import rescore_crossval

            _, cached = _load(args)
            tuned = rescore_crossval(args.crossval, args.out, cached, modalities=args.modalities,
                                     average_without=args.average_without)
            print((args.out / "crossval.md").read_text())
            if tuned:
                print(f"plan {tuned['plan']} chosen on {len(tuned['cases'])} held-out cases: mean DSC "
                      f"{tuned['chosen']['mean_dsc']:.3f}, L-F1 {tuned['chosen']['mean_lf1']:.3f}")
            return 0
        if args.command == "ensemble-cv":
            from .ensemble_cv import combine_crossvals

            tuned = combine_crossvals(args.crossval, args.out)
            print((args.out / "crossval.md").read_text())
            print(f"plan {tuned['plan']} chosen on {len(tuned['cases'])} held-out cases; "
                  f"store it with: allnet-train plan --crossval {args.out} --model MODEL")
            return 0
        if args.command == "sidecar":
            from .sidecar import write_sidecar

            print(f"wrote {write_sidecar(args.model, args.crossval, args.out, args.relative_to)}")
            return 0
        if args.command == "stress":
            from .stress import run_stress

            _, cached = _load(args)
            run_stress(cached, args.crossval)
            print((args.crossval / "stress.md").read_text())
            return 0
        if args.command == "curve":
            from .curve import run_curve

            _, cached = _load(args)
            rows = run_curve(cached, args.crossval, args.seed)
            print(f"{len(rows)} snapshot scores -> {args.crossval / 'curve.csv'}")
            return 0
        if args.command == "audit":
            from .labelmaps import native_studies
            from .stress import run_native_audit

            run_native_audit(args.model, native_studies(args.dev_data), args.out, cache_dir=args.cache)
            print((args.out / "audit_native.md").read_text())
            return 0
        if args.command == "prepare":
            from .cache import prepare_cases

            for p in prepare_cases(_cases(args), args.cache):
                print(p)
            return 0
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        from .distributed import cleanup, finish, init_from_env

        distributed = init_from_env()
        try:
            status = _run(args, command_line, distributed)
            finish()
            return status
        finally:
            cleanup()
    except AllnetError as exc:
        print(f"allnet-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:  # bad option values found past argparse (unknown subject, ...)
        print(f"allnet-train: error: {exc}", file=sys.stderr)
        return 2


def _run(args, command_line: str, distributed: bool) -> int:
    from dataclasses import replace

    cases, cached = _load(args)
    model_cfg, sampler_cfg, train_cfg = _configs(args)
    # the development subjects' own masks must not serve as synthetic shapes
    bank = _bank(args, exclude={c.subject_id for c in cases})
    synth = _synth(args, cached, bank)
    progress = not args.no_progress
    if args.command == "train":
        from .ensemble import bundle_meta, export_bundle, train_ensemble
        from .patches import CropSampler

        sampler = CropSampler(cached, sampler_cfg, model_cfg.modalities, bank, synth,
                              model_cfg.normalisation, model_cfg.noise_target)
        init_states = None
        extra = {"sampler_config": sampler.cfg.to_dict()}
        if args.init_from is not None:
            from allnet.model import load_model_file

            from .modalities import warm_start_states

            start = load_model_file(args.init_from)
            if _architecture(start.config) != _architecture(model_cfg):
                raise ValueError(f"{args.init_from}: its architecture differs from the one asked for")
            init_states = warm_start_states(start, model_cfg, args.init_from)
            extra["warm_start"] = {"model": args.init_from.name, "members": len(init_states)}
        if synth is not None:
            extra["synthetic_brains"] = [b.brain_id for b in synth.brains]
            extra["synthetic_lesion_maps"] = len(synth.maps)
            extra["synthesis_config"] = synth.cfg.to_dict()
        results = train_ensemble(model_cfg, train_cfg, sampler, args.out, args.seeds,
                                 resume=args.resume, progress=progress, init_states=init_states)
        if not distributed or torch_rank() == 0:
            meta = bundle_meta(results, train_cfg, seeds=args.seeds, cases=[c.case_id for c in cases],
                               command=command_line, extra=extra)
            for path in [args.out / "bundle.pt", *([args.bundle] if args.bundle else [])]:
                export_bundle(path, model_cfg, [r.state_dict for r in results], meta)
                print(f"wrote {path}")
        return 0
    if distributed:
        raise SystemExit("crossval and ablation run in one process (use torchrun only with 'train')")
    if args.command == "crossval":
        from .crossval import run_crossval

        run_crossval(cached, args.out, model_cfg, train_cfg, sampler_cfg, args.seeds, bank,
                     resume=args.resume, progress=progress, holdout=args.holdout, synth=synth,
                     init_from=args.init_from_crossval)
        print((args.out / "crossval.md").read_text())
        return 0
    if args.command == "ablation":
        from .ablation import run_ablation

        table = run_ablation(cached, args.out, replace(model_cfg, anaconv=True, sphere_head=True),
                             train_cfg, sampler_cfg, args.seeds, bank, resume=args.resume,
                             progress=progress, variants=args.variants, synth=synth)
        print(table)
        return 0
    raise SystemExit(f"unknown command {args.command}")


def torch_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


if __name__ == "__main__":
    sys.exit(main())
