"""The deployment every target renders: plan + host + options -> command, env, image, devices, probes."""

from __future__ import annotations

import math
import posixpath
import re
from pathlib import PurePosixPath

from pydantic import BaseModel, Field

from gptoss_deploy import __version__
from gptoss_deploy.engines import Binding, registry
from gptoss_deploy.engines.base import ContainerImage
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.inputs import DOMAIN
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
    image_spec: ContainerImage = Field(description="the image as its own Dockerfile builds it (ENTRYPOINT, ...)")
    image_note: str | None = None
    image_has_python: bool = False
    command: list[str]  # the full container command, exec form, from the engine's one builder
    program: list[str] = Field(default_factory=list, description="the engine program at the head of `command`")
    key_env: str | None = Field(None, description="the engine reads its key from this variable (else a key file)")
    env: dict[str, str] = Field(default_factory=dict)
    served_name: str
    model_ref: str  # Hub id, or /models/<name> for a local model
    mounts: dict[str, str] = Field(default_factory=dict, description="host path -> container path, read-only "
                                                                     "(the model, the offline harmony vocab)")
    container_port: int = CONTAINER_PORT
    host_port: int
    bind: str  # 127.0.0.1 or 0.0.0.0
    vendor: str  # nvidia, amd, cpu
    gpu_count: int = Field(description="GPUs the engine uses per node: what every manifest requests")
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
    nodes: int = Field(1, description="machines one server spans (pipeline stages across nodes)")
    replicas: int = Field(1, description="identical servers, one per node or group of nodes, behind a balancer")
    node_args: dict[str, list[str]] = Field(default_factory=dict, description="what the head ('leader') and a worker "
                                            "add to the command to join one server across nodes; empty: Ray")
    gpus_per_node: int = 0
    plan_file: str = Field(f"{PLAN_DIR}/plan.json", description="where `gptoss serve --plan` artifacts read the plan")
    nix_package: tuple[str, str] = ("pkgs.hello", "package")  # (Nix expression, what it is)
    nix_program: list[str] = Field(default_factory=list, description="the engine program on a NixOS host")
    model_doc: str = "Hugging Face id or local path"
    health: list[str] = Field(default_factory=list, description="the health check, exec form")
    notes: list[str] = Field(default_factory=list, description="what the user must know before deploying")


MASTER_PORT = 29501  # vLLM's default rendezvous port on the head (vllm/config/parallel.py)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
# What a value must look like to be written into a shell script, Dockerfile, unit, Caddyfile, YAML or Nix file
# unquoted-safe in every one of them: no spaces, quotes, $, `, \\, ;, &, |, <, >, %, newlines or other controls.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@=,/-]{0,1023}$")
SAFE_UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SAFE_IMAGE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
                        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
SAFE_DOMAIN = DOMAIN


def check_safe(value: str | None, pattern: re.Pattern[str], what: str, hint: str) -> None:
    """InputError when a value meant for generated files does not match its strict pattern (so nothing a user
    types can run a command or change a file's structure when the artifact is used)."""
    if value is not None and not pattern.match(value):
        raise InputError(f"{what} {value[:80]!r} has characters the generated files cannot carry safely", hint=hint)


def check_options(options: RenderOptions, extra: dict[str, object] | None = None) -> None:
    """Every free-text render option against its pattern (the error names the flag)."""
    check_safe(options.name, SAFE_UNIT_NAME, "--name", "letters, digits, . _ - (e.g. gptoss-120b)")
    check_safe(options.image, SAFE_IMAGE, "--image", "an image reference: registry/name:tag[@sha256:...], lowercase")
    for flag, value in (("--api-key-file", options.api_key_file), ("--hf-token-file", options.hf_token_file)):
        check_safe(value, SAFE_PATH, flag, "an absolute path of letters, digits and . _ + @ = , / -")
    extra = extra or {}
    proxy = extra.get("proxy")
    check_safe(str(proxy) if proxy else None, SAFE_DOMAIN, "--proxy", "a domain name, e.g. llm.example.com")
    gptoss_path = extra.get("gptoss_path")
    check_safe(str(gptoss_path) if gptoss_path else None, SAFE_PATH, "--gptoss-path", "an absolute path")
VOCAB_IN_CONTAINER = "/opt/gptoss/vocab"


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
    binding = Binding(program=image.program, model=model_ref, host="0.0.0.0", port=image.port,
                      served_name=served_name, key_file=key_file if engine.key_file_flag else None)
    return engine.command(plan, binding)


def _env_and_mounts(plan: Plan, model_ref: str, local: str | None,
                    options: RenderOptions) -> tuple[dict[str, str], dict[str, str]]:
    """The container environment and read-only mounts: the planned env, with host paths it names mounted."""
    env = dict(plan.env)
    mounts = {local: model_ref} if local else {}
    vocab = env.get("TIKTOKEN_ENCODINGS_BASE")
    if vocab:  # the offline harmony vocab is a folder on the host: mount it, point vLLM at the mount
        mounts[vocab] = VOCAB_IN_CONTAINER
        env["TIKTOKEN_ENCODINGS_BASE"] = VOCAB_IN_CONTAINER
    if model_ref.startswith("hf:"):
        env["LLAMA_CACHE"] = f"{HF_CACHE}/llama.cpp"  # -hf downloads land in the same cache volume
    if options.hf_token_file:
        env["HF_TOKEN_PATH"] = f"{SECRETS_DIR}/hf_token"  # huggingface_hub reads the token from this file
    return env, mounts


def build(plan: Plan, host: Host, options: RenderOptions) -> Deployment:
    """Decide the deployment; refuses a plan that does not fit and a public endpoint without a key."""
    if plan.engine is None or plan.verdict == "does not fit":
        raise InputError(f"the plan does not fit ({'; '.join(plan.reasons[:2])})",
                         hint="render a plan that fits: see `gptoss plan` for alternatives")
    if options.public and not options.api_key_file:
        raise InputError("a public endpoint needs an API key", hint="add --api-key-file PATH (the file on the target "
                                                                    "host; it is referenced, never read or copied)")
    check_options(options)
    engine = registry.for_plan(plan)
    served = options.served_name or plan.model.split("/")[-1].removesuffix(".gguf")
    if not SAFE_NAME.match(served):
        raise InputError(f"served model name {served!r} has characters the artifacts cannot carry safely",
                         hint="use letters, digits and . _ : / - (--served-model-name)")
    model_ref, local = _model_ref(engine.model_reference(plan))
    vendor, devices = _devices(host)
    image = engine.image(plan, host)
    if options.image:
        image = image.model_copy(update={"name": options.image, "note": None})
    key_path = f"{SECRETS_DIR}/api_key" if options.api_key_file else None
    env, mounts = _env_and_mounts(plan, model_ref, local, options)
    for host_path in mounts:
        check_safe(host_path, SAFE_PATH, "the local path", "move or link it to a path of letters, digits and "
                   ". _ + @ = , / - (the artifacts mount it)")
    for word in [*env.values(), model_ref]:
        if any(ord(c) < 32 or ord(c) == 127 for c in word):
            raise InputError(f"{word[:60]!r} holds control characters", hint="remove newlines and tabs from it")
    amd_env = {}
    if host.gpu is not None and host.gpu.gfx_target == "gfx1151":
        # ROCm settings for gfx1151 from the seed 002 NixOS setup (as quoted in issue #7)
        amd_env = {"HSA_OVERRIDE_GFX_VERSION": "11.5.1", "HSA_ENABLE_SDMA": "0"}
    used = engine.gpus_used(plan, host)
    if vendor == "amd" and 0 < used < len(host.gpus):  # the device nodes expose every GPU: restrict what HIP sees
        amd_env["HIP_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(used))
    model_bytes = engine.weights_bytes(plan)
    span = engine.nodes_per_server(plan)
    node_args: dict[str, list[str]] = {}
    if span > 1:
        for role, rank in (("leader", "0"), ("worker", "$(LWS_WORKER_INDEX)")):
            args = engine.node_args(plan, rank, "$(LWS_LEADER_ADDRESS)", MASTER_PORT)
            if args is not None:
                node_args[role] = args
    deployment = Deployment(
        name=options.name, plan_summary=f"{plan.model} on {plan.host}: {engine.describe(plan)} ({plan.verdict})",
        engine=engine.name, image=image.name, image_spec=image, image_note=image.note,
        image_has_python=image.has_python,
        command=engine_command(plan, image, served, model_ref, key_path), program=list(image.program),
        key_env=engine.key_env, env=env, served_name=served, model_ref=model_ref, mounts=mounts,
        container_port=image.port,
        host_port=options.port, bind="0.0.0.0" if options.public else "127.0.0.1", vendor=vendor,
        gpu_count=used, gpu_devices=devices, shm_size_gib=16 if used > 1 else 8, model_bytes=model_bytes,
        cache_size_gib=max(20, math.ceil(model_bytes * 1.5 / 2**30)),
        cold_start_s=int(600 + 30 * model_bytes / 2**30), api_key=bool(options.api_key_file),
        hf_token=bool(options.hf_token_file), amd_env=amd_env,
        gfx_target=host.gpu.gfx_target if host.gpu else None,
        ram_gib=host.ram_bytes / 2**30 if host.ram_bytes else None, engine_args=list(plan.engine_args),
        nodes=span, replicas=max(1, plan.nodes // span), node_args=node_args, gpus_per_node=len(host.gpus), plan_file=f"{PLAN_DIR}/{options.name}.plan.json",
        nix_package=engine.nix_package(host), nix_program=engine.default_program("python3"),
        model_doc=("GGUF: a Hugging Face repo (hf:<repo>) or a .gguf path" if model_ref.startswith("hf:")
                   or model_ref.endswith(".gguf") else "Hugging Face id or local path"))
    notes = [engine.key_caveat] if options.api_key_file and engine.key_caveat else []
    return deployment.model_copy(update={"health": health_command(deployment), "notes": notes})


def health_script(d: Deployment, port: int) -> str:
    """A one-line Python health check: /health answers and /v1/models lists the served model, with the key from
    API_KEY, the engine's key variable, or /run/secrets/api_key. One line, single-quoted strings only, no $ % or
    backslash: it survives sh -c, docker's CMD-SHELL, compose, systemd and quadlet unchanged."""
    variables = [v for v in ("API_KEY", d.key_env) if v]
    key_lookup = "".join(f"os.environ.get('{v}') or " for v in variables)
    return (f"import json,os,urllib.request as u;b='http://127.0.0.1:{port}';f='{SECRETS_DIR}/api_key';"
            f"k=({key_lookup}(open(f).read() if os.path.exists(f) else '')).strip();"
            "h={'Authorization':'Bearer '+k} if k else {};u.urlopen(b+'/health',timeout=5);"
            "m=json.load(u.urlopen(u.Request(b+'/v1/models',headers=h),timeout=5));"
            f"exit(0 if any(x.get('id')=='{d.served_name}' for x in m.get('data',[])) else 1)")


def health_command(d: Deployment, port: int | None = None) -> list[str]:
    """Exec-form health check on the container's port: the Python check where the image has python3 (vLLM's); else
    curl on /health, which llama-server answers 200 only once the model is loaded (503 before) and serves without
    the key."""
    port = port or d.container_port
    if d.image_has_python:
        return ["python3", "-c", health_script(d, port)]
    return ["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}/health"]
