"""Typed description of a host: its GPUs, CPU and RAM, detected or taken from a profile."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

GIB = 1024**3
MIB = 1024**2

Vendor = Literal["nvidia", "amd", "cpu"]


class Gpu(BaseModel):
    """One accelerator as the planner sees it."""

    name: str
    key: str | None = Field(None, description="gpus.yaml key when known")
    vendor: Vendor
    arch: str = Field(description="hopper, ampere, ada, blackwell, blackwell-consumer, cdna3, rdna3.5, unknown")
    compute_capability: str | None = None
    gfx_target: str | None = None
    memory_bytes: int = Field(gt=0, description="total device memory (NVML/sysfs), or the GTT/RAM budget on unified parts")
    visible_bytes: int = Field(gt=0, description="total as the CUDA/HIP runtime reports it (vLLM's total)")
    bandwidth_gbs: float | None = None
    bf16_tflops: float | None = Field(None, description="dense BF16 tensor peak (throughput model)")
    interconnect: str | None = Field(None, description="nvlink, xgmi, pcie or unified (throughput model)")
    link_gbs: float | None = Field(None, description="per-direction GPU-to-GPU bandwidth, GB/s")
    unified_memory: bool = False
    consumer: bool = False
    memory_source: str = "profile"
    used_bytes: int | None = Field(None, ge=0, description="memory other processes held when this GPU was detected "
                                                            "(runtime total - NVML free); None: not read (profiles)")

    @property
    def visible_gib(self) -> float:
        """Runtime-visible memory in GiB."""
        return self.visible_bytes / GIB


class Cpu(BaseModel):
    """The host CPU."""

    model: str = "unknown"
    arch: str = Field("x86_64", description="machine architecture as uname -m prints it (x86_64, aarch64)")
    cores: int | None = None
    avx512: bool = False
    amx: bool = False


class AmdHostSettings(BaseModel):
    """Kernel settings that bound what a Strix Halo GPU can use."""

    kernel: str | None = None
    gttsize_mib: int | None = Field(None, description="amdgpu.gttsize kernel parameter, MiB")
    ttm_pages_limit: int | None = Field(None, description="ttm.pages_limit, 4 KiB pages")


class Host(BaseModel):
    """A machine to plan for."""

    gpus: list[Gpu] = Field(default_factory=list)
    cpu: Cpu = Field(default_factory=Cpu)
    ram_bytes: int | None = None
    source: str = Field(description="'detected', 'profile:<name>' or 'composed:<gpu>x<n>'")
    amd: AmdHostSettings | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def gpu(self) -> Gpu | None:
        """The (first) GPU; hosts are planned as homogeneous."""
        return self.gpus[0] if self.gpus else None

    @property
    def gpu_count(self) -> int:
        """Number of GPUs."""
        return len(self.gpus)

    def describe(self) -> str:
        """One line such as '4x NVIDIA L40S (45.0 GiB each)'."""
        if not self.gpus:
            return f"CPU only ({self.cpu.model})"
        gpu = self.gpus[0]
        shared = ", unified with system RAM" if gpu.unified_memory else ""
        return f"{len(self.gpus)}x {gpu.name} ({gpu.memory_bytes / GIB:.1f} GiB each{shared})"
