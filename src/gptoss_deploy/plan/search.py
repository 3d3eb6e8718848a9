"""The vLLM search: evaluate one configuration, then try tensor-parallel sizes and memory steps until one fits.

Order: each TP size (the requested one first, then the smallest valid), each memory step (the starting point,
then util 0.95, then 256 sequences, then MNBT 1024 — a batch step only where vLLM's profiling mechanism says it
frees memory, plan/vllm_profile.py), at the target context; then the largest context that fits. The user's explicit settings are held fixed and relaxed one by one (RELAX_ORDER) only when
nothing fits with them. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from gptoss_deploy.hardware.types import GIB, Gpu, Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan import versions
from gptoss_deploy.plan.backends import BackendChoice, choose_backends
from gptoss_deploy.plan.issues import IssueContext, matching_issues
from gptoss_deploy.plan.llamacpp_memory import RAM_BUDGET_FRACTION
from gptoss_deploy.plan.types import IssueHit, KvPrediction, PlanRequest, VllmMemory, VllmSettings
from gptoss_deploy.plan.vllm_memory import CONTEXT_ROUNDING, budget, cpu_kv_gib, default_batch, predict_kv
from gptoss_deploy.plan.vllm_profile import non_kv_breakdown
from gptoss_deploy.plan.weights import weight_bytes_per_rank

TP_SIZES = (1, 2, 4, 8)
RELAXED_UTIL = 0.95
RELAXED_MNBT = 1024
RELAXED_MAX_NUM_SEQS = 256   # vLLM's own small-tier default: the sampler warm-up scales with it
LEVER_THRESHOLD = 0.01       # a batch lever is offered when it frees at least 1 % of what profiling subtracts
UNIFIED_UTIL = 0.85          # NVIDIA's GB10 recipe value; the default 0.92 OOMs at startup (gptoss-facts §3)
MIN_USEFUL_CONTEXT = 8192
# vLLM's own CUDA context (and cuBLAS/NCCL handles) already exist when it compares free memory with util x total at
# startup ("Free memory on device ... is less than desired GPU memory utilization"); estimated, UNVERIFIED per GPU.
CUDA_CONTEXT_BYTES = GIB // 2
RELAX_ORDER = ("max_num_batched_tokens", "max_model_len", "gpu_memory_utilization", "tensor_parallel_size")


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


@dataclass(frozen=True)
class StartPoint:
    """Utilization and batch before relaxation: the request, else rule defaults, else vLLM's defaults."""

    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int


@dataclass(frozen=True)
class Knobs:
    """The settings one evaluation varies."""

    tp: int
    util: float
    mnbt: int
    max_num_seqs: int
    max_model_len: int
    kv_dtype: str


def utilization_cap(gpus: Sequence[Gpu]) -> float | None:
    """The highest --gpu-memory-utilization vLLM starts with while other processes hold memory on these GPUs (what
    detection read): util x total must fit in the free memory left after vLLM's own CUDA context. None when no GPU
    is known to have memory in use (profiles, unified memory, nothing held)."""
    caps = [math.floor((g.visible_bytes - g.used_bytes - CUDA_CONTEXT_BYTES) / g.visible_bytes * 100) / 100
            for g in gpus if g.used_bytes]
    return max(0.01, min(caps)) if caps else None


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


def _backends(model: ModelSpec, gpu: Gpu | None, version: str, request: PlanRequest) -> BackendChoice:
    backends = choose_backends(gpu, version, model.is_gpt_oss)
    if request.attention_backend:
        backends = backends.model_copy(update={"attention": request.attention_backend, "explicit_attention": True,
                                               "reason": f"attention backend {request.attention_backend} as requested; "
                                                         + backends.reason})
    return backends


def settings_for(model: ModelSpec, host: Host, request: PlanRequest, version: str, knobs: Knobs,
                 backends: BackendChoice) -> VllmSettings:
    """The typed settings of one configuration (what the argv builder reads)."""
    pp = request.pipeline_parallel_size or 1
    defaults = default_batch(host.gpu, version, knobs.tp * pp)
    async_scheduling = (versions.async_scheduling_default(version) if request.async_scheduling is None
                        else request.async_scheduling)
    tool_calling = request.tool_calling and versions.at_least(version, versions.vllm_facts().tool_parser_openai_since)
    quantization = request.quantization if request.quantization and request.quantization != model.quantization else None
    return VllmSettings(
        version=version, device="gpu" if host.gpu else "cpu", tensor_parallel_size=knobs.tp,
        pipeline_parallel_size=pp,
        max_model_len=knobs.max_model_len, gpu_memory_utilization=knobs.util, max_num_batched_tokens=knobs.mnbt,
        max_num_seqs=knobs.max_num_seqs, default_max_num_batched_tokens=defaults.max_num_batched_tokens,
        default_max_num_seqs=defaults.max_num_seqs, kv_cache_dtype=knobs.kv_dtype,
        kv_cache_memory_bytes=request.kv_cache_memory_bytes, block_size=backends.block_size,
        attention_backend=backends.attention, explicit_attention=backends.explicit_attention,
        moe_backend=backends.moe, backend_env=dict(backends.env), backend_args=list(backends.extra_args),
        enforce_eager=request.enforce_eager, async_scheduling=async_scheduling, tool_calling=tool_calling,
        tool_call_parser=request.tool_call_parser, enable_prefix_caching=request.enable_prefix_caching,
        enable_chunked_prefill=request.enable_chunked_prefill, quantization=quantization, dtype=request.dtype,
        vocab_dir=request.vocab_dir)


def evaluate(model: ModelSpec, host: Host, request: PlanRequest, version: str, knobs: Knobs) -> VllmCandidate:
    """Memory, KV and known issues of one vLLM configuration."""
    gpu = host.gpu
    backends = _backends(model, gpu, version, request)
    settings = settings_for(model, host, request, version, knobs, backends)
    weights = weight_bytes_per_rank(model.arch, model.quantization, backends.moe, knobs.tp)
    if gpu is None:
        memory = cpu_budget(host, weights, request)
    else:
        memory = budget(gpu, model.arch, weights, knobs.util, knobs.tp, knobs.mnbt, knobs.max_num_seqs, version,
                        request.enforce_eager, request.kv_cache_memory_bytes, moe_backend=backends.moe,
                        max_model_len=knobs.max_model_len)
    kv = predict_kv(model.arch, knobs.tp, knobs.kv_dtype, backends.block_size, max(memory.kv_bytes, 0),
                    knobs.max_model_len, knobs.mnbt, version)
    issues = matching_issues(_issue_context(model, gpu, settings, request))
    return VllmCandidate(settings=settings, memory=memory, kv=kv, backends=backends, issues=issues)


def cpu_budget(host: Host, weights: int, request: PlanRequest) -> VllmMemory:
    """vLLM's CPU backend allocates VLLM_CPU_KVCACHE_SPACE (whole GiB; 4 planned unless --kv-cache-memory-bytes) on
    top of the weights, all in RAM: when both do not fit in RAM_BUDGET_FRACTION of the host's RAM, no KV is left."""
    ram = host.ram_bytes or 0
    kv = cpu_kv_gib(request.kv_cache_memory_bytes) * GIB
    fits_ram = not host.ram_bytes or weights + kv <= host.ram_bytes * RAM_BUDGET_FRACTION
    return VllmMemory(visible_bytes=ram, gpu_memory_utilization=1.0, requested_bytes=weights + kv,
                      weights_bytes=weights, activation_bytes=0, non_torch_bytes=0, cudagraph_bytes=0,
                      cudagraph_in_budget=False, kv_bytes=kv if fits_ram else 0,
                      kv_from_override=request.kv_cache_memory_bytes is not None)


SWITCHES = ("enforce_eager",)  # boolean settings a known issue's fix.defaults may turn on


def issue_switches(model: ModelSpec, host: Host, request: PlanRequest, version: str) -> PlanRequest:
    """The request with the switches a matching known issue's fix turns on (--enforce-eager on GB10) when the
    request left them off; the plan lists them as applied (IssueHit.applied)."""
    off = [name for name in SWITCHES if not getattr(request, name)]
    if not off or host.gpu is None:
        return request
    tp = request.tensor_parallel_size or 1
    defaults = default_batch(host.gpu, version, tp)
    probe = evaluate(model, host, request, version,
                     Knobs(tp, versions.default_gpu_memory_utilization(version), defaults.max_num_batched_tokens,
                           defaults.max_num_seqs, request.max_model_len or model.arch.max_position_embeddings,
                           request.kv_cache_dtype))
    on = {name: True for name in off for issue in probe.issues if issue.defaults.get(name) is True}
    return request.model_copy(update=on) if on else request


def starting_point(model: ModelSpec, host: Host, request: PlanRequest, version: str, tp: int) -> StartPoint:
    """Before relaxation: the request, else the known-issue rules' defaults, else vLLM's defaults."""
    gpu = host.gpu
    defaults = default_batch(gpu, version, tp * (request.pipeline_parallel_size or 1))
    util = UNIFIED_UTIL if gpu and gpu.unified_memory else versions.default_gpu_memory_utilization(version)
    mnbt = defaults.max_num_batched_tokens
    probe = evaluate(model, host, request, version,
                     Knobs(tp, util, mnbt, defaults.max_num_seqs,
                           request.max_model_len or model.arch.max_position_embeddings, request.kv_cache_dtype))
    for issue in probe.issues:
        util = float(issue.defaults.get("gpu_memory_utilization", util))
        mnbt = int(issue.defaults.get("max_num_batched_tokens", mnbt))
    cap = utilization_cap(host.gpus)
    util = min(util, cap) if cap is not None else util
    return StartPoint(request.gpu_memory_utilization or util, request.max_num_batched_tokens or mnbt,
                      request.max_num_seqs or defaults.max_num_seqs)


@dataclass(frozen=True)
class Step:
    """One (util, MNBT, max_num_seqs) point of the search."""

    util: float
    mnbt: int
    max_num_seqs: int


def frees_memory(model: ModelSpec, gpu: Gpu | None, version: str, tp: int, enforce_eager: bool,
                 before: Step, after: Step) -> bool:
    """True when vLLM's profiling (plan/vllm_profile.py) subtracts at least LEVER_THRESHOLD less with `after`:
    the planner only offers batch levers that the mechanism says free memory."""
    if gpu is None:
        return False

    def subtracted(step: Step) -> int:
        return non_kv_breakdown(model.arch, version, tp, step.mnbt, step.max_num_seqs, enforce_eager,
                                gpu.unified_memory, compute_capability=gpu.compute_capability).budget_bytes

    first = subtracted(before)
    return first - subtracted(after) > LEVER_THRESHOLD * first


def memory_steps(model: ModelSpec, request: PlanRequest, gpu: Gpu | None, version: str, tp: int, start: StartPoint,
                 relaxed: set[str]) -> list[Step]:
    """Points to try: the starting point, then util 0.95, then fewer sequences, then a smaller batch, each only
    when the user did not pin it and (for the batch settings) the mechanism says it frees memory."""
    util_free = request.gpu_memory_utilization is None or "gpu_memory_utilization" in relaxed
    mnbt_free = request.max_num_batched_tokens is None or "max_num_batched_tokens" in relaxed
    seqs_free = request.max_num_seqs is None
    first = Step(start.gpu_memory_utilization, start.max_num_batched_tokens, start.max_num_seqs)
    steps = [first]
    relaxed_util = min(RELAXED_UTIL, utilization_cap([gpu]) or RELAXED_UTIL) if gpu is not None else RELAXED_UTIL
    if util_free and gpu is not None and not gpu.unified_memory and first.util < relaxed_util:
        steps.append(Step(relaxed_util, first.mnbt, first.max_num_seqs))
    best = steps[-1]
    if seqs_free and first.max_num_seqs > RELAXED_MAX_NUM_SEQS:
        fewer = Step(best.util, best.mnbt, RELAXED_MAX_NUM_SEQS)
        if frees_memory(model, gpu, version, tp, request.enforce_eager, best, fewer):
            steps.append(fewer)
            best = fewer
    if mnbt_free and first.mnbt > RELAXED_MNBT:
        smaller = Step(best.util, RELAXED_MNBT, best.max_num_seqs)
        if frees_memory(model, gpu, version, tp, request.enforce_eager, best, smaller):
            steps.append(smaller)
    return steps


def round_context(length: int) -> int:
    """Down to a multiple of CONTEXT_ROUNDING (1024) tokens."""
    return length // CONTEXT_ROUNDING * CONTEXT_ROUNDING


@dataclass
class Search:
    """One search over TP sizes and memory steps; `tried` keeps every evaluated candidate."""

    model: ModelSpec
    host: Host
    request: PlanRequest
    version: str
    tried: list[VllmCandidate]

    def _once(self, relaxed: set[str], starts: dict[int, StartPoint]) -> VllmCandidate | None:
        """One pass with the user's unrelaxed settings held fixed."""
        request, kv_dtype = self.request, self.request.kv_cache_dtype
        target = request.max_model_len or self.model.arch.max_position_embeddings
        tps = list(starts)  # the requested TP first, when there is one
        if request.tensor_parallel_size and "tensor_parallel_size" not in relaxed:
            tps = [request.tensor_parallel_size]
        passes: list[VllmCandidate] = []
        for tp in tps:
            start = starts[tp]
            for step in memory_steps(self.model, request, self.host.gpu, self.version, tp, start, relaxed):
                candidate = evaluate(self.model, self.host, request, self.version,
                                     Knobs(tp, step.util, step.mnbt, step.max_num_seqs, target, kv_dtype))
                self.tried.append(candidate)
                passes.append(candidate)
                if candidate.fits:
                    return candidate
        if request.max_model_len is not None and "max_model_len" not in relaxed:
            return None
        # No TP holds the target context: the smallest TP whose KV holds a useful context, at its best step.
        for tp in tps:
            best = max((c for c in passes if c.settings.tensor_parallel_size == tp), key=lambda c: c.kv.max_len_that_fits)
            length = round_context(best.kv.max_len_that_fits)
            if length >= MIN_USEFUL_CONTEXT:
                s = best.settings
                candidate = evaluate(self.model, self.host, request, self.version,
                                     Knobs(tp, s.gpu_memory_utilization, s.max_num_batched_tokens, s.max_num_seqs,
                                           length, kv_dtype))
                self.tried.append(candidate)
                if candidate.fits:
                    return candidate
        return None

    def run(self) -> VllmCandidate | None:
        """The first fitting configuration, relaxing the user's explicit settings one by one (RELAX_ORDER)."""
        tps = valid_tp_sizes(self.model, max(self.host.gpu_count, 1))
        if self.request.tensor_parallel_size:
            tps = [self.request.tensor_parallel_size] + [t for t in tps if t != self.request.tensor_parallel_size]
        starts = {tp: starting_point(self.model, self.host, self.request, self.version, tp) for tp in tps}
        for count in range(len(RELAX_ORDER) + 1):
            relaxed = set(RELAX_ORDER[:count])
            if count and getattr(self.request, RELAX_ORDER[count - 1]) is None:
                continue  # nothing pinned there: relaxing it changes nothing
            found = self._once(relaxed, starts)
            if found is not None:
                return found
        return None

    def best_tried(self) -> VllmCandidate | None:
        """The candidate with the most KV memory (for the 'does not fit' numbers)."""
        return max(self.tried, key=lambda c: c.memory.kv_bytes) if self.tried else None
