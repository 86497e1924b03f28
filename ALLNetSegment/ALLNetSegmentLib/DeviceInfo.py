"""Text about the compute device for the panel; torch is used only if it is already importable."""
from __future__ import annotations

import importlib.util


def describeDevices(torchModule=None) -> str:
    """One line: the detected CUDA GPU and its memory, or why the CPU will be used."""
    torch = torchModule
    if torch is None:
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed yet (installed on the first run); device unknown."
        import torch
    if not torch.cuda.is_available():
        return "No CUDA GPU found: ALLNet will run on the CPU (expect minutes per case)."
    properties = torch.cuda.get_device_properties(0)
    memoryGiB = properties.total_memory / 1024 ** 3
    advice = " Under 6 GiB: choose the fast ensemble." if memoryGiB < 6 else ""
    return f"GPU: {properties.name} ({memoryGiB:.1f} GiB).{advice}"
