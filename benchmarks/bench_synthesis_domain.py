"""Domain-randomised synthesis: rendered regions per second, and whole training crops
(render + sphere map + spatial augmentation) per second, on one thread.

    python benchmarks/bench_synthesis_domain.py --dev-data ../shared/data --cache runs/cache \
        --out benchmarks/results/synthesis_domain.json

Uses every brain and lesion map a training run would (``domain_synth.build_from_data``);
brain sources that are not cached yet are computed first (not timed). Median over ``--runs``
samples after one warm-up.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import peak_rss_mib, write_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev-data", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--crop", type=int, nargs=3, default=[32, 64, 64])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import numpy as np
    import psutil
    import torch

    torch.set_num_threads(1)
    from allnet_training.cache import load_cached, prepare_cases
    from allnet_training.data import dev_cases
    from allnet_training.domain_synth import build_from_data
    from allnet_training.patches import CropSampler, SamplerConfig, region_shape
    from allnet_training.synthetic import load_shape_bank

    cases = dev_cases(args.dev_data)
    cached = [load_cached(p) for p in prepare_cases(cases, args.cache)]
    masks = args.dev_data / "lesjak2018" / "lesion_masks_mni"
    bank = load_shape_bank(masks, exclude={c.subject_id for c in cases})
    t0 = time.perf_counter()
    synth = build_from_data(cached, args.dev_data, args.cache, masks, bank)
    build_seconds = time.perf_counter() - t0
    region = region_shape(tuple(args.crop))
    render = []
    for run in range(args.runs + 1):
        t0 = time.perf_counter()
        synth.render(region, 0.6, np.random.default_rng(run))
        if run:
            render.append(time.perf_counter() - t0)
    sampler = CropSampler(cached, SamplerConfig(crop=tuple(args.crop), lesion_p=0.6, synthetic_ratio=1.0),
                          bank=bank, synth=synth)
    crops = []
    for run in range(args.runs + 1):
        t0 = time.perf_counter()
        sampler.sample(1000 + run)
        if run:
            crops.append(time.perf_counter() - t0)
    real = CropSampler(cached, SamplerConfig(crop=tuple(args.crop), lesion_p=0.6), bank=bank)
    real_crops = []
    for run in range(args.runs + 1):
        t0 = time.perf_counter()
        real.sample(2000 + run)
        if run:
            real_crops.append(time.perf_counter() - t0)
    report = {
        "benchmark": "synthesis_domain",
        "config": {"crop_kji": args.crop, "region_kji": list(region), "runs": args.runs, "threads": 1},
        "brains": [b.brain_id for b in synth.brains], "lesion_maps": len(synth.maps),
        "build_seconds": build_seconds,
        "render_seconds_median": statistics.median(render),
        "render_per_second": 1.0 / statistics.median(render),
        "synthetic_crop_seconds_median": statistics.median(crops),
        "real_crop_seconds_median": statistics.median(real_crops),
        "peak_rss_mib": peak_rss_mib(),
        "load_average": list(psutil.getloadavg()),
        "machine": f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} logical cores",
    }
    print(report)
    if args.out:
        write_report(report, args.out)


if __name__ == "__main__":
    main()
