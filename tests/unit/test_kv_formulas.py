"""vLLM KV-cache arithmetic against logs that real vLLM printed."""

from __future__ import annotations

import pytest

from gptoss_deploy.hardware.profiles import profile_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import PlanRequest
from gptoss_deploy.plan.vllm_memory import blocks_per_request, kv_groups, page_bytes, predict_kv

GIB = 1024**3
GB10_KV_BYTES = 40_052_850_688  # "Available KV cache memory: 37.30 GiB" of the seed 001 GB10 log


def test_page_and_groups_for_gpt_oss_120b() -> None:
    arch = catalog.arch_config("gpt-oss-120b")
    assert page_bytes(arch, tp=1, kv_dtype="auto", block_size=16) == 32_768
    assert page_bytes(arch, tp=2, kv_dtype="fp8", block_size=16) == 8_192
    assert kv_groups(arch) == (18, ["full_attention", "sliding_attention"])
    assert kv_groups(catalog.arch_config("gpt-oss-20b"))[0] == 12


def test_blocks_per_request_matches_the_sliding_window_rule() -> None:
    arch = catalog.arch_config("gpt-oss-120b")
    assert blocks_per_request(arch, 131_072, 2048, 16) == 8192 + 137
    assert blocks_per_request(arch, 131_072, 8192, 16) == 8192 + 521
    assert blocks_per_request(arch, 100, 2048, 16) == 7 + 7 + 1  # window capped by the request length


def test_gb10_log_on_vllm_0_14_uses_the_per_group_formula() -> None:
    kv = predict_kv(catalog.arch_config("gpt-oss-120b"), 1, "auto", 16, GB10_KV_BYTES, 131_072, 2048, "0.14.0")
    assert kv.num_blocks == 67_906
    assert kv.logged_tokens == 543_248
    assert f"{kv.max_concurrency:.2f}" == "8.15"
    assert kv.log_formula == "blocks_per_group"


def test_gb10_plan_through_the_cli_request() -> None:
    plan = make_plan(catalog.lookup("gpt-oss-120b"), profile_host("dgx-spark"),
                     PlanRequest(vllm_version="0.14.0", kv_cache_memory_bytes=GB10_KV_BYTES,
                                 max_model_len=131_072, max_num_batched_tokens=2048))
    assert plan.kv is not None
    assert "GPU KV cache size: 543,248 tokens" in plan.predicted_log
    assert "Maximum concurrency for 131,072 tokens per request: 8.15x" in plan.predicted_log


@pytest.mark.parametrize(("version", "tokens"), [("0.20.0", 543_248), ("0.20.1", 1_068_624), ("0.23.0", 1_068_624)])
def test_same_budget_logs_differently_across_the_0_20_1_boundary(version: str, tokens: int) -> None:
    kv = predict_kv(catalog.arch_config("gpt-oss-120b"), 1, "auto", 16, GB10_KV_BYTES, 131_072, 2048, version)
    assert kv.logged_tokens == tokens
    assert f"{kv.max_concurrency:.2f}" == "8.15"  # the concurrency formula did not change


def test_h100_20b_log_reproduced_from_its_block_budget() -> None:
    # 2,218,325 tokens at 16.92x with 8,713 blocks per request means exactly 147,463 blocks (12 layers x 32 KiB each).
    arch = catalog.arch_config("gpt-oss-20b")
    kv = predict_kv(arch, 1, "auto", 16, 147_463 * 12 * 32_768, 131_072, 8192, "0.23.0")
    assert kv.blocks_per_request == 8_713
    assert kv.logged_tokens == 2_218_325
    assert f"{kv.max_concurrency:.2f}" == "16.92"


def test_h100_20b_log_from_the_rounded_available_memory_line() -> None:
    # The log prints "Available KV cache memory: 54.0 GiB", rounded to 0.05 GiB (about +-107 blocks).
    kv = predict_kv(catalog.arch_config("gpt-oss-20b"), 1, "auto", 16, int(54.0 * GIB), 131_072, 8192, "0.23.0")
    assert f"{kv.max_concurrency:.2f}" == "16.92"
    assert abs(kv.logged_tokens - 2_218_325) < 0.0002 * 2_218_325


def test_h100_20b_available_kv_memory_predicted_from_util() -> None:
    # The same run: util 0.90, defaults otherwise; vLLM reported 54.0 GiB available for KV.
    plan = make_plan(catalog.lookup("gpt-oss-20b"), profile_host("h100"),
                     PlanRequest(vllm_version="0.23.0", gpu_memory_utilization=0.9, max_model_len=131_072))
    assert plan.memory is not None and plan.vllm is not None
    assert plan.vllm.max_num_batched_tokens == 8192
    assert abs(plan.memory.kv_bytes / GIB - 54.0) < 0.5
    assert abs(plan.memory.weights_bytes / GIB - 13.58) < 0.3  # "Model loading took 13.58 GiB"


def test_fp8_kv_doubles_the_tokens() -> None:
    arch = catalog.arch_config("gpt-oss-20b")
    auto = predict_kv(arch, 1, "auto", 16, 10 * GIB, 32_768, 8192, "0.32.0")
    fp8 = predict_kv(arch, 1, "fp8", 16, 10 * GIB, 32_768, 8192, "0.32.0")
    assert abs(fp8.num_blocks - 2 * auto.num_blocks) <= 1  # floor() of each budget


def test_steady_state_counts_only_full_layers() -> None:
    kv = predict_kv(catalog.arch_config("gpt-oss-120b"), 1, "auto", 16, 36_864 * 1000, 131_072, 2048, "0.32.0")
    assert kv.full_layer_bytes_per_token == 36_864
    assert kv.steady_state_tokens == 1000
