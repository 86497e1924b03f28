"""Benchmark of one training step: crop sampling, forward, backward+optimizer, peak RSS.

    python benchmarks/bench_training.py --crop 32 64 64 --batch 2 --threads 2 \
        [--cache-files cache/training/*.npz] --out benchmarks/results/training_step.json

Reports the median (and min/max) over ``--runs`` steps after one warm-up step. Without
cache files the step runs on random tensors (no sampling time).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import psutil
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", type=int, nargs=3, default=(32, 64, 64))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--base-channels", type=int, default=8)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--head-channels", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache-files", type=Path, nargs="*", default=[])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from allnet.model import ALLNet, ModelConfig
    from allnet_training.losses import total_loss

    cfg = ModelConfig(base_channels=args.base_channels, depth=args.depth,
                      head_channels=args.head_channels, head_mlp=(args.head_channels,))
    net = ALLNet(cfg).train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sampler = None
    if args.cache_files:
        from allnet_training.cache import load_cached
        from allnet_training.patches import CropSampler, SamplerConfig

        sampler = CropSampler([load_cached(p) for p in args.cache_files],
                              SamplerConfig(crop=tuple(args.crop)))
    times: dict[str, list[float]] = {"sample": [], "forward": [], "backward_step": [], "total": []}
    for run in range(args.runs + 1):
        t0 = time.perf_counter()
        if sampler is not None:
            batch = sampler.batch([run * 100 + i for i in range(args.batch)])
        else:
            shape = (args.batch, 1, *args.crop)
            batch = {"image": torch.randn(args.batch, 3, *args.crop),
                     "anatomy": torch.randn(args.batch, 6, *args.crop),
                     "lesion": (torch.rand(shape) > 0.95).float(), "sphere": (torch.rand(shape) > 0.8).float()}
        t1 = time.perf_counter()
        out = net(batch["image"], batch["anatomy"])
        loss, _ = total_loss(out, batch["lesion"], batch["sphere"])
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t3 = time.perf_counter()
        if run:  # the first step warms up allocators and kernels
            for k, v in (("sample", t1 - t0), ("forward", t2 - t1), ("backward_step", t3 - t2), ("total", t3 - t0)):
                times[k].append(v)
    result = {
        "benchmark": "training_step",
        "config": {"crop_kji": list(args.crop), "batch": args.batch, "base_channels": args.base_channels,
                   "depth": args.depth, "head_channels": args.head_channels, "threads": args.threads,
                   "real_cases": len(args.cache_files)},
        "seconds_median": {k: statistics.median(v) for k, v in times.items()},
        "seconds_min": {k: min(v) for k, v in times.items()},
        "seconds_max": {k: max(v) for k, v in times.items()},
        "runs": args.runs,
        "peak_rss_mb": psutil.Process().memory_info().rss / 2**20 if not hasattr(psutil.Process(), "memory_full_info")
        else max(psutil.Process().memory_info().rss, 0) / 2**20,
        "load_average": list(psutil.getloadavg()),
        "machine": f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} logical cores",
        "torch": torch.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
