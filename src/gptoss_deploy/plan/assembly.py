"""Assemble a Plan for one engine: the vLLM plan (refusals -> search -> plan with reasons, warnings, the predicted
log, speed, explain, TP alternatives, nodes) and the llama.cpp plan. Pure; engines/ calls these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gptoss_deploy import __version__, data
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.types import GIB, Gpu, Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan import explain, parallel, surface, throughput, versions
from gptoss_deploy.plan import speed as speed_model
from gptoss_deploy.plan.figures import llamacpp_figures, vllm_figures
from gptoss_deploy.plan.issues import IssueContext, matching_issues
from gptoss_deploy.plan.llamacpp_memory import RAM_BUDGET_FRACTION, LlamacppFit, gguf_for, plan_slots
from gptoss_deploy.plan.refusals import refuse_requested
from gptoss_deploy.plan.search import (
    RELAXED_UTIL,
    Knobs,
    Search,
    VllmCandidate,
    evaluate,
    issue_switches,
    starting_point,
    utilization_cap,
    valid_tp_sizes,
)
from gptoss_deploy.plan.types import (
    Alternative,
    Change,
    IssueHit,
    LlamacppSettings,
    Parallelism,
    Plan,
    PlanRequest,
    Speed,
    VllmSettings,
)
from gptoss_deploy.plan.vllm_memory import predicted_log_lines
from gptoss_deploy.plan.weights import weight_bytes

SPEED_CONTEXT = 2048         # context length at which the decode speed is estimated
VLLM_ANCHOR_TOKENS_PER_S = 303.0  # speed.VLLM_ANCHOR
LLAMACPP_ANCHOR_TOKENS_PER_S = 47.4  # speed.LLAMACPP_ANCHOR
OFFLOAD_RAM_READ_FRACTION = 0.8  # share of CPU-resident expert bytes read from RAM per token (assumption)


def base_plan(model: ModelSpec, host: Host, **fields: Any) -> Plan:
    """A Plan with the model and host filled in."""
    return Plan(tool_version=__version__, host=host.describe(), host_source=host.source, model=model.id,
                model_quantization=model.quantization, model_format=model.format, **fields)


@dataclass(frozen=True)
class VersionChoice:
    """The vLLM release a plan is for, why that one, and a warning when the planner knows less about it."""

    version: str
    basis: str
    warning: str | None = None


def resolve_vllm_version(request: PlanRequest, installed: str | None, gpt_oss: bool = True) -> VersionChoice:
    """--vllm-version, else the installed vLLM, else the newest release whose sources were read.

    A requested release before gpt-oss support is an InputError; one newer than every release read is planned
    with the newest read release's rules, with a warning."""
    facts = versions.vllm_facts()
    newest = facts.default_version
    if request.vllm_version:
        version, basis = request.vllm_version, "as requested (--vllm-version)"
    elif installed:
        version, basis = installed, "installed here"
    else:
        version, basis = newest, ("assumed: the newest release whose sources gpt-oss-deploy has read; no vLLM is "
                                  "installed here (pass --vllm-version to plan for another)")
    versions.parse_version(version)
    if gpt_oss and request.vllm_version and not versions.at_least(version, facts.min_gpt_oss):
        raise InputError(f"vLLM {version} predates gpt-oss support: GptOssForCausalLM first ran in vLLM "
                         f"{facts.min_gpt_oss}", hint=f"plan for vLLM {facts.min_gpt_oss} or newer (newest read: "
                                                      f"{newest}), e.g. --vllm-version {newest}")
    warning = None
    if versions.parse_version(version) > versions.parse_version(newest):
        warning = (f"vLLM {version} is newer than every release gpt-oss-deploy has read ({newest}): planned with "
                   f"{newest}'s flags, defaults and memory rules; `gptoss serve` checks the flags against the "
                   "installed engine")
    return VersionChoice(version, basis, warning)


# -- vLLM --------------------------------------------------------------------------------------------------------
def vllm_plan(model: ModelSpec, host: Host, request: PlanRequest, installed: str | None,
              with_alternatives: bool) -> Plan:
    """The vLLM plan: fits, fits with changes, or does not fit with the numbers that do not add up."""
    choice = resolve_vllm_version(request, installed, model.is_gpt_oss)
    version = choice.version
    minimum = versions.vllm_facts().min_gpt_oss
    if model.is_gpt_oss and not versions.at_least(version, minimum):
        return base_plan(model, host, verdict="does not fit", engine=None,
                         reasons=[f"the installed vLLM {version} predates gpt-oss support (GptOssForCausalLM first "
                                  f"ran in vLLM {minimum}): upgrade vLLM, or plan with --vllm-version "
                                  f"{versions.vllm_facts().default_version}"])
    refusals = refuse_requested(model, host, request, version)
    request = issue_switches(model, host, refusals.request, version)
    search = Search(model, host, request, version, [])
    chosen = search.run()
    warnings = ([choice.warning] if choice.warning else []) + list(refusals.warnings)
    staged, pp = model, 1
    if (request.pipeline_parallel_size or 1) > 1 or (chosen is None and request.nodes > 1):
        staged, pp, chosen = pipeline_stages(model, host, request, version)
    if chosen is not None:
        chosen, parallel = use_every_gpu(staged, host, request, version, chosen, pp)
        chosen.settings.version_basis = choice.basis
        changes = refusals.changes + changes_from(request, chosen.settings, model.arch.max_position_embeddings,
                                                  kv_gained_by_fewer_seqs(staged, host, request, chosen))
        plan = _assemble_vllm(staged, host, request, chosen, changes, warnings)
        plan.warnings += mark_applied(plan.issues, plan.vllm)
        plan.parallel, plan.nodes = parallel, request.nodes
        if pp > 1:  # single-stream speed crosses every stage: the whole model's bytes
            plan.speed = vllm_speed(model, host.gpu, chosen)
        if parallel is not None:
            plan.reasons.insert(1, f"{parallel.mode}: {parallel.why}")
            plan.warnings += parallel.notes
        if with_alternatives:
            plan.alternatives = tp_alternatives(model, host, request, version, chosen.settings.tensor_parallel_size)
        return plan
    best = search.best_tried()
    plan = base_plan(model, host, verdict="does not fit", reasons=[does_not_fit_numbers(model, host, best)],
                     engine=None, issues=best.issues if best else [], warnings=warnings + list(model.notes),
                     explain=explain.vllm_rows(model, best) if best else [])
    if best is not None:
        plan.memory, plan.kv = best.memory, best.kv
    if with_alternatives:
        plan.alternatives = tp_alternatives(model, host, request, version, None)
    return plan


def stage_model(model: ModelSpec, pp: int) -> ModelSpec:
    """What the fullest of `pp` pipeline stages holds: ceil(n / pp) layers of each attention kind (vLLM keeps the
    model's KV groups across stages, so a stage's block spans its share of each group's layers; the tiny lane model
    [sliding, full] keeps one of each per stage), with the embedding and the lm_head counted (an upper bound)."""
    kinds = model.arch.kinds()
    full = -(-kinds.count("full_attention") // pp)
    sliding = -(-kinds.count("sliding_attention") // pp)
    types = [kind for i in range(max(full, sliding)) for kind, count in
             (("sliding_attention", sliding), ("full_attention", full)) if i < count]
    arch = model.arch.model_copy(update={"num_hidden_layers": len(types), "layer_types": types})
    return model.model_copy(update={"arch": arch})


def pipeline_stages(model: ModelSpec, host: Host, request: PlanRequest,
                    version: str) -> tuple[ModelSpec, int, VllmCandidate | None]:
    """One node cannot hold the model (or --pipeline-parallel-size asks for stages): the fewest pipeline stages,
    one per node, whose share fits a node."""
    sizes = [request.pipeline_parallel_size] if request.pipeline_parallel_size else range(2, request.nodes + 1)
    for pp in sizes:
        staged = stage_model(model, pp)
        found = Search(staged, host, request.model_copy(update={"pipeline_parallel_size": pp}), version, []).run()
        if found is not None:
            # vLLM's own multi-node runtime (--nnodes, vllm-project/vllm#23691, first in 0.11.1), else Ray
            executor = None if surface.has_flag(version, "--nnodes") else "ray"
            found.settings = found.settings.model_copy(update={"nnodes": pp, "distributed_executor_backend": executor})
            return staged, pp, found
    return model, 1, None


def use_every_gpu(model: ModelSpec, host: Host, request: PlanRequest, version: str, chosen: VllmCandidate,
                  pp: int) -> tuple[VllmCandidate, Parallelism | None]:
    """Compare every TP that fits (with DP filling the node, replicas or stages across nodes) for the goal and
    switch to the winner (plan/parallel.py). CPU plans keep their one process."""
    if host.gpu is None or not host.gpus:
        return chosen, None
    s = chosen.settings
    tps = [t for t in valid_tp_sizes(model, host.gpu_count) if t >= s.tensor_parallel_size]
    if request.tensor_parallel_size or pp > 1:
        tps = [s.tensor_parallel_size]
    candidates: dict[int, VllmCandidate] = {}
    for tp in tps:
        c = chosen if tp == s.tensor_parallel_size else evaluate(
            model, host, request, version, Knobs(tp, s.gpu_memory_utilization, s.max_num_batched_tokens,
                                                 s.max_num_seqs, s.max_model_len, s.kv_cache_dtype))
        if c.fits:
            candidates[tp] = c
    fitted = [parallel.Fitted(tp, c.settings.max_model_len, c.kv.num_blocks, c.kv.block_size, c.settings.max_num_seqs,
                              c.settings.max_num_batched_tokens, c.settings.kv_cache_dtype, c.kv.max_concurrency)
              for tp, c in candidates.items()]
    result = parallel.choose(model, host, request, fitted, pp, request.nodes)
    winner = candidates[result.tp]
    winner.settings = winner.settings.model_copy(update={
        "data_parallel_size": result.dp, "pipeline_parallel_size": s.pipeline_parallel_size, "nnodes": s.nnodes,
        "distributed_executor_backend": s.distributed_executor_backend})
    if result.dp > 1:
        result.notes.append(f"--data-parallel-size {result.dp}: vLLM runs the MoE layers over all DP x TP = "
                            f"{result.dp * result.tp} GPUs, so each GPU holds less expert weight than planned here; "
                            "the memory figures are per TP group (an upper bound on weights, a lower bound on KV)")
    if pp > 1:
        result.notes.append(f"memory is planned per pipeline stage: {model.arch.num_hidden_layers} layers of the "
                            "model on each node's GPUs, with the embedding and the lm_head counted on every stage "
                            "(an upper bound)")
    return winner, result


def kv_gained_by_fewer_seqs(model: ModelSpec, host: Host, request: PlanRequest, chosen: VllmCandidate) -> int:
    """KV bytes the plan's max_num_seqs gains over vLLM's default (0 when it keeps the default)."""
    s = chosen.settings
    if request.max_num_seqs is not None or s.max_num_seqs >= s.default_max_num_seqs:
        return 0
    at_default = evaluate(model, host, request, s.version, Knobs(
        s.tensor_parallel_size, s.gpu_memory_utilization, s.max_num_batched_tokens, s.default_max_num_seqs,
        s.max_model_len, s.kv_cache_dtype))
    return chosen.memory.kv_bytes - at_default.memory.kv_bytes


def changes_from(request: PlanRequest, settings: VllmSettings, model_max: int, seqs_kv_gain: int = 0) -> list[Change]:
    """What differs from values the user set explicitly, and from vLLM's default max_num_seqs."""
    changes = []
    pairs = [("tensor_parallel_size", request.tensor_parallel_size, settings.tensor_parallel_size,
              "the requested TP cannot hold the weights and one request's KV"),
             ("max_model_len", request.max_model_len, settings.max_model_len,
              "the KV cache cannot hold one request of the requested length"),
             ("gpu_memory_utilization", request.gpu_memory_utilization, settings.gpu_memory_utilization,
              "more of the GPU is needed for weights plus KV"),
             ("max_num_batched_tokens", request.max_num_batched_tokens, settings.max_num_batched_tokens,
              "vLLM's profiling subtracts less at a smaller batch here (plan/vllm_profile.py), and one request's "
              "sliding-window KV is cdiv(127 + MNBT, 16) + 1 blocks per group")]
    for name, asked, planned, reason in pairs:
        if asked is not None and asked != planned:
            changes.append(Change(setting=name, requested=str(asked), planned=str(planned), reason=reason))
    if request.max_num_seqs is None and settings.max_num_seqs < settings.default_max_num_seqs:
        changes.append(Change(setting="max_num_seqs", requested=f"vLLM default {settings.default_max_num_seqs}",
                              planned=str(settings.max_num_seqs),
                              reason="vLLM's profiling warms the sampler up on min(MNBT, max_num_seqs) rows x the "
                                     "vocabulary, and that sets its memory peak: "
                                     f"{seqs_kv_gain / GIB:.2f} GiB more KV cache than at "
                                     f"{settings.default_max_num_seqs} sequences (plan/vllm_profile.py)"))
    if request.max_model_len is None and settings.max_model_len < model_max:
        changes.append(Change(setting="max_model_len", requested=f"model maximum {model_max}",
                              planned=str(settings.max_model_len),
                              reason="the KV cache cannot hold one request of the model's full context"))
    return changes


def _vllm_warnings(model: ModelSpec, gpu: Gpu | None, request: PlanRequest, s: VllmSettings) -> list[str]:
    warnings = [f"{n}" for n in model.notes]
    if gpu and gpu.consumer:
        display = data.engine_facts().vllm.memory_model.consumer_display_reserve_gib
        if gpu.visible_bytes * (1 - s.gpu_memory_utilization) < display * GIB:
            warnings.append(f"{gpu.name} often drives a display: vLLM refuses to start when less than "
                            f"{s.gpu_memory_utilization:g} of its memory is free; close desktop apps or lower "
                            "--gpu-memory-utilization")
    if gpu and gpu.memory_source == "described":
        warnings.append(f"{gpu.name} is described on the command line, not in the catalog: its memory, bandwidth and "
                        f"architecture ({gpu.arch}) are as given; the runtime is assumed to see "
                        f"{gpu.visible_gib:.2f} GiB of it (estimated: 0.45 GiB less, as on catalog GPUs without a "
                        "measured figure)")
    if gpu and (utilization_cap([gpu]) or 1.0) < RELAXED_UTIL:  # the memory held bounds what the planner may choose
        warnings.append(_memory_in_use(gpu, s.gpu_memory_utilization))
    if gpu and gpu.unified_memory:
        warnings.append("unified memory: --gpu-memory-utilization is not a hard cap here (vllm#46307); the plan "
                        f"uses {s.gpu_memory_utilization:g} and keeps the OS headroom")
    if request.quantization and request.quantization != model.quantization:
        warnings.append(f"--quantization {request.quantization} differs from the checkpoint's {model.quantization}: "
                        "the memory plan assumes the checkpoint's")
    if not s.tool_calling and request.tool_calling:
        warnings.append(f"vLLM {s.version} has no openai tool parser: tool calls will not be parsed")
    return warnings


def mark_applied(issues: list[IssueHit], settings: VllmSettings | None) -> list[str]:
    """Fill each issue's `applied` with the fix settings the plan runs with, and say per warning what the plan
    applied and why it does not apply the rest (the issue's not_applied)."""
    notes = []
    for hit in issues:
        hit.applied = [_flag(name, value) for name, value in hit.defaults.items()
                       if settings is not None and getattr(settings, name, None) == value]
        if hit.severity == "info" or not (hit.defaults or hit.not_applied):
            continue
        applied = f"the plan applies {' and '.join(hit.applied)}" if hit.applied else "the plan applies none of its fix"
        skipped = [f"{_flag(n, v)} (set otherwise)" for n, v in hit.defaults.items() if _flag(n, v) not in hit.applied]
        why = "; ".join(([f"not {', '.join(skipped)}"] if skipped else [])
                        + ([f"not applied: {hit.not_applied}"] if hit.not_applied else []))
        notes.append(f"known issue {hit.id}: {applied}" + (f"; {why}" if why else ""))
    return notes


def _flag(name: str, value: object) -> str:
    flag = "--" + name.replace("_", "-")
    return flag if value is True else f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def _memory_in_use(gpu: Gpu, util: float) -> str:
    """What memory other processes hold means for --gpu-memory-utilization (vLLM refuses util x total > free)."""
    cap = utilization_cap([gpu]) or util
    held = f"{(gpu.used_bytes or 0) / GIB:.2f} GiB of {gpu.name}'s {gpu.visible_gib:.2f} GiB is in use by other " \
           "processes (NVML, at planning)"
    if util <= cap:
        return (f"{held}: vLLM starts only when util x total fits in the free memory after its own CUDA context, so "
                f"the plan keeps --gpu-memory-utilization at {util:g} (at most {cap:g} here)")
    return (f"{held}: --gpu-memory-utilization {util:g} asks for more than is free; vLLM will refuse to start above "
            f"{cap:g}: lower it, or free the memory (nvidia-smi lists the processes)")


def _assemble_vllm(model: ModelSpec, host: Host, request: PlanRequest, c: VllmCandidate, changes: list[Change],
                   extra_warnings: list[str]) -> Plan:
    gpu = host.gpu
    issue_env: dict[str, str] = {}
    for issue in c.issues:
        issue_env.update(issue.applied_env)
    s, dropped = fit_to_release(c.settings.model_copy(update={"issue_env": issue_env}))
    extra_warnings = list(extra_warnings) + dropped
    device = "GPU" if gpu else "CPU"
    reasons = [f"vLLM {s.version}, TP{s.tensor_parallel_size}: weights {c.memory.weights_bytes / GIB:.1f} GiB/{device}, "
               f"KV {c.memory.kv_bytes / GIB:.1f} GiB/{device} holds {c.kv.max_concurrency:.2f} requests of "
               f"{s.max_model_len:,} tokens", c.backends.reason]
    if s.version_basis:
        reasons.insert(1, f"vLLM {s.version}: {s.version_basis}")
    log = [f"Using max model len {s.max_model_len}",
           f"Chunked prefill is enabled with max_num_batched_tokens={s.max_num_batched_tokens}.",
           f"Model loading took {c.memory.weights_bytes / GIB:.2f} GiB memory (estimate)",
           f"Available KV cache memory: {c.memory.kv_bytes / GIB:.2f} GiB"] + predicted_log_lines(
        c.kv, s.max_model_len, s.version, device)
    speed = vllm_speed(model, gpu, c)
    return base_plan(model, host, verdict="fits with changes" if changes else "fits", reasons=reasons, engine="vllm",
                     vllm=s, memory=c.memory, kv=c.kv, predicted_log=log, changes=changes, issues=c.issues,
                     speed=speed, warnings=list(extra_warnings) + _vllm_warnings(model, gpu, request, s),
                     explain=explain.vllm_rows(model, c), figures=vllm_figures(model, host, s, c.memory, c.kv, speed))


def fit_to_release(s: VllmSettings) -> tuple[VllmSettings, list[str]]:
    """Leave out backend/issue flags and VLLM_* variables the release does not have (data/vllm_surface.yaml),
    each with a warning: vLLM ignores unknown variables and refuses unknown flags."""
    warnings: list[str] = []
    stands_for = surface.surface_version(s.version)

    def keep_env(env: dict[str, str]) -> dict[str, str]:
        kept = {}
        for name, value in env.items():
            if name.startswith("VLLM_") and not surface.has_env(s.version, name):
                warnings.append(f"vLLM {s.version} has no {name} (vllm/envs.py of {stands_for}): left out")
            else:
                kept[name] = value
        return kept

    args: list[str] = []
    items = list(s.backend_args)
    while items:
        flag = items.pop(0)
        value = [items.pop(0)] if items and not items[0].startswith("-") else []
        name = flag.split("=")[0].split(".")[0]
        if surface.has_flag(s.version, name):
            args += [flag, *value]
        else:
            warnings.append(f"vLLM {s.version} has no {name} (its `vllm serve` parser, {stands_for}): "
                            f"{' '.join([flag, *value])} left out")
    fitted = s.model_copy(update={"backend_env": keep_env(s.backend_env), "issue_env": keep_env(s.issue_env),
                                  "backend_args": args})
    return fitted, warnings


def vllm_speed(model: ModelSpec, gpu: Gpu | None, c: VllmCandidate) -> Speed | None:
    """Single-stream decode on the chosen TP at SPEED_CONTEXT tokens."""
    if gpu is None or not gpu.bandwidth_gbs:
        return None
    tp = c.settings.tensor_parallel_size
    per_token_kv = c.kv.full_layer_bytes_per_token * tp  # all ranks together
    eff = throughput.default_efficiency()
    estimate = speed_model.decode_speed(model, gpu.bandwidth_gbs, SPEED_CONTEXT, per_token_kv, tp,
                                        eff.bandwidth, eff.step_overhead_s,
                                        explain.vllm_speed_basis(SPEED_CONTEXT))
    ratio = estimate.expected_tokens_per_s / VLLM_ANCHOR_TOKENS_PER_S
    return estimate.model_copy(update={"anchor": f"{speed_model.VLLM_ANCHOR}; this plan = anchor x {ratio:.2f}"})


def tp_alternatives(model: ModelSpec, host: Host, request: PlanRequest, version: str,
                    chosen_tp: int | None) -> list[Alternative]:
    """Larger tensor-parallel sizes that fit (more KV, more concurrency)."""
    alts: list[Alternative] = []
    target = request.max_model_len or model.arch.max_position_embeddings
    if not host.gpus:
        return alts
    for tp in valid_tp_sizes(model, host.gpu_count):
        if chosen_tp is not None and tp <= chosen_tp:
            continue
        start = starting_point(model, host, request.model_copy(update={"tensor_parallel_size": tp}), version, tp)
        c = evaluate(model, host, request, version, Knobs(tp, start.gpu_memory_utilization,
                                                          start.max_num_batched_tokens, start.max_num_seqs, target,
                                                          request.kv_cache_dtype))
        if c.fits:
            alts.append(Alternative(description=f"vLLM TP{tp}", verdict="fits", engine="vllm", model=model.id,
                                    detail=f"{c.kv.max_concurrency:.2f}x concurrency at {target:,} tokens"))
    return alts


def does_not_fit_numbers(model: ModelSpec, host: Host, best: VllmCandidate | None) -> str:
    """The numbers that do not add up, for the best configuration tried."""
    if best is None:
        return f"no vLLM configuration to try for {model.id} on {host.describe()}"
    s, m = best.settings, best.memory
    if host.gpu is None:
        return (f"vLLM-CPU: weights {m.weights_bytes / GIB:.1f} GiB + KV {m.requested_bytes / GIB - m.weights_bytes / GIB:.1f}"
                f" GiB exceed {RAM_BUDGET_FRACTION:.0%} of {(host.ram_bytes or 0) / GIB:.1f} GiB of RAM")
    total_gpu = host.gpu.visible_bytes * host.gpu_count
    full_weights = weight_bytes(model.arch, model.quantization, best.backends.moe)
    if full_weights > total_gpu * s.gpu_memory_utilization:
        return (f"weights {full_weights / GIB:.1f} GiB ({model.quantization}) exceed {host.gpu_count}x "
                f"{host.gpu.visible_gib:.1f} GiB = {total_gpu / GIB:.1f} GiB of GPU memory at util "
                f"{s.gpu_memory_utilization:g}")
    need = best.kv.blocks_per_request * best.kv.page_bytes * best.kv.group_size
    return (f"at TP{s.tensor_parallel_size} util {s.gpu_memory_utilization:g}: {m.requested_bytes / GIB:.1f} GiB "
            f"requested - {m.weights_bytes / GIB:.1f} weights - {(m.activation_bytes + m.non_torch_bytes) / GIB:.1f} "
            f"activations - {m.cudagraph_bytes / GIB:.1f} graphs = {m.kv_bytes / GIB:.2f} GiB KV, but one "
            f"{s.max_model_len:,}-token request needs {need / GIB:.2f} GiB (max context that fits: "
            f"{best.kv.max_len_that_fits:,})")


# -- llama.cpp ---------------------------------------------------------------------------------------------------
def llamacpp_fit(model: ModelSpec, host: Host, request: PlanRequest) -> LlamacppFit | None:
    """llama.cpp's memory plan for the model's GGUF (None when there is no GGUF)."""
    gguf = gguf_for(model)
    if gguf is None:
        return None
    per_request = request.max_model_len or model.arch.max_position_embeddings
    return plan_slots(model, gguf[0], gguf[1], host, per_request, request.max_num_seqs)


def llamacpp_plan(model: ModelSpec, host: Host, request: PlanRequest) -> Plan:
    """The llama.cpp plan: GGUF on the GPUs with experts offloaded to RAM as needed, or all in RAM."""
    fit = llamacpp_fit(model, host, request)
    if fit is None:
        raise InputError(f"{model.id} has no GGUF for llama.cpp",
                         hint="pass a .gguf file, or an official model whose GGUF the catalog knows")
    settings = fit.settings
    issues = matching_issues(IssueContext(engine="llamacpp", version="0", arch=host.gpu.arch if host.gpu else "cpu"))
    warnings = list(model.notes)
    if settings.ram_bytes_available is None and settings.cpu_expert_bytes:
        warnings.append(f"host RAM unknown: check {settings.ram_bytes_needed / GIB:.1f} GiB are free for CPU experts")
    speed = llamacpp_speed(model, host, fit) if fit.fits else None
    return base_plan(model, host, verdict="fits" if fit.fits else "does not fit", reasons=[f"llama.cpp: {fit.why}"],
                     engine="llamacpp" if fit.fits else None, llamacpp=settings, issues=issues, speed=speed,
                     warnings=warnings, explain=explain.llamacpp_rows(fit),
                     figures=llamacpp_figures(host, settings, speed),
                     parallel=llamacpp_layout(host, request, settings) if fit.fits else None)


def llamacpp_layout(host: Host, request: PlanRequest, settings: LlamacppSettings) -> Parallelism:
    """What every GPU does under llama-server: its default --split-mode layer spreads the offloaded layers over
    every visible GPU (one process, one endpoint); experts kept in RAM run on the CPU. No throughput model here
    (it is vLLM's); more nodes are replicas."""
    count = len(host.gpus)
    cpu_part = f"; experts of {settings.n_cpu_moe} layers on the CPU" if settings.n_cpu_moe else ""
    if count:
        roles = [f"node {node} GPU {i}: llama-server, layers split across the {count} GPU(s){cpu_part}"
                 for node in range(request.nodes) for i in range(count)]
    else:
        roles = [f"node {node}: llama-server on the CPU" for node in range(request.nodes)]
    mode = "replicas across nodes" if request.nodes > 1 else ("layer split" if count > 1 else
                                                               "single GPU" if count else "CPU")
    return Parallelism(goal=request.goal, tp=1, dp=1, pp=1, nodes=request.nodes, mode=mode,
                       gpu_roles=roles, idle_gpus=0, executor="",
                       why=f"llama-server uses every visible GPU with {settings.n_parallel} slots"
                           + (f"; {request.nodes} nodes run one server each behind a balancer"
                              if request.nodes > 1 else ""),
                       input_tokens=request.input_tokens, output_tokens=request.output_tokens, options=[], curve=[],
                       knee=settings.n_parallel, efficiency="the throughput model covers vLLM; measure llama.cpp "
                                                            "with `gptoss bench --sweep`", label="given")


def llamacpp_speed(model: ModelSpec, host: Host, fit: LlamacppFit) -> Speed | None:
    """Single-stream decode: GPU bandwidth, with the offloaded experts' share read from RAM."""
    settings, gpu = fit.settings, host.gpu
    if gpu is None or not gpu.bandwidth_gbs:
        return speed_model.offload_speed(model, speed_model.DEFAULT_RAM_BANDWIDTH_GBS, 1.0,
                                         speed_model.DEFAULT_RAM_BANDWIDTH_GBS) if not host.gpus else None
    fraction = settings.n_cpu_moe / model.arch.num_hidden_layers
    if fraction:
        return speed_model.offload_speed(model, gpu.bandwidth_gbs, fraction * OFFLOAD_RAM_READ_FRACTION,
                                         speed_model.DEFAULT_RAM_BANDWIDTH_GBS)
    kv_per_token = settings.kv_bytes // max(settings.n_ctx, 1)
    estimate = speed_model.decode_speed(model, gpu.bandwidth_gbs, SPEED_CONTEXT, kv_per_token, 1,
                                        speed_model.LLAMACPP_EFFICIENCY, 0.0,
                                        f"llama.cpp at {SPEED_CONTEXT} tokens of context: {speed_model.LLAMACPP_EFFICIENCY:g}"
                                        " of the bandwidth ceiling, the anchor's share (47.4 of 51 tok/s)")
    ratio = estimate.expected_tokens_per_s / LLAMACPP_ANCHOR_TOKENS_PER_S
    return estimate.model_copy(update={"anchor": f"{speed_model.LLAMACPP_ANCHOR}; this plan = anchor x {ratio:.2f}"})
