"""From resolved settings to a checked, adapted engine launch: the library side of `gptoss serve`.

model + this host + settings -> Plan (refusing known-bad explicit values unless forced) -> engine launch ->
adapted to the installed engine's version and flags. Nothing is started here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gptoss_deploy.engines import Endpoint, Launch, is_loopback, llamacpp, vllm
from gptoss_deploy.engines.probe import EngineInfo
from gptoss_deploy.errors import EngineError, GptossError, InputError
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import Plan, PlanRequest
from gptoss_deploy.serve.config import ServeSettings

SECRET_FLAGS = ("--api-key", "--hf-token", "--api-key-file")


@dataclass
class ServeInputs:
    """Everything `serve` needs besides the settings: where the engines are, extra flags, plan switches."""

    vllm_python: str | None = None
    llama_server: str | None = None
    extra_args: list[str] = field(default_factory=list)
    kv_cache_memory_bytes: int | None = None
    enforce_eager: bool = False
    force: bool = False
    require_engine: bool = True  # False (dry runs): an engine missing here is a note, the argv stays unadapted


@dataclass
class Prepared:
    """A launch ready to supervise."""

    plan: Plan
    model: ModelSpec
    launch: Launch
    endpoint: Endpoint
    engine_info: EngineInfo | None
    notes: list[str]
    download_probe: Callable[[], tuple[int, int | None]] | None = None


def served_name(settings: ServeSettings) -> str:
    """--served-model-name, else the model as typed (a path's folder or file name)."""
    if settings.served_model_name:
        return settings.served_model_name
    path = Path(settings.model).expanduser()
    if settings.model.startswith(("/", ".", "~")) or path.exists():
        return path.stem if path.suffix == ".gguf" else path.name
    return settings.model


def require_port_free(host: str, port: int) -> None:
    """A clear error when something already listens on host:port."""
    bind_host = "0.0.0.0" if host in ("0.0.0.0", "") else ("::" if host == "::" else host)
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError as exc:
            raise InputError(f"port {port} on {host} is already in use ({exc.strerror})",
                             hint=f"pick another --port, or stop what listens there (ss -ltnp 'sport = :{port}')") from None


def _vllm_version(inputs: ServeInputs, engine: str) -> tuple[EngineInfo | None, list[str]]:
    """Probe vLLM when it may be the engine; a note instead of an error when auto may still pick llama.cpp."""
    if engine == "llamacpp":
        return None, []
    try:
        return vllm.probe(vllm.find_python(inputs.vllm_python)), []
    except EngineError as exc:
        if engine == "vllm" and inputs.require_engine:
            raise
        return None, [f"vLLM not usable here ({exc.message}): planned for the newest known release, argv not "
                      "adapted to an installed version"]


def _request(settings: ServeSettings, inputs: ServeInputs, vllm_version: str | None) -> PlanRequest:
    from gptoss_deploy import vocab
    from gptoss_deploy.models.resolve import hub_offline

    vocab_dir = os.environ.get("TIKTOKEN_ENCODINGS_BASE") or (str(vocab.default_dir()) if vocab.is_installed() else None)
    return PlanRequest(
        engine=settings.engine, vllm_version=vllm_version, max_model_len=settings.max_model_len,
        tensor_parallel_size=settings.tensor_parallel_size, gpu_memory_utilization=settings.gpu_memory_utilization,
        max_num_batched_tokens=settings.max_num_batched_tokens, max_num_seqs=settings.max_num_seqs,
        kv_cache_dtype=settings.kv_cache_dtype, kv_cache_memory_bytes=inputs.kv_cache_memory_bytes,
        enforce_eager=inputs.enforce_eager, tool_calling=settings.enable_auto_tool_choice,
        tool_call_parser=settings.tool_call_parser, async_scheduling=settings.async_scheduling,
        attention_backend=settings.attention_backend, enable_prefix_caching=settings.enable_prefix_caching,
        enable_chunked_prefill=settings.enable_chunked_prefill, quantization=settings.quantization,
        offline=hub_offline(), vocab_dir=vocab_dir, force=inputs.force)


def check_plan(plan: Plan, settings: ServeSettings) -> None:
    """Refuse a plan that cannot serve, or one that had to drop a value the user set explicitly."""
    if plan.engine is None or plan.verdict == "does not fit":
        raise GptossError(f"{plan.model} does not fit {plan.host}: {'; '.join(plan.reasons)}",
                          hint=f"`gptoss plan --model {settings.model}` lists alternatives (TP, context, llama.cpp)")
    refused = [c for c in plan.changes if c.refused]
    if refused:
        lines = "; ".join(f"{c.setting}={c.requested}: {c.reason}" for c in refused)
        origin = ", ".join(settings.sources.get(c.setting, "setting") for c in refused)
        raise InputError(f"refused ({origin}): {lines}", hint="unset it, or pass --force to run it anyway")


def _check_extra_args(extra: list[str]) -> None:
    for token in extra:
        if token.split("=", 1)[0] in SECRET_FLAGS:
            raise InputError(f"{token.split('=', 1)[0]} in the engine's extra arguments would put a secret on the "
                             "command line (visible in ps and logs)",
                             hint="use API_KEY or --api-key-file for the key, HF_TOKEN in the environment")


def hub_download_probe(repo_id: str, expected: int | None) -> Callable[[], tuple[int, int | None]]:
    """Bytes of `repo_id` in the Hugging Face cache so far (partial downloads included), and the expected total."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "blobs"

    def probe() -> tuple[int, int | None]:
        try:
            return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()), expected
        except OSError:
            return 0, expected

    return probe


def prepare(settings: ServeSettings, inputs: ServeInputs, host: Host | None = None) -> Prepared:
    """Plan for this host and build the adapted engine launch (see the module docstring)."""
    from gptoss_deploy.hardware.detect import detect_host
    from gptoss_deploy.models.resolve import resolve_model
    from gptoss_deploy.plan.planner import make_plan

    _check_extra_args(inputs.extra_args)
    endpoint = Endpoint(host=settings.host, port=settings.port, served_name=served_name(settings),
                        api_key=settings.api_key)
    model = resolve_model(settings.model)
    host = host or detect_host()
    info, notes = _vllm_version(inputs, "llamacpp" if model.format == "gguf" else settings.engine)
    plan = make_plan(model, host, _request(settings, inputs, info.version if info else None), installed_vllm=None,
                     with_alternatives=False)
    check_plan(plan, settings)
    notes += list(plan.warnings)
    if plan.engine == "vllm":
        python = info.executable if info else (inputs.vllm_python or "python")
        launch = vllm.launch(plan, endpoint, python=python)
        if settings.sources.get("log_level"):
            launch.env["VLLM_LOGGING_LEVEL"] = settings.log_level.upper()
    else:
        binary = inputs.llama_server or "llama-server"
        try:
            info = llamacpp.probe(binary)
            binary = info.executable
        except EngineError as exc:
            if inputs.require_engine:
                raise
            notes.append(f"llama-server not usable here ({exc.message}): argv not adapted to an installed build")
        launch = llamacpp.launch(plan, endpoint, binary=binary)
    launch.argv += inputs.extra_args
    if info is not None:
        launch, adapted = (vllm.adapt if plan.engine == "vllm" else llamacpp.adapt)(launch, info)
        notes += adapted
    if not is_loopback(endpoint.host):
        notes.append(f"listening on {endpoint.host}: reachable from the network (API key required and set)")
    probe = None
    if plan.engine == "vllm" and model.source in ("catalog", "hub"):
        probe = hub_download_probe(plan.model, model.checkpoint_bytes)
    return Prepared(plan=plan, model=model, launch=launch, endpoint=endpoint, engine_info=info, notes=notes,
                    download_probe=probe)
