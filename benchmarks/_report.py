"""Shared bits of the benchmark scripts: peak memory and the JSON report file."""
from __future__ import annotations

import json
import resource
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_report(report: dict, out: str | Path) -> Path:
    """Write ``report`` as indented JSON to ``out`` (folders created) and say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out}")
    return out
