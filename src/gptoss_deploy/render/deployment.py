"""The deployment every target renders: plan + host + options -> command, env, image, devices, probes."""

from __future__ import annotations

import math
import posixpath
from pathlib import PurePosixPath

from pydantic import BaseModel, Field

from gptoss_deploy import __version__
from gptoss_deploy.engines import Binding, registry
from gptoss_deploy.engines.base import ContainerImage
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.plan.types import Plan

CONTAINER_PORT = 8000
MODELS_DIR = "/models"
HF_CACHE = "/root/.cache/huggingface"
SECRETS_DIR = "/run/secrets"
PLAN_DIR = "/etc/gptoss"  # where artifacts that run `gptoss serve --plan` keep the plan file


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
    image_entrypoint: list[str] = Field(default_factory=list, description="the image's own ENTRYPOINT (overridden)")
    image_has_python: bool = False
    command: list[str]  # the full container command, exec form, from the engine's one builder
    program: list[str] = Field(default_factory=list, description="the engine program at the head of `command`")
    key_env: str | None = Field(None, description="the engine reads its key from this variable (else a key file)")
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
    plan_file: str = Field(f"{PLAN_DIR}/plan.json", description="where `gptoss serve --plan` artifacts read the plan")
    nix_package: tuple[str, str] = ("pkgs.hello", "package")  # (Nix expression, what it is)
    model_doc: str = "Hugging Face id or local path"


def _model_ref(model: str) -> tuple[str, str | None]:
    """(reference inside the container, host path to mount) for a Hub id, hf:<repo> or a local path."""
    if model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf") and not model.startswith("hf:"):
        return posixpath.join(MODELS_DIR, PurePosixPath(model).name), model
    return model, None


def _devices(host: Host) -> tuple[str, list[str]]:
    gpu = host.gpu
    if gpu is None:
        return "cpu", []
    if gpu.vendor == "amd":
        return "amd", ["/dev/kfd", "/dev/dri"]
    return "nvidia", ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] + [
        f"/dev/nvidia{i}" for i in range(len(host.gpus))]


def engine_command(plan: Plan, image: ContainerImage, served_name: str, model_ref: str, key_file: str | None) -> list[str]:
    """The container's exec-form command: the engine's own builder, bound to the container's address and paths."""
    engine = registry.for_plan(plan)
    binding = Binding(program=image.program, model=model_ref, host="0.0.0.0", port=CONTAINER_PORT,
                      served_name=served_name, key_file=key_file if engine.key_file_flag else None)
    return engine.command(plan, binding)


def build(plan: Plan, host: Host, options: RenderOptions) -> Deployment:
    """Decide the deployment; refuses a plan that does not fit and a public endpoint without a key."""
    if plan.engine is None or plan.verdict == "does not fit":
        raise InputError(f"the plan does not fit ({'; '.join(plan.reasons[:2])})",
                         hint="render a plan that fits: see `gptoss plan` for alternatives")
    if options.public and not options.api_key_file:
        raise InputError("a public endpoint needs an API key", hint="add --api-key-file PATH (the file on the target "
                                                                    "host; it is referenced, never read or copied)")
    engine = registry.for_plan(plan)
    served = options.served_name or plan.model.split("/")[-1].removesuffix(".gguf")
    model_ref, local = _model_ref(engine.model_reference(plan))
    vendor, devices = _devices(host)
    image = engine.image(plan, host)
    key_path = f"{SECRETS_DIR}/api_key" if options.api_key_file else None
    env = dict(plan.env)
    if model_ref.startswith("hf:"):
        env["LLAMA_CACHE"] = f"{HF_CACHE}/llama.cpp"  # -hf downloads land in the same cache volume
    if options.hf_token_file:
        env["HF_TOKEN_PATH"] = f"{SECRETS_DIR}/hf_token"  # huggingface_hub reads the token from this file
    amd_env = {}
    if host.gpu is not None and host.gpu.gfx_target == "gfx1151":
        # ROCm settings for gfx1151 from the seed 002 NixOS setup (as quoted in issue #7)
        amd_env = {"HSA_OVERRIDE_GFX_VERSION": "11.5.1", "HSA_ENABLE_SDMA": "0"}
    model_bytes = engine.weights_bytes(plan)
    used = engine.gpus_used(plan, host)
    return Deployment(
        name=options.name, plan_summary=f"{plan.model} on {plan.host}: {engine.describe(plan)} ({plan.verdict})",
        engine=engine.name, image=options.image or image.name, image_note=None if options.image else image.note,
        image_entrypoint=list(image.entrypoint), image_has_python=image.has_python,
        command=engine_command(plan, image, served, model_ref, key_path), program=list(image.program),
        key_env=engine.key_env, env=env,
        served_name=served, model_ref=model_ref, local_model=local, host_port=options.port,
        bind="0.0.0.0" if options.public else "127.0.0.1", vendor=vendor,
        gpu_count=used, gpu_devices=devices, shm_size_gib=16 if used > 1 else 8, model_bytes=model_bytes,
        cache_size_gib=max(20, math.ceil(model_bytes * 1.5 / 2**30)),
        cold_start_s=int(600 + 30 * model_bytes / 2**30), api_key=bool(options.api_key_file),
        hf_token=bool(options.hf_token_file), amd_env=amd_env,
        gfx_target=host.gpu.gfx_target if host.gpu else None,
        ram_gib=host.ram_bytes / 2**30 if host.ram_bytes else None, engine_args=list(plan.engine_args),
        nodes=plan.nodes, gpus_per_node=len(host.gpus), plan_file=f"{PLAN_DIR}/{options.name}.plan.json",
        nix_package=engine.nix_package(host),
        model_doc=("GGUF: a Hugging Face repo (hf:<repo>) or a .gguf path" if model_ref.startswith("hf:")
                   or model_ref.endswith(".gguf") else "Hugging Face id or local path"))


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
    """Exec-form health check: python3 where the image has it (vLLM's); curl otherwise (llama.cpp's images)."""
    if d.image_has_python:
        return ["python3", "-c", health_script(d, base_url)]
    auth = f' -H "Authorization: Bearer $(cat {SECRETS_DIR}/api_key)"' if d.api_key else ""
    url = "${HEALTH_URL:-" + base_url + "}"
    return ["sh", "-c", f'curl -fsS "{url}/health" >/dev/null && curl -fsS{auth} "{url}/v1/models" '
                        f"| grep -q '\"id\": *\"{d.served_name}\"'"]
