"""Where a run trains, and how results name the machine they ran on.

Usage::

    from zoo.train import describe_machine, resolve_device
    device = resolve_device("auto")             # CUDA when available, else the CPU
    print(describe_machine(device))             # e.g. "AMD EPYC 7B13, 1 torch thread"
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

__all__ = ["describe_machine", "resolve_device"]


def describe_machine(device: str | torch.device = "cpu") -> str:
    """The GPU's name on CUDA, else the CPU model and the torch threads: what results report."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{model}, {threads} torch thread{'' if threads == 1 else 's'}"


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a clear error.

    :raises ValueError: for an unknown device, or CUDA asked for where there is none.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.backends.cuda.is_built() else "without"
            raise ValueError(
                f"device={device!r} was asked for, but no CUDA device is available (this torch "
                f"{torch.__version__} is built {built} CUDA). Use device='cpu' or 'auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"{device!r}: only {torch.cuda.device_count()} CUDA device(s) exist")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return resolved
