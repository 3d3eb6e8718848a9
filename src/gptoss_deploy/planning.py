"""The one door to a plan: gather what planning needs (the host, the model, the installed engines' versions, the
offline vocab folder), fill in the request, and call the pure planner. Also the plan file: save, load, and check
a saved plan against the host it is about to run on.

Used by `plan`, `serve`, `render`, `try`, `doctor` and the engine lane, so they cannot disagree on the inputs.
This module does I/O; plan/ does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from gptoss_deploy.engines import registry
from gptoss_deploy.errors import EngineError, InputError
from gptoss_deploy.hardware.types import GIB, Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import COMPUTED_FIELDS, PLAN_SCHEMA_VERSION, Plan, PlanRequest

PLAN_FILE_MAX_BYTES = 4 * 2**20
VISIBLE_MEMORY_TOLERANCE = 0.03  # a served plan's GPU memory may differ this much from the host's (driver builds)


@dataclass(frozen=True)
class HostChoice:
    """Which host to plan for: a named profile, N of a GPU, or this machine (optionally without its GPUs)."""

    profile: str | None = None
    gpu: str | None = None
    gpus: int | None = None
    gpu_memory_gib: float | None = None
    ram_gib: float | None = None
    cpu_only: bool = False
    gpu_bandwidth_gbs: float | None = None
    compute_capability: str | None = None
    gfx_target: str | None = None

    @property
    def is_this_machine(self) -> bool:
        """True when the host is detected rather than described."""
        return not self.profile and not self.gpu


@dataclass
class Planned:
    """A plan with what it was made from."""

    model: ModelSpec
    host: Host
    plan: Plan
    installed: dict[str, str | None] = field(default_factory=dict)


def resolve_host(choice: HostChoice) -> Host:
    """The host to plan for: --profile, --gpu/--gpus, or this machine; then memory/RAM overrides."""
    from gptoss_deploy.hardware.detect import detect_host
    from gptoss_deploy.hardware.profiles import compose_host, profile_host

    if choice.profile and choice.gpu:
        raise InputError("--profile and --gpu are alternatives", hint="use one: --profile 4xL40S or --gpu L40S --gpus 4")
    if choice.gpus and not choice.gpu and not choice.profile:
        raise InputError("--gpus needs --gpu", hint="e.g. --gpu L40S --gpus 4")
    if choice.profile:
        host = profile_host(choice.profile)
    elif choice.gpu and (choice.compute_capability or choice.gfx_target):
        host = _described_host(choice)
    elif choice.gpu:
        host = compose_host(choice.gpu, choice.gpus or 1)
    else:
        host = detect_host()
    updates: dict[str, object] = {}
    if choice.cpu_only:
        updates["gpus"] = []
    if choice.ram_gib:
        updates["ram_bytes"] = int(choice.ram_gib * GIB)
    if choice.gpu_memory_gib and not host.source.startswith("described:"):
        if not host.gpus or choice.cpu_only:
            raise InputError("--gpu-memory-gib needs a GPU", hint="add --profile or --gpu")
        size = int(choice.gpu_memory_gib * GIB)
        updates["gpus"] = [g.model_copy(update={"memory_bytes": size, "visible_bytes": size}) for g in host.gpus]
    if choice.gpu_bandwidth_gbs:
        gpus = updates.get("gpus", host.gpus)
        assert isinstance(gpus, list)
        if not gpus:
            raise InputError("--gpu-bandwidth-gbs needs a GPU", hint="add --profile or --gpu")
        updates["gpus"] = [g.model_copy(update={"bandwidth_gbs": choice.gpu_bandwidth_gbs}) for g in gpus]
    return host.model_copy(update=updates) if updates else host


def _described_host(choice: HostChoice) -> Host:
    """--gpu NAME described by --gpu-memory-gib and --compute-capability / --gfx-target (a GPU the catalog lacks)."""
    from gptoss_deploy.hardware.profiles import GpuDescription, described_host, find_gpu_key

    assert choice.gpu is not None
    if choice.compute_capability and choice.gfx_target:
        raise InputError("--compute-capability (NVIDIA) and --gfx-target (AMD) are alternatives",
                         hint="describe the GPU with the one its vendor uses")
    known = find_gpu_key(choice.gpu)
    if known is not None:
        raise InputError(f"{choice.gpu!r} is in the catalog ({known}): its architecture is known",
                         hint="drop --compute-capability / --gfx-target (--gpu-memory-gib and --gpu-bandwidth-gbs "
                              "still override the catalog's figures)")
    if not choice.gpu_memory_gib:
        raise InputError(f"describing {choice.gpu!r} needs its memory", hint="add --gpu-memory-gib G (per GPU)")
    description = GpuDescription(choice.gpu, choice.gpu_memory_gib, choice.gpu_bandwidth_gbs,
                                 choice.compute_capability, choice.gfx_target)
    return described_host(description, choice.gpus or 1, choice.ram_gib)


def installed_versions(locations: Mapping[str, str | None]) -> dict[str, str | None]:
    """Each engine's installed release here (None when it is not installed or cannot be run)."""
    found: dict[str, str | None] = {}
    for engine in registry.engines():
        try:
            found[engine.name] = engine.installed_version(engine.locate(locations.get(engine.name)))
        except (EngineError, OSError):
            found[engine.name] = None
    return found


def default_vocab_dir() -> str | None:
    """TIKTOKEN_ENCODINGS_BASE, else the folder `gptoss vocab install` filled; None when neither exists."""
    from gptoss_deploy import vocab

    return os.environ.get("TIKTOKEN_ENCODINGS_BASE") or (str(vocab.default_dir()) if vocab.is_installed() else None)


def complete_request(request: PlanRequest) -> PlanRequest:
    """The request with the environment's part filled in: offline (HF_HUB_OFFLINE) and the vocab folder."""
    from gptoss_deploy.models.resolve import hub_offline

    return request.model_copy(update={"offline": request.offline or hub_offline(),
                                      "vocab_dir": request.vocab_dir or default_vocab_dir()})


def plan_for(model: str, hardware: HostChoice | Host, request: PlanRequest,
             locations: Mapping[str, str | None] | None = None, detect_installed: bool = True,
             with_alternatives: bool = True) -> Planned:
    """Resolve the model and host (or take the host given), detect installed engines, complete the request, plan."""
    from gptoss_deploy.models.resolve import resolve_model
    from gptoss_deploy.plan.planner import make_plan

    spec = resolve_model(model)
    host = hardware if isinstance(hardware, Host) else resolve_host(hardware)
    installed = installed_versions(locations or {}) if detect_installed else {}
    plan = make_plan(spec, host, complete_request(request), installed, with_alternatives=with_alternatives)
    return Planned(model=spec, host=host, plan=plan, installed=installed)


# -- the plan file ------------------------------------------------------------------------------------------------
def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan as JSON (settings only: the command is rebuilt from them when the file is used)."""
    from gptoss_deploy.inputs import check_destination

    check_destination(path, "plan file")
    data = json.dumps(plan.file_data(), indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(data)
        tmp.replace(path)
    except OSError as exc:
        raise InputError(f"cannot write the plan to {path}: {exc.strerror}", hint="choose a writable path") from None


def load_plan(path: Path) -> Plan:
    """A saved plan, validated; its command must be what its settings build (a hand-edited argv is refused)."""
    from gptoss_deploy.data import describe_validation
    from gptoss_deploy.inputs import read_user_file

    text = read_user_file(path, "plan file", PLAN_FILE_MAX_BYTES)
    try:
        content = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"cannot read plan file {path}: {exc}", hint="pass the file `gptoss plan --save` wrote") from None
    if not isinstance(content, dict):
        raise InputError(f"plan file {path} is not a JSON object", hint="pass the file `gptoss plan --save` wrote")
    if content.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise InputError(f"plan file {path} has schema {content.get('schema_version')!r}; this gptoss reads "
                         f"{PLAN_SCHEMA_VERSION}", hint="make the plan again with this gptoss: gptoss plan ... --save FILE")
    computed = {name: content.pop(name) for name in COMPUTED_FIELDS if name in content}
    try:
        plan = Plan.model_validate(content)
    except ValidationError as exc:
        raise InputError(f"plan file {path}: {describe_validation(exc)}",
                         hint="make the plan again: gptoss plan ... --save FILE") from None
    for name, value in computed.items():
        if value != getattr(plan, name):
            raise InputError(f"plan file {path}: `{name}` does not match what its settings build (edited by hand?)",
                             hint=f"change the settings (e.g. `vllm`, `llamacpp`), not `{name}`; or plan again")
    if plan.engine is None or plan.verdict == "does not fit":
        raise InputError(f"plan file {path} holds a plan that does not fit ({'; '.join(plan.reasons[:1])})",
                         hint="`gptoss plan` lists the alternatives")
    return plan


def host_mismatches(plan: Plan, host: Host) -> list[str]:
    """How this host differs from the one the plan was made for (empty when it can run the plan as made)."""
    planned = plan.hardware
    if planned is None:
        return ["the plan file does not record the host it was made for"]
    problems = []
    if len(planned.gpus) != len(host.gpus):
        problems.append(f"the plan is for {planned.describe()}, this host has {host.describe()}")
    elif planned.gpu is not None and host.gpu is not None:
        want, have = planned.gpu, host.gpu
        if (want.key or want.name) != (have.key or have.name):
            problems.append(f"the plan is for {want.name}, this host has {have.name}")
        elif abs(have.visible_bytes - want.visible_bytes) > VISIBLE_MEMORY_TOLERANCE * want.visible_bytes:
            problems.append(f"the plan assumed {want.visible_gib:.1f} GiB per GPU, this host has {have.visible_gib:.1f}")
    needed = plan.llamacpp.ram_bytes_needed if plan.llamacpp else 0
    if needed and host.ram_bytes is not None and host.ram_bytes < needed:
        problems.append(f"the plan needs {needed / GIB:.1f} GiB of RAM, this host has {host.ram_bytes / GIB:.1f}")
    return problems


def version_mismatch(plan: Plan, installed: str | None) -> str | None:
    """Why the installed engine release cannot run this plan as made (None when it matches or none is pinned)."""
    engine = registry.for_plan(plan)
    wanted = engine.version_of(plan)
    if wanted is None or installed is None:
        return None
    from gptoss_deploy.plan.versions import parse_version

    if parse_version(wanted) != parse_version(installed):
        return f"the plan is for {engine.label} {wanted}, {installed} is installed"
    return None


def replan(plan: Plan, host: Host, installed: dict[str, str | None], overrides: Mapping[str, object],
           model: str | None = None) -> Planned:
    """The saved plan's request planned again for this host and the installed engines, with `overrides` applied
    (and another model when given); the pinned release is dropped so the installed one is planned for."""
    from gptoss_deploy.models.resolve import resolve_model
    from gptoss_deploy.plan.planner import make_plan

    base = plan.request or PlanRequest()
    request = base.model_copy(update={"vllm_version": None, **overrides})
    spec = resolve_model(model or plan.model)
    fresh = make_plan(spec, host, complete_request(request), installed, with_alternatives=False)
    return Planned(model=spec, host=host, plan=fresh, installed=installed)


def predicted_throughput(model: str, gpu: str, gpus: int, input_tokens: int, output_tokens: int,
                         concurrency: int) -> tuple[float | None, str]:
    """The throughput model's output tokens/s for `model` planned on `gpus` x `gpu` (a catalog key) at the
    curve's level nearest below `concurrency`, and how it is known; (None, why) when there is no prediction."""
    from gptoss_deploy.hardware.profiles import compose_host

    request = PlanRequest(input_tokens=input_tokens, output_tokens=output_tokens)
    planned = plan_for(model, compose_host(gpu, gpus), request, detect_installed=False, with_alternatives=False)
    plan = planned.plan
    where = f"{gpus}x {gpu}"
    if plan.verdict == "does not fit":
        return None, f"{plan.model} does not fit on {where}"
    curve = plan.parallel.curve if plan.parallel else []
    if not curve:
        return None, f"no throughput prediction for {plan.engine} on {where}"
    below = [p for p in curve if p.concurrency <= concurrency] or curve[:1]
    point = below[-1]
    layout = plan.parallel
    assert layout is not None
    return point.output_tokens_per_s, (f"predicted ({layout.label}): {plan.engine} TP{layout.tp}xDP{layout.dp} on "
                                       f"{where} at {point.concurrency} users, {input_tokens} in / {output_tokens} out")
