"""Text about the compute device for the panel, asked of a separate Python process.

Importing torch in Slicer's GUI process would initialise CUDA there (seconds, hundreds of MB)
and would hold the old torch in memory if the PyTorch extension replaces it later; so the panel
asks a short-lived PythonSlicer process, and only when the user opens *Advanced*.
"""
from __future__ import annotations

import json
from collections.abc import Callable

# Run in the child: one JSON line describing what torch sees, or {"torch": null}.
PROBE_SCRIPT = """
import json
try:
    import torch
except ImportError:
    print(json.dumps({"torch": None}))
else:
    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        properties = torch.cuda.get_device_properties(0)
        info.update(name=properties.name, memoryBytes=properties.total_memory)
    print(json.dumps(info))
"""
PROBING_TEXT = "Detecting the GPU..."
NOT_PROBED_TEXT = "The GPU is detected when this section is opened."


def describeDevices(info: dict) -> str:
    """One line from the probe's answer: the CUDA GPU and its memory, or why the CPU will be used."""
    if not info.get("torch"):
        return "PyTorch is not installed yet (installed on the first run); device unknown."
    if not info.get("cuda"):
        return "No CUDA GPU found: ALLNet will run on the CPU (expect minutes per case)."
    memoryGiB = float(info.get("memoryBytes", 0)) / 1024 ** 3
    advice = " Under 6 GiB: choose the fast ensemble." if memoryGiB < 6 else ""
    return f"GPU: {info.get('name', 'unknown')} ({memoryGiB:.1f} GiB).{advice}"


def probeDevices(python: str, onText: Callable[[str], None]) -> None:
    """Ask ``python`` what torch sees, without blocking; ``onText(line)`` gets the description."""
    import slicer

    lines: list[str] = []

    def completed(returnCode: int) -> None:
        for line in reversed(lines):
            if line.startswith("{"):
                try:
                    onText(describeDevices(json.loads(line)))
                    return
                except ValueError:
                    break
        onText(f"The GPU could not be detected (exit code {returnCode}); see the Python console.")

    slicer.util.launchConsoleProcess([python, "-c", PROBE_SCRIPT], blocking=False,
                                     logCallback=lines.append, completedCallback=completed)
