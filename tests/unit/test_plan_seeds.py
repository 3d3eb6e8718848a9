"""The seeds' hardware questions, answered by the planner (no hardware needed)."""

from __future__ import annotations

import pytest

from gptoss_deploy.hardware.profiles import compose_host, profile_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import Plan, PlanRequest

GIB = 1024**3


def plan_for(model: str, host: str | tuple[str, int], **request: object) -> Plan:
    hw = compose_host(*host) if isinstance(host, tuple) else profile_host(host)
    return make_plan(catalog.lookup(model), hw, PlanRequest(**request))


def test_seed000_bf16_120b_does_not_fit_4x_l40s_and_proposes_mxfp4_and_gguf() -> None:
    plan = plan_for("unsloth/gpt-oss-120b-BF16", "4xL40S")
    assert plan.verdict == "does not fit"
    assert plan.engine is None
    assert "217.6 GiB (bf16)" in plan.reasons[0]
    assert "178.2 GiB of GPU memory" in plan.reasons[0]
    descriptions = [a.description for a in plan.alternatives]
    assert any("openai/gpt-oss-120b" in d and "TP4" in d for d in descriptions)
    assert any(a.engine == "llamacpp" and a.verdict == "fits" for a in plan.alternatives)


def test_seed000_official_120b_on_4x_l40s_uses_all_four_with_triton_attention_and_marlin() -> None:
    plan = plan_for("gpt-oss-120b", "4xL40S")
    assert plan.verdict == "fits"
    assert plan.vllm is not None and plan.parallel is not None
    # TP2 is the smallest TP that holds it; the four GPUs are used as TP4 or TP2 x DP2, whichever the goal prefers
    assert {(o.tp, o.dp) for o in plan.parallel.options} == {(2, 2), (4, 1)}
    assert plan.vllm.tensor_parallel_size * plan.vllm.data_parallel_size == 4
    assert plan.vllm.attention_backend == "TRITON_ATTN" and plan.vllm.moe_backend == "marlin"
    assert plan.engine_args[plan.engine_args.index("--attention-backend") + 1] == "TRITON_ATTN"


@pytest.mark.parametrize("gpu", ["h100", "h200", "a100-80gb"])
def test_seed003_120b_fits_one_80gb_class_gpu_at_128k(gpu: str) -> None:
    plan = plan_for("gpt-oss-120b", gpu)
    assert plan.verdict == "fits"
    assert plan.vllm is not None
    assert plan.vllm.tensor_parallel_size == 1 and plan.vllm.max_model_len == 131_072
    assert plan.kv is not None and plan.kv.max_concurrency >= 1


def test_seed003_h100_tp1_120b_uses_the_recipe_util_and_batch() -> None:
    plan = plan_for("gpt-oss-120b", "h100")
    assert plan.vllm is not None
    assert plan.vllm.gpu_memory_utilization == 0.95
    assert plan.vllm.max_num_batched_tokens == 1024
    assert "h100-tp1-120b-oom" in [i.id for i in plan.issues]
    assert ["--gpu-memory-utilization", "0.95"] == plan.engine_args[plan.engine_args.index("--gpu-memory-utilization"):][:2]


def test_h100_120b_at_vllm_defaults_does_not_hold_one_full_request() -> None:
    # measured-h100.md: 120b with defaults and --max-model-len 131072 does not start on one H100.
    plan = plan_for("gpt-oss-120b", "h100", gpu_memory_utilization=0.92, max_num_batched_tokens=8192,
                    max_model_len=131_072, tensor_parallel_size=1, engine="vllm")
    assert plan.verdict == "fits with changes"
    # vLLM's profiling peak is the sampler warm-up (max_num_seqs x vocabulary), not the MNBT-sized forward pass: the
    # plan keeps the pinned batch and lowers the sequences it warms up for, with the KV it gains.
    changes = {c.setting: c for c in plan.changes}
    assert set(changes) == {"max_num_seqs"}
    assert "GiB more KV cache" in changes["max_num_seqs"].reason
    pinned = plan_for("gpt-oss-120b", "h100", gpu_memory_utilization=0.92, max_num_batched_tokens=8192,
                      max_model_len=131_072, tensor_parallel_size=1, max_num_seqs=1024, engine="vllm")
    assert pinned.verdict == "fits with changes"
    assert {c.setting for c in pinned.changes} <= {"max_model_len", "gpu_memory_utilization"}
    assert pinned.vllm is not None and pinned.vllm.max_num_batched_tokens == 8192


def test_seed003_120b_does_not_fit_one_l40s_on_vllm() -> None:
    plan = plan_for("gpt-oss-120b", ("L40S", 1), engine="vllm")
    assert plan.verdict == "does not fit"
    assert "exceed" in plan.reasons[0]


def test_120b_on_one_l40s_falls_back_to_llamacpp_with_cpu_moe() -> None:
    plan = plan_for("gpt-oss-120b", ("L40S", 1))
    assert plan.verdict == "fits with changes"
    assert plan.engine == "llamacpp"
    assert plan.llamacpp is not None and 0 < plan.llamacpp.n_cpu_moe < 36
    assert plan.engine_args[plan.engine_args.index("--n-cpu-moe") + 1] == str(plan.llamacpp.n_cpu_moe)
    assert plan.llamacpp.gguf == "hf:ggml-org/gpt-oss-120b-GGUF"


def test_seed003_20b_fits_l40s_at_128k() -> None:
    plan = plan_for("gpt-oss-20b", ("L40S", 1))
    assert plan.verdict == "fits" and plan.vllm is not None and plan.vllm.max_model_len == 131_072


def test_seed003_20b_on_rtx_4090_fits_with_far_less_kv_than_l40s() -> None:
    # vLLM's own arithmetic gives a 4090 room for ~2 full-length requests; the L40S holds ~8.
    small = plan_for("gpt-oss-20b", "rtx-4090")
    large = plan_for("gpt-oss-20b", ("L40S", 1))
    assert small.verdict == "fits" and small.kv is not None and large.kv is not None
    assert 1 <= small.kv.max_concurrency < large.kv.max_concurrency / 3


def test_20b_on_rtx_4090_with_a_busy_desktop_reduces_the_context() -> None:
    # A desktop holding memory leaves vLLM less: the planner reduces the context rather than failing.
    plan = plan_for("gpt-oss-20b", "rtx-4090", gpu_memory_utilization=0.75)
    assert plan.vllm is not None
    assert plan.vllm.max_model_len < 131_072
    assert plan.verdict == "fits with changes"


def test_requested_context_that_cannot_fit_is_reduced_as_a_change() -> None:
    plan = plan_for("gpt-oss-120b", "h100", max_model_len=131_072, gpu_memory_utilization=0.86,
                    max_num_batched_tokens=8192, tensor_parallel_size=1, engine="vllm")
    assert plan.verdict == "fits with changes"


def test_strix_halo_defaults_to_llamacpp() -> None:
    plan = plan_for("gpt-oss-120b", "strix-halo-128gb")
    assert plan.engine == "llamacpp" and plan.verdict == "fits"
    assert plan.llamacpp is not None and plan.llamacpp.n_cpu_moe == 0


def test_cpu_only_host_plans_llamacpp_in_ram() -> None:
    from gptoss_deploy.hardware.types import Host

    host = Host(gpus=[], ram_bytes=64 * GIB, source="test")
    plan = make_plan(catalog.lookup("gpt-oss-20b"), host, PlanRequest())
    assert plan.engine == "llamacpp" and plan.verdict == "fits"
    assert plan.llamacpp is not None and plan.llamacpp.n_gpu_layers == 0


def test_expected_speed_is_below_the_bandwidth_ceiling() -> None:
    plan = plan_for("gpt-oss-20b", "h100", vllm_version="0.23.0")
    assert plan.speed is not None
    assert plan.speed.expected_tokens_per_s < plan.speed.ceiling_tokens_per_s
    # measured-h100.md: 303 tok/s single stream (3.30 ms TPOT).
    assert 230 < plan.speed.expected_tokens_per_s < 380
