"""CPU and RAM from /proc (cores, model, AVX-512/AMX, MemTotal)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from gptoss_deploy.hardware.types import Cpu


def read_meminfo(root: Path = Path("/")) -> dict[str, int]:
    """/proc/meminfo as {field: bytes}; empty when unreadable."""
    values: dict[str, int] = {}
    try:
        text = (root / "proc/meminfo").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            factor = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            values[name.strip()] = int(parts[0]) * factor
    return values


def detect_cpu(root: Path = Path("/")) -> Cpu:
    """Model name, logical cores and the vector extensions that matter for CPU-offloaded experts."""
    model, cores = "unknown", 0
    flags: set[str] = set()
    try:
        text = (root / "proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            cores += 1
        elif key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    if cores == 0 and root == Path("/"):
        cores = os.cpu_count() or 0
    return Cpu(
        model=model,
        arch=platform.machine() if root == Path("/") else "x86_64",
        cores=cores or None,
        avx512=any(f.startswith("avx512") for f in flags),
        amx=any(f.startswith("amx") for f in flags),
    )
