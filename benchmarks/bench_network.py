"""Benchmark of the ALLNet network on CPU: whole-brain forward time, predict() time, peak RSS,
and one training step on a batch of 48 x 128 x 128 crops.

Input = the brain bounding box of the working grid (template brain mask, + the inference
margin, grown to the network multiple), random images and anatomy maps, 1 member, no TTA.
Each configuration runs in a fresh Python process so its peak RSS is its own. The report gives
the median of ``--runs`` timed passes after one warm-up pass, and the load average.

    python benchmarks/bench_network.py [--configs 16:4,8:4:16] [--runs 3] [--threads 2] [--train]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "network_cpu.json"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_config(base: int, depth: int, head: int | None, runs: int, threads: int, train: bool,
               train_batch: int) -> dict:
    """Benchmark one architecture in this process; seconds and MiB."""
    import numpy as np
    import torch

    from allnet.inference import brain_crop, predict
    from allnet.model import ModelConfig, count_parameters, fused_for_inference, random_bundle
    from allnet.templates import load_template
    import SimpleITK as sitk

    torch.set_num_threads(threads)
    kw = {} if head is None else {"head_channels": head, "head_mlp": (head,)}
    config = ModelConfig(base_channels=base, depth=depth, **kw)
    bundle = random_bundle(config, n=1)
    mask = sitk.GetArrayFromImage(load_template().brain_mask)
    crop = brain_crop(mask, config.multiple)
    crop_shape = tuple(s.stop - s.start for s in crop)
    rng = np.random.default_rng(0)
    images = (rng.standard_normal((len(config.modalities), *mask.shape), dtype=np.float32) * mask)
    anatomy = rng.standard_normal((6, *mask.shape), dtype=np.float32)
    rss_setup = _peak_rss_mib()

    t0 = time.perf_counter()
    net = fused_for_inference(bundle.members[0])
    prepare_s = time.perf_counter() - t0
    x = torch.from_numpy(np.ascontiguousarray(images[(slice(None), *crop)]))[None]
    a = torch.from_numpy(np.ascontiguousarray(anatomy[(slice(None), *crop)]))[None]
    x = x.contiguous(memory_format=torch.channels_last_3d)
    a = a.contiguous(memory_format=torch.channels_last_3d)
    forward_s, forward_cpu_s = [], []
    with torch.inference_mode():
        for r in range(runs + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            net(x, a, sphere=False)
            if r:  # the first pass is a warm-up (oneDNN kernel generation)
                forward_s.append(time.perf_counter() - t0)
                forward_cpu_s.append(time.process_time() - c0)
    rss_forward = _peak_rss_mib()
    predict_s = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pred = predict(bundle, images, anatomy, mask, device="cpu")
        predict_s.append(time.perf_counter() - t0)
    voxels = int(np.prod([n + (-n) % config.multiple for n in crop_shape]))
    result = {
        "base_channels": base, "depth": depth, "head_channels": config.head_channels,
        "level_channels": config.level_channels(), "parameters": count_parameters(bundle.members[0]),
        "crop_shape_kji": list(crop_shape), "threads": threads,
        "prepare_s": round(prepare_s, 4),
        "forward_s": [round(t, 3) for t in forward_s], "forward_median_s": round(statistics.median(forward_s), 3),
        # CPU seconds of all threads: on a shared machine, wall ~ cpu / threads when idle
        "forward_cpu_median_s": round(statistics.median(forward_cpu_s), 3),
        "predict_s": [round(t, 3) for t in predict_s], "predict_median_s": round(statistics.median(predict_s), 3),
        "predict_mode": pred.mode,
        "rss_after_setup_mib": round(rss_setup),
        "peak_rss_inference_mib": round(rss_forward),
        "estimated_activation_mib": round(voxels * bundle.members[0].activation_bytes_per_voxel() / 2**20),
    }
    if train:
        result["train"] = train_step(config, threads, train_batch)
    return result


def train_step(config, threads: int, batch: int) -> dict:
    """Forward + backward of the full model (both heads, train-mode BN) on a batch of crops."""
    import torch
    import torch.nn.functional as F

    from allnet.model import ALLNet

    torch.manual_seed(0)
    net = ALLNet(config).train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    shape = (48, 128, 128)
    x = torch.randn(batch, len(config.modalities), *shape)
    a = torch.randn(batch, config.n_anatomy, *shape)
    y = (torch.rand(batch, 1, *shape) > 0.99).float()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = net(x, a)
        loss = F.binary_cross_entropy_with_logits(out["lesion"], y)
        if out["sphere"] is not None:
            loss = loss + F.binary_cross_entropy_with_logits(out["sphere"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"batch": batch, "crop_kji": list(shape), "step_s": [round(t, 2) for t in times],
            "peak_rss_mib": round(_peak_rss_mib())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="16:4,8:4:16",
                        help="comma-separated base_channels:depth[:head_channels]")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", action="store_true", help="also time one training step")
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # one configuration, in a fresh process
        base, depth, *head = (int(v) for v in args.child.split(":"))
        result = run_config(base, depth, head[0] if head else None, args.runs, args.threads,
                            args.train, args.train_batch)
        print("RESULT " + json.dumps(result))
        return

    import torch

    load_before = os.getloadavg()
    results = []
    for spec in args.configs.split(","):
        cmd = [sys.executable, __file__, "--child", spec, "--runs", str(args.runs),
               "--threads", str(args.threads), "--train-batch", str(args.train_batch)]
        if args.train:
            cmd.append("--train")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT "):]))
        print(f"done {spec}: load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    report = {
        "benchmark": "network_cpu", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "runs": args.runs,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "results": results,
    }
    header = (f"{'base:depth:head':>16} {'params':>9} {'crop (KJI)':>16} {'forward s':>10} "
              f"{'fwd CPU s':>10} {'predict s':>10} {'peak RSS MiB':>13} {'est. act. MiB':>14} {'train step s':>13} {'train RSS MiB':>14}")
    print(header)
    for r in results:
        train = r.get("train", {})
        print(f"{r['base_channels']:>8}:{r['depth']}:{r['head_channels']:<5} {r['parameters']:>9} "
              f"{'x'.join(map(str, r['crop_shape_kji'])):>16} {r['forward_median_s']:>10.2f} "
              f"{r['forward_cpu_median_s']:>10.2f} "
              f"{r['predict_median_s']:>10.2f} {r['peak_rss_inference_mib']:>13} "
              f"{r['estimated_activation_mib']:>14} "
              f"{(statistics.median(train['step_s']) if train else float('nan')):>13.1f} "
              f"{train.get('peak_rss_mib', float('nan')):>14}")
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']} "
          f"({os.cpu_count()} cores)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
