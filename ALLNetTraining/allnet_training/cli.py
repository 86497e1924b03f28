"""``allnet-train``: prepare | train | crossval | ensemble-cv | ablation | stress | curve | audit | export | sidecar | plan | rescore.

Cases come from a case-list CSV (``--cases``, see ``data.py``) or the development data
(``--dev-data ../shared/data``). Preprocessed tensors are cached in ``--cache``.
Multi-process training: ``torchrun --nproc_per_node N -m allnet_training.cli train ...``.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

from allnet.errors import AllnetError, InputError

from . import checks
from .cli_parser import build_parser



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


def _check_fold_starts(folder: Path, subjects: list[str], model_cfg) -> None:
    """Each fold's warm start (``folder/fold_<subject>/bundle.pt``) exists, loads and has the
    asked architecture; InputError/ModelError naming the file otherwise."""
    from allnet.model import load_model_file

    for subject in dict.fromkeys(subjects):
        path = folder / f"fold_{subject}" / "bundle.pt"
        if not path.is_file():
            raise InputError(path, f"not found: --init-from-crossval needs a finished fold for {subject}")
        if _architecture(load_model_file(path).config) != _architecture(model_cfg):
            raise InputError(path, "its architecture differs from the one asked for")


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
        raise InputError(None, "--lesion-masks is needed for synthetic lesions with --cases (or --synthetic-p 0)")
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
        _check_paths(args)
        if args.command == "export":
            from .ensemble import export_bundle, state_dicts_from_model_files
            from .rescore import changed_model

            config, states = state_dicts_from_model_files(args.models)
            config, states = changed_model(config, states, args.modalities, args.average_without)
            meta = checks.json_object(args.meta) if args.meta else {}
            if args.meta:  # its content is stored; where it lay on one machine is not
                command_line = command_line.replace(shlex.quote(str(args.meta)), shlex.quote(args.meta.name))
            export_bundle(args.out, config, states, {"command": command_line, **meta})
            print(f"wrote {args.out} ({len(states)} members)")
            return 0
        if args.command == "plan":
            from allnet.model import set_inference_plan

            from .plan_tuning import tune_plan

            from allnet.contract import RunSettings, SettingError

            for name in ("min_flair_contrast", "max_grey_matter_fraction"):
                if getattr(args, name) is not None:
                    try:  # the range of the run setting, defined once
                        RunSettings(**{name: getattr(args, name)}).validate()
                    except SettingError as exc:
                        parser.error(f"--{name.replace('_', '-')}: {exc}")
            if args.dev_data is not None:
                from .crossval import add_case_maps

                _, cached = _load(args)
                print(f"FLAIR-contrast / grey-matter maps added to {add_case_maps(args.crossval, cached)} "
                      "held-out predictions")
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
            if not run_stress(cached, args.crossval):
                raise InputError(args.crossval, "no finished fold of the given cases (fold_<subject>/bundle.pt)")
            print((args.crossval / "stress.md").read_text())
            return 0
        if args.command == "curve":
            from .curve import run_curve

            _, cached = _load(args)
            rows = run_curve(cached, args.crossval, args.seed)
            if not rows:
                raise InputError(args.crossval, f"no snapshot of seed {args.seed} was scored (fold_<subject>/"
                                                f"seed{args.seed}/snapshots/step*.pt of the given cases)")
            print(f"{len(rows)} snapshot scores -> {args.crossval / 'curve.csv'}")
            return 0
        if args.command == "audit":
            from .labelmaps import native_studies
            from .stress import run_native_audit

            studies = native_studies(args.dev_data)
            if not studies:
                raise InputError(args.dev_data, "holds no native scans (lesjak2018/native/patient*/"
                                                "study*_FLAIR.nii.gz with their T1W)")
            run_native_audit(args.model, studies, args.out, cache_dir=args.cache)
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
    except OSError as exc:  # a file or folder that cannot be read or written: name it
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"allnet-train: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def _check_paths(args) -> None:
    """Paths of the command line, checked before any data is read or folder made
    (``checks``); InputError names the path."""
    command = args.command
    for name, what in (("dev_data", "development data folder"), ("lesion_masks", "lesion-mask folder"),
                       ("synth_data", "--synth-data folder")):
        if getattr(args, name, None) is not None:
            checks.data_folder(getattr(args, name), what)
    if getattr(args, "cache", None) is not None:
        checks.cache_folder(args.cache)
    if command in ("train", "crossval", "ablation", "rescore", "ensemble-cv", "audit"):
        checks.output_folder(args.out)
    if command == "export" or (command == "sidecar" and args.out is not None):
        checks.output_file(args.out)
    if command in ("stress", "rescore"):
        checks.crossval_folder(args.crossval, "fold_*/bundle.pt", "allnet-train crossval")
    if command == "curve":
        checks.crossval_folder(args.crossval, f"fold_*/seed{args.seed}/snapshots/step*.pt",
                               "allnet-train crossval --snapshot-every N")
    if command == "plan":
        checks.crossval_folder(args.crossval, "fold_*/oof/*.npz", "allnet-train crossval")
    if command == "ensemble-cv":
        for folder in args.crossval:
            checks.crossval_folder(folder, "fold_*/oof/*.npz", "allnet-train crossval")
    if command == "crossval" and args.init_from_crossval is not None:
        checks.crossval_folder(args.init_from_crossval, "fold_*/bundle.pt", "allnet-train crossval")
    if command == "sidecar" and args.crossval is not None and not (args.crossval / "crossval.json").is_file():
        raise InputError(args.crossval, "holds no crossval.json: give a finished cross-validation folder")
    model = {"plan": "model", "train": "init_from"}.get(command)
    if model is not None and getattr(args, model) is not None:
        from allnet.model import load_model_file

        load_model_file(getattr(args, model))  # ModelError (exit 4) now, not after the work


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

        if args.init_from_crossval is not None:  # every fold's start, before the first fold trains
            _check_fold_starts(args.init_from_crossval, args.holdout or [c.subject_id for c in cases], model_cfg)

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
