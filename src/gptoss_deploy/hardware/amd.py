"""AMD GPUs from sysfs (and KFD topology); Strix Halo's budget is GTT, not the 512 MiB VRAM carve-out."""

from __future__ import annotations

from pathlib import Path

from packaging.version import InvalidVersion, Version

from gptoss_deploy.hardware.profiles import find_gpu_key, gpu_from_spec
from gptoss_deploy.hardware.types import GIB, AmdHostSettings, Gpu

AMD_VENDOR_ID = "0x1002"
# Kernels before 6.16.9 cap what HIP can allocate on gfx1151 at about 15.5 GB (gptoss-facts.md, seed 002).
STRIX_MIN_KERNEL = Version("6.16.9")
STRIX_OLD_KERNEL_CAP_BYTES = int(15.5 * 10**9)
# What to leave to the OS when the GPU's GTT budget is raised on a unified-memory APU (a heuristic, UNVERIFIED).
GTT_OS_RESERVE_GIB = 8
_ARCH_BY_GFX = {"gfx942": "cdna3", "gfx950": "cdna4", "gfx1151": "rdna3.5", "gfx1100": "rdna3"}


def arch_for_gfx(gfx: str) -> str:
    """Architecture family for a gfx target (gfx942 -> cdna3), 'unknown' for others."""
    return _ARCH_BY_GFX.get(gfx, "unknown")


def recommended_gtt(ram_gib: float) -> tuple[int, int]:
    """(amdgpu.gttsize in MiB, ttm.pages_limit in 4 KiB pages) giving the GPU all RAM but GTT_OS_RESERVE_GIB."""
    gtt_mib = max(0, int((ram_gib - GTT_OS_RESERVE_GIB) * 1024))
    return gtt_mib, gtt_mib * 256


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text and text.lstrip("-").isdigit() else None


def gfx_from_target_version(value: int) -> str:
    """KFD `gfx_target_version` (e.g. 110501) to a gfx name (gfx1151)."""
    major, minor, step = value // 10000, value // 100 % 100, value % 100
    return f"gfx{major}{minor:x}{step:x}"


def kfd_gfx_targets(root: Path = Path("/")) -> list[str]:
    """gfx names of GPU nodes in the KFD topology (CPU nodes report 0)."""
    targets = []
    for props in sorted((root / "sys/class/kfd/kfd/topology/nodes").glob("*/properties")):
        for line in (_read(props) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "gfx_target_version" and value.strip().isdigit() and int(value) > 0:
                targets.append(gfx_from_target_version(int(value)))
    return targets


def read_host_settings(root: Path = Path("/")) -> AmdHostSettings:
    """Kernel release and the amdgpu.gttsize / ttm.pages_limit module parameters."""
    gtt = _read_int(root / "sys/module/amdgpu/parameters/gttsize")
    return AmdHostSettings(
        kernel=_read(root / "proc/sys/kernel/osrelease"),
        gttsize_mib=gtt if gtt and gtt > 0 else None,  # -1 = driver default (half of RAM)
        ttm_pages_limit=_read_int(root / "sys/module/ttm/parameters/pages_limit"),
    )


def kernel_caps_strix(kernel: str | None) -> bool:
    """True when this kernel release caps HIP allocations on gfx1151 (< 6.16.9)."""
    if not kernel:
        return False
    try:
        return Version(kernel.split("-")[0]) < STRIX_MIN_KERNEL
    except InvalidVersion:
        return False


def detect_amd(root: Path = Path("/")) -> tuple[list[Gpu], AmdHostSettings | None, list[str]]:
    """AMD GPUs with their memory budget, the host settings and notes for the user."""
    cards = []
    for device in sorted((root / "sys/class/drm").glob("card[0-9]*/device")):
        if _read(device / "vendor") == AMD_VENDOR_ID and (device / "mem_info_vram_total").exists():
            cards.append(device)
    if not cards:
        return [], None, []
    settings = read_host_settings(root)
    targets = kfd_gfx_targets(root)
    gpus, notes = [], []
    for index, device in enumerate(cards):
        vram = _read_int(device / "mem_info_vram_total") or 0
        gtt = _read_int(device / "mem_info_gtt_total") or 0
        gfx = targets[index] if index < len(targets) else None
        product = _read(device / "product_name")
        # the product name first: one gfx target serves several products (gfx942: MI300X and MI325X)
        key = (find_gpu_key(product) if product else None) or (find_gpu_key(gfx) if gfx else None)
        known = gpu_from_spec(key) if key else None
        unified = vram < 4 * GIB and gtt > vram  # APU: small carve-out, real budget in GTT
        budget = gtt if unified else vram
        source = "sysfs mem_info_gtt_total (APU: GTT is the budget)" if unified else "sysfs mem_info_vram_total"
        visible = budget
        if gfx == "gfx1151" and kernel_caps_strix(settings.kernel):
            visible = min(budget, STRIX_OLD_KERNEL_CAP_BYTES)
            notes.append(f"kernel {settings.kernel} < 6.16.9 caps HIP memory on gfx1151 at ~15.5 GB: "
                         "upgrade the kernel to use the full GTT")
        if unified and settings.gttsize_mib is None:
            notes.append("amdgpu.gttsize is not set: GTT defaults to half of RAM; raise amdgpu.gttsize and "
                         "ttm.pages_limit to give the GPU more")
        name = product or (known.name if known else f"AMD GPU {gfx or 'unknown'}")
        gpus.append(Gpu(
            name=name, key=key, vendor="amd", arch=arch_for_gfx(gfx or ""), gfx_target=gfx,
            memory_bytes=budget, visible_bytes=max(visible, 1), unified_memory=unified,
            bandwidth_gbs=known.bandwidth_gbs if known else None, memory_source=source,
            bf16_tflops=known.bf16_tflops if known else None, interconnect=known.interconnect if known else None,
            link_gbs=known.link_gbs if known else None,
        ))
    return gpus, settings, notes
