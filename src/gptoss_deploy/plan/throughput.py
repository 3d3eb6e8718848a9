"""Throughput at concurrency: what a vLLM layout (TP x DP x PP) does for C concurrent users.

A step of vLLM's continuous batching carries the decoding sequences plus the prefill tokens that keep them fed
(chunked prefill, at most max_num_batched_tokens per step). Its time is

    step = max(bytes / (bandwidth x eff_bw), FLOPs / (peak x eff_compute)) + collectives + overhead

- bytes: the dense weights (attention, router, lm_head) once per step; per MoE layer, the experts the step's
  tokens route to (E x (1 - (1 - k/E)^n) distinct experts for n tokens, the expectation under uniform routing);
  the KV of each sequence at its context (sliding-window layers read at most the window);
- FLOPs: 2 x active parameters per token, plus attention (4 x heads x head_dim per context token per layer);
- collectives: two all-reduces per layer within a TP group (ring: 2(g-1)/g x bytes / link + latency); with
  --data-parallel-size the MoE layers run over the DP x TP group (vLLM flattens TP across DP for experts), an
  all-gather plus a reduce-scatter of every DP rank's tokens per MoE layer;
- pipeline stages split the layers; vLLM keeps PP micro-batches in flight, so a token crosses every stage and
  TPOT = PP x stage time of a 1/PP micro-batch, plus the hops between stages.

The batch is min(C, max_num_seqs, KV capacity / (input + output)); clients beyond it queue (Little's law gives
their wait in a closed loop, as `vllm bench serve --max-concurrency C` runs). TPOT = step time; TTFT = the chunks
of the prompt at max_num_batched_tokens minus the decoding batch per step, plus the queue wait.

The efficiencies and the step overhead are engine constants fitted on cited public measurements
(data/throughput.yaml, bench/throughput_model.py); one public anchor is kept out of the fit to report the error.
Pure: no I/O beyond the packaged data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from pydantic import BaseModel, Field

from gptoss_deploy import data
from gptoss_deploy.hardware.types import Gpu
from gptoss_deploy.models.spec import ArchConfig, ModelSpec
from gptoss_deploy.plan.types import LoadPoint
from gptoss_deploy.plan.weights import MXFP4_BYTES_PER_PARAM, count_params

CONCURRENCY_LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
KNEE_GAIN = 1.10   # the knee: the first level where doubling the users adds less than 10 % throughput


class Efficiency(BaseModel):
    """The engine's measured efficiency (fitted on public anchors; see data/throughput.yaml)."""

    bandwidth: float = Field(gt=0, le=1, description="share of the memory bandwidth reached by a decode step")
    compute: float = Field(gt=0, le=1, description="share of the dense BF16 peak reached by a step's GEMMs")
    step_overhead_s: float = Field(ge=0, description="per-step time outside the GPU kernels (scheduler, sampler)")
    source: str = ""


class Link(BaseModel):
    """A collective's cost on one kind of interconnect."""

    gbs: float = Field(gt=0, description="per-direction bandwidth per GPU, GB/s")
    latency_s: float = Field(ge=0, description="fixed cost of one collective")
    label: str = "estimated"
    source: str = ""


@dataclass(frozen=True)
class Workload:
    """Request shape: prompt and output tokens per request."""

    input_tokens: int = 1024
    output_tokens: int = 1024


@dataclass(frozen=True)
class Layout:
    """One vLLM deployment of a model on identical GPUs."""

    tp: int
    dp: int = 1
    pp: int = 1
    kv_requests: float = 0.0    # requests of the workload's length one replica's KV cache holds (0: not binding)
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    kv_bytes_per_element: int = 2
    link: str = "nvlink"        # within the TP / DP group
    link_gbs: float | None = None  # the GPU's own per-direction figure (gpus.yaml), else the link kind's
    stage_link: str = "nvlink"  # between pipeline stages (network across nodes)

    @property
    def gpus(self) -> int:
        """GPUs this layout uses."""
        return self.tp * self.dp * self.pp


class Curve(BaseModel):
    """Predictions at CONCURRENCY_LEVELS and the knee."""

    points: list[LoadPoint] = Field(description="one replica's predictions")
    knee: int = Field(description="the concurrency past which doubling the users adds under 10 % throughput")
    peak_output_tokens_per_s: float
    batch_cap: int = Field(description="the most sequences one replica decodes at once (max_num_seqs or the KV)")


@functools.cache
def _table() -> data.schema.ThroughputFacts:
    facts: data.schema.ThroughputFacts = data.load("throughput")
    return facts


def default_efficiency() -> Efficiency:
    """vLLM's efficiency constants as fitted (data/throughput.yaml)."""
    e = _table().vllm
    return Efficiency(bandwidth=e.bandwidth, compute=e.compute, step_overhead_s=e.step_overhead_s, source=e.source)


def link_for(kind: str, gbs: float | None = None) -> Link:
    """The collective cost of an interconnect kind (nvlink, xgmi, pcie, network), at `gbs` when the GPU's own
    per-direction bandwidth is known."""
    spec = _table().links[kind]
    return Link(gbs=gbs or spec.gbs, latency_s=spec.latency_s, label=spec.label, source=spec.source)


@dataclass(frozen=True)
class ModelShape:
    """What the model reads and computes per token (from its config)."""

    dense_bytes: int          # attention + router + lm_head + norms, read once per step
    expert_bytes: float       # one expert of one layer
    experts: int
    experts_per_token: int
    moe_layers: int
    active_params: int        # per token, without the embedding lookup
    hidden: int
    layers: int
    full_layers: int
    sliding_layers: int
    window: int
    kv_per_token_layer: int   # K and V elements of one token in one layer (heads x head_dim x 2)
    attn_width: int           # heads x head_dim


def shape_of(arch: ArchConfig, quantization: str) -> ModelShape:
    """The per-token reads and FLOPs of a model."""
    counts = count_params(arch)
    experts = max(arch.num_local_experts, 1)
    per_expert_params = counts.experts // experts // arch.num_hidden_layers
    expert_bytes = per_expert_params * (MXFP4_BYTES_PER_PARAM if quantization == "mxfp4" else 2)
    dense = counts.attention + counts.router + counts.lm_head + counts.norms + counts.expert_biases
    active = dense + per_expert_params * arch.num_experts_per_tok * arch.num_hidden_layers
    return ModelShape(dense_bytes=2 * dense, expert_bytes=expert_bytes, experts=experts,
                      experts_per_token=min(arch.num_experts_per_tok, experts), moe_layers=arch.num_hidden_layers,
                      active_params=active, hidden=arch.hidden_size, layers=arch.num_hidden_layers,
                      full_layers=arch.num_full_layers, sliding_layers=arch.num_sliding_layers,
                      window=arch.sliding_window or 0,
                      kv_per_token_layer=2 * arch.num_key_value_heads * arch.head_dim,
                      attn_width=arch.num_attention_heads * arch.head_dim)


def distinct_experts(shape: ModelShape, tokens: float) -> float:
    """Expected experts one MoE layer touches for `tokens` tokens under uniform top-k routing."""
    if shape.experts <= 1:
        return 1.0
    miss = (1 - shape.experts_per_token / shape.experts) ** max(tokens, 0.0)
    return float(shape.experts * (1 - miss))


def _attended(shape: ModelShape, context: float) -> float:
    """Context tokens attended per token, summed over layers (sliding layers see at most the window)."""
    sliding = min(context, shape.window) if shape.window else context
    return shape.full_layers * context + shape.sliding_layers * sliding


@dataclass(frozen=True)
class StepCost:
    """Time of one step and what it is made of."""

    seconds: float
    memory_s: float
    compute_s: float
    comm_s: float
    overhead_s: float

    @property
    def bound(self) -> str:
        """What dominates."""
        parts = {"memory": self.memory_s, "compute": self.compute_s, "communication": self.comm_s,
                 "overhead": self.overhead_s}
        if self.memory_s >= self.compute_s:
            parts.pop("compute")
        else:
            parts.pop("memory")
        return max(parts, key=lambda k: parts[k])


def _ring(bytes_: float, group: int, link: Link) -> float:
    """One ring all-reduce (or all-gather + reduce-scatter) of `bytes_` over `group` GPUs."""
    if group <= 1:
        return 0.0
    return 2 * (group - 1) / group * bytes_ / (link.gbs * 1e9) + link.latency_s


def step_cost(shape: ModelShape, gpu: Gpu, layout: Layout, decode: float, prefill: float, context: float,
              eff: Efficiency) -> StepCost:
    """One pipeline stage's step on one GPU of a replica: `decode` sequences at `context`, plus `prefill` tokens."""
    bandwidth = (gpu.bandwidth_gbs or 0.0) * 1e9
    tokens = decode + prefill
    moe_group = layout.tp * layout.dp
    group_tokens = tokens * layout.dp if layout.dp > 1 else tokens   # MoE layers see every DP rank's tokens
    layer_share = 1 / layout.pp
    expert_reads = shape.moe_layers * distinct_experts(shape, group_tokens) * shape.expert_bytes / moe_group
    kv_reads = decode * _attended(shape, context) * shape.kv_per_token_layer * layout.kv_bytes_per_element / layout.tp
    memory_bytes = (shape.dense_bytes / layout.tp + expert_reads + kv_reads) * layer_share
    memory_s = memory_bytes / (bandwidth * eff.bandwidth) if bandwidth else 0.0
    flops = (2 * shape.active_params * tokens
             + 4 * shape.attn_width * (decode * _attended(shape, context) + prefill * _attended(shape, prefill / 2)))
    flops = flops / layout.tp * layer_share
    peak = (gpu.bf16_tflops or 0.0) * 1e12
    compute_s = flops / (peak * eff.compute) if peak else 0.0
    link = link_for(layout.link, layout.link_gbs)
    activations = tokens * shape.hidden * 2
    comm = shape.layers * layer_share * (2 * _ring(activations, layout.tp, link)
                                         + (_ring(activations * layout.dp, moe_group, link) if layout.dp > 1 else 0.0))
    return StepCost(seconds=max(memory_s, compute_s) + comm + eff.step_overhead_s, memory_s=memory_s,
                    compute_s=compute_s, comm_s=comm, overhead_s=eff.step_overhead_s)


def batch_cap(layout: Layout) -> int:
    """Sequences one replica decodes at once: max_num_seqs, or fewer when the KV cache holds fewer requests."""
    by_kv = int(layout.kv_requests) if layout.kv_requests else layout.max_num_seqs
    return max(1, min(layout.max_num_seqs, by_kv))


def tpot_step(shape: ModelShape, gpu: Gpu, layout: Layout, batch: int, workload: Workload,
              eff: Efficiency) -> StepCost:
    """A steady-state step with `batch` sequences per replica: their decode tokens plus the prefill of the other
    sequences' prompts (input/output prompt tokens per output token), in steps of at most max_num_batched_tokens."""
    micro = batch / layout.pp
    # other sequences' prompts share this sequence's steps (none at batch 1: a lone stream decodes alone)
    prefill = micro * (batch - 1) / batch * workload.input_tokens / max(workload.output_tokens, 1)
    budget = max(layout.max_num_batched_tokens - micro, 1)
    chunks = max(1.0, prefill / budget)
    context = workload.input_tokens + workload.output_tokens / 2
    one = step_cost(shape, gpu, layout, micro / chunks, prefill / chunks, context, eff)
    hop = link_for(layout.stage_link).latency_s if layout.pp > 1 else 0.0
    seconds = (one.seconds * chunks) * layout.pp + hop * (layout.pp - 1)
    return replace(one, seconds=seconds)


def predict(model: ModelSpec, gpu: Gpu, layout: Layout, workload: Workload, concurrency: int,
            eff: Efficiency | None = None) -> LoadPoint:
    """Output throughput, TPOT and TTFT for `concurrency` users spread over the layout's DP replicas."""
    eff = eff or default_efficiency()
    shape = shape_of(model.arch, model.quantization)
    per_replica = concurrency / layout.dp
    cap = batch_cap(layout)
    batch = max(1, min(math.ceil(per_replica), cap))
    step = tpot_step(shape, gpu, layout, batch, workload, eff)
    tpot = step.seconds
    budget = max(layout.max_num_batched_tokens - batch / layout.pp, 1)
    prefill_steps = math.ceil(workload.input_tokens / budget)
    alone = step_cost(shape, gpu, replace(layout, pp=1), 0, min(workload.input_tokens, budget),
                      workload.input_tokens / 2, eff).seconds
    ttft = prefill_steps * max(tpot, alone)
    request_s = ttft + workload.output_tokens * tpot
    replica_rate = min(per_replica, cap) / request_s        # requests per second per replica
    if per_replica > cap:
        ttft += per_replica / replica_rate - request_s       # closed-loop queue wait (Little's law)
    output = replica_rate * workload.output_tokens * layout.dp
    return LoadPoint(concurrency=concurrency, batch=batch, tpot_ms=tpot * 1e3, ttft_ms=ttft * 1e3,
                 output_tokens_per_s=output, per_user_tokens_per_s=1 / tpot, per_gpu_tokens_per_s=output / layout.gpus,
                 bound=step.bound)


def curve(model: ModelSpec, gpu: Gpu, layout: Layout, workload: Workload, eff: Efficiency | None = None,
          levels: tuple[int, ...] = CONCURRENCY_LEVELS) -> Curve:
    """Predictions at each concurrency level, the knee and the peak."""
    points = [predict(model, gpu, layout, workload, c, eff) for c in levels]
    knee = points[-1].concurrency
    for here, after in zip(points, points[1:], strict=False):
        if after.output_tokens_per_s < KNEE_GAIN * here.output_tokens_per_s:
            knee = here.concurrency
            break
    return Curve(points=points, knee=knee, peak_output_tokens_per_s=max(p.output_tokens_per_s for p in points),
                 batch_cap=batch_cap(layout))


class Measured(BaseModel):
    """One measured load level (from `gptoss bench --sweep --json`) to fit the efficiency on."""

    concurrency: int = Field(gt=0)
    input_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0)
    output_tokens_per_s: float = Field(gt=0)
    tpot_ms: float | None = Field(None, gt=0)


BANDWIDTH_GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(15))   # 0.30 .. 1.00
COMPUTE_GRID = tuple(round(0.04 + 0.02 * i, 2) for i in range(24))     # 0.04 .. 0.50
OVERHEAD_GRID = tuple(round(0.0005 * i, 4) for i in range(13))         # 0 .. 6 ms


def fit_efficiency(loss: Callable[[Efficiency], float], coarse: bool = False) -> tuple[Efficiency, float]:
    """The grid point with the least `loss` (a squared log error); `coarse` takes every other grid value."""
    step = 2 if coarse else 1
    best: tuple[float, Efficiency] | None = None
    for bw in BANDWIDTH_GRID[::step]:
        for comp in COMPUTE_GRID[::step]:
            for over in OVERHEAD_GRID[::step]:
                eff = Efficiency(bandwidth=bw, compute=comp, step_overhead_s=over)
                value = loss(eff)
                if best is None or value < best[0]:
                    best = (value, eff)
    assert best is not None
    return best[1], best[0]


def measured_loss(model: ModelSpec, gpu: Gpu, layout: Layout, points: list[Measured]) -> Callable[[Efficiency], float]:
    """Squared log error of the predictions against measured levels (output tokens/s, and TPOT when given)."""
    def loss(eff: Efficiency) -> float:
        total = 0.0
        for m in points:
            p = predict(model, gpu, layout, Workload(m.input_tokens, m.output_tokens), m.concurrency, eff)
            total += math.log(p.output_tokens_per_s / m.output_tokens_per_s) ** 2
            if m.tpot_ms:
                total += math.log(p.tpot_ms / m.tpot_ms) ** 2
        return total
    return loss
