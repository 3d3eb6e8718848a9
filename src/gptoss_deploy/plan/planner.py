"""make_plan: choose engine, tensor parallelism, context, batch and backends, and say whether it fits.

Pure: (ModelSpec, Host, PlanRequest, installed versions) in, Plan out; no I/O.
Search order for vLLM: each tensor-parallel size (the requested one first, then the smallest valid),
each memory step (defaults, then util 0.95, then MNBT 1024, the recipe's H100 TP1 settings), at the target
context; then the largest context that fits; then llama.cpp when a GGUF exists.
"""

from __future__ import annotations

from pydantic import BaseModel

from gptoss_deploy import __version__, data
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.types import GIB, Gpu, Host
from gptoss_deploy.models import catalog
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan import speed as speed_model
from gptoss_deploy.plan import versions
from gptoss_deploy.plan.backends import BackendChoice, attention_selection, choose_backends
from gptoss_deploy.plan.issues import IssueContext, matching_issues
from gptoss_deploy.plan.llamacpp_memory import llamacpp_args, plan_llamacpp
from gptoss_deploy.plan.types import (Alternative, Change, Explain, IssueHit, KvPrediction, LlamacppSettings, Plan,
                                      PlanRequest, Speed, VllmMemory, VllmSettings)
from gptoss_deploy.plan.vllm_memory import budget, default_batch, predict_kv, predicted_log_lines
from gptoss_deploy.plan.weights import weight_bytes, weight_bytes_per_rank

TP_SIZES = (1, 2, 4, 8)
RELAXED_UTIL = 0.95
RELAXED_MNBT = 1024
UNIFIED_UTIL = 0.85          # NVIDIA's GB10 recipe value; the default 0.92 OOMs at startup (gptoss-facts §3)
MIN_USEFUL_CONTEXT = 8192
SPEED_CONTEXT = 2048         # context length at which the decode speed is estimated


class VllmCandidate(BaseModel):
    """One evaluated vLLM configuration."""

    settings: VllmSettings
    memory: VllmMemory
    kv: KvPrediction
    backends: BackendChoice
    issues: list[IssueHit]

    @property
    def fits(self) -> bool:
        """At least one max_model_len request fits in the KV cache."""
        return self.memory.kv_bytes > 0 and self.kv.max_concurrency >= 1.0


def valid_tp_sizes(model: ModelSpec, gpu_count: int) -> list[int]:
    """TP sizes vLLM accepts here: <= GPUs, dividing the attention heads, and compatible with the KV heads."""
    heads, kv_heads = model.arch.num_attention_heads, model.arch.num_key_value_heads
    return [tp for tp in TP_SIZES if tp <= gpu_count and heads % tp == 0
            and (kv_heads % tp == 0 or tp % kv_heads == 0)]


def _issue_context(model: ModelSpec, gpu: Gpu | None, settings: VllmSettings, request: PlanRequest) -> IssueContext:
    return IssueContext(
        engine="vllm", version=settings.version, arch=gpu.arch if gpu else "cpu",
        attention_backend=settings.attention_backend, moe_backend=settings.moe_backend,
        kv_cache_dtype=settings.kv_cache_dtype, model_arch=model.arch_key, tp=settings.tensor_parallel_size,
        gpu_gib=gpu.visible_gib if gpu else 0.0, unified_memory=bool(gpu and gpu.unified_memory),
        tool_calling=request.tool_calling, offline=request.offline and not request.vocab_dir,
        cudagraph_estimate=versions.cudagraph_estimate_default(settings.version) and not settings.enforce_eager,
        async_scheduling=settings.async_scheduling,
    )


def evaluate_vllm(model: ModelSpec, host: Host, request: PlanRequest, version: str, tp: int, util: float,
                  mnbt: int, max_num_seqs: int, max_model_len: int, kv_dtype: str) -> VllmCandidate:
    """Memory, KV and known issues of one vLLM configuration."""
    gpu = host.gpu
    backends = choose_backends(gpu, version, model.is_gpt_oss)
    if request.attention_backend:
        backends = backends.model_copy(update={"attention": request.attention_backend, "explicit_attention": True,
                                               "reason": f"attention backend {request.attention_backend} as requested; "
                                                         + backends.reason})
    async_scheduling = (versions.async_scheduling_default(version) if request.async_scheduling is None
                        else request.async_scheduling)
    settings = VllmSettings(
        version=version, tensor_parallel_size=tp, max_model_len=max_model_len, gpu_memory_utilization=util,
        max_num_batched_tokens=mnbt, max_num_seqs=max_num_seqs, kv_cache_dtype=kv_dtype,
        block_size=backends.block_size, attention_backend=backends.attention, moe_backend=backends.moe,
        enforce_eager=request.enforce_eager, async_scheduling=async_scheduling, tool_call_parser=request.tool_call_parser,
        tool_calling=request.tool_calling and versions.at_least(version, versions.vllm_facts()["tool_parser_openai_since"]),
        kv_cache_memory_bytes=request.kv_cache_memory_bytes,
    )
    weights = weight_bytes_per_rank(model.arch, model.quantization, backends.moe, tp)
    if gpu is None:
        memory = _cpu_budget(host, weights, request)
    else:
        memory = budget(gpu, model.arch, weights, util, tp, mnbt, max_num_seqs, version,
                        request.enforce_eager, request.kv_cache_memory_bytes)
    kv = predict_kv(model.arch, tp, kv_dtype, backends.block_size, max(memory.kv_bytes, 0), max_model_len, mnbt,
                    version)
    issues = matching_issues(_issue_context(model, gpu, settings, request))
    return VllmCandidate(settings=settings, memory=memory, kv=kv, backends=backends, issues=issues)


def _cpu_budget(host: Host, weights: int, request: PlanRequest) -> VllmMemory:
    """vLLM's CPU backend keeps KV in VLLM_CPU_KVCACHE_SPACE (or --kv-cache-memory-bytes); 4 GiB planned."""
    ram = host.ram_bytes or 0
    kv = cpu_kv_gib(request.kv_cache_memory_bytes) * GIB
    return VllmMemory(visible_bytes=ram, gpu_memory_utilization=1.0, requested_bytes=weights + kv,
                      weights_bytes=weights, activation_bytes=0, non_torch_bytes=0, cudagraph_bytes=0,
                      cudagraph_in_budget=False, kv_bytes=kv, kv_from_override=request.kv_cache_memory_bytes is not None)


RELAX_ORDER = ("max_num_batched_tokens", "max_model_len", "gpu_memory_utilization", "tensor_parallel_size")


def cpu_kv_gib(kv_cache_memory_bytes: int | None) -> int:
    """VLLM_CPU_KVCACHE_SPACE for a KV budget: whole GiB, at least 1; 4 GiB when none is given."""
    return max(1, kv_cache_memory_bytes // GIB) if kv_cache_memory_bytes else 4


def _memory_steps(request: PlanRequest, gpu: Gpu | None, util: float, mnbt: int,
                  relaxed: set[str]) -> list[tuple[float, int]]:
    """(util, MNBT) pairs to try: the starting point, then relaxations of what the user did not pin."""
    util_free = request.gpu_memory_utilization is None or "gpu_memory_utilization" in relaxed
    mnbt_free = request.max_num_batched_tokens is None or "max_num_batched_tokens" in relaxed
    utils = [util]
    if util_free and gpu is not None and not gpu.unified_memory and util < RELAXED_UTIL:
        utils.append(RELAXED_UTIL)
    mnbts = [mnbt] + ([RELAXED_MNBT] if mnbt_free and mnbt > RELAXED_MNBT else [])
    return [(u, m) for u in utils for m in mnbts]


def _starting_point(model: ModelSpec, host: Host, request: PlanRequest, version: str, tp: int) -> tuple[float, int, int]:
    """(util, MNBT, max_num_seqs) before relaxation: the request, else rule defaults, else vLLM defaults."""
    gpu = host.gpu
    mnbt, seqs = default_batch(gpu, version)
    util = UNIFIED_UTIL if gpu and gpu.unified_memory else versions.default_gpu_memory_utilization(version)
    probe = evaluate_vllm(model, host, request, version, tp, util, mnbt, seqs,
                          request.max_model_len or model.arch.max_position_embeddings, request.kv_cache_dtype)
    for issue in probe.issues:
        util = float(issue.defaults.get("gpu_memory_utilization", util))
        mnbt = int(issue.defaults.get("max_num_batched_tokens", mnbt))
    return (request.gpu_memory_utilization or util, request.max_num_batched_tokens or mnbt,
            request.max_num_seqs or seqs)


def _search_once(model: ModelSpec, host: Host, request: PlanRequest, version: str, kv_dtype: str,
                 relaxed: set[str], starts: dict[int, tuple[float, int, int]],
                 tried: list[VllmCandidate]) -> VllmCandidate | None:
    """One pass over TP sizes and memory steps with the user's unrelaxed settings held fixed."""
    target = request.max_model_len or model.arch.max_position_embeddings
    tps = list(starts)  # the requested TP first, when there is one
    if request.tensor_parallel_size and "tensor_parallel_size" not in relaxed:
        tps = [request.tensor_parallel_size]
    passes: list[VllmCandidate] = []
    for tp in tps:
        util, mnbt, seqs = starts[tp]
        for step_util, step_mnbt in _memory_steps(request, host.gpu, util, mnbt, relaxed):
            candidate = evaluate_vllm(model, host, request, version, tp, step_util, step_mnbt, seqs, target, kv_dtype)
            tried.append(candidate)
            passes.append(candidate)
            if candidate.fits:
                return candidate
    if request.max_model_len is not None and "max_model_len" not in relaxed:
        return None
    # No TP holds the target context: the smallest TP whose KV holds a useful context, at its best step.
    for tp in tps:
        best = max((c for c in passes if c.settings.tensor_parallel_size == tp), key=lambda c: c.kv.max_len_that_fits)
        length = _round_context(best.kv.max_len_that_fits)
        if length >= MIN_USEFUL_CONTEXT:
            s = best.settings
            candidate = evaluate_vllm(model, host, request, version, tp, s.gpu_memory_utilization,
                                      s.max_num_batched_tokens, s.max_num_seqs, length, kv_dtype)
            tried.append(candidate)
            if candidate.fits:
                return candidate
    return None


def search_vllm(model: ModelSpec, host: Host, request: PlanRequest, version: str,
                kv_dtype: str) -> tuple[VllmCandidate | None, list[VllmCandidate]]:
    """The first fitting configuration, relaxing the user's explicit settings one by one (RELAX_ORDER)."""
    tps = valid_tp_sizes(model, max(host.gpu_count, 1))
    if request.tensor_parallel_size:
        tps = [request.tensor_parallel_size] + [t for t in tps if t != request.tensor_parallel_size]
    starts = {tp: _starting_point(model, host, request, version, tp) for tp in tps}
    tried: list[VllmCandidate] = []
    for count in range(len(RELAX_ORDER) + 1):
        relaxed = set(RELAX_ORDER[:count])
        if count and getattr(request, RELAX_ORDER[count - 1]) is None:
            continue  # nothing pinned there: relaxing it changes nothing
        found = _search_once(model, host, request, version, kv_dtype, relaxed, starts, tried)
        if found is not None:
            return found, tried
    return None, tried


def _round_context(length: int) -> int:
    return length // 1024 * 1024


def _changes(request: PlanRequest, settings: VllmSettings, model_max: int) -> list[Change]:
    """What differs from values the user set explicitly."""
    changes = []
    pairs = [("tensor_parallel_size", request.tensor_parallel_size, settings.tensor_parallel_size,
              "the requested TP cannot hold the weights and one request's KV"),
             ("max_model_len", request.max_model_len, settings.max_model_len,
              "the KV cache cannot hold one request of the requested length"),
             ("gpu_memory_utilization", request.gpu_memory_utilization, settings.gpu_memory_utilization,
              "more of the GPU is needed for weights plus KV"),
             ("max_num_batched_tokens", request.max_num_batched_tokens, settings.max_num_batched_tokens,
              "a smaller batch lowers the activation peak and the sliding-window KV per request")]
    for name, asked, planned, reason in pairs:
        if asked is not None and asked != planned:
            changes.append(Change(setting=name, requested=str(asked), planned=str(planned), reason=reason))
    if request.max_model_len is None and settings.max_model_len < model_max:
        changes.append(Change(setting="max_model_len", requested=f"model maximum {model_max}",
                              planned=str(settings.max_model_len),
                              reason="the KV cache cannot hold one request of the model's full context"))
    return changes


def _vllm_args(settings: VllmSettings, backends: BackendChoice, defaults: tuple[int, int],
               cpu: bool) -> tuple[list[str], dict[str, str]]:
    """vLLM CLI flags (after the model) and env for a configuration."""
    args: list[str] = []
    if settings.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    args += ["--max-model-len", str(settings.max_model_len)]
    if not cpu:
        args += ["--gpu-memory-utilization", f"{settings.gpu_memory_utilization:g}"]
    if settings.max_num_batched_tokens != defaults[0]:
        args += ["--max-num-batched-tokens", str(settings.max_num_batched_tokens)]
    if settings.max_num_seqs != defaults[1]:
        args += ["--max-num-seqs", str(settings.max_num_seqs)]
    if settings.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", settings.kv_cache_dtype]
    cpu_env: dict[str, str] = {}
    if cpu:  # vLLM's CPU backend takes its KV budget in whole GiB from the environment
        cpu_env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_gib(settings.kv_cache_memory_bytes))
    elif settings.kv_cache_memory_bytes:
        args += ["--kv-cache-memory-bytes", str(settings.kv_cache_memory_bytes)]
    if settings.block_size != 16:
        args += ["--block-size", str(settings.block_size)]
    if settings.enforce_eager:
        args += ["--enforce-eager"]
    attn_args, env = attention_selection(backends, settings.version)
    args += attn_args + backends.extra_args
    if settings.async_scheduling != versions.async_scheduling_default(settings.version):
        args += ["--async-scheduling" if settings.async_scheduling else "--no-async-scheduling"]
    if settings.tool_calling:
        args += ["--tool-call-parser", settings.tool_call_parser, "--enable-auto-tool-choice"]
    env = {**backends.env, **env, **cpu_env}
    return args, env


def _switch_flags(request: PlanRequest, model: ModelSpec) -> list[str]:
    """Flags the user set that do not change the memory plan: prefix caching, chunked prefill, quantization."""
    args: list[str] = []
    for name, value in (("enable-prefix-caching", request.enable_prefix_caching),
                        ("enable-chunked-prefill", request.enable_chunked_prefill)):
        if value is not None:
            args.append(f"--{name}" if value else f"--no-{name}")
    if request.quantization and request.quantization != model.quantization:
        args += ["--quantization", request.quantization]
    return args


def _explain_vllm(model: ModelSpec, c: VllmCandidate) -> list[Explain]:
    m, kv, s = c.memory, c.kv, c.settings
    gib = lambda b: f"{b / GIB:.2f} GiB"  # noqa: E731
    return [
        Explain(name="weights per rank", formula="experts x 17/32 B (MXFP4, padded for the MoE kernel) + 2 B x rest, / TP",
                inputs={"moe_backend": s.moe_backend, "quantization": model.quantization, "tp": s.tensor_parallel_size},
                result=gib(m.weights_bytes)),
        Explain(name="requested memory", formula="ceil(visible x gpu_memory_utilization)",
                inputs={"visible_gib": round(m.visible_bytes / GIB, 2), "util": s.gpu_memory_utilization},
                result=gib(m.requested_bytes)),
        Explain(name="activation peak", formula="MNBT x 128 KiB x hidden/2880 + min(MNBT, max_num_seqs) x vocab x 8 B",
                inputs={"mnbt": s.max_num_batched_tokens, "max_num_seqs": s.max_num_seqs, "vocab": model.arch.vocab_size},
                result=gib(m.activation_bytes)),
        Explain(name="CUDA-graph estimate", formula="layers x 0.0242 GiB x capture_size/1024 (in the budget from 0.21.0)",
                inputs={"layers": model.arch.num_hidden_layers, "in_budget": str(m.cudagraph_in_budget)},
                result=gib(m.cudagraph_bytes)),
        Explain(name="KV memory", formula="requested - weights - activation - non_torch - graphs (or --kv-cache-memory-bytes)",
                inputs={"non_torch_gib": round(m.non_torch_bytes / GIB, 2)}, result=gib(m.kv_bytes)),
        Explain(name="page", formula="block_size x 2 x kv_heads/TP x head_dim x dtype_bytes",
                inputs={"block_size": kv.block_size, "kv_heads": model.arch.num_key_value_heads,
                        "head_dim": model.arch.head_dim, "kv_dtype": s.kv_cache_dtype}, result=f"{kv.page_bytes:,} B"),
        Explain(name="num_blocks", formula="floor(kv_bytes / page / group_size)",
                inputs={"group_size": kv.group_size, "groups": kv.num_groups}, result=f"{kv.num_blocks:,}"),
        Explain(name="blocks per request", formula="cdiv(L,bs) + cdiv(min(window-1+MNBT, L),bs) + 1",
                inputs={"L": s.max_model_len, "mnbt": s.max_num_batched_tokens}, result=f"{kv.blocks_per_request:,}"),
        Explain(name="max concurrency", formula="num_blocks / blocks_per_request", inputs={},
                result=f"{kv.max_concurrency:.2f}x"),
        Explain(name="logged KV size",
                formula="int(concurrency x L)" if kv.log_formula == "concurrency_x_len" else "floor(num_blocks / groups) x block_size",
                inputs={"vllm_version": s.version}, result=f"{kv.logged_tokens:,} tokens"),
    ]


def _vllm_speed(model: ModelSpec, gpu: Gpu | None, c: VllmCandidate) -> Speed | None:
    if gpu is None or not gpu.bandwidth_gbs:
        return None
    tp = c.settings.tensor_parallel_size
    per_token_kv = c.kv.full_layer_bytes_per_token * tp  # all ranks together
    return speed_model.decode_speed(model, gpu.bandwidth_gbs, SPEED_CONTEXT, per_token_kv, tp,
                                    speed_model.VLLM_BANDWIDTH_EFFICIENCY, speed_model.VLLM_STEP_OVERHEAD_S,
                                    f"vLLM at {SPEED_CONTEXT} tokens of context: bytes/(bandwidth x 0.75) + 2 ms per "
                                    "step, fitted to H100 20b 303 tok/s (measured-h100.md) and GB10 120b 33-34 tok/s "
                                    "(gptoss-facts §7.1)")


REFUSABLE = {  # explicit settings a known issue can refuse, and the value planned instead
    "kv_cache_dtype": "auto",
    "async_scheduling": None,
    "attention_backend": None,
}


def _refuse_requested(model: ModelSpec, host: Host, request: PlanRequest,
                      version: str) -> tuple[PlanRequest, list[Change], list[str]]:
    """Replace requested settings that a known issue refuses (kept with --force), saying why."""
    asked = {k: getattr(request, k) for k, safe in REFUSABLE.items() if getattr(request, k) != safe}
    if not asked:
        return request, [], []
    probe = evaluate_vllm(model, host, request, version, request.tensor_parallel_size or 1, 0.9, 2048, 256,
                          request.max_model_len or model.arch.max_position_embeddings, request.kv_cache_dtype)
    changes: list[Change] = []
    warnings: list[str] = []
    replaced: dict[str, object] = {}
    for setting, value in asked.items():
        refusals = [i for i in probe.issues if i.severity == "refuse" and setting in i.conditions]
        if not refusals:
            continue
        if request.force:
            warnings += [f"--force keeps {setting}={value} despite: {i.title}" for i in refusals]
            continue
        replaced[setting] = REFUSABLE[setting]
        reason = "; ".join(f"{i.title} ({i.source})" for i in refusals)
        changes.append(Change(setting=setting, requested=str(value), planned=str(REFUSABLE[setting] or "default"),
                              reason=f"refused: {reason}", refused=True))
    return request.model_copy(update=replaced), changes, warnings


def _gguf_for(model: ModelSpec) -> tuple[str, int] | None:
    """The GGUF llama.cpp would load for this model: the file itself, or the catalog's GGUF alternative."""
    if model.format == "gguf":
        return model.id, model.checkpoint_bytes or 0
    if model.gguf_alternative:
        alt = catalog.lookup(model.gguf_alternative)
        if alt and alt.checkpoint_bytes:
            return f"hf:{alt.id}", alt.checkpoint_bytes
    return None


def _llamacpp_plan(model: ModelSpec, host: Host, request: PlanRequest) -> tuple[LlamacppSettings, bool, str] | None:
    gguf = _gguf_for(model)
    if gguf is None:
        return None
    n_ctx = request.max_model_len or model.arch.max_position_embeddings
    return plan_llamacpp(model, gguf[0], gguf[1], host, n_ctx)


def _llamacpp_speed(model: ModelSpec, host: Host, settings: LlamacppSettings) -> Speed | None:
    gpu = host.gpu
    if gpu is None or not gpu.bandwidth_gbs:
        return speed_model.offload_speed(model, speed_model.DEFAULT_RAM_BANDWIDTH_GBS, 1.0,
                                         speed_model.DEFAULT_RAM_BANDWIDTH_GBS) if not host.gpus else None
    fraction = settings.n_cpu_moe / model.arch.num_hidden_layers
    if fraction:
        return speed_model.offload_speed(model, gpu.bandwidth_gbs, fraction * 0.8, speed_model.DEFAULT_RAM_BANDWIDTH_GBS)
    kv_per_token = settings.kv_bytes // max(settings.n_ctx, 1)
    return speed_model.decode_speed(model, gpu.bandwidth_gbs, SPEED_CONTEXT, kv_per_token, 1,
                                    speed_model.LLAMACPP_EFFICIENCY, 0.0,
                                    f"llama.cpp at {SPEED_CONTEXT} tokens of context; efficiency from Strix Halo "
                                    "(47.4 of 51 tok/s, gptoss-facts §7.3)")


def _validate(model: ModelSpec, host: Host, request: PlanRequest) -> None:
    limit = model.arch.max_position_embeddings
    if request.max_model_len and request.max_model_len > limit:
        raise InputError(f"--max-model-len {request.max_model_len:,} exceeds {model.id}'s maximum of {limit:,} tokens",
                         hint=f"use --max-model-len {limit} or less (or omit it for the largest that fits)")
    tp = request.tensor_parallel_size
    if tp and host.gpus and tp > host.gpu_count:
        raise InputError(f"--tensor-parallel-size {tp} needs {tp} GPUs; the host has {host.gpu_count}",
                         hint="pass --gpus N with --gpu, or a larger --profile")
    if tp and model.arch.num_attention_heads % tp:
        raise InputError(f"--tensor-parallel-size {tp} does not divide the {model.arch.num_attention_heads} attention heads",
                         hint="use 1, 2, 4 or 8")


def _base_plan(model: ModelSpec, host: Host, **fields: object) -> Plan:
    return Plan(tool_version=__version__, host=host.describe(), host_source=host.source, model=model.id,
                model_quantization=model.quantization, model_format=model.format, **fields)


def _vllm_plan(model: ModelSpec, host: Host, request: PlanRequest, c: VllmCandidate, changes: list[Change],
               extra_warnings: list[str]) -> Plan:
    s, gpu = c.settings, host.gpu
    defaults = default_batch(gpu, s.version)
    args, env = _vllm_args(s, c.backends, defaults, cpu=gpu is None)
    args += _switch_flags(request, model)
    for issue in c.issues:
        env.update(issue.applied_env)
    if request.vocab_dir:
        env["TIKTOKEN_ENCODINGS_BASE"] = request.vocab_dir
    warnings = list(extra_warnings) + [f"{n}" for n in model.notes]
    if gpu and gpu.consumer:
        display = data.load("engine_facts")["vllm"]["memory_model"]["consumer_display_reserve_gib"]
        if gpu.visible_bytes * (1 - s.gpu_memory_utilization) < display * GIB:
            warnings.append(f"{gpu.name} often drives a display: vLLM refuses to start when less than "
                            f"{s.gpu_memory_utilization:g} of its memory is free; close desktop apps or lower "
                            "--gpu-memory-utilization")
    if gpu and gpu.unified_memory:
        warnings.append("unified memory: --gpu-memory-utilization is not a hard cap here (vllm#46307); the plan "
                        f"uses {s.gpu_memory_utilization:g} and keeps the OS headroom")
    if request.quantization and request.quantization != model.quantization:
        warnings.append(f"--quantization {request.quantization} differs from the checkpoint's {model.quantization}: "
                        "the memory plan assumes the checkpoint's")
    if not s.tool_calling and request.tool_calling:
        warnings.append(f"vLLM {s.version} has no openai tool parser: tool calls will not be parsed")
    verdict = "fits with changes" if changes else "fits"
    device = "GPU" if gpu else "CPU"
    reasons = [f"vLLM {s.version}, TP{s.tensor_parallel_size}: weights {c.memory.weights_bytes / GIB:.1f} GiB/{device}, "
               f"KV {c.memory.kv_bytes / GIB:.1f} GiB/{device} holds {c.kv.max_concurrency:.2f} requests of "
               f"{s.max_model_len:,} tokens", c.backends.reason]
    log = [f"Using max model len {s.max_model_len}",
           f"Chunked prefill is enabled with max_num_batched_tokens={s.max_num_batched_tokens}.",
           f"Model loading took {c.memory.weights_bytes / GIB:.2f} GiB memory (estimate)",
           f"Available KV cache memory: {c.memory.kv_bytes / GIB:.2f} GiB"] + predicted_log_lines(c.kv, s.max_model_len, s.version, device)
    return _base_plan(model, host, verdict=verdict, reasons=reasons, engine="vllm", vllm=s, memory=c.memory, kv=c.kv,
                      predicted_log=log, engine_args=args, env=env, changes=changes, issues=c.issues,
                      speed=_vllm_speed(model, gpu, c), warnings=warnings, explain=_explain_vllm(model, c))


def _llamacpp_full_plan(model: ModelSpec, host: Host, request: PlanRequest, result: tuple[LlamacppSettings, bool, str],
                        changes: list[Change], reasons: list[str]) -> Plan:
    settings, fits, why = result
    ctx = IssueContext(engine="llamacpp", version="0", arch=host.gpu.arch if host.gpu else "cpu")
    issues = matching_issues(ctx)
    verdict = ("fits with changes" if changes else "fits") if fits else "does not fit"
    warnings = list(model.notes)
    if settings.ram_bytes_available is None and settings.cpu_expert_bytes:
        warnings.append(f"host RAM unknown: check {settings.ram_bytes_needed / GIB:.1f} GiB are free for CPU experts")
    explain = [Explain(name="llama.cpp memory", formula="GGUF - n_cpu_moe x experts/layer + KV(full) + KV(SWA) + compute",
                       inputs={"gguf_gib": round(settings.model_bytes / GIB, 2), "n_cpu_moe": settings.n_cpu_moe,
                               "kv_gib": round(settings.kv_bytes / GIB, 2), "swa_gib": round(settings.swa_bytes / GIB, 3),
                               "compute_gib": round(settings.compute_bytes / GIB, 2)},
                       result=f"{settings.gpu_bytes_per_device / GIB:.2f} GiB per device of "
                              f"{settings.gpu_budget_per_device / GIB:.2f}")]
    return _base_plan(model, host, verdict=verdict, reasons=reasons + [f"llama.cpp: {why}"], engine="llamacpp",
                      llamacpp=settings, engine_args=llamacpp_args(settings), changes=changes, issues=issues,
                      speed=_llamacpp_speed(model, host, settings) if fits else None, warnings=warnings,
                      explain=explain)


def _alternatives(model: ModelSpec, host: Host, request: PlanRequest, version: str, chosen_tp: int | None) -> list[Alternative]:
    """Other ways to serve: larger TP for more KV, the official MXFP4 model for BF16 forks, llama.cpp GGUF."""
    alts: list[Alternative] = []
    target = request.max_model_len or model.arch.max_position_embeddings
    if host.gpus:
        for tp in valid_tp_sizes(model, host.gpu_count):
            if chosen_tp is not None and tp <= chosen_tp:
                continue
            util, mnbt, seqs = _starting_point(model, host, request.model_copy(update={"tensor_parallel_size": tp}), version, tp)
            c = evaluate_vllm(model, host, request, version, tp, util, mnbt, seqs, target, request.kv_cache_dtype)
            if c.fits:
                alts.append(Alternative(description=f"vLLM TP{tp}", verdict="fits", engine="vllm", model=model.id,
                                        detail=f"{c.kv.max_concurrency:.2f}x concurrency at {target:,} tokens"))
    official = catalog.lookup(model.official_alternative) if model.official_alternative else None
    if official is not None:
        sub = make_plan(official, host, request.model_copy(update={"tensor_parallel_size": None, "engine": "auto"}),
                        installed_vllm=version, with_alternatives=official.official_alternative is None)
        if sub.verdict != "does not fit":
            where = (f"TP{sub.vllm.tensor_parallel_size}" if sub.vllm else "llama.cpp") if sub.engine else ""
            alts.append(Alternative(description=f"official MXFP4 {official.id} on {sub.engine} {where}",
                                    verdict=sub.verdict, engine=sub.engine or "vllm", model=official.id,
                                    detail=sub.reasons[0]))
            for alt in sub.alternatives:
                alts.append(alt.model_copy(update={"description": f"official MXFP4: {alt.description}"}))
        result = _llamacpp_plan(official, host, request) if sub.engine != "llamacpp" else None
        if result is not None and official.gguf_alternative:
            alts.append(Alternative(description=f"llama.cpp with {official.gguf_alternative}" +
                                    (f" --n-cpu-moe {result[0].n_cpu_moe}" if result[0].n_cpu_moe else ""),
                                    verdict="fits" if result[1] else "does not fit", engine="llamacpp",
                                    model=official.gguf_alternative, detail=result[2]))
    return alts


def resolve_vllm_version(request: PlanRequest, installed_vllm: str | None) -> str:
    """--vllm-version, else the installed vLLM, else the version the data files describe."""
    version = request.vllm_version or installed_vllm or versions.vllm_facts()["default_version"]
    versions.parse_version(version)
    return version


def across_nodes(plan: Plan, nodes: int) -> Plan:
    """Spread a one-node vLLM plan over `nodes` machines: TP within a node, PP across nodes, Ray executor.

    Pipeline stages split the layers, so each GPU holds 1/nodes of the planned weights and KV layers: the
    one-node memory figures are an upper bound, and the KV capacity per request grows about `nodes` times.
    """
    assert plan.vllm is not None
    plan.vllm.pipeline_parallel_size = nodes
    plan.nodes = nodes
    args = plan.engine_args
    at = args.index("--tensor-parallel-size") + 2 if "--tensor-parallel-size" in args else 0
    plan.engine_args = args[:at] + ["--pipeline-parallel-size", str(nodes), "--distributed-executor-backend",
                                    "ray"] + args[at:]
    plan.reasons.append(f"{nodes} nodes: TP{plan.vllm.tensor_parallel_size} within each node, pipeline parallel "
                        f"{nodes} across nodes on a Ray cluster (vLLM's multi-node mode)")
    plan.warnings.append(f"memory is planned for one node; with {nodes} pipeline stages each GPU holds about 1/{nodes} "
                         "of that, so the figures are an upper bound (the KV cache grows accordingly)")
    return plan


def make_plan(model: ModelSpec, host: Host, request: PlanRequest, installed_vllm: str | None = None,
              with_alternatives: bool = True) -> Plan:
    """The plan for serving `model` on `host` as `request` asks."""
    _validate(model, host, request)
    version = resolve_vllm_version(request, installed_vllm)
    prefer_llamacpp = request.engine == "llamacpp" or (
        request.engine == "auto" and (not host.gpus or (host.gpu is not None and host.gpu.arch == "rdna3.5")))
    if request.nodes > 1 and (prefer_llamacpp or not host.gpus):
        raise InputError(f"--nodes {request.nodes} needs vLLM on GPUs (pipeline parallel over Ray)",
                         hint="plan one node with llama.cpp, or use GPU nodes with --engine vllm")
    if prefer_llamacpp:
        result = _llamacpp_plan(model, host, request)
        if result is None:
            if request.engine == "llamacpp":
                raise InputError(f"{model.id} has no GGUF for llama.cpp",
                                 hint="pass a .gguf file, or an official model whose GGUF the catalog knows")
        else:
            why = ("requested" if request.engine == "llamacpp" else
                   "no GPU: llama.cpp runs on the CPU" if not host.gpus else
                   "Strix Halo (gfx1151): llama.cpp is the stable engine (vLLM issues in the plan's notes)")
            return _llamacpp_full_plan(model, host, request, result, [], [f"engine llama.cpp: {why}"])
    request, kv_changes, kv_warnings = _refuse_requested(model, host, request, version)
    chosen, tried = search_vllm(model, host, request, version, request.kv_cache_dtype)
    minimum = versions.vllm_facts()["min_gpt_oss"]
    if model.is_gpt_oss and not versions.at_least(version, minimum):
        chosen = None
        kv_warnings.append(f"vLLM {version} predates gpt-oss support (>= {minimum})")
    if chosen is not None:
        plan = _vllm_plan(model, host, request, chosen, kv_changes + _changes(request, chosen.settings, model.arch.max_position_embeddings), kv_warnings)
        if with_alternatives:
            plan.alternatives = _alternatives(model, host, request, version, chosen.settings.tensor_parallel_size)
        return across_nodes(plan, request.nodes) if request.nodes > 1 else plan
    # vLLM cannot serve it here.
    best = max(tried, key=lambda c: c.memory.kv_bytes) if tried else None
    numbers = _does_not_fit_numbers(model, host, best)
    if request.engine == "auto":
        result = _llamacpp_plan(model, host, request)
        if result is not None and result[1]:
            change = Change(setting="engine", requested="vllm (auto)", planned="llama.cpp", reason=numbers)
            plan = _llamacpp_full_plan(model, host, request, result, [change], [f"vLLM does not fit: {numbers}"])
            if with_alternatives:
                plan.alternatives = _alternatives(model, host, request, version, None)
            return plan
    plan = _base_plan(model, host, verdict="does not fit", reasons=[numbers], engine=None,
                      issues=best.issues if best else [], warnings=kv_warnings + list(model.notes),
                      explain=_explain_vllm(model, best) if best else [])
    if best is not None:
        plan.memory, plan.kv = best.memory, best.kv
    if with_alternatives:
        plan.alternatives = _alternatives(model, host, request, version, None)
    return plan


def _does_not_fit_numbers(model: ModelSpec, host: Host, best: VllmCandidate | None) -> str:
    if best is None or host.gpu is None:
        return f"no GPU configuration to try for {model.id} on {host.describe()}"
    s, m = best.settings, best.memory
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
