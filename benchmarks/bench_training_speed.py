"""Training steps per second on this CPU: torch threads x precision x memory format.

    python benchmarks/bench_training_speed.py --out benchmarks/results/training_speed.json

One step = forward under the trainer's autocast setting (``allnet_training.trainer``),
the training loss, backward and an Adam step, on random tensors of the shipped recipe's
crop and batch (no data sampling). Each setting runs in a fresh process, so thread pools
and allocator caches do not carry over; median of ``--runs`` steps after ``--warmup``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402


def _one(threads: int, precision: str, channels_last: bool, crop: list[int], batch: int,
         runs: int, warmup: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from allnet.model import ALLNet, ModelConfig
    from allnet_training.losses import total_loss
    from allnet_training.trainer import _autocast

    net = ALLNet(ModelConfig()).train()
    memory = torch.channels_last_3d if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    autocast, _ = _autocast(torch.device("cpu"), True, precision)
    shape = (batch, 1, *crop)
    image = torch.randn(batch, 3, *crop).contiguous(memory_format=memory)
    anatomy = torch.randn(batch, 6, *crop).contiguous(memory_format=memory)
    lesion = (torch.rand(shape) > 0.95).float()
    sphere = (torch.rand(shape) > 0.8).float()
    times = []
    for run in range(runs + warmup):
        t0 = time.perf_counter()
        with autocast:
            out = net(image, anatomy)
        out = {k: v.float() if v is not None else None for k, v in out.items()}
        loss, _ = total_loss(out, lesion, sphere)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if run >= warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"threads": threads, "precision": precision, "channels_last": channels_last,
            "seconds_per_step_median": median, "seconds_min": min(times), "seconds_max": max(times),
            "steps_per_second": 1.0 / median}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", type=int, nargs=3, default=[32, 64, 64])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        threads, precision, channels_last = args.child.split(",")
        print(json.dumps(_one(int(threads), precision, channels_last == "1", args.crop, args.batch,
                              args.runs, args.warmup)))
        return
    import psutil
    import torch

    results = []
    for threads in args.threads:
        for precision in ("fp32", "bf16"):
            for channels_last in (False, True):
                cmd = [sys.executable, __file__, "--child", f"{threads},{precision},{int(channels_last)}",
                       "--crop", *map(str, args.crop), "--batch", str(args.batch),
                       "--runs", str(args.runs), "--warmup", str(args.warmup)]
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
                results.append(json.loads(line.splitlines()[-1]))
                print(results[-1], flush=True)
    report = {"benchmark": "training_speed",
              "config": {"crop_kji": args.crop, "batch": args.batch, "runs": args.runs,
                         "warmup": args.warmup, "model": "allnet.model.ModelConfig() defaults"},
              "results": results,
              "fastest": min(results, key=lambda r: r["seconds_per_step_median"]),
              "load_average_after": list(psutil.getloadavg()),
              "machine": f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} logical cores",
              "bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
              "torch": torch.__version__}
    if args.out:
        write_report(report, args.out)


if __name__ == "__main__":
    main()
