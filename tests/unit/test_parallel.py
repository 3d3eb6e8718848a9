"""Every GPU used for a goal: the TP x DP x PP search, multi-node layouts and the throughput model's properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptoss_deploy import data
from gptoss_deploy.hardware.profiles import GpuDescription, compose_host, describe_gpu
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan import throughput
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.throughput import Layout, Workload
from gptoss_deploy.plan.types import Plan, PlanRequest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def plan(model: str, host: Host, **request: object) -> Plan:
    spec = catalog.lookup(model)
    assert spec is not None
    return make_plan(spec, host, PlanRequest(**request), {}, with_alternatives=False)


def gpus_accounted(p: Plan, host: Host, nodes: int = 1) -> None:
    assert p.parallel is not None
    roles = p.parallel.gpu_roles
    assert len(roles) == host.gpu_count * nodes, roles
    idle = sum(role.endswith("idle") for role in roles)
    assert idle == p.parallel.idle_gpus


@pytest.mark.parametrize("profile,model", [("4xl40s", "gpt-oss-20b"), ("4xl40s", "gpt-oss-120b"),
                                           ("8xh100", "gpt-oss-20b"), ("8xh100", "gpt-oss-120b")])
def test_every_gpu_is_used_on_one_node(profile: str, model: str) -> None:
    from gptoss_deploy.hardware.profiles import profile_host

    host = profile_host(profile)
    p = plan(model, host)
    assert p.vllm is not None and p.parallel is not None
    gpus_accounted(p, host)
    assert p.parallel.idle_gpus == 0
    assert p.vllm.tensor_parallel_size * p.vllm.data_parallel_size == host.gpu_count
    if p.vllm.data_parallel_size > 1:
        assert p.engine_args[p.engine_args.index("--data-parallel-size") + 1] == str(p.vllm.data_parallel_size)
    assert len(p.parallel.options) >= 2, "the plan compares layouts"
    assert p.parallel.options[0].chosen and p.parallel.options[0].tp == p.vllm.tensor_parallel_size


def test_120b_on_two_nodes_of_8xh100_is_replicas_not_pipeline() -> None:
    from gptoss_deploy.hardware.profiles import profile_host

    host = profile_host("8xh100")
    p = plan("gpt-oss-120b", host, nodes=2)
    assert p.vllm is not None and p.parallel is not None
    assert p.parallel.mode == "replicas across nodes"
    assert p.vllm.pipeline_parallel_size == 1 and p.vllm.nnodes == 1
    assert "--pipeline-parallel-size" not in p.engine_args and "--nnodes" not in p.engine_args
    gpus_accounted(p, host, nodes=2)
    one = plan("gpt-oss-120b", host)
    assert one.parallel is not None
    assert p.parallel.options[0].peak_output_tokens_per_s == pytest.approx(
        2 * one.parallel.options[0].peak_output_tokens_per_s)


def test_a_model_that_needs_two_nodes_gets_tp_within_and_pp_across() -> None:
    gpu = describe_gpu(GpuDescription(name="small", memory_gib=8, compute_capability="9.0", bandwidth_gbs=1000))
    host = Host(gpus=[gpu] * 8, source="test")
    single = plan("gpt-oss-120b", host, engine="vllm")
    assert single.verdict == "does not fit"
    p = plan("gpt-oss-120b", host, nodes=2)
    assert p.vllm is not None and p.parallel is not None, p.reasons
    assert p.parallel.mode == "pipeline across nodes"
    assert (p.vllm.tensor_parallel_size, p.vllm.pipeline_parallel_size, p.vllm.nnodes) == (8, 2, 2)
    args = p.engine_args
    assert args[args.index("--pipeline-parallel-size") + 1] == "2" and args[args.index("--nnodes") + 1] == "2"
    assert "--distributed-executor-backend" not in args  # vLLM's own multi-node runtime from 0.11.2
    old = plan("gpt-oss-120b", host, nodes=2, vllm_version="0.10.2")
    assert old.vllm is not None and old.vllm.distributed_executor_backend == "ray"
    assert "--nnodes" not in old.engine_args
    gpus_accounted(p, host, nodes=2)


def test_goals_choose_differently() -> None:
    from gptoss_deploy.hardware.profiles import profile_host

    host = profile_host("8xh100")
    by_goal = {goal: plan("gpt-oss-20b", host, goal=goal).parallel for goal in ("throughput", "latency", "context")}
    assert all(by_goal.values())
    latency, through = by_goal["latency"], by_goal["throughput"]
    assert latency is not None and through is not None
    assert latency.options[0].single_user_tokens_per_s >= max(o.single_user_tokens_per_s for o in through.options)
    assert through.options[0].peak_output_tokens_per_s >= max(o.peak_output_tokens_per_s for o in latency.options)


def test_slo_excludes_layouts_that_miss_it() -> None:
    from gptoss_deploy.hardware.profiles import profile_host

    host = profile_host("8xh100")
    loose = plan("gpt-oss-20b", host).parallel
    assert loose is not None
    limit = 0.999 * min(p.tpot_ms for p in loose.curve)  # tighter than anything the chosen layout does
    tight = plan("gpt-oss-20b", host, slo_tpot_ms=limit).parallel
    assert tight is not None
    assert tight.tp != loose.tp or not tight.options[0].meets_slo
    assert "limits" in tight.why


def test_throughput_curve_shapes() -> None:
    spec = catalog.lookup("gpt-oss-20b")
    gpu = compose_host("h100", 1).gpu
    assert spec is not None and gpu is not None
    c = throughput.curve(spec, gpu, Layout(tp=1, max_num_seqs=64), Workload(1024, 256))
    outs = [p.output_tokens_per_s for p in c.points]
    assert all(b >= a * 0.999 for a, b in zip(outs, outs[1:], strict=False)), outs
    assert c.points[0].batch == 1 and max(p.batch for p in c.points) == 64
    assert c.points[-1].ttft_ms > c.points[0].ttft_ms  # 256 users on 64 slots queue
    assert c.knee <= 128


def test_distinct_experts_grow_to_all() -> None:
    spec = catalog.lookup("gpt-oss-120b")
    assert spec is not None
    shape = throughput.shape_of(spec.arch, spec.quantization)
    assert throughput.distinct_experts(shape, 1) == pytest.approx(4)
    assert throughput.distinct_experts(shape, 10_000) == pytest.approx(128)


GPU_KEYS = ["h100-sxm", "a100-80gb", "l40s", "h200", "b200", "mi300x", "rtx-4090"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(GPU_KEYS), count=st.sampled_from([1, 2, 4]),
       model=st.sampled_from(["gpt-oss-20b", "gpt-oss-120b"]),
       goal=st.sampled_from(["throughput", "latency", "context"]))
def test_more_gpus_never_predict_less(key: str, count: int, model: str, goal: str) -> None:
    """Doubling the GPUs of a host never lowers the predicted throughput of the layout chosen for a goal (and, for
    the throughput goal, that is what the goal compares)."""
    small = plan(model, compose_host(key, count), goal=goal)
    big = plan(model, compose_host(key, count * 2), goal=goal)
    if small.parallel is None or not small.parallel.options:  # llama.cpp: no throughput model
        return
    assert big.parallel is not None and big.parallel.options
    assert (big.parallel.options[0].peak_output_tokens_per_s
            >= small.parallel.options[0].peak_output_tokens_per_s * 0.999)


def test_calibration_anchors_cited_and_one_held_out() -> None:
    facts = data.load("throughput")
    assert len(facts.anchors) >= 4
    assert any(a.held_out for a in facts.anchors) and any(not a.held_out for a in facts.anchors)
    assert len({a.gpu for a in facts.anchors}) >= 2


def test_packaged_constants_are_the_fit() -> None:
    """bench/throughput_model.py wrote results with the constants the package ships."""
    result = json.loads((ROOT / "bench" / "results" / "throughput_model.json").read_text())
    eff = throughput.default_efficiency()
    assert (result["fit"]["bandwidth"], result["fit"]["compute"], result["fit"]["step_overhead_s"]) == (
        eff.bandwidth, eff.compute, eff.step_overhead_s)
    assert result["held_out_error_pct"], "a public anchor is kept out of the fit"
    assert {r["id"] for r in result["anchors"]} == {a.id for a in data.load("throughput").anchors}


@pytest.mark.parametrize("profile,model,mode", [("dgx-spark", "gpt-oss-120b", "single GPU"),
                                                ("strix-halo-128gb", "gpt-oss-120b", "single GPU")])
def test_unified_memory_boxes_account_for_their_gpu(profile: str, model: str, mode: str) -> None:
    from gptoss_deploy.hardware.profiles import profile_host

    host = profile_host(profile)
    p = plan(model, host)
    assert p.parallel is not None and p.parallel.mode == mode
    gpus_accounted(p, host)
    assert p.parallel.idle_gpus == 0


def test_calibration_from_a_bench_sweep_changes_the_prediction(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from gptoss_deploy.cli.main import main

    base = plan("gpt-oss-20b", compose_host("h100", 1)).parallel
    assert base is not None
    # a host that measures half of what the packaged constants predict, at three load levels
    results = [{"max_concurrency": p.concurrency, "completed": 100, "total_input_tokens": 102_400,
                "total_output_tokens": 102_400, "output_throughput": p.output_tokens_per_s / 2,
                "median_tpot_ms": p.tpot_ms * 2} for p in base.curve[:3]]
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"schema": "gptoss.bench/1", "data": {"results": results}}))
    assert main(["plan", "--profile", "h100", "--model", "gpt-oss-20b", "--calibrate", str(sweep), "--json"]) == 0
    calibrated = json.loads(capsys.readouterr().out)["data"]["parallel"]
    assert "measured" in calibrated["efficiency"]
    assert calibrated["curve"][0]["tpot_ms"] > 1.5 * base.curve[0].tpot_ms
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": {"results": []}}')
    assert main(["plan", "--profile", "h100", "--calibrate", str(bad)]) == 2
    assert "no bench result" in capsys.readouterr().err


def test_data_parallel_on_the_cpu_is_refused_with_the_reason() -> None:
    from gptoss_deploy.errors import InputError
    from gptoss_deploy.hardware.types import Host

    with pytest.raises(InputError, match="all_gatherv"):
        plan("gpt-oss-20b", Host(source="test", ram_bytes=64 * 2**30), data_parallel_size=2)


def test_the_layouts_carry_their_pareto_front() -> None:
    from gptoss_deploy.hardware.profiles import profile_host

    options = plan("gpt-oss-20b", profile_host("8xh100")).parallel.options  # type: ignore[union-attr]
    front = [o for o in options if o.pareto]
    assert front and options[0].pareto  # the winner of a goal is never dominated
    for o in options:
        if not o.pareto:
            assert any(f.peak_output_tokens_per_s >= o.peak_output_tokens_per_s
                       and f.single_user_tokens_per_s >= o.single_user_tokens_per_s for f in front)
