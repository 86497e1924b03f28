"""The training loop: Adam, multi-step LR, random crops, checkpoints/resume, logs, curves.

One run trains one network (one seed). Sample ``i`` of global step ``s`` is drawn from the
seed ``patches.sample_seed(seed, s, i)``, so the data of a step does not depend on how many
processes share it: under DDP (``distributed.py``) rank ``r`` of ``W`` takes the contiguous
slice ``r`` of the global batch, and a single process with ``micro_batch = batch/W``
computes the same gradient. On CPU the run is deterministic given the seed; on CUDA it runs
under ``torch.autocast`` (bf16 where supported, else fp16 with a gradient scaler). On CPU
``precision='bf16'`` runs the forward pass under bfloat16 autocast (weights, optimizer and
losses stay float32; ``benchmarks/bench_training_speed.py`` measures the gain), and
``channels_last`` stores activations as NDHWC. ``snapshot_every`` N keeps a model file every N
epochs in ``snapshots/`` (for learning curves).

Files in ``out_dir``: ``checkpoint.pt`` (after every epoch; ``resume=True`` continues from
it), ``log.csv`` (one row per step), ``log.json`` (configs and per-epoch means),
``loss_curves.png`` and ``model.pt`` (an ``allnet`` model file with this one member).
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from allnet.atomic import atomic_file, write_text_atomic
from allnet.errors import InputError
from allnet.inference import resolve_device  # noqa: F401  (one device rule; re-exported)
from allnet.model import ALLNet, ModelConfig, save_model_file

from .losses import LossWeights, total_loss
from .patches import CropSampler, sample_seed

LOG_FIELDS = ("epoch", "step", "lr", "total", "bce", "dice", "lesloss", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``micro_batch`` splits each (per-process) batch into chunks
    whose gradients are accumulated (None: one chunk)."""

    epochs: int = 10
    steps_per_epoch: int = 50
    batch_size: int = 2
    micro_batch: int | None = None
    lr: float = 1e-3
    milestones: tuple[float, ...] = (0.5, 0.7, 0.9)  # fractions of the epochs
    gamma: float = 0.1
    seed: int = 0
    loss: LossWeights = field(default_factory=LossWeights)
    device: str = "auto"
    amp: bool = True  # CUDA only
    precision: str = "fp32"  # CPU: 'fp32' or 'bf16' (forward under bfloat16 autocast)
    channels_last: bool = False
    snapshot_every: int = 0  # epochs; >0 keeps snapshots/step<N>.pt model files (learning curves)
    # Initial foreground probability of both heads (bias of their last 1x1x1 conv), as in
    # RetinaNet's prior initialisation: lesion voxels are rare, and starting from p = 0.5
    # Adam needs thousands of steps just to move the output bias. None keeps PyTorch's init.
    prior: float | None = 0.01

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    def milestone_epochs(self) -> list[int]:
        return sorted({max(1, int(round(f * self.epochs))) for f in self.milestones})


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]
    log: list[dict[str, float]]
    seconds: float
    out_dir: Path | None
    model_path: Path | None


def init_output_prior(net: ALLNet, prior: float) -> None:
    """Set the bias of each head's final 1-channel conv to logit(prior)."""
    value = math.log(prior / (1 - prior))
    for head in (net.lesion_head, net.sphere_head):
        if head is None:
            continue
        last = [m for m in head.modules() if isinstance(m, nn.Conv3d) and m.out_channels == 1][-1]
        with torch.no_grad():
            last.bias.fill_(value)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def write_log_csv(rows: list[dict[str, float]], path: Path) -> None:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
    write_text_atomic(path, buf.getvalue())


def plot_loss_curves(rows: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Per-step loss terms (thin) and their moving average (thick), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    window = max(1, len(rows) // 20)
    for name in ("total", "bce", "dice", "lesloss"):
        values = [r.get(name) for r in rows]
        if not values or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue
        line, = ax.plot(steps, values, lw=0.5, alpha=0.4)
        smooth = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
                  for i in range(len(values))]
        ax.plot(steps, smooth, lw=2, color=line.get_color(), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title or "training loss")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def _autocast(device: torch.device, enabled: bool, precision: str = "fp32"):
    if device.type == "cpu":
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16), None
        return contextlib.nullcontext(), None
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def train(model_config: ModelConfig, cfg: TrainConfig, sampler: CropSampler,
          out_dir: str | Path | None = None, *, resume: bool = False, progress: bool = True,
          meta: dict | None = None, init_state: dict[str, torch.Tensor] | None = None) -> TrainResult:
    """Train one network; under an initialised process group this is one DDP rank.

    ``init_state``: weights to start from (a warm start, e.g. a member of the bundled model)
    instead of the seeded random initialisation; a resumed checkpoint takes precedence.

    ``out_dir`` None keeps everything in memory (tests). Returns the final state dict
    (float32, CPU), the per-step log and the wall time in seconds.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} is not a multiple of the {world} processes")
    local_batch = cfg.batch_size // world
    micro = cfg.micro_batch or local_batch
    if local_batch % micro:
        raise ValueError(f"per-process batch {local_batch} is not a multiple of micro_batch {micro}")
    device = resolve_device(cfg.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    out = Path(out_dir) if out_dir is not None else None
    writer = out is not None and rank == 0
    if writer:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    net = ALLNet(model_config)
    if init_state is not None:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in init_state.items()})
    elif cfg.prior is not None:
        init_output_prior(net, cfg.prior)
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestone_epochs(), cfg.gamma)
    rows: list[dict[str, float]] = []
    start_epoch = 0
    elapsed_before = 0.0
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():
        try:  # weights_only: a checkpoint can never run code; anything unreadable is named
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.last_epoch = int(ckpt["scheduler_last_epoch"])
            scheduler._last_lr = [float(v) for v in ckpt["scheduler_last_lr"]]  # noqa: SLF001
            rows = list(ckpt["log"])
            start_epoch = int(ckpt["epoch"])
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise InputError(ckpt_path, f"cannot resume from this checkpoint ({type(exc).__name__}: "
                                        "corrupt, not an allnet-train checkpoint, or of another "
                                        "architecture); delete it or run without --resume") from None
        elapsed_before = float(ckpt.get("seconds", 0.0))
        if rank == 0:
            print(f"resuming {ckpt_path} at epoch {start_epoch} of {cfg.epochs}", flush=True)
    elif resume and ckpt_path is not None and rank == 0:
        print(f"--resume: no checkpoint at {ckpt_path}; starting at epoch 0", flush=True)
    model = nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None) \
        if distributed else net
    autocast, scaler = _autocast(device, cfg.amp, cfg.precision)
    pbar = None
    if progress and rank == 0:
        from tqdm import tqdm

        pbar = tqdm(total=cfg.epochs * cfg.steps_per_epoch, initial=start_epoch * cfg.steps_per_epoch,
                    desc="train", unit="step", mininterval=2.0, dynamic_ncols=True)
    t_start = time.perf_counter()
    n_chunks = local_batch // micro
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        for step_in_epoch in range(cfg.steps_per_epoch):
            t_step = time.perf_counter()
            step = epoch * cfg.steps_per_epoch + step_in_epoch
            seeds = [sample_seed(cfg.seed, step, i)
                     for i in range(rank * local_batch, (rank + 1) * local_batch)]
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            for c in range(n_chunks):
                batch = sampler.batch(seeds[c * micro:(c + 1) * micro])
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                if cfg.channels_last:
                    batch = {k: v.contiguous(memory_format=torch.channels_last_3d) for k, v in batch.items()}
                sync = contextlib.nullcontext() if (not distributed or c == n_chunks - 1) else model.no_sync()
                with sync:
                    with autocast:
                        outputs = model(batch["image"], batch["anatomy"])
                    outputs = {k: v.float() if v is not None else None for k, v in outputs.items()}
                    loss, values = total_loss(outputs, batch["lesion"], batch["sphere"], cfg.loss)
                    loss = loss / n_chunks
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v / n_chunks
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if distributed:
                keys = sorted(sums)
                tensor = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
                dist.all_reduce(tensor)
                sums = {k: float(v) / world for k, v in zip(keys, tensor.tolist())}
            row = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - t_step, **sums}
            if not all(math.isfinite(v) for v in sums.values()):
                raise FloatingPointError(f"non-finite loss at step {step}: {sums}")
            rows.append(row)
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix(loss=f"{sums['total']:.3f}", lr=f"{row['lr']:.0e}")
        scheduler.step()
        if writer:
            seconds = elapsed_before + time.perf_counter() - t_start
            _atomic_torch_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler_last_epoch": scheduler.last_epoch,
                                "scheduler_last_lr": list(scheduler.get_last_lr()),
                                "epoch": epoch + 1, "log": rows, "seconds": seconds,
                                "model_config": model_config.to_dict(),
                                "train_config": json.loads(json.dumps(cfg.to_dict()))}, ckpt_path)
            write_log_csv(rows, out / "log.csv")
            if cfg.snapshot_every > 0 and (epoch + 1) % cfg.snapshot_every == 0:
                (out / "snapshots").mkdir(exist_ok=True)
                save_model_file(out / "snapshots" / f"step{(epoch + 1) * cfg.steps_per_epoch}.pt",
                                model_config, [{k: v.detach().float().cpu() if v.is_floating_point() else v
                                                for k, v in net.state_dict().items()}],
                                {"seed": cfg.seed, "step": (epoch + 1) * cfg.steps_per_epoch, **(meta or {})})
            plot_loss_curves(rows, out / "loss_curves.png", title=out.name)
    if pbar is not None:
        pbar.close()
    seconds = elapsed_before + time.perf_counter() - t_start
    state = {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
             for k, v in net.state_dict().items()}
    model_path = None
    if writer:
        epochs = sorted({int(r["epoch"]) for r in rows})
        per_epoch = [{"epoch": e, **{k: sum(r[k] for r in rows if r["epoch"] == e and k in r)
                                      / max(1, sum(1 for r in rows if r["epoch"] == e and k in r))
                                      for k in ("total", "bce", "dice", "lesloss")
                                      if any(k in r for r in rows)}} for e in epochs]
        summary = {"model_config": model_config.to_dict(), "train_config": cfg.to_dict(),
                   "sampler_config": sampler.cfg.to_dict(), "seconds": seconds, "world_size": world,
                   "hardware": hardware_description(device), "epochs": per_epoch,
                   "meta": meta or {}}
        write_text_atomic(out / "log.json", json.dumps(summary, indent=2))
        model_path = out / "model.pt"
        save_model_file(model_path, model_config, [state],
                        {"seed": cfg.seed, "seconds": seconds, **(meta or {})})
    return TrainResult(state, rows, seconds, out, model_path)
