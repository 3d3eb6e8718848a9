"""Every GPU used, for a goal: choose TP x DP (x PP across nodes) with the throughput model.

- One node holds the model: each valid TP that fits the context asked for, with DP = the GPUs of a node / TP
  (vLLM's --data-parallel-size in one server: one endpoint, its own load balancing); more nodes are replicas
  of that server behind a balancer (a model that fits one node never spans two: pipeline stages would only add
  hops).
- One node cannot hold it: TP within a node (all its GPUs) and pipeline stages across the fewest nodes that hold
  it, on vLLM's own multi-node runtime (--nnodes from 0.11.2, Ray before); the remaining nodes are replicas.

Goals: `throughput` (default) = the most output tokens/s at the best concurrency, among layouts that meet the
context (and the TTFT / TPOT limits, when given); `latency` = the fastest single stream; `context` = the most
requests of the planned length in the KV cache. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptoss_deploy.hardware.types import Gpu, Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan import throughput
from gptoss_deploy.plan.throughput import Efficiency, Layout, Workload
from gptoss_deploy.plan.types import LayoutOption, LoadPoint, Parallelism, PlanRequest
from gptoss_deploy.plan.vllm_memory import KV_DTYPE_BYTES, blocks_per_request

TOP_OPTIONS = 5


@dataclass(frozen=True)
class Fitted:
    """One TP size that fits on a node: what its memory plan gives one replica."""

    tp: int
    max_model_len: int
    num_blocks: int
    block_size: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_dtype: str
    requests_at_max_len: float


def calibrated(model: ModelSpec, gpu: Gpu, layout: Layout, request: PlanRequest) -> Efficiency:
    """The efficiency that best explains `plan --calibrate`'s measured levels on `layout` (the server that was
    measured is taken to be the one this plan would run without calibration)."""
    points = [throughput.Measured.model_validate(p) for p in request.calibration or []]
    eff, loss = throughput.fit_efficiency(throughput.measured_loss(model, gpu, layout, points), coarse=True)
    rms = (loss / max(len(points), 1)) ** 0.5
    return eff.model_copy(update={"source": f"measured: fitted on {len(points)} load levels of this host "
                                            f"(plan --calibrate), rms log error {rms:.2f}"})


def link_kind(gpu: Gpu) -> str:
    """The interconnect of a GPU's server (PCIe when the catalog does not say)."""
    return gpu.interconnect if gpu.interconnect in ("nvlink", "xgmi", "pcie") else "pcie"


def kv_requests(model: ModelSpec, fitted: Fitted, workload: Workload) -> float:
    """Requests of the workload's length one replica's KV cache holds (vLLM's hybrid block accounting)."""
    length = min(workload.input_tokens + workload.output_tokens, fitted.max_model_len)
    per_request = blocks_per_request(model.arch, length, fitted.max_num_batched_tokens, fitted.block_size)
    return fitted.num_blocks / per_request if per_request else 0.0


def _layout(model: ModelSpec, gpu: Gpu, fitted: Fitted, dp: int, pp: int, workload: Workload,
            across_nodes: bool) -> Layout:
    return Layout(tp=fitted.tp, dp=dp, pp=pp, kv_requests=kv_requests(model, fitted, workload),
                  max_num_seqs=fitted.max_num_seqs, max_num_batched_tokens=fitted.max_num_batched_tokens,
                  kv_bytes_per_element=KV_DTYPE_BYTES.get(fitted.kv_dtype, 2), link=link_kind(gpu),
                  link_gbs=gpu.link_gbs if link_kind(gpu) == gpu.interconnect else None, stage_link="network" if across_nodes else link_kind(gpu))


def _meets(point: LoadPoint, request: PlanRequest) -> bool:
    return ((request.slo_ttft_ms is None or point.ttft_ms <= request.slo_ttft_ms)
            and (request.slo_tpot_ms is None or point.tpot_ms <= request.slo_tpot_ms))


def _points(curve: throughput.Curve, replicas: int, gpus: int) -> list[LoadPoint]:
    """A replica's curve scaled to `replicas` identical servers (users spread evenly)."""
    return [LoadPoint(concurrency=p.concurrency * replicas, batch=p.batch, tpot_ms=p.tpot_ms, ttft_ms=p.ttft_ms,
                      output_tokens_per_s=p.output_tokens_per_s * replicas,
                      per_user_tokens_per_s=p.per_user_tokens_per_s,
                      per_gpu_tokens_per_s=p.output_tokens_per_s * replicas / gpus, bound=p.bound)
            for p in curve.points]


def option(model: ModelSpec, gpu: Gpu, fitted: Fitted, dp: int, pp: int, replicas: int, gpus_total: int,
           request: PlanRequest, eff: Efficiency) -> tuple[LayoutOption, list[LoadPoint]]:
    """Predict one layout (`replicas` copies of a TP x DP x PP server) and score it for the goal."""
    workload = Workload(request.input_tokens, request.output_tokens)
    layout = _layout(model, gpu, fitted, dp, pp, workload, across_nodes=pp > 1)
    curve = throughput.curve(model, gpu, layout, workload, eff)
    used = layout.gpus * replicas
    points = _points(curve, replicas, used)
    eligible = [p for p in points if _meets(p, request)]
    best = max(eligible or points, key=lambda p: p.output_tokens_per_s)
    single = points[0]
    score = {"throughput": best.output_tokens_per_s if eligible else 0.0,
             "latency": single.per_user_tokens_per_s if _meets(single, request) else 0.0,
             "context": fitted.requests_at_max_len * dp * replicas}[request.goal]
    return LayoutOption(
        tp=fitted.tp, dp=dp, pp=pp, nodes=pp * replicas if pp > 1 else replicas, gpus_used=used,
        idle_gpus=gpus_total - used, max_model_len=fitted.max_model_len,
        kv_tokens_per_replica=fitted.num_blocks * fitted.block_size,
        requests_at_max_len=fitted.requests_at_max_len, peak_output_tokens_per_s=best.output_tokens_per_s,
        peak_concurrency=best.concurrency, knee=curve.knee * replicas,
        single_user_tokens_per_s=single.per_user_tokens_per_s, ttft_ms_single=single.ttft_ms,
        meets_slo=bool(eligible), score=score), points


def _merits(o: LayoutOption) -> tuple[float, float, float]:
    return o.peak_output_tokens_per_s, o.single_user_tokens_per_s, o.requests_at_max_len * o.dp


def mark_pareto(options: list[LayoutOption]) -> None:
    """Flag the layouts no other layout beats on every merit (throughput, latency, context) at once."""
    for o in options:
        mine = _merits(o)
        o.pareto = not any(all(a >= b for a, b in zip(_merits(other), mine, strict=True)) and _merits(other) != mine
                           for other in options if other is not o)


def mode_of(tp: int, dp: int, pp: int, replicas: int) -> str:
    """A short name for the layout."""
    if pp > 1:
        return "pipeline across nodes"
    if replicas > 1:
        return "replicas across nodes"
    if dp > 1:
        return "data parallel"
    return "tensor parallel" if tp > 1 else "single GPU"


def gpu_roles(tp: int, dp: int, pp: int, per_node: int, nodes: int) -> list[str]:
    """What each GPU does, node by node ("node 0 GPU 3: replica 1, TP rank 1")."""
    roles = []
    for node in range(nodes):
        for index in range(per_node):
            if pp > 1:
                stage, replica = node % pp, node // pp
                role = (f"replica {replica}, pipeline stage {stage}, TP rank {index}" if index < tp else "idle")
            else:
                replica, rank = divmod(index, tp)
                role = (f"server {node}, DP rank {replica}, TP rank {rank}" if replica < dp else "idle")
            roles.append(f"node {node} GPU {index}: {role}")
    return roles


def choose(model: ModelSpec, host: Host, request: PlanRequest, fitted: list[Fitted], pp: int,
           nodes: int) -> Parallelism:
    """Compare layouts for `fitted` TP sizes (each fitting a node, or a node's share with `pp` stages) and pick
    the best for the goal; `nodes` machines like `host`."""
    gpu = host.gpu
    assert gpu is not None and fitted
    per_node = host.gpu_count
    eff = throughput.default_efficiency()
    if request.calibration:
        first = choose(model, host, request.model_copy(update={"calibration": None}), fitted, pp, nodes)
        fit = next(f for f in fitted if f.tp == first.tp)
        workload = Workload(request.input_tokens, request.output_tokens)
        eff = calibrated(model, gpu, _layout(model, gpu, fit, first.dp, pp, workload, pp > 1), request)
    total = per_node * nodes
    scored: list[tuple[LayoutOption, list[LoadPoint]]] = []
    for fit in fitted:
        dp_choices = [request.data_parallel_size] if request.data_parallel_size else [per_node // fit.tp]
        for dp in dp_choices:
            if dp < 1 or dp * fit.tp > per_node or (pp > 1 and dp > 1):
                continue
            replicas = nodes // pp
            scored.append(option(model, gpu, fit, dp, pp, replicas, total, request, eff))
    if not scored:  # --data-parallel-size too large for every TP: one replica of the smallest TP
        fit = fitted[0]
        scored.append(option(model, gpu, fit, 1, pp, nodes // pp, total, request, eff))
    mark_pareto([o for o, _ in scored])
    ranked = sorted(scored, key=lambda item: (-item[0].score, item[0].tp))
    winner, points = ranked[0]
    winner.chosen = True
    mode = mode_of(winner.tp, winner.dp, pp, nodes // pp)
    return Parallelism(
        goal=request.goal, tp=winner.tp, dp=winner.dp, pp=pp, nodes=nodes, mode=mode,
        gpu_roles=gpu_roles(winner.tp, winner.dp, pp, per_node, nodes), idle_gpus=winner.idle_gpus,
        why=_why(request, winner, [o for o, _ in ranked[1:]]), input_tokens=request.input_tokens,
        output_tokens=request.output_tokens, options=[o for o, _ in ranked[:TOP_OPTIONS]], curve=points,
        knee=winner.knee, efficiency=_efficiency_text(eff))


def _efficiency_text(eff: Efficiency) -> str:
    return (f"vLLM reaches {eff.bandwidth:.0%} of the memory bandwidth and {eff.compute:.0%} of the BF16 peak, "
            f"{eff.step_overhead_s * 1e3:.1f} ms per step besides ({eff.source})")


def _describe(o: LayoutOption) -> str:
    parts = [f"TP{o.tp}"] + ([f"DP{o.dp}"] if o.dp > 1 else []) + ([f"PP{o.pp}"] if o.pp > 1 else [])
    return " x ".join(parts)


def _why(request: PlanRequest, winner: LayoutOption, others: list[LayoutOption]) -> str:
    goal = {"throughput": f"{winner.peak_output_tokens_per_s:,.0f} output tok/s at {winner.peak_concurrency} users",
            "latency": f"{winner.single_user_tokens_per_s:,.0f} tok/s for one user",
            "context": f"{winner.requests_at_max_len * winner.dp:.2f} requests of {winner.max_model_len:,} tokens "
                       "in the KV cache"}[request.goal]
    text = f"goal {request.goal}: {_describe(winner)} predicts {goal}"
    if others:
        runner = others[0]
        text += (f"; next best {_describe(runner)}: {runner.peak_output_tokens_per_s:,.0f} tok/s peak, "
                 f"{runner.single_user_tokens_per_s:,.0f} tok/s single user, "
                 f"{runner.requests_at_max_len * runner.dp:.2f} requests at full length")
    if request.slo_ttft_ms or request.slo_tpot_ms:
        text += f" (limits: TTFT {request.slo_ttft_ms or '-'} ms, TPOT {request.slo_tpot_ms or '-'} ms)"
    return text
