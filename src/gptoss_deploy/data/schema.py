"""Typed models of the packaged YAML files: each file is validated in full when it is loaded.

A missing or misspelt key is a `DataError` naming the file and the key's path (never a KeyError later). Every
model forbids unknown keys, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gptoss_deploy.models.spec import ArchConfig


class Strict(BaseModel):
    """Base of every data model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- engine_facts.yaml -----------------------------------------------------------------------------------------
class VersionFact(Strict):
    """A behaviour that starts with a release."""

    since: str
    last_without: str | None = None
    source: str | None = None


class KvLogFormula(Strict):
    """When 'KV cache size: N tokens' switched to int(max_concurrency x max_model_len)."""

    new_since: str
    last_without: str
    source: str


class UtilDefault(Strict):
    """vLLM's default --gpu-memory-utilization from a release on."""

    since: str
    value: float = Field(gt=0, le=1)
    last_without: str | None = None


class BatchTier(Strict):
    """One tier of vLLM's default batch (API server usage context)."""

    min_gib: float = Field(ge=0)
    since: str | None = None
    exclude_name: str | None = None
    only_unified: bool = Field(False, description="applies to unified-memory GPUs only (GB10)")
    source: str | None = None
    max_num_batched_tokens: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)


class CpuBatch(Strict):
    """vLLM-CPU's default batch."""

    max_num_batched_tokens: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)
    source: str


class DefaultBatch(Strict):
    """vLLM's default (max_num_batched_tokens, max_num_seqs) by device memory."""

    source: str
    tiers: list[BatchTier] = Field(min_length=1)
    cpu: CpuBatch


class MemoryModel(Strict):
    """Host-side reserves the planner keeps (vLLM's non-KV memory is in vllm_memory.yaml)."""

    source: str
    unified_memory_os_reserve_gib: float = Field(ge=0)
    consumer_display_reserve_gib: float = Field(ge=0)


class VllmFacts(Strict):
    """Version-dependent vLLM behaviour."""

    default_version: str
    min_gpt_oss: str
    kv_log_formula: KvLogFormula
    kv_log_single_line: VersionFact
    default_gpu_memory_utilization: list[UtilDefault] = Field(min_length=1)
    cudagraph_memory_estimate_default_on: VersionFact
    attention_backend_flag: VersionFact
    async_scheduling_default_auto: VersionFact
    default_batch: DefaultBatch
    block_size: int = Field(gt=0)
    tool_parser_openai_since: str
    memory_model: MemoryModel


class LlamacppFacts(Strict):
    """llama.cpp memory facts."""

    source: str
    compute_buffer_gib: float = Field(ge=0)
    swa_cells_factor: float = Field(gt=0)
    default_ubatch: int = Field(gt=0)


class CudaRule(Strict):
    """The CUDA that vLLM's PyPI wheels need from a release on, and the driver for it."""

    since: str
    cuda: str
    min_driver: str
    source: str


class EngineFacts(Strict):
    """engine_facts.yaml."""

    schema_version: Literal[1]
    vllm: VllmFacts
    llamacpp: LlamacppFacts
    vllm_cuda: list[CudaRule] = Field(default_factory=list)


# -- known_issues.yaml -----------------------------------------------------------------------------------------
Severity = Literal["refuse", "warn", "info"]


class IssueFix(Strict):
    """What fixes an issue: text, and what the planner can apply."""

    text: str = ""
    env: dict[str, str | int | float] = Field(default_factory=dict)
    flags: dict[str, str | int | float | bool] = Field(default_factory=dict)
    defaults: dict[str, bool | int | float] = Field(default_factory=dict)
    not_applied: str = ""  # why the plan cannot apply (the rest of) the fix itself


class IssueConditions(Strict):
    """The facts an issue's `when` may test (all must hold)."""

    arch: list[str] | None = None
    attention_backend: list[str] | None = None
    moe_backend: list[str] | None = None
    kv_cache_dtype: str | None = None
    model_arch: str | None = None
    tp: int | None = None
    min_gpu_gib: float | None = None
    max_gpu_gib: float | None = None
    unified_memory: bool | None = None
    tool_calling: bool | None = None
    offline: bool | None = None
    cudagraph_estimate: bool | None = None
    async_scheduling: bool | None = None

    def keys(self) -> list[str]:
        """The conditions this rule sets."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class KnownIssue(Strict):
    """One known engine issue that changes a plan."""

    id: str
    title: str
    source: str
    engine: str
    versions: str | None = None
    when: IssueConditions = Field(default_factory=IssueConditions)
    effect: str
    fix: IssueFix = Field(default_factory=IssueFix)
    severity: Severity


class KnownIssues(Strict):
    """known_issues.yaml."""

    schema_version: Literal[1]
    issues: list[KnownIssue]


# -- gpus.yaml ---------------------------------------------------------------------------------------------------
class GpuSpec(Strict):
    """One GPU model."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    vendor: Literal["nvidia", "amd"]
    arch: str
    compute_capability: str | None = None
    gfx_target: str | None = None
    memory_mib: float = Field(gt=0)
    visible_gib: float | None = Field(None, gt=0)
    bandwidth_gbs: float | None = Field(None, gt=0)
    unified_memory: bool = False
    consumer: bool = False
    host_arch: str | None = Field(None, description="the CPU architecture of hosts built around this GPU (GB10: aarch64)")
    bf16_tflops: float | None = Field(None, gt=0, description="dense (no sparsity) BF16 tensor peak, TFLOPS")
    interconnect: Literal["nvlink", "xgmi", "pcie", "unified"] | None = Field(
        None, description="how GPUs of this model talk to each other in the usual server")
    link_gbs: float | None = Field(None, gt=0, description="per-GPU, per-direction interconnect bandwidth, GB/s")
    source: str
    performance_source: str | None = Field(None, description="where the compute peak and interconnect come from")


class HostSpec(Strict):
    """A named host: a GPU key and a count."""

    gpu: str
    count: int = Field(gt=0)
    ram_gib: float | None = Field(None, gt=0)
    source: str | None = None


class GpuCatalog(Strict):
    """gpus.yaml."""

    schema_version: Literal[1]
    sources: dict[str, str] = Field(default_factory=dict)
    gpus: dict[str, GpuSpec]
    hosts: dict[str, HostSpec]


# -- models.yaml -------------------------------------------------------------------------------------------------
class ArchEntry(ArchConfig):
    """An architecture's config.json fields (the planner's ArchConfig) with their source and parameter counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    total_params_b: float | None = None
    active_params_b: float | None = None


class ModelEntry(Strict):
    """One published model or variant."""

    id: str
    aliases: list[str] = Field(default_factory=list)
    arch: str
    quantization: Literal["mxfp4", "bf16", "fp16", "fp8", "other"]
    format: Literal["safetensors", "gguf"]
    checkpoint_gib: float | None = Field(None, gt=0)
    gguf_alternative: str | None = None
    official_alternative: str | None = None
    gguf_files: list[str] = Field(default_factory=list)
    download_exclude: list[str] = Field(default_factory=list)
    source: str


class ModelCatalog(Strict):
    """models.yaml."""

    schema_version: Literal[1]
    architectures: dict[str, ArchEntry]
    models: list[ModelEntry]


# -- prices.yaml -------------------------------------------------------------------------------------------------
class PriceEntry(Strict):
    """One provider's on-demand price per GPU-hour (None = no sourced price)."""

    provider: str | None = None
    gpu: str | None = None
    price_per_hour: float | None = Field(None, gt=0, allow_inf_nan=False)
    source: str | None = None


class PriceTable(Strict):
    """prices.yaml (and user price files of the same shape)."""

    schema_version: Literal[1] = 1
    recorded: str | None = None
    currency: str = "USD"
    sources: dict[str, str] = Field(default_factory=dict)
    providers: dict[str, PriceEntry]


# -- throughput.yaml ---------------------------------------------------------------------------------------
class EngineEfficiency(Strict):
    """An engine's efficiency constants in the throughput model (plan/throughput.py), and how they were fitted."""

    bandwidth: float = Field(gt=0, le=1)
    compute: float = Field(gt=0, le=1)
    step_overhead_s: float = Field(ge=0)
    label: Literal["measured", "estimated"] = "estimated"
    source: str


class LinkCost(Strict):
    """The cost of one collective on an interconnect."""

    gbs: float = Field(gt=0)
    latency_s: float = Field(ge=0)
    label: Literal["given", "estimated"] = "estimated"
    source: str


class ThroughputAnchor(Strict):
    """A public measurement of gpt-oss on vLLM at a concurrency: the model is fitted on some, checked on all."""

    id: str
    model: Literal["gpt-oss-20b", "gpt-oss-120b"]
    gpu: str
    tp: int = Field(1, gt=0)
    dp: int = Field(1, gt=0)
    vllm: str
    input_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0)
    concurrency: int = Field(gt=0)
    max_num_seqs: int = Field(256, gt=0)
    max_model_len: int | None = None
    metric: Literal["output_tokens_per_s", "tpot_ms", "total_tokens_per_s"]
    value: float = Field(gt=0)
    held_out: bool = Field(False, description="kept out of the fit; its error is reported")
    note: str = ""
    source: str


class ThroughputFacts(Strict):
    """throughput.yaml."""

    schema_version: Literal[1]
    vllm: EngineEfficiency
    links: dict[str, LinkCost]
    anchors: list[ThroughputAnchor]


# -- quality_canary.yaml ---------------------------------------------------------------------------------------
class CanaryExpect(Strict):
    """How an answer is checked (see the YAML's header for each kind)."""

    kind: Literal["number", "exact", "json", "words", "tool_call"]
    value: str | list[str] | dict[str, Any] | None = None
    name: str | None = None
    arguments: dict[str, str] = Field(default_factory=dict)


class CanaryItem(Strict):
    """One prompt with a checkable answer."""

    id: str
    skill: str
    prompt: str
    tools: list[str] = Field(default_factory=list)
    answer: str | None = None
    answer_arguments: dict[str, str] | None = None
    expect: CanaryExpect


class CanaryTool(Strict):
    """A function tool offered with an item."""

    description: str
    parameters: dict[str, Any]


class QualityCanary(Strict):
    """quality_canary.yaml."""

    schema_version: Literal[1]
    source: str
    threshold: float = Field(gt=0, le=1)
    max_tokens: int = Field(gt=0)
    reasoning_effort: Literal["low", "medium", "high"]
    items: list[CanaryItem]
    tools: dict[str, CanaryTool]


MODELS: dict[str, type[Strict]] = {"engine_facts": EngineFacts, "known_issues": KnownIssues, "gpus": GpuCatalog,
                                   "models": ModelCatalog, "prices": PriceTable, "throughput": ThroughputFacts,
                                   "quality_canary": QualityCanary}
