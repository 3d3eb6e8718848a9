"""Per-architecture backends, flags and known-issue gates."""

from __future__ import annotations

import pytest

from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.profiles import profile_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import Plan, PlanRequest


def plan_for(profile: str, model: str = "gpt-oss-20b", **request: object) -> Plan:
    return make_plan(catalog.lookup(model), profile_host(profile), PlanRequest(**request))


@pytest.mark.parametrize(("profile", "attention", "moe"), [
    ("a100-80gb", "TRITON_ATTN", "marlin"),
    ("l40s", "TRITON_ATTN", "marlin"),
    ("h100", "FLASH_ATTN", "triton"),
    ("b200", "FLASHINFER", "flashinfer"),
    ("rtx-5090", "TRITON_ATTN", "marlin"),
    ("gb10", "TRITON_ATTN", "marlin"),
    ("mi300x", "ROCM_AITER_UNIFIED_ATTN", "aiter"),
])
def test_backend_per_architecture(profile: str, attention: str, moe: str) -> None:
    plan = plan_for(profile)
    assert plan.vllm is not None
    assert (plan.vllm.attention_backend, plan.vllm.moe_backend) == (attention, moe)


def test_hopper_leaves_attention_to_vllm_auto_selection() -> None:
    assert "--attention-backend" not in plan_for("h100").engine_args


def test_blackwell_sets_the_flashinfer_moe_env_where_the_release_has_it() -> None:
    assert plan_for("b200", vllm_version="0.23.0").env["VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8"] == "1"
    assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" not in plan_for("b200", vllm_version="0.24.0").env


def test_mi300x_uses_the_amd_recipe_env_and_block_size() -> None:
    plan = plan_for("mi300x")
    assert plan.env["VLLM_ROCM_USE_AITER"] == "1" and plan.env["HSA_NO_SCRATCH_RECLAIM"] == "1"
    assert plan.engine_args[plan.engine_args.index("--block-size") + 1] == "64"
    assert plan.kv is not None and plan.kv.block_size == 64


def test_old_vllm_selects_attention_by_env_not_flag() -> None:
    plan = plan_for("l40s", vllm_version="0.12.0")
    assert "--attention-backend" not in plan.engine_args
    assert plan.env["VLLM_ATTENTION_BACKEND"] == "TRITON_ATTN_VLLM_V1"


def test_tool_flags_only_from_0_10_2() -> None:
    new = plan_for("h100", vllm_version="0.10.2")
    old = plan_for("h100", vllm_version="0.10.1")
    assert "--tool-call-parser" in new.engine_args and "--enable-auto-tool-choice" in new.engine_args
    assert "--tool-call-parser" not in old.engine_args
    assert "tool-parser-openai-missing" in [i.id for i in old.issues]


def test_fp8_kv_on_a100_is_warned_with_the_reason() -> None:
    plan = plan_for("a100-80gb", kv_cache_dtype="fp8")
    hit = next(i for i in plan.issues if i.id == "fp8-kv-sinks-no-native-fp8")
    assert hit.severity == "warn" and "FP8" in hit.effect


def test_fp8_kv_on_hopper_0_23_is_an_accuracy_warning_not_a_refusal() -> None:
    plan = plan_for("h100", kv_cache_dtype="fp8", vllm_version="0.23.0")
    assert plan.vllm is not None and plan.vllm.kv_cache_dtype == "fp8"
    assert [i.severity for i in plan.issues if i.id.startswith("fp8")] == ["warn"]


def test_fp8_kv_on_rocm_aiter_is_refused_unless_forced() -> None:
    refused = plan_for("mi300x", kv_cache_dtype="fp8")
    assert refused.vllm is not None and refused.vllm.kv_cache_dtype == "auto"
    assert refused.verdict == "fits with changes"
    assert "refused" in refused.changes[0].reason
    forced = plan_for("mi300x", kv_cache_dtype="fp8", force=True)
    assert forced.vllm is not None and forced.vllm.kv_cache_dtype == "fp8"


def test_hopper_0_12_regression_applies_the_marlin_env() -> None:
    plan = plan_for("h100", vllm_version="0.12.0")
    assert plan.env.get("VLLM_MXFP4_USE_MARLIN") == "1"
    assert "hopper-v012-small-concurrency" in [i.id for i in plan.issues]


def test_gb10_warns_about_the_marlin_hang_and_plans_conservative_util() -> None:
    plan = plan_for("dgx-spark", model="gpt-oss-120b")
    assert "gb10-marlin-hang-oom" in [i.id for i in plan.issues]
    assert plan.vllm is not None and plan.vllm.gpu_memory_utilization == 0.85
    assert any("not a hard cap" in w for w in plan.warnings)


def test_offline_without_vocab_flags_the_harmony_issue_and_with_vocab_sets_env() -> None:
    assert "harmony-vocab-offline" in [i.id for i in plan_for("h100", offline=True).issues]
    with_vocab = plan_for("h100", offline=True, vocab_dir="/opt/vocab")
    assert "harmony-vocab-offline" not in [i.id for i in with_vocab.issues]
    assert with_vocab.env["TIKTOKEN_ENCODINGS_BASE"] == "/opt/vocab"


def test_gpt_oss_needs_vllm_0_10_1() -> None:
    with pytest.raises(InputError, match="predates gpt-oss support"):
        plan_for("h100", vllm_version="0.9.2", engine="vllm")


def test_default_batch_tiers_follow_the_vllm_version() -> None:
    assert plan_for("b200", vllm_version="0.32.0").vllm.max_num_batched_tokens == 16384  # type: ignore[union-attr]
    assert plan_for("b200", vllm_version="0.27.1").vllm.max_num_batched_tokens == 8192  # type: ignore[union-attr]
    assert plan_for("a100-80gb").vllm.max_num_batched_tokens == 2048  # type: ignore[union-attr]


def test_default_util_follows_the_vllm_version() -> None:
    assert plan_for("l40s", vllm_version="0.19.1").vllm.gpu_memory_utilization == 0.9  # type: ignore[union-attr]
    assert plan_for("l40s", vllm_version="0.20.0").vllm.gpu_memory_utilization == 0.92  # type: ignore[union-attr]


def test_log_lines_merge_into_one_from_0_28() -> None:
    assert len([line for line in plan_for("h100", vllm_version="0.27.1").predicted_log if "KV cache size" in line
                or "Maximum concurrency" in line]) == 2
    assert any("tokens, Maximum concurrency" in line for line in plan_for("h100", vllm_version="0.28.0").predicted_log)


def test_gb10_plan_applies_its_known_issue_fix_and_says_what_it_cannot() -> None:
    plan = plan_for("dgx-spark", "gpt-oss-120b")
    assert plan.vllm is not None and plan.vllm.enforce_eager and "--enforce-eager" in plan.engine_args
    hit = next(i for i in plan.issues if i.id == "gb10-marlin-hang-oom")
    assert hit.applied == ["--enforce-eager", "--gpu-memory-utilization 0.85"]
    note = next(w for w in plan.warnings if w.startswith("known issue gb10-marlin-hang-oom"))
    assert "applies --enforce-eager" in note and "not applied: a CUTLASS MXFP4 build" in note
    assert plan.request is not None and plan.request.enforce_eager is False  # what was asked stays as asked
    assert plan.memory is not None and plan.memory.cudagraph_bytes == 0  # eager: no graphs in the memory plan


def test_a_fix_the_user_overrides_is_named_as_not_applied() -> None:
    plan = plan_for("dgx-spark", "gpt-oss-120b", gpu_memory_utilization=0.8)
    hit = next(i for i in plan.issues if i.id == "gb10-marlin-hang-oom")
    assert hit.applied == ["--enforce-eager"]
    note = next(w for w in plan.warnings if w.startswith("known issue gb10-marlin-hang-oom"))
    assert "not --gpu-memory-utilization 0.85 (set otherwise)" in note


def test_plans_off_gb10_stay_with_cuda_graphs_and_keep_the_eager_rung() -> None:
    from gptoss_deploy.engines import registry

    plan = plan_for("h100", "gpt-oss-120b")
    assert plan.vllm is not None and not plan.vllm.enforce_eager and "--enforce-eager" not in plan.engine_args
    assert [r.name for r in registry.get("vllm").ladder(plan, True)][-1] == "eager"
    spark = plan_for("dgx-spark", "gpt-oss-120b")
    assert "eager" not in [r.name for r in registry.get("vllm").ladder(spark, True)]  # already eager
