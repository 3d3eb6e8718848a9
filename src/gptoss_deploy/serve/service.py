"""From resolved settings (or a saved plan) to a checked, adapted engine launch: the library side of `gptoss serve`.

settings + this host -> Plan (through planning.plan_for, refusing known-bad explicit values unless forced), or a
saved plan checked against this host and its installed engine -> the engine's launch -> adapted to the installed
build's flags. Nothing is started here.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gptoss_deploy.engines import Endpoint, Launch, is_loopback, registry
from gptoss_deploy.engines.base import Engine
from gptoss_deploy.engines.probe import EngineInfo
from gptoss_deploy.errors import EngineError, GptossError, InputError
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import Plan, PlanRequest
from gptoss_deploy.planning import HostChoice
from gptoss_deploy.serve.config import ServeSettings
from gptoss_deploy.serve.nodes import NodeRole

GENERIC_SECRET_FLAGS = ("--api-key", "--hf-token", "--api-key-file")
# Serve settings that change the plan, by the PlanRequest field they set; with --plan they need --replan.
PLAN_SETTINGS = {"engine": "engine", "max_model_len": "max_model_len", "tensor_parallel_size": "tensor_parallel_size",
                 "gpu_memory_utilization": "gpu_memory_utilization", "quantization": "quantization",
                 "kv_cache_dtype": "kv_cache_dtype", "max_num_seqs": "max_num_seqs",
                 "max_num_batched_tokens": "max_num_batched_tokens", "async_scheduling": "async_scheduling",
                 "enable_prefix_caching": "enable_prefix_caching", "enable_chunked_prefill": "enable_chunked_prefill",
                 "enable_auto_tool_choice": "tool_calling", "tool_call_parser": "tool_call_parser",
                 "attention_backend": "attention_backend"}


@dataclass
class ServeInputs:
    """Everything `serve` needs besides the settings: where the engines are, extra flags, plan switches."""

    locations: dict[str, str | None] = field(default_factory=dict)  # engine name -> executable (--vllm-python, ...)
    extra_args: list[str] = field(default_factory=list)
    kv_cache_memory_bytes: int | None = None
    enforce_eager: bool = False
    force: bool = False
    require_engine: bool = True  # False (dry runs): an engine missing here is a note, the argv stays unadapted
    hardware: HostChoice = field(default_factory=HostChoice)  # another host: previews (dry runs) only
    plan_file: Path | None = None
    replan: bool = False
    node: NodeRole | None = None  # this machine's part of a server that spans nodes (--node-rank; nnodes 0 = the plan's)


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
    hub_repo: str | None = None  # the Hub repository the engine would download (None: local files)
    node: NodeRole | None = None  # this machine's part of a server across nodes, its node count from the plan


def served_name(settings: ServeSettings, model: str | None = None) -> str:
    """--served-model-name, else the model as typed (a path's folder or file name)."""
    if settings.served_model_name:
        return settings.served_model_name
    name = model or settings.model
    path = Path(name).expanduser()
    if name.startswith(("/", ".", "~")) or path.exists():
        return path.stem if path.suffix == ".gguf" else path.name
    return name


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


def request_from(settings: ServeSettings, inputs: ServeInputs) -> PlanRequest:
    """The plan request the serve settings ask for (the environment's part is filled in by planning)."""
    return PlanRequest(
        engine=settings.engine, max_model_len=settings.max_model_len,
        tensor_parallel_size=settings.tensor_parallel_size, gpu_memory_utilization=settings.gpu_memory_utilization,
        max_num_batched_tokens=settings.max_num_batched_tokens, max_num_seqs=settings.max_num_seqs,
        kv_cache_dtype=settings.kv_cache_dtype, kv_cache_memory_bytes=inputs.kv_cache_memory_bytes,
        enforce_eager=inputs.enforce_eager, tool_calling=settings.enable_auto_tool_choice,
        tool_call_parser=settings.tool_call_parser, async_scheduling=settings.async_scheduling,
        attention_backend=settings.attention_backend, enable_prefix_caching=settings.enable_prefix_caching,
        enable_chunked_prefill=settings.enable_chunked_prefill, quantization=settings.quantization, force=inputs.force)


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


def _secret_flags() -> set[str]:
    return set(GENERIC_SECRET_FLAGS) | {flag for engine in registry.engines() for flag in engine.secret_flags}


def check_extra_args(extra: list[str]) -> None:
    """Refuse engine flags after `--` that would put a secret on the command line."""
    secrets = _secret_flags()
    for token in extra:
        flag = token.split("=", 1)[0]
        normalised = "--" + flag.lstrip("-").replace("_", "-").lower() if flag.startswith("-") else flag
        # argparse takes unambiguous abbreviations (--api-k): a prefix of a secret flag is the secret flag
        abbreviated = len(normalised) >= 6 and any(s.startswith(normalised) for s in secrets if s.startswith("--"))
        if normalised in secrets or abbreviated:
            raise InputError(f"{flag} in the engine's extra arguments would put a secret on the command line "
                             "(visible in ps and logs)",
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


def _given(settings: ServeSettings, inputs: ServeInputs) -> dict[str, Any]:
    """PlanRequest fields the user set explicitly (flag, environment or config file), with their values."""
    asked = request_from(settings, inputs)
    given = {field: getattr(asked, field) for name, field in PLAN_SETTINGS.items() if name in settings.sources}
    if inputs.kv_cache_memory_bytes:
        given["kv_cache_memory_bytes"] = inputs.kv_cache_memory_bytes
    if inputs.enforce_eager:
        given["enforce_eager"] = True
    return given


def _saved_plan(settings: ServeSettings, inputs: ServeInputs) -> tuple[Plan, ModelSpec, list[str]]:
    """The --plan file, checked against this host and the installed engine; re-planned with --replan."""
    from gptoss_deploy.models.resolve import resolve_model
    from gptoss_deploy.planning import (
        host_mismatches,
        installed_versions,
        load_plan,
        replan,
        resolve_host,
        version_mismatch,
    )

    assert inputs.plan_file is not None
    plan = load_plan(inputs.plan_file)
    host = resolve_host(inputs.hardware)
    installed = installed_versions(inputs.locations)
    engine = registry.for_plan(plan)
    problems = host_mismatches(plan, host)
    version_problem = version_mismatch(plan, installed.get(engine.name))
    problems += [version_problem] if version_problem else []
    given = _given(settings, inputs)
    other_model = settings.model if "model" in settings.sources and settings.model != plan.model else None
    named = sorted(given) + (["model"] if other_model else [])
    if named:
        problems.append(f"--plan fixes the model and engine settings, but {', '.join(named)} "
                        f"{'was' if len(named) == 1 else 'were'} given too")
    if not problems:
        return plan, resolve_model(plan.model), [f"serving the saved plan {inputs.plan_file} as made"]
    if not inputs.replan:
        raise InputError(f"plan file {inputs.plan_file} cannot be served as made here: {'; '.join(problems)}",
                         hint="pass --replan to plan again from the file's request for this host and engine (the "
                              "differences are then reported), or serve on the host the plan was made for")
    fresh = replan(plan, host, installed, given, other_model)
    check_plan(fresh.plan, settings)
    notes = [f"re-planned ({'; '.join(problems)})"]
    if plan.engine_args != fresh.plan.engine_args:
        notes.append(f"engine flags changed from `{' '.join(plan.engine_args)}` to `{' '.join(fresh.plan.engine_args)}`")
    return fresh.plan, fresh.model, notes


def _fresh_plan(settings: ServeSettings, inputs: ServeInputs) -> tuple[Plan, ModelSpec, list[str]]:
    from gptoss_deploy.planning import plan_for

    planned = plan_for(settings.model, inputs.hardware, request_from(settings, inputs), inputs.locations,
                       with_alternatives=False)
    check_plan(planned.plan, settings)
    return planned.plan, planned.model, []


def _engine_info(engine: Engine, inputs: ServeInputs, notes: list[str]) -> tuple[EngineInfo | None, str]:
    """The installed engine's probe and executable; a note instead of an error when it may be missing."""
    location = inputs.locations.get(engine.name)
    try:
        info = engine.probe(engine.locate(location))
        return info, info.executable
    except EngineError as exc:
        if inputs.require_engine:
            raise
        notes.append(f"{engine.label} not usable here ({exc.message}): argv not adapted to an installed build")
        return None, location or engine.executable_name


def require_this_machine(hardware: HostChoice) -> None:
    """InputError when --profile / --gpu describe another machine: a server can only start on the one it runs on."""
    if not hardware.is_this_machine:
        raise InputError("--profile / --gpu describe another machine: a server can only be started on the machine "
                         "gptoss runs on, so only a --dry-run can preview it",
                         hint="add --dry-run to print the commands for that machine, or leave --profile / --gpu out "
                              "to serve on this host")


def prepare(settings: ServeSettings, inputs: ServeInputs, forced: dict[str, Any] | None = None) -> Prepared:
    """Plan (or load the plan) for this host and build the adapted engine launch (see the module docstring).

    `forced`: settings put into the plan as given, unchecked (`gptoss try`'s "as requested" rung)."""
    check_extra_args(inputs.extra_args)
    if inputs.require_engine:
        require_this_machine(inputs.hardware)
    plan, model, notes = (_saved_plan if inputs.plan_file is not None else _fresh_plan)(settings, inputs)
    engine = registry.for_plan(plan)
    span = engine.nodes_per_server(plan)
    if span > 1 and inputs.node is None:
        raise InputError(f"the plan runs one server across {span} nodes: start each node with --node-rank R "
                         "--master-addr HEAD (and --node-address, --worker-address)",
                         hint="`gptoss render bare` writes a script per node (node-head.sh, node-worker.sh)")
    if span == 1 and inputs.node is not None:
        raise InputError("--node-rank is for a plan whose server spans nodes; this one runs on one machine",
                         hint="leave out --node-rank (a plan of replicas runs the same server on every node)")
    node = replace(inputs.node, nnodes=span) if inputs.node is not None and not inputs.node.nnodes else inputs.node
    if plan.nodes > span:
        notes.append(f"this plan runs {plan.nodes // span} replicas on {plan.nodes} nodes: start the same server "
                     "on each and put a load balancer in front")
    if forced:
        plan = engine.with_settings(plan, forced)
    notes += list(plan.warnings)
    info, executable = _engine_info(engine, inputs, notes)
    endpoint = Endpoint(host=settings.host, port=settings.port, served_name=served_name(settings, plan.model),
                        api_key=settings.api_key)
    launch = engine.launch(plan, endpoint, executable)
    try:  # the launch may hold a key file: nothing below may leave it behind
        if node is not None:
            node.validate()
            launch = engine.node_launch(launch, plan, node)
        if settings.sources.get("log_level"):
            launch.env |= engine.log_level_env(settings.log_level)
        launch.argv += inputs.extra_args
        if info is not None:
            launch, adapted = engine.adapt(launch, info)
            notes += adapted
        if not is_loopback(endpoint.host):
            notes.append(f"listening on {endpoint.host}: reachable from the network (API key required and set)")
        download = engine.hub_download(plan, model)
        probe = hub_download_probe(*download) if download else None
    except BaseException:
        launch.remove_files()
        raise
    return Prepared(plan=plan, model=model, launch=launch, endpoint=endpoint, engine_info=info, notes=notes,
                    download_probe=probe, node=node, hub_repo=download[0] if download else None)
