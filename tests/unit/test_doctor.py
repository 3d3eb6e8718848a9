"""`gptoss doctor` judgements driven by captured readings of the seeds' machines: a 4x L40S host (NVML), a GB10
(NVML memory "Not Supported", unified), a Strix Halo on a 6.8 kernel (sysfs), and this CPU-only machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptoss_deploy.cli.main import main
from gptoss_deploy.data import load
from gptoss_deploy.doctor import checks
from gptoss_deploy.doctor.facts import DeviceNode, HostFacts
from gptoss_deploy.hardware.amd import detect_amd
from gptoss_deploy.hardware.cpu import detect_cpu, read_meminfo
from gptoss_deploy.hardware.nvidia import CapturedNvmlDevice, gpu_from_nvml
from gptoss_deploy.hardware.types import GIB, Host
from gptoss_deploy.models.resolve import resolve_model
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import PlanRequest
from tests.lane_support import data_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sysfs"
VLLM_CUDA = load("engine_facts").vllm_cuda


def facts_for(host: Host, root: Path, **extra: object) -> HostFacts:
    meminfo = read_meminfo(root)
    base = dict(host=host, mem_total_bytes=meminfo.get("MemTotal"), mem_available_bytes=meminfo.get("MemAvailable"),
                cache_dir="/data/hf", disk_free_bytes=500 * GIB, shm_bytes=16 * GIB, vocab_installed=True,
                vllm_version="0.32.0", llama_server="/usr/local/bin/llama-server")
    return HostFacts(**(base | extra))


def judge(facts: HostFacts, model: str = "gpt-oss-120b", target: str | None = None,
          request: PlanRequest | None = None) -> dict[str, checks.DoctorCheck]:
    spec = resolve_model(model)
    plan = make_plan(spec, facts.host, request or PlanRequest(vllm_version=facts.vllm_version), with_alternatives=False)
    return {c.name: c for c in checks.run(facts, plan, spec, target, False, VLLM_CUDA)}


def l40s_host() -> Host:
    root = FIXTURES / "l40s-host"
    gpus = [gpu_from_nvml(CapturedNvmlDevice("NVIDIA L40S", 46_068 * 1024**2, (8, 9)), root) for _ in range(4)]
    return Host(gpus=gpus, cpu=detect_cpu(root), ram_bytes=read_meminfo(root)["MemTotal"], source="captured")


def test_l40s_host_driver_cuda_against_the_vllm_wheel() -> None:
    root = FIXTURES / "l40s-host"
    old = judge(facts_for(l40s_host(), root, driver="550.127.05", cuda="12.4"))
    assert old["nvidia driver"].status == "fail" and ">= 580" in old["nvidia driver"].fix
    new = judge(facts_for(l40s_host(), root, driver="580.95.05", cuda="13.0"))
    assert new["nvidia driver"].status == "pass" and new["gpu"].detail.startswith("4 x NVIDIA L40S")
    assert new["plan"].status == "pass"


def test_container_toolkit_only_for_container_targets() -> None:
    root = FIXTURES / "l40s-host"
    bare = facts_for(l40s_host(), root, driver="580.95.05", cuda="13.0", docker=True, docker_server="27.3.1")
    assert "nvidia container toolkit" not in judge(bare)
    missing = judge(bare, target="docker")["nvidia container toolkit"]
    assert missing.status == "fail" and "nvidia-ctk" in missing.fix
    with_cdi = facts_for(l40s_host(), root, driver="580.95.05", cuda="13.0", docker=True, docker_server="27.3.1",
                         cdi_specs=["/etc/cdi/nvidia.yaml"])
    assert judge(with_cdi, target="compose")["nvidia container toolkit"].status == "pass"
    assert judge(facts_for(l40s_host(), root), target="docker")["docker"].status == "fail"


def test_shared_memory_for_tensor_parallel() -> None:
    root = FIXTURES / "l40s-host"
    small = facts_for(l40s_host(), root, driver="580", cuda="13.0", shm_bytes=64 * 2**20)
    result = judge(small, request=PlanRequest(vllm_version="0.32.0", tensor_parallel_size=2))
    assert result["shared memory"].status == "fail" and "--shm-size" in result["shared memory"].fix


def test_gb10_unified_memory_and_page_cache_advice() -> None:
    root = FIXTURES / "gb10"
    gpu = gpu_from_nvml(CapturedNvmlDevice("NVIDIA GB10", None, (12, 1)), root)
    host = Host(gpus=[gpu], cpu=detect_cpu(root), ram_bytes=read_meminfo(root)["MemTotal"], source="captured")
    facts = facts_for(host, root, driver="580.95.05", cuda="13.0")
    result = judge(facts)
    assert "unified" in result["gpu"].detail
    cache_full = facts.model_copy(update={"mem_available_bytes": int(facts.mem_total_bytes * 0.5)})
    advice = judge(cache_full)["unified memory"]
    assert advice.status == "warn" and "drop_caches" in advice.fix
    old = judge(facts_for(host, root, driver="580", cuda="13.0", vllm_version="0.14.0"))
    hang = old["known issue gb10-marlin-hang-oom"]  # the installed vLLM against the known-issue table
    assert hang.status == "warn" and hang.fix


def test_strix_halo_on_a_6_8_kernel() -> None:
    root = FIXTURES / "strix-halo-6.8"
    gpus, settings, _ = detect_amd(root)
    host = Host(gpus=gpus, cpu=detect_cpu(root), ram_bytes=read_meminfo(root)["MemTotal"], source="captured",
                amd=settings)
    devices = {"/dev/kfd": DeviceNode(exists=True, mode="0o660", group="render", usable=False),
               "/dev/dri/renderD128": DeviceNode(exists=True, mode="0o660", group="render", usable=True)}
    result = judge(facts_for(host, root, devices=devices))
    assert result["kernel"].status == "fail" and "6.16.9" in result["kernel"].fix
    assert result["/dev/kfd access"].status == "fail" and "`render`" in result["/dev/kfd access"].fix
    assert result["/dev/dri/renderD128 access"].status == "pass"
    assert result["HSA_OVERRIDE_GFX_VERSION"].status == "warn"
    assert result["amdgpu.gttsize / ttm.pages_limit"].status in ("warn", "pass")
    assert "GTT budget" in result
    fixed = judge(facts_for(host, root, devices=devices, kernel="6.17.1-arch1",
                            env={"HSA_OVERRIDE_GFX_VERSION": "11.5.1"}))
    assert fixed["kernel"].status == "pass" and fixed["HSA_OVERRIDE_GFX_VERSION"].status == "pass"


def test_disk_port_token_presence_and_known_issues() -> None:
    root = FIXTURES / "l40s-host"
    facts = facts_for(l40s_host(), root, driver="580", cuda="13.0", disk_free_bytes=10 * GIB, port_free=False,
                      secrets_present={"HF_TOKEN": True})
    result = judge(facts)
    assert result["disk"].status == "fail" and result["port"].status == "fail"
    assert result["HF token"].status == "pass" and "HF_TOKEN" in result["HF token"].detail


def test_doctor_on_this_machine_is_honest_and_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--model", "gpt-oss-20b", "--json"])
    report = data_of(capsys.readouterr().out, "doctor")
    names = {c["name"]: c for c in report["checks"]}
    assert code == (1 if any(c["status"] == "fail" for c in report["checks"]) else 0)
    assert {"gpu", "disk", "port", "HF token", "harmony vocab", "plan"} <= set(names)
    for secret in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        import os

        if os.environ.get(secret):
            assert os.environ[secret] not in json.dumps(report)


def test_docker_installed_but_its_daemon_down_fails_with_the_reason() -> None:
    root = FIXTURES / "l40s-host"
    down = facts_for(l40s_host(), root, docker=True, docker_error="Cannot connect to the Docker daemon at "
                     "unix:///var/run/docker.sock. Is the docker daemon running?")
    check = judge(down, target="docker")["docker"]
    assert check.status == "fail" and "does not answer" in check.detail and "systemctl start docker" in check.fix
    denied = facts_for(l40s_host(), root, docker=True, docker_error="permission denied while trying to connect to "
                       "the Docker daemon socket at unix:///var/run/docker.sock")
    assert "docker group" in judge(denied, target="docker")["docker"].fix
    up = facts_for(l40s_host(), root, docker=True, docker_server="27.3.1")
    assert judge(up, target="docker")["docker"].status == "pass"


def test_docker_server_asks_the_daemon_not_only_the_binary(tmp_path: Path) -> None:
    from gptoss_deploy.doctor.facts import docker_server

    down = tmp_path / "docker-down"
    down.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///x.sock.' >&2\nexit 1\n")
    up = tmp_path / "docker-up"
    up.write_text("#!/bin/sh\n[ \"$1 $2 $3\" = 'info --format {{.ServerVersion}}' ] && echo 27.3.1\n")
    for script in (down, up):
        script.chmod(0o755)
    assert docker_server(None) == (None, None)
    version, why = docker_server(str(down))
    assert version is None and why is not None and "Cannot connect" in why
    assert docker_server(str(up)) == ("27.3.1", None)


def rtx4090(used_gib: float | None) -> Host:
    """A desktop RTX 4090 as NVML reads it, with `used_gib` held by other processes (the display)."""
    total = 24_564 * 1024**2
    visible = gpu_from_nvml(CapturedNvmlDevice("NVIDIA GeForce RTX 4090", total, (8, 9))).visible_bytes
    free = None if used_gib is None else int(visible - used_gib * GIB)
    gpu = gpu_from_nvml(CapturedNvmlDevice("NVIDIA GeForce RTX 4090", total, (8, 9), free))
    return Host(gpus=[gpu], ram_bytes=64 * GIB, source="captured")


def test_memory_held_by_the_display_lowers_the_planned_utilization() -> None:
    from gptoss_deploy.plan.search import CUDA_CONTEXT_BYTES

    spec = resolve_model("gpt-oss-20b")
    idle = make_plan(spec, rtx4090(0.0), PlanRequest(), with_alternatives=False)
    busy_host = rtx4090(2.0)
    gpu = busy_host.gpus[0]
    assert gpu.used_bytes is not None and abs(gpu.used_bytes - 2 * GIB) < GIB // 100
    busy = make_plan(spec, busy_host, PlanRequest(), with_alternatives=False)
    assert idle.vllm is not None and busy.vllm is not None
    assert idle.vllm.gpu_memory_utilization >= 0.92
    util = busy.vllm.gpu_memory_utilization
    assert util < 0.92  # vLLM would refuse 0.92 with 2 GiB held
    assert util * gpu.visible_bytes <= gpu.visible_bytes - gpu.used_bytes - CUDA_CONTEXT_BYTES
    assert any("in use by other processes" in w and f"{util:g}" in w for w in busy.warnings)
    assert not any("in use by other processes" in w for w in idle.warnings)


def test_doctor_says_how_much_gpu_memory_is_held_and_what_the_plan_does() -> None:
    root = FIXTURES / "l40s-host"
    busy = judge(facts_for(rtx4090(2.0), root, driver="580.95.05", cuda="13.0"), model="gpt-oss-20b")
    check = busy["gpu memory in use"]
    assert check.status == "warn" and "2.00 GiB" in check.detail and "already lowered" in check.detail
    pinned = judge(facts_for(rtx4090(2.0), root, driver="580.95.05", cuda="13.0"), model="gpt-oss-20b",
                   request=PlanRequest(vllm_version="0.32.0", gpu_memory_utilization=0.95))
    assert pinned["gpu memory in use"].status == "fail" and "--gpu-memory-utilization" in pinned["gpu memory in use"].fix
    idle = judge(facts_for(rtx4090(0.0), root, driver="580.95.05", cuda="13.0"), model="gpt-oss-20b")
    assert idle["gpu memory in use"].status == "pass"
    assert "gpu memory in use" not in judge(facts_for(rtx4090(None), root), model="gpt-oss-20b")


def test_doctor_profile_is_a_what_if_for_that_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--profile", "dgx-spark", "--json"])
    out, err = capsys.readouterr()
    document = json.loads(out)
    names = {c["name"]: c for c in document["data"]["checks"]}
    assert code == 0 and "GB10" in names["gpu"]["detail"] and "known issue gb10-marlin-hang-oom" in names
    assert "port" not in names and "disk" not in names and "what-if for 1x NVIDIA GB10" in err
    assert main(["doctor", "--profile", "no-such-box"]) == 2
