"""NVIDIA GPUs through NVML (nvidia-ml-py). Unified-memory parts (GB10) report memory as 'Not Supported'."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gptoss_deploy.hardware.cpu import read_meminfo
from gptoss_deploy.hardware.profiles import DEFAULT_RESERVED_GIB, find_gpu_key, gpu_from_spec
from gptoss_deploy.hardware.types import GIB, Gpu

_ARCH_BY_MAJOR = {7: "volta-turing", 8: "ampere", 9: "hopper", 10: "blackwell", 12: "blackwell-consumer"}


class NvmlReading(Protocol):
    """What we read from NVML for one device (a real NVML handle or a captured reading in tests)."""

    name: str
    memory_total: int | None  # None when NVML says "Not Supported"
    compute_capability: tuple[int, int]


class CapturedNvmlDevice:
    """A plain NVML reading (used for captured readings and as the result of `read_nvml`)."""

    def __init__(self, name: str, memory_total: int | None, compute_capability: tuple[int, int],
                 memory_free: int | None = None) -> None:
        self.name = name
        self.memory_total = memory_total
        self.compute_capability = compute_capability
        self.memory_free = memory_free  # NVML's free bytes (None: not read or not supported)


def arch_for(cc: tuple[int, int]) -> str:
    """Architecture family for a compute capability ((8, 9) is Ada, not Ampere)."""
    if cc == (8, 9):
        return "ada"
    return _ARCH_BY_MAJOR.get(cc[0], "unknown")


def read_nvml() -> tuple[list[CapturedNvmlDevice], dict[str, str]]:
    """Devices and driver facts from NVML; ([], {}) when NVML or the driver is absent."""
    try:
        import pynvml
    except ImportError:
        return [], {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return [], {}
    try:
        facts = {"driver": _str(pynvml.nvmlSystemGetDriverVersion())}
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            facts["cuda"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except pynvml.NVMLError:
            pass
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                info = pynvml.nvmlDeviceGetMemoryInfo(handle)
                memory: int | None = int(info.total)
                free: int | None = int(info.free)
            except pynvml.NVMLError:  # NVML_ERROR_NOT_SUPPORTED on GB10 / unified memory
                memory = free = None
            cc = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))
            devices.append(CapturedNvmlDevice(_str(pynvml.nvmlDeviceGetName(handle)), memory, (cc[0], cc[1]), free))
        return devices, facts
    finally:
        pynvml.nvmlShutdown()


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def gpu_from_nvml(device: NvmlReading, root: Path = Path("/")) -> Gpu:
    """A `Gpu` from one NVML reading; memory falls back to /proc/meminfo on unified-memory parts."""
    key = find_gpu_key(device.name)
    known = gpu_from_spec(key) if key else None
    cc = device.compute_capability
    if device.memory_total is None:
        total = read_meminfo(root).get("MemTotal", 0)
        memory, visible, unified, source = total, total, True, "meminfo (NVML memory not supported: unified)"
        if known and known.unified_memory:
            visible = min(total, known.visible_bytes)
    else:
        memory, unified, source = device.memory_total, False, "nvml"
        reserved = (known.memory_bytes - known.visible_bytes) if known else int(DEFAULT_RESERVED_GIB * GIB)
        visible = memory - max(reserved, 0)
    free = getattr(device, "memory_free", None)
    # what other processes hold, as the CUDA runtime will see it (its total is `visible`; the driver's own reserve
    # is already outside it)
    used = max(0, visible - free) if free is not None and not unified else None
    return Gpu(
        name=device.name, key=key, vendor="nvidia", arch=arch_for(cc),
        compute_capability=f"{cc[0]}.{cc[1]}", memory_bytes=memory, visible_bytes=visible,
        bandwidth_gbs=known.bandwidth_gbs if known else None, unified_memory=unified,
        bf16_tflops=known.bf16_tflops if known else None, interconnect=known.interconnect if known else None,
        link_gbs=known.link_gbs if known else None,
        consumer=known.consumer if known else "geforce" in device.name.lower(), memory_source=source,
        used_bytes=used,
    )


def memory_used_bytes() -> int | None:
    """GPU memory in use on all NVIDIA devices (for startup progress); None without NVML or where unsupported."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except (ImportError, Exception):  # pynvml.NVMLError, or no driver library at all
        return None
    try:
        used = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            used += int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used)
        return used
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()
