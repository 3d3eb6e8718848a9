"""The Plan (pydantic, versioned) and the request it answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PLAN_SCHEMA_VERSION = 1

Verdict = Literal["fits", "fits with changes", "does not fit"]
Engine = Literal["vllm", "llamacpp"]
Severity = Literal["refuse", "warn", "info"]


class PlanRequest(BaseModel):
    """What the user asked for; None = let the planner choose."""

    engine: Literal["auto", "vllm", "llamacpp"] = "auto"
    vllm_version: str | None = None
    max_model_len: int | None = Field(None, gt=0)
    tensor_parallel_size: int | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_num_batched_tokens: int | None = Field(None, gt=0)
    max_num_seqs: int | None = Field(None, gt=0)
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    kv_cache_memory_bytes: int | None = Field(None, gt=0)
    enforce_eager: bool = False
    tool_calling: bool = True
    tool_call_parser: str = "openai"
    async_scheduling: bool | None = Field(None, description="None = the version's default")
    attention_backend: str | None = Field(None, description="override the planner's attention backend")
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    quantization: str | None = Field(None, description="vLLM --quantization, when it differs from the checkpoint's")
    offline: bool = False
    vocab_dir: str | None = None
    force: bool = False
    nodes: int = Field(1, gt=0, description="machines like `host`; >1 = pipeline parallel across them (vLLM on Ray)")


class Change(BaseModel):
    """One departure from what was asked, and why."""

    setting: str
    requested: str
    planned: str
    reason: str
    refused: bool = Field(False, description="a known issue refused the requested value (kept with --force)")


class IssueHit(BaseModel):
    """A known-issue rule that applies to this plan."""

    id: str
    title: str
    severity: Severity
    effect: str
    fix: str
    source: str
    applied_env: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, float | int] = Field(default_factory=dict, description="settings used unless the user set them")
    conditions: list[str] = Field(default_factory=list, description="the settings the rule tests (its `when` keys)")


class Explain(BaseModel):
    """One formula with its inputs and result (for --explain)."""

    name: str
    formula: str
    inputs: dict[str, float | int | str]
    result: str


class VllmMemory(BaseModel):
    """vLLM's budget on one rank: requested = ceil(visible x util); KV = requested - everything else."""

    visible_bytes: int
    gpu_memory_utilization: float
    requested_bytes: int
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cudagraph_bytes: int
    cudagraph_in_budget: bool
    kv_bytes: int
    kv_from_override: bool = False


class KvPrediction(BaseModel):
    """vLLM's KV cache layout and the numbers it will log."""

    block_size: int
    page_bytes: int
    group_size: int
    num_groups: int
    num_blocks: int
    blocks_per_request: int
    max_concurrency: float
    logged_tokens: int
    log_formula: Literal["blocks_per_group", "concurrency_x_len"]
    full_layer_bytes_per_token: int
    steady_state_tokens: int = Field(description="tokens the full-attention layers alone can hold")
    max_len_that_fits: int


class VllmSettings(BaseModel):
    """The vLLM configuration chosen."""

    version: str
    tensor_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    kv_cache_dtype: str
    block_size: int
    attention_backend: str
    moe_backend: str
    enforce_eager: bool
    async_scheduling: bool
    tool_calling: bool
    tool_call_parser: str = "openai"
    kv_cache_memory_bytes: int | None = None
    pipeline_parallel_size: int = 1


class LlamacppSettings(BaseModel):
    """The llama.cpp configuration chosen."""

    gguf: str
    n_ctx: int
    n_parallel: int
    n_gpu_layers: int
    n_cpu_moe: int
    flash_attn: str
    model_bytes: int
    gpu_bytes_per_device: int
    gpu_budget_per_device: int
    kv_bytes: int
    swa_bytes: int
    compute_bytes: int
    cpu_expert_bytes: int
    ram_bytes_needed: int
    ram_bytes_available: int | None


class Speed(BaseModel):
    """Single-stream decode: bandwidth ceiling and an expected figure."""

    bandwidth_gbs: float
    bytes_per_token: int
    ceiling_tokens_per_s: float
    efficiency: float
    expected_tokens_per_s: float
    basis: str


class Alternative(BaseModel):
    """Another way to serve this model on this host (or a different model variant)."""

    description: str
    verdict: Verdict
    engine: Engine
    model: str
    detail: str


class Plan(BaseModel):
    """Everything later stages need: what to run, why, what it will log, and what can go wrong."""

    schema_version: int = PLAN_SCHEMA_VERSION
    tool_version: str
    verdict: Verdict
    reasons: list[str]
    host: str
    host_source: str
    model: str
    model_quantization: str
    model_format: str
    engine: Engine | None
    vllm: VllmSettings | None = None
    llamacpp: LlamacppSettings | None = None
    memory: VllmMemory | None = None
    kv: KvPrediction | None = None
    predicted_log: list[str] = Field(default_factory=list)
    engine_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    changes: list[Change] = Field(default_factory=list)
    issues: list[IssueHit] = Field(default_factory=list)
    alternatives: list[Alternative] = Field(default_factory=list)
    speed: Speed | None = None
    warnings: list[str] = Field(default_factory=list)
    nodes: int = 1
    explain: list[Explain] = Field(default_factory=list)
