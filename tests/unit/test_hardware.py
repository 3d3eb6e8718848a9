"""Hardware detection from captured sysfs/proc/NVML readings, and named profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptoss_deploy.errors import InputError, UnknownProfileError
from gptoss_deploy.hardware.amd import detect_amd, gfx_from_target_version
from gptoss_deploy.hardware.cpu import detect_cpu
from gptoss_deploy.hardware.nvidia import CapturedNvmlDevice, gpu_from_nvml
from gptoss_deploy.hardware.profiles import compose_host, find_gpu_key, profile_host

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sysfs"
GIB = 1024**3


def test_strix_halo_budget_is_gtt_and_old_kernel_caps_it() -> None:
    gpus, settings, notes = detect_amd(FIXTURES / "strix-halo-6.8")
    assert len(gpus) == 1
    gpu = gpus[0]
    assert gpu.gfx_target == "gfx1151" and gpu.arch == "rdna3.5" and gpu.unified_memory
    assert gpu.memory_bytes == 62 * GIB  # GTT, not the 512 MiB carve-out
    assert gpu.visible_bytes == int(15.5e9)  # kernel 6.8 < 6.16.9
    assert settings is not None and settings.kernel == "6.8.0-60-generic" and settings.gttsize_mib is None
    assert any("6.16.9" in n for n in notes) and any("amdgpu.gttsize" in n for n in notes)


def test_gfx_target_version_decoding() -> None:
    assert gfx_from_target_version(110501) == "gfx1151"
    assert gfx_from_target_version(90402) == "gfx942"


def test_gb10_nvml_memory_not_supported_falls_back_to_meminfo() -> None:
    gpu = gpu_from_nvml(CapturedNvmlDevice("NVIDIA GB10", None, (12, 1)), FIXTURES / "gb10")
    assert gpu.unified_memory and gpu.arch == "blackwell-consumer"
    assert gpu.memory_bytes == 127_535_000 * 1024
    assert gpu.visible_bytes <= gpu.memory_bytes
    assert "meminfo" in gpu.memory_source


def test_l40s_from_nvml_reading() -> None:
    gpu = gpu_from_nvml(CapturedNvmlDevice("NVIDIA L40S", 46_068 * 1024**2, (8, 9)), FIXTURES / "l40s-host")
    assert gpu.arch == "ada" and gpu.key == "l40s" and gpu.bandwidth_gbs == 864 and not gpu.unified_memory


def test_cpu_flags_and_cores() -> None:
    cpu = detect_cpu(FIXTURES / "l40s-host")
    assert cpu.amx and cpu.avx512 and cpu.cores == 1
    assert detect_cpu(FIXTURES / "strix-halo-6.8").cores == 2


def test_host_profiles() -> None:
    host = profile_host("4xL40S")
    assert host.gpu_count == 4 and host.gpu is not None and host.gpu.memory_bytes == 46_068 * 1024**2
    assert profile_host("8xH100").gpu_count == 8
    assert profile_host("3xh100").gpu_count == 3  # any GPU as N x GPU
    assert profile_host("h100-80gb").gpu_count == 1
    assert compose_host("L40S", 4).gpus == host.gpus


@pytest.mark.parametrize("name", ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090", "gfx1151"])
def test_nvml_and_gfx_names_map_to_profiles(name: str) -> None:
    assert find_gpu_key(name) is not None


def test_unknown_profile_lists_closest_names() -> None:
    with pytest.raises(UnknownProfileError) as caught:
        profile_host("4xl40")
    assert "4xl40s" in (caught.value.hint or "")
    assert caught.value.exit_code == 2


def test_zero_gpus_is_an_input_error() -> None:
    with pytest.raises(InputError):
        compose_host("L40S", 0)


def test_every_profile_number_has_a_source() -> None:
    from gptoss_deploy import data

    for key, spec in data.gpu_catalog().gpus.items():
        assert spec.source, key
        assert spec.memory_mib > 0 and spec.bandwidth_gbs and spec.bandwidth_gbs > 0
