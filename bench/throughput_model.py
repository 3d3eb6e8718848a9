"""Benchmark: the throughput model (plan/throughput.py) against every cited public anchor.

Fits vLLM's efficiency constants (share of bandwidth, share of the BF16 peak, per-step overhead) on the anchors
of data/throughput.yaml that are not `held_out`, by a grid search minimising the squared log error, then predicts
every anchor, held-out ones included, and writes bench/results/throughput_model.json (fit, per-anchor prediction
and error). `--check` exits 1 when the packaged constants differ from the fit (the YAML must be the fit's output).

The KV capacity of each anchor's configuration comes from the planner itself (same GPU, TP, context), so the
batch cap is the one the plan would predict.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from gptoss_deploy import data
from gptoss_deploy.data.schema import ThroughputAnchor
from gptoss_deploy.hardware.profiles import compose_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan import parallel, throughput
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.throughput import Efficiency, Layout, Workload
from gptoss_deploy.plan.types import PlanRequest

OUT = Path(__file__).parent / "results" / "throughput_model.json"


def anchor_layout(anchor: ThroughputAnchor) -> tuple[Layout, object, object]:
    """The planner's own configuration for the anchor (its KV capacity gives the batch cap)."""
    model = catalog.lookup(anchor.model)
    assert model is not None, anchor.model
    host = compose_host(anchor.gpu, anchor.tp * anchor.dp)
    request = PlanRequest(engine="vllm", vllm_version=anchor.vllm, tensor_parallel_size=anchor.tp,
                          data_parallel_size=anchor.dp, max_model_len=anchor.max_model_len,
                          max_num_seqs=anchor.max_num_seqs, input_tokens=anchor.input_tokens,
                          output_tokens=anchor.output_tokens)
    plan = make_plan(model, host, request, {}, with_alternatives=False)
    assert plan.vllm is not None and plan.kv is not None, f"{anchor.id}: the planner finds no vLLM plan"
    s, gpu = plan.vllm, host.gpu
    assert gpu is not None
    fitted = parallel.Fitted(s.tensor_parallel_size, s.max_model_len, plan.kv.num_blocks, plan.kv.block_size,
                             s.max_num_seqs, s.max_num_batched_tokens, s.kv_cache_dtype, plan.kv.max_concurrency)
    workload = Workload(anchor.input_tokens, anchor.output_tokens)
    layout = Layout(tp=anchor.tp, dp=anchor.dp, kv_requests=parallel.kv_requests(model, fitted, workload),
                    max_num_seqs=s.max_num_seqs, max_num_batched_tokens=s.max_num_batched_tokens,
                    link=parallel.link_kind(gpu), link_gbs=gpu.link_gbs, stage_link=parallel.link_kind(gpu))
    return layout, model, gpu


def predicted(anchor: ThroughputAnchor, layout: Layout, model: object, gpu: object, eff: Efficiency) -> float:
    """The model's value of the anchor's metric."""
    workload = Workload(anchor.input_tokens, anchor.output_tokens)
    point = throughput.predict(model, gpu, layout, workload, anchor.concurrency, eff)  # type: ignore[arg-type]
    if anchor.metric == "tpot_ms":
        return point.tpot_ms
    if anchor.metric == "total_tokens_per_s":
        return point.output_tokens_per_s * (anchor.input_tokens + anchor.output_tokens) / anchor.output_tokens
    return point.output_tokens_per_s


def fit(anchors: list[tuple[ThroughputAnchor, Layout, object, object]]) -> tuple[Efficiency, float]:
    """The grid point (plan/throughput.py's grid) with the least squared log error over the calibration anchors."""
    return throughput.fit_efficiency(
        lambda eff: sum(math.log(predicted(a, lay, m, g, eff) / a.value) ** 2 for a, lay, m, g in anchors))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when data/throughput.yaml differs from the fit")
    args = parser.parse_args()
    facts = data.load("throughput")
    started = time.monotonic()
    rows = [(a, *anchor_layout(a)) for a in facts.anchors]
    calibration = [r for r in rows if not r[0].held_out]
    eff, loss = fit(calibration)
    packaged = throughput.default_efficiency()
    results = []
    for anchor, layout, model, gpu in rows:
        value = predicted(anchor, layout, model, gpu, packaged)
        results.append({"id": anchor.id, "model": anchor.model, "gpu": anchor.gpu, "tp": anchor.tp, "dp": anchor.dp,
                        "vllm": anchor.vllm, "workload": f"{anchor.input_tokens} in / {anchor.output_tokens} out, "
                                                         f"concurrency {anchor.concurrency}",
                        "metric": anchor.metric, "measured": anchor.value, "predicted": round(value, 2),
                        "error_pct": round(100 * (value / anchor.value - 1), 1), "held_out": anchor.held_out,
                        "source": anchor.source})
    result = {
        "benchmark": "throughput_model",
        "fit": {"bandwidth": eff.bandwidth, "compute": eff.compute, "step_overhead_s": eff.step_overhead_s,
                "squared_log_error": round(loss, 4), "anchors": len(calibration)},
        "packaged": {"bandwidth": packaged.bandwidth, "compute": packaged.compute,
                     "step_overhead_s": packaged.step_overhead_s},
        "anchors": results,
        "median_abs_error_pct": sorted(abs(r["error_pct"]) for r in results)[len(results) // 2] if results else None,
        "held_out_error_pct": [r["error_pct"] for r in results if r["held_out"]],
        "seconds": round(time.monotonic() - started, 1),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["fit"]))
    for r in results:
        print(f"{r['id']:<40} {r['metric']:<20} measured {r['measured']:>9,.1f} predicted {r['predicted']:>9,.1f} "
              f"{r['error_pct']:+6.1f}%{' (held out)' if r['held_out'] else ''}")
    same = (packaged.bandwidth, packaged.compute, packaged.step_overhead_s) == (
        eff.bandwidth, eff.compute, eff.step_overhead_s)
    if args.check and not same:
        print("data/throughput.yaml's vllm constants differ from the fit above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
