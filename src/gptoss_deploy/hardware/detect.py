"""Detect this host: NVIDIA (NVML), then AMD (sysfs), plus CPU and RAM."""

from __future__ import annotations

from pathlib import Path

from gptoss_deploy.hardware.amd import detect_amd
from gptoss_deploy.hardware.cpu import detect_cpu, read_meminfo
from gptoss_deploy.hardware.nvidia import gpu_from_nvml, read_nvml
from gptoss_deploy.hardware.types import Host


def detect_host(root: Path = Path("/")) -> Host:
    """The machine this runs on. Never fails: a host without GPUs is a CPU-only host."""
    notes: list[str] = []
    devices, facts = read_nvml() if root == Path("/") else ([], {})
    gpus = [gpu_from_nvml(device, root) for device in devices]
    amd_settings = None
    if facts:
        notes.append(f"NVIDIA driver {facts.get('driver')}, CUDA {facts.get('cuda', '?')}")
    if not gpus:
        gpus, amd_settings, amd_notes = detect_amd(root)
        notes.extend(amd_notes)
    names = {gpu.name for gpu in gpus}
    if len(names) > 1:
        notes.append(f"mixed GPUs ({', '.join(sorted(names))}): planning for the first kind on all")
    ram = read_meminfo(root).get("MemTotal")
    return Host(gpus=gpus, cpu=detect_cpu(root), ram_bytes=ram, source="detected", amd=amd_settings, notes=notes)
