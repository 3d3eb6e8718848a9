"""The Plan (pydantic, versioned) and the request it answers.

A plan holds typed settings per engine, never an argv to patch: `engine_args` and `env` are computed from the
settings by the engine's one builder (engines/) whenever they are read, so every consumer (serve, try, render,
the lane) runs the same command. A saved plan (`gptoss plan --save`) is the deployable unit.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from gptoss_deploy.hardware.types import Host

PLAN_SCHEMA_VERSION = 2

Verdict = Literal["fits", "fits with changes", "does not fit"]
Goal = Literal["throughput", "latency", "context"]
Severity = Literal["refuse", "warn", "info"]


def _known_engine(value: str, allow_auto: bool) -> str:
    from gptoss_deploy.engines import registry

    names = registry.names()
    if value in names or (allow_auto and value == "auto"):
        return value
    raise ValueError(f"unknown engine {value!r} (known: {', '.join((['auto'] if allow_auto else []) + names)})")


class PlanRequest(BaseModel):
    """What the user asked for; None = let the planner choose."""

    model_config = ConfigDict(extra="forbid")

    engine: str = "auto"
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
    dtype: str | None = Field(None, description="vLLM --dtype (default: the checkpoint's)")
    offline: bool = False
    vocab_dir: str | None = None
    force: bool = False
    nodes: int = Field(1, gt=0, description="machines like `host`: replicas, or pipeline stages when one node cannot "
                                            "hold the model")
    goal: Goal = Field("throughput", description="what the TP x DP x PP layout is chosen for")
    data_parallel_size: int | None = Field(None, gt=0, description="replicas per node (vLLM --data-parallel-size)")
    pipeline_parallel_size: int | None = Field(None, gt=0, description="pipeline stages, one per node, even where "
                                                                       "one node could hold the model")
    input_tokens: int = Field(1024, gt=0, description="prompt tokens per request, for the throughput model")
    output_tokens: int = Field(1024, gt=0, description="output tokens per request, for the throughput model")
    slo_ttft_ms: float | None = Field(None, gt=0, description="layouts must keep TTFT under this at the chosen load")
    slo_tpot_ms: float | None = Field(None, gt=0, description="layouts must keep TPOT under this at the chosen load")
    calibration: list[dict[str, float | None]] | None = Field(
        None, description="measured load levels of this host's server (plan --calibrate): concurrency, input_tokens, "
                          "output_tokens, output_tokens_per_s, tpot_ms")

    @field_validator("engine")
    @classmethod
    def _engine_known(cls, value: str) -> str:
        return _known_engine(value, allow_auto=True)


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
    defaults: dict[str, bool | int | float] = Field(default_factory=dict,
                                                    description="settings used unless the user set them")
    conditions: list[str] = Field(default_factory=list, description="the settings the rule tests (its `when` keys)")
    applied: list[str] = Field(default_factory=list, description="the fix's settings this plan runs with (flags)")
    not_applied: str = Field("", description="why the plan does not apply (the rest of) the fix itself")


class Explain(BaseModel):
    """One formula with its inputs and result (for --explain)."""

    name: str
    formula: str
    inputs: dict[str, float | int | str]
    result: str
    label: str = Field("derived", description="measured, derived, extrapolated, estimated, not counted or given")
    source: str = ""


FigureLabel = Literal["measured", "derived", "extrapolated", "estimated", "not counted", "given"]


class MemoryTerm(BaseModel):
    """One part of vLLM's non-KV memory: bytes, how it is known, the formula, and where it comes from."""

    name: str
    bytes: int
    label: FigureLabel
    formula: str
    source: str


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
    terms: list[MemoryTerm] = Field(default_factory=list, description="the non-KV terms as vLLM's profiling forms "
                                                                      "them, each labelled (plan/vllm_profile.py)")
    budget_rule: str = Field("", description="how this vLLM release composes the non-KV figure")


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


class LoadPoint(BaseModel):
    """The throughput model's prediction at one concurrency (plan/throughput.py)."""

    concurrency: int
    batch: int
    tpot_ms: float
    ttft_ms: float
    output_tokens_per_s: float
    per_user_tokens_per_s: float
    per_gpu_tokens_per_s: float
    bound: str


class LayoutOption(BaseModel):
    """One TP x DP x PP layout the planner compared, with its predicted numbers."""

    tp: int
    dp: int
    pp: int = 1
    nodes: int = 1
    gpus_used: int
    idle_gpus: int
    max_model_len: int
    kv_tokens_per_replica: int
    requests_at_max_len: float = Field(description="requests of max_model_len one replica's KV cache holds")
    peak_output_tokens_per_s: float = Field(description="the best over concurrency 1..256, all replicas and nodes")
    peak_concurrency: int
    knee: int
    single_user_tokens_per_s: float
    ttft_ms_single: float
    meets_slo: bool = True
    pareto: bool = Field(True, description="no other layout is at least as good on peak throughput, single-user "
                                           "speed and full-length requests, and better on one")
    score: float = Field(description="what the goal compares (higher wins)")
    chosen: bool = False
    note: str = ""


class Parallelism(BaseModel):
    """How the plan uses every GPU, for which goal, and why this layout won (predicted, labelled estimated)."""

    goal: Goal
    tp: int
    dp: int
    pp: int
    nodes: int
    mode: Literal["single GPU", "tensor parallel", "data parallel", "replicas across nodes",
                  "pipeline across nodes", "layer split", "CPU"]
    executor: str = Field("", description="mp (vLLM's own multi-node) or ray, for pipeline across nodes")
    gpu_roles: list[str] = Field(description="what each GPU of each node does")
    idle_gpus: int
    why: str
    input_tokens: int
    output_tokens: int
    options: list[LayoutOption]
    curve: list[LoadPoint] = Field(description="the chosen layout at concurrency 1..256 (whole deployment)")
    knee: int
    efficiency: str = Field(description="the engine constants used and where they come from")
    label: str = "estimated"
    notes: list[str] = Field(default_factory=list)


class VllmSettings(BaseModel):
    """The vLLM configuration chosen: everything the argv builder (engines/vllm.py) needs, and nothing else."""

    model_config = ConfigDict(extra="forbid")

    version: str
    version_basis: str = Field("", description="why this release: requested, installed here, or assumed")
    device: Literal["gpu", "cpu"] = "gpu"
    tensor_parallel_size: int
    pipeline_parallel_size: int = 1
    data_parallel_size: int = Field(1, description="replicas in one server (--data-parallel-size)")
    nnodes: int = Field(1, description="machines one server spans (pipeline stages across nodes)")
    distributed_executor_backend: str | None = Field(None, description="mp (--nnodes) or ray across nodes")
    max_model_len: int
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    default_max_num_batched_tokens: int = Field(description="vLLM's own default here: the flag is left out when equal")
    default_max_num_seqs: int = Field(description="vLLM's own default here: the flag is left out when equal")
    kv_cache_dtype: str
    kv_cache_memory_bytes: int | None = None
    block_size: int
    attention_backend: str
    explicit_attention: bool = Field(False, description="select the attention backend explicitly")
    moe_backend: str
    backend_env: dict[str, str] = Field(default_factory=dict, description="variables the backend choice needs")
    backend_args: list[str] = Field(default_factory=list, description="flags the backend recipe needs")
    issue_env: dict[str, str] = Field(default_factory=dict, description="known-issue fixes applied by the plan")
    enforce_eager: bool
    async_scheduling: bool
    tool_calling: bool
    tool_call_parser: str = "openai"
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    quantization: str | None = Field(None, description="--quantization, only when it differs from the checkpoint's")
    dtype: str | None = None
    vocab_dir: str | None = Field(None, description="TIKTOKEN_ENCODINGS_BASE (the offline harmony vocab)")


class LlamacppSettings(BaseModel):
    """The llama.cpp configuration chosen."""

    model_config = ConfigDict(extra="forbid")

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
    no_mmap: bool = Field(False, description="--no-mmap: read the GGUF instead of mapping it (Strix Halo > 20 GB)")


class Speed(BaseModel):
    """Single-stream decode: bandwidth ceiling and an expected figure."""

    bandwidth_gbs: float
    bytes_per_token: int
    ceiling_tokens_per_s: float
    efficiency: float
    expected_tokens_per_s: float
    basis: str
    label: FigureLabel = Field("estimated", description="how the expected figure is known")
    anchor: str = Field("", description="the measurement the expected figure is extrapolated from, and where")


class Figure(BaseModel):
    """One number a plan prints, with how it is known: measured (where and on what), derived (formula from source),
    extrapolated (from which anchor, by what ratio), estimated, or given (by the user or the catalog)."""

    name: str
    value: str
    label: FigureLabel
    basis: str
    source: str = ""


class Alternative(BaseModel):
    """Another way to serve this model on this host (or a different model variant)."""

    description: str
    verdict: Verdict
    engine: str
    model: str
    detail: str


COMPUTED_FIELDS = ("engine_args", "env")


class Plan(BaseModel):
    """Everything later stages need: what to run, why, what it will log, and what can go wrong."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = PLAN_SCHEMA_VERSION
    tool_version: str
    verdict: Verdict
    reasons: list[str]
    host: str
    host_source: str
    model: str
    model_quantization: str
    model_format: str
    engine: str | None
    vllm: VllmSettings | None = None
    llamacpp: LlamacppSettings | None = None
    other_settings: dict[str, Any] = Field(default_factory=dict,
                                           description="settings of an engine without a typed model here (plugins)")
    memory: VllmMemory | None = None
    kv: KvPrediction | None = None
    predicted_log: list[str] = Field(default_factory=list)
    changes: list[Change] = Field(default_factory=list)
    issues: list[IssueHit] = Field(default_factory=list)
    alternatives: list[Alternative] = Field(default_factory=list)
    speed: Speed | None = None
    parallel: Parallelism | None = Field(None, description="TP x DP x PP for the goal, every GPU accounted for")
    warnings: list[str] = Field(default_factory=list)
    nodes: int = 1
    explain: list[Explain] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list, description="every number the plan prints, labelled")
    request: PlanRequest | None = Field(None, description="what was asked (re-planning starts from it)")
    hardware: Host | None = Field(None, description="the host planned for (a served plan is checked against it)")

    @field_validator("engine")
    @classmethod
    def _engine_known(cls, value: str | None) -> str | None:
        return None if value is None else _known_engine(value, allow_auto=False)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def engine_args(self) -> list[str]:
        """The planned engine flags, built from the settings by the engine (program, model, endpoint excluded)."""
        from gptoss_deploy.engines import registry

        return registry.get(self.engine).engine_args(self) if self.engine else []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def env(self) -> dict[str, str]:
        """The planned engine environment, built from the settings by the engine."""
        from gptoss_deploy.engines import registry

        return registry.get(self.engine).engine_env(self) if self.engine else {}

    def file_data(self) -> dict[str, Any]:
        """The plan as a saved file holds it: the settings, without the computed command."""
        return self.model_dump(mode="json", exclude=set(COMPUTED_FIELDS))
