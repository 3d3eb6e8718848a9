"""The deployment every target renders: plan + host + options -> command, env, image, devices, probes."""

from __future__ import annotations

import math
import posixpath
from pathlib import PurePosixPath

from pydantic import BaseModel, Field

from gptoss_deploy import __version__
from gptoss_deploy.engines import vllm as vllm_engine
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.plan.types import Plan

CONTAINER_PORT = 8000
MODELS_DIR = "/models"
HF_CACHE = "/root/.cache/huggingface"
SECRETS_DIR = "/run/secrets"
# Container images per engine and platform; tags pinned where the plan fixes a version.
# Sources: vLLM docker docs (vllm/vllm-openai, ROCm rocm/vllm); llama.cpp docs/docker.md (b11434) for the
# ghcr.io/ggml-org/llama.cpp:server* tags.
LLAMACPP_IMAGES = {"nvidia": "ghcr.io/ggml-org/llama.cpp:server-cuda", "amd": "ghcr.io/ggml-org/llama.cpp:server-rocm",
                   "cpu": "ghcr.io/ggml-org/llama.cpp:server"}
LLAMACPP_VULKAN_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-vulkan"


class RenderOptions(BaseModel):
    """How to deploy, beyond the plan."""

    port: int = CONTAINER_PORT
    public: bool = False  # publish on all interfaces (then an API key file is required)
    api_key_file: str | None = None  # path on the target host; never read
    hf_token_file: str | None = None
    served_name: str | None = None
    image: str | None = None
    name: str = "gptoss"


class Deployment(BaseModel):
    """Everything the templates need, decided once."""

    name: str
    plan_summary: str
    tool_version: str = __version__
    engine: str
    image: str
    image_note: str | None = None
    command: list[str]  # the full container command, exec form (the plan's engine args inside, unchanged)
    env: dict[str, str] = Field(default_factory=dict)
    served_name: str
    model_ref: str  # Hub id, or /models/<name> for a local model
    local_model: str | None = None  # host path to mount read-only
    container_port: int = CONTAINER_PORT
    host_port: int
    bind: str  # 127.0.0.1 or 0.0.0.0
    vendor: str  # nvidia, amd, cpu
    gpu_count: int
    gpu_devices: list[str] = Field(default_factory=list)  # /dev nodes for systemd DeviceAllow / docker --device
    shm_size_gib: int
    model_bytes: int
    cache_size_gib: int
    cold_start_s: int
    api_key: bool
    hf_token: bool
    amd_env: dict[str, str] = Field(default_factory=dict)
    gfx_target: str | None = None
    ram_gib: float | None = None
    engine_args: list[str] = Field(default_factory=list)
    nodes: int = 1
    gpus_per_node: int = 0


def _model_bytes(plan: Plan) -> int:
    if plan.memory is not None:
        return plan.memory.weights_bytes * (plan.vllm.tensor_parallel_size if plan.vllm else 1)
    if plan.llamacpp is not None:
        return plan.llamacpp.model_bytes
    return 0


def _model_ref(model: str) -> tuple[str, str | None]:
    """(reference inside the container, host path to mount) for a Hub id or a local path."""
    if model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf"):
        return posixpath.join(MODELS_DIR, PurePosixPath(model).name), model
    return model, None


def _summary(plan: Plan) -> str:
    if plan.vllm:
        v = plan.vllm
        how = (f"vLLM {v.version} TP{v.tensor_parallel_size}, max_model_len {v.max_model_len}, util "
               f"{v.gpu_memory_utilization}, attention {v.attention_backend}, MoE {v.moe_backend}")
    elif plan.llamacpp:
        how = (f"llama.cpp ctx {plan.llamacpp.n_ctx} x {plan.llamacpp.n_parallel} slots, -ngl {plan.llamacpp.n_gpu_layers}"
               f", --n-cpu-moe {plan.llamacpp.n_cpu_moe}")
    else:
        how = "no engine"
    return f"{plan.model} on {plan.host}: {how} ({plan.verdict})"


def _devices(host: Host) -> tuple[str, list[str]]:
    gpu = host.gpu
    if gpu is None:
        return "cpu", []
    if gpu.vendor == "amd":
        return "amd", ["/dev/kfd", "/dev/dri"]
    return "nvidia", ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] + [
        f"/dev/nvidia{i}" for i in range(len(host.gpus))]


def _image(plan: Plan, host: Host, vendor: str) -> tuple[str, str | None]:
    gpu = host.gpu
    if plan.engine == "llamacpp":
        if vendor == "amd" and gpu is not None and gpu.gfx_target == "gfx1151":
            return LLAMACPP_VULKAN_IMAGE, ("Strix Halo: the Vulkan build avoids ROCm gfx1151 issues "
                                           "(gptoss-facts.md §5); use server-rocm for ROCm >= 7")
        return LLAMACPP_IMAGES[vendor], None
    version = plan.vllm.version if plan.vllm else "latest"
    if vendor == "amd":
        return "rocm/vllm:latest", "ROCm image: pin the tag matching vLLM " + version + " from hub.docker.com/r/rocm/vllm"
    if gpu is not None and gpu.unified_memory:
        return (f"vllm/vllm-openai:v{version}", "GB10 (DGX Spark, aarch64 + sm_121): use an arm64 build with sm_121 "
                "kernels, e.g. NVIDIA's NGC vLLM container or a community GB10 build (UNVERIFIED tag); the "
                "upstream image may lack sm_121 kernels")
    return f"vllm/vllm-openai:v{version}", None


def engine_command(plan: Plan, served_name: str, model_ref: str, api_key_file: str | None) -> list[str]:
    """The container's exec-form command: the plan's engine args unchanged, with the endpoint flags."""
    if plan.engine == "vllm":
        return ["python3", *vllm_engine.ENTRYPOINT, "--model", model_ref, "--served-model-name", served_name,
                "--host", "0.0.0.0", "--port", str(CONTAINER_PORT), *plan.engine_args]
    args = list(plan.engine_args)
    if args[:1] in (["-m"], ["--model"]):
        args[1] = model_ref
    command = ["/app/llama-server", *args, "--alias", served_name, "--host", "0.0.0.0", "--port", str(CONTAINER_PORT),
               "--metrics"]
    if api_key_file:
        command += ["--api-key-file", api_key_file]
    return command


def build(plan: Plan, host: Host, options: RenderOptions) -> Deployment:
    """Decide the deployment; refuses a plan that does not fit and a public endpoint without a key."""
    if plan.engine is None or plan.verdict == "does not fit":
        raise InputError(f"the plan does not fit ({'; '.join(plan.reasons[:2])})",
                         hint="render a plan that fits: see `gptoss plan` for alternatives")
    if options.public and not options.api_key_file:
        raise InputError("a public endpoint needs an API key", hint="add --api-key-file PATH (the file on the target "
                                                                    "host; it is referenced, never read or copied)")
    served = options.served_name or plan.model.split("/")[-1].removesuffix(".gguf")
    model_ref, local = _model_ref(plan.model)
    vendor, devices = _devices(host)
    image, note = _image(plan, host, vendor)
    key_path = f"{SECRETS_DIR}/api_key" if options.api_key_file else None
    env = dict(plan.env)
    if plan.engine == "llamacpp":
        env["LLAMA_CACHE"] = f"{HF_CACHE}/llama.cpp"  # -hf downloads land in the same cache volume
    if options.hf_token_file:
        env["HF_TOKEN_PATH"] = f"{SECRETS_DIR}/hf_token"  # huggingface_hub reads the token from this file
    amd_env = {}
    if host.gpu is not None and host.gpu.gfx_target == "gfx1151":
        # ROCm settings for gfx1151 from the seed 002 NixOS setup (as quoted in issue #7)
        amd_env = {"HSA_OVERRIDE_GFX_VERSION": "11.5.1", "HSA_ENABLE_SDMA": "0"}
    model_bytes = _model_bytes(plan)
    gpus = len(host.gpus)
    return Deployment(
        name=options.name, plan_summary=_summary(plan), engine=plan.engine, image=options.image or image,
        image_note=None if options.image else note,
        command=engine_command(plan, served, model_ref, key_path), env=env, served_name=served, model_ref=model_ref,
        local_model=local, host_port=options.port, bind="0.0.0.0" if options.public else "127.0.0.1",
        vendor=vendor, gpu_count=(plan.vllm.tensor_parallel_size if plan.vllm else max(gpus, 1 if gpus else 0)),
        gpu_devices=devices, shm_size_gib=16 if (plan.vllm and plan.vllm.tensor_parallel_size > 1) else 8,
        model_bytes=model_bytes, cache_size_gib=max(20, math.ceil(model_bytes * 1.5 / 2**30)),
        cold_start_s=int(600 + 30 * model_bytes / 2**30), api_key=bool(options.api_key_file),
        hf_token=bool(options.hf_token_file), amd_env=amd_env,
        gfx_target=host.gpu.gfx_target if host.gpu else None,
        ram_gib=host.ram_bytes / 2**30 if host.ram_bytes else None, engine_args=list(plan.engine_args),
        nodes=plan.nodes, gpus_per_node=gpus)


def health_script(d: Deployment, base_url: str = f"http://127.0.0.1:{CONTAINER_PORT}") -> str:
    """A Python one-liner for health checks: /health 200 and /v1/models lists the model (with the key file)."""
    key = f"{SECRETS_DIR}/api_key" if d.api_key else ""
    return ("import json,os,sys,urllib.request as u\n"
            f"b=os.environ.get('HEALTH_URL','{base_url}');k='{key}'\n"
            "h={'Authorization':'Bearer '+open(k).read().strip()} if k and os.path.exists(k) else {}\n"
            "u.urlopen(b+'/health',timeout=5)\n"
            "m=json.load(u.urlopen(u.Request(b+'/v1/models',headers=h),timeout=5))\n"
            f"sys.exit(0 if any(x.get('id')=='{d.served_name}' for x in m.get('data',[])) else 1)\n")


def health_command(d: Deployment, base_url: str = f"http://127.0.0.1:{CONTAINER_PORT}") -> list[str]:
    """Exec-form health check: python3 in vLLM images; curl in llama.cpp's (which has no Python)."""
    if d.engine == "vllm":
        return ["python3", "-c", health_script(d, base_url)]
    auth = f' -H "Authorization: Bearer $(cat {SECRETS_DIR}/api_key)"' if d.api_key else ""
    url = "${HEALTH_URL:-" + base_url + "}"
    return ["sh", "-c", f'curl -fsS "{url}/health" >/dev/null && curl -fsS{auth} "{url}/v1/models" '
                        f"| grep -q '\"id\": *\"{d.served_name}\"'"]
