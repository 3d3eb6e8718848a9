"""Named hardware profiles from data/gpus.yaml: plan for a box you don't have."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from gptoss_deploy import data
from gptoss_deploy.data.schema import GpuSpec
from gptoss_deploy.errors import InputError, UnknownProfileError
from gptoss_deploy.hardware.types import GIB, MIB, Cpu, Gpu, Host

DEFAULT_RESERVED_GIB = 0.45  # NVML total minus what the CUDA runtime reports, when a profile gives no visible_gib
_COUNT_PREFIX = re.compile(r"^(\d+)\s*[x×*]\s*(.+)$", re.IGNORECASE)


def _normalise(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _gpu_table() -> dict[str, GpuSpec]:
    return data.gpu_catalog().gpus


def _gpu_index() -> dict[str, str]:
    """Every key and alias (normalised) -> gpus.yaml key."""
    index: dict[str, str] = {}
    for key, spec in _gpu_table().items():
        index[_normalise(key)] = key
        for alias in spec.aliases:
            index[_normalise(alias)] = key
    return index


def gpu_from_spec(key: str) -> Gpu:
    """Build a `Gpu` from the gpus.yaml entry `key`."""
    spec = _gpu_table()[key]
    memory = int(spec.memory_mib * MIB)
    visible = int(spec.visible_gib * GIB) if spec.visible_gib else memory - int(DEFAULT_RESERVED_GIB * GIB)
    return Gpu(
        name=spec.name, key=key, vendor=spec.vendor, arch=spec.arch, compute_capability=spec.compute_capability,
        gfx_target=spec.gfx_target, memory_bytes=memory, visible_bytes=visible, bandwidth_gbs=spec.bandwidth_gbs,
        unified_memory=spec.unified_memory, consumer=spec.consumer, memory_source="profile", **performance(spec),
    )


def performance(spec: GpuSpec | None) -> dict[str, Any]:
    """The catalog's compute peak and interconnect for a Gpu (empty when the GPU is not in the catalog)."""
    if spec is None:
        return {}
    return {"bf16_tflops": spec.bf16_tflops, "interconnect": spec.interconnect, "link_gbs": spec.link_gbs}


def find_gpu_key(name: str) -> str | None:
    """The gpus.yaml key for a GPU name or alias ('L40S', 'NVIDIA H100 80GB HBM3'), or None."""
    index = _gpu_index()
    norm = _normalise(name)
    if norm in index:
        return index[norm]
    # NVML names carry vendor prefixes and suffixes ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB").
    # Whole words only: "NVIDIA L40" is not an L4, "A100" is not an A10.
    for alias in sorted(index, key=len, reverse=True):
        if len(alias) >= 4 and re.search(rf"(?<![a-z0-9]){re.escape(alias)}(?![a-z0-9])", norm):
            return index[alias]
    return None


def profile_names() -> list[str]:
    """All names `--profile` accepts (hosts, GPU keys and aliases)."""
    catalog = data.gpu_catalog()
    names = set(catalog.hosts) | set(catalog.gpus)
    for spec in catalog.gpus.values():
        names.update(_normalise(a) for a in spec.aliases)
    return sorted(names)


def _unknown(name: str, what: str) -> UnknownProfileError:
    candidates = profile_names()
    close = difflib.get_close_matches(_normalise(name), candidates, n=5, cutoff=0.4)
    hint = (f"did you mean: {', '.join(close)}?" if close else "") + " Run `gptoss profiles` to list them all."
    if what == "GPU":
        hint += (" Or describe it: --gpu NAME --gpu-memory-gib G --compute-capability X.Y (NVIDIA) or --gfx-target "
                 "gfxNNNN (AMD) [--gpu-bandwidth-gbs B].")
    return UnknownProfileError(f"unknown {what} {name!r}", hint=hint.strip())


def compose_host(gpu_name: str, count: int, ram_gib: float | None = None) -> Host:
    """A host of `count` identical GPUs named `gpu_name` (`--gpu L40S --gpus 4`)."""
    if count < 1:
        raise InputError(f"--gpus must be at least 1, got {count}", hint="pass the number of GPUs in the box")
    key = find_gpu_key(gpu_name)
    if key is None:
        raise _unknown(gpu_name, "GPU")
    gpu = gpu_from_spec(key)
    ram = int(ram_gib * GIB) if ram_gib else None
    if gpu.unified_memory and ram is None:
        ram = gpu.memory_bytes
    arch = _gpu_table()[key].host_arch or "x86_64"
    return Host(gpus=[gpu] * count, ram_bytes=ram, cpu=Cpu(arch=arch), source=f"composed:{key}x{count}")


@dataclass(frozen=True)
class GpuDescription:
    """A GPU described on the command line (`--gpu NAME --gpu-memory-gib G --compute-capability X.Y`)."""

    name: str
    memory_gib: float
    bandwidth_gbs: float | None = None
    compute_capability: str | None = None
    gfx_target: str | None = None


def describe_gpu(description: GpuDescription) -> Gpu:
    """A Gpu for a model the catalog lacks: the architecture from the compute capability (NVIDIA) or the gfx
    target (AMD); the runtime sees the memory less DEFAULT_RESERVED_GIB, as for catalog entries without a
    measured figure."""
    from gptoss_deploy.hardware.amd import arch_for_gfx
    from gptoss_deploy.hardware.nvidia import arch_for

    if description.compute_capability:
        match = re.fullmatch(r"(\d{1,2})\.(\d)", description.compute_capability.strip())
        if match is None:
            raise InputError(f"--compute-capability {description.compute_capability!r} is not MAJOR.MINOR",
                             hint="e.g. 8.6 (A10G, RTX 3090), 8.9 (L4), 9.0 (H100), 10.0 (B200), 12.0 (RTX 5090)")
        cc = (int(match.group(1)), int(match.group(2)))
        vendor, arch, gfx = "nvidia", arch_for(cc), None
        capability: str | None = f"{cc[0]}.{cc[1]}"
    else:
        gfx = (description.gfx_target or "").strip().lower()
        if not re.fullmatch(r"gfx[0-9a-f]{3,4}", gfx):
            raise InputError(f"--gfx-target {description.gfx_target!r} is not an AMD gfx name",
                             hint="e.g. gfx942 (MI300X/MI325X), gfx950 (MI355X), gfx1151 (Strix Halo)")
        vendor, arch, capability = "amd", arch_for_gfx(gfx), None
    memory = int(description.memory_gib * GIB)
    reserved = int(DEFAULT_RESERVED_GIB * GIB)
    return Gpu(name=description.name, key=None, vendor=vendor, arch=arch, compute_capability=capability,
               gfx_target=gfx, memory_bytes=memory, visible_bytes=max(memory - reserved, memory // 2),
               bandwidth_gbs=description.bandwidth_gbs, memory_source="described")


def described_host(description: GpuDescription, count: int, ram_gib: float | None = None) -> Host:
    """A host of `count` described GPUs."""
    if count < 1:
        raise InputError(f"--gpus must be at least 1, got {count}", hint="pass the number of GPUs in the box")
    gpu = describe_gpu(description)
    ram = int(ram_gib * GIB) if ram_gib else None
    return Host(gpus=[gpu] * count, ram_bytes=ram, source=f"described:{_normalise(description.name)}x{count}")


def profile_host(name: str) -> Host:
    """The host for a `--profile` name: a host entry ('4xL40S'), a GPU ('h100-80gb') or 'N x GPU'."""
    hosts = data.gpu_catalog().hosts
    norm = _normalise(name)
    if norm in hosts:
        entry = hosts[norm]
        host = compose_host(entry.gpu, entry.count, entry.ram_gib)
        return host.model_copy(update={"source": f"profile:{norm}"})
    match = _COUNT_PREFIX.match(norm)
    if match and find_gpu_key(match.group(2)):
        host = compose_host(match.group(2), int(match.group(1)))
        return host.model_copy(update={"source": f"profile:{norm}"})
    if find_gpu_key(norm):
        host = compose_host(norm, 1)
        return host.model_copy(update={"source": f"profile:{norm}"})
    raise _unknown(name, "profile")
