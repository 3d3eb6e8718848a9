"""vLLM memory and KV cache, computed as vLLM computes them (vllm/v1/core/kv_cache_utils.py; the non-KV terms in
plan/vllm_profile.py).

KV: page = block_size x 2 x kv_heads/TP x head_dim x dtype bytes; layers of each attention kind are grouped
(group_size = min layers per kind, or the max when within 1.5x); num_blocks = floor(avail / page / group_size);
blocks per request = sum over groups (full: cdiv(L, bs); sliding: cdiv(min(window - 1 + MNBT, L), bs) + 1);
max concurrency = num_blocks / blocks per request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptoss_deploy.hardware.types import GIB, Gpu
from gptoss_deploy.models.spec import ArchConfig
from gptoss_deploy.plan import versions
from gptoss_deploy.plan.types import KvPrediction, MemoryTerm, VllmMemory
from gptoss_deploy.plan.vllm_profile import MoeBackend, available_kv_bytes, non_kv_breakdown, requested_bytes

KV_DTYPE_BYTES = {"auto": 2, "bf16": 2, "fp16": 2, "fp8": 1}
CONTEXT_ROUNDING = 1024  # a context the planner shortens is rounded down to a multiple of this


def kv_heads_per_rank(arch: ArchConfig, tp: int) -> int:
    """KV heads each TP rank holds (replicated when TP exceeds the KV heads)."""
    return max(1, arch.num_key_value_heads // tp)


def page_bytes(arch: ArchConfig, tp: int, kv_dtype: str, block_size: int) -> int:
    """Bytes of one block of one layer on one rank."""
    return block_size * 2 * kv_heads_per_rank(arch, tp) * arch.head_dim * KV_DTYPE_BYTES[kv_dtype]


def kv_groups(arch: ArchConfig) -> tuple[int, list[str]]:
    """(group_size, kind of each group) as vLLM's hybrid allocator forms them."""
    counts = {kind: arch.kinds().count(kind) for kind in ("full_attention", "sliding_attention")}
    counts = {kind: n for kind, n in counts.items() if n}
    smallest, largest = min(counts.values()), max(counts.values())
    group_size = largest if largest < smallest * 1.5 else smallest
    groups = [kind for kind, n in counts.items() for _ in range(math.ceil(n / group_size))]
    return group_size, groups


def blocks_per_request(arch: ArchConfig, max_model_len: int, mnbt: int, block_size: int) -> int:
    """Blocks one max_model_len request takes from the shared pool."""
    _, groups = kv_groups(arch)
    total = 0
    for kind in groups:
        if kind == "sliding_attention" and arch.sliding_window:
            tokens = min(arch.sliding_window - 1 + mnbt, max_model_len)
            total += math.ceil(tokens / block_size) + 1
        else:
            total += math.ceil(max_model_len / block_size)
    return total


def max_len_that_fits(arch: ArchConfig, num_blocks: int, mnbt: int, block_size: int, limit: int) -> int:
    """Largest max_model_len (<= limit) whose request fits in `num_blocks` (vLLM's auto-fit, binary search)."""
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        if blocks_per_request(arch, mid, mnbt, block_size) <= num_blocks:
            low = mid
        else:
            high = mid - 1
    return low


def predict_kv(arch: ArchConfig, tp: int, kv_dtype: str, block_size: int, available_bytes: int,
               max_model_len: int, mnbt: int, version: str) -> KvPrediction:
    """The KV layout and the two numbers vLLM logs for this budget."""
    page = page_bytes(arch, tp, kv_dtype, block_size)
    group_size, groups = kv_groups(arch)
    num_blocks = max(0, available_bytes // page // group_size)
    per_request = blocks_per_request(arch, max_model_len, mnbt, block_size)
    concurrency = num_blocks / per_request
    if versions.new_kv_log_formula(version):
        logged, formula = int(concurrency * max_model_len), "concurrency_x_len"
    else:
        logged, formula = num_blocks // len(groups) * block_size, "blocks_per_group"
    per_token_full = arch.num_full_layers * 2 * kv_heads_per_rank(arch, tp) * arch.head_dim * KV_DTYPE_BYTES[kv_dtype]
    return KvPrediction(
        block_size=block_size, page_bytes=page, group_size=group_size, num_groups=len(groups),
        num_blocks=num_blocks, blocks_per_request=per_request, max_concurrency=concurrency,
        logged_tokens=logged, log_formula=formula, full_layer_bytes_per_token=per_token_full,
        steady_state_tokens=available_bytes // per_token_full if per_token_full else 0,
        max_len_that_fits=max_len_that_fits(arch, num_blocks, mnbt, block_size, arch.max_position_embeddings),
    )


@dataclass(frozen=True)
class BatchDefaults:
    """vLLM's default batch for the API server on a device."""

    max_num_batched_tokens: int
    max_num_seqs: int


def default_batch(gpu: Gpu | None, version: str, world_size: int = 1) -> BatchDefaults:
    """vLLM's default (max_num_batched_tokens, max_num_seqs) for the API server on this device; on the CPU both
    scale with the world size, TP x PP (vllm/engine/arg_utils.py `_get_default_usage_context_values`, 0.11-0.32)."""
    facts = versions.vllm_facts().default_batch
    if gpu is None:
        return BatchDefaults(facts.cpu.max_num_batched_tokens * world_size, facts.cpu.max_num_seqs * world_size)
    for tier in facts.tiers:
        if tier.since and not versions.at_least(version, tier.since):
            continue
        if tier.exclude_name and tier.exclude_name in gpu.name.lower():
            continue
        if tier.only_unified and not (gpu.unified_memory and gpu.vendor == "nvidia"):
            continue
        if gpu.visible_bytes >= tier.min_gib * GIB:
            return BatchDefaults(tier.max_num_batched_tokens, tier.max_num_seqs)
    raise AssertionError("engine_facts.yaml default_batch needs a min_gib: 0 tier")


def cpu_kv_gib(kv_cache_memory_bytes: int | None) -> int:
    """VLLM_CPU_KVCACHE_SPACE for a KV budget: whole GiB, at least 1; 4 GiB when none is given."""
    return max(1, kv_cache_memory_bytes // GIB) if kv_cache_memory_bytes else 4


def profile_moe_backend(moe_backend: str) -> MoeBackend:
    """The forward-pass formula family of a planned MoE backend (Marlin's workspace differs from the rest)."""
    return "marlin" if moe_backend == "marlin" else "triton"


def budget(gpu: Gpu, arch: ArchConfig, weights_bytes: int, util: float, tp: int, mnbt: int, max_num_seqs: int,
           version: str, enforce_eager: bool, kv_override: int | None = None, *, moe_backend: str = "triton",
           max_model_len: int = 131072) -> VllmMemory:
    """vLLM's per-rank memory budget: what is requested, what its profiling subtracts (plan/vllm_profile.py, per
    release), and what remains for KV."""
    breakdown = non_kv_breakdown(arch, version, tp, mnbt, max_num_seqs, enforce_eager, gpu.unified_memory,
                                 max_model_len=max_model_len, moe_backend=profile_moe_backend(moe_backend),
                                 compute_capability=gpu.compute_capability)
    requested = requested_bytes(gpu.visible_bytes, util)
    kv = available_kv_bytes(gpu.visible_bytes, util, weights_bytes, breakdown)
    activation = breakdown.torch_peak.bytes + breakdown.preallocated.bytes + breakdown.unified_host_buffers.bytes
    non_torch = breakdown.non_torch.bytes + breakdown.unified_extra.bytes
    terms = [MemoryTerm(name=name, bytes=term.bytes, label=term.label, formula=term.formula, source=term.source)
             for name, term in breakdown.terms().items()]
    return VllmMemory(
        visible_bytes=gpu.visible_bytes, gpu_memory_utilization=util, requested_bytes=requested,
        weights_bytes=weights_bytes, activation_bytes=activation, non_torch_bytes=non_torch,
        cudagraph_bytes=breakdown.cudagraph_estimate.bytes, cudagraph_in_budget=breakdown.cudagraph_in_budget,
        kv_bytes=kv_override if kv_override is not None else kv, kv_from_override=kv_override is not None,
        terms=terms, budget_rule=breakdown.budget_rule,
    )


def predicted_log_lines(kv: KvPrediction, max_model_len: int, version: str, device: str = "GPU") -> list[str]:
    """The lines vLLM will print for this KV cache, in this version's wording."""
    size = f"{device} KV cache size: {kv.logged_tokens:,} tokens"
    conc = f"Maximum concurrency for {max_model_len:,} tokens per request: {kv.max_concurrency:.2f}x"
    if versions.kv_log_single_line(version):
        return [f"{size}, {conc}"]
    return [size, conc]
