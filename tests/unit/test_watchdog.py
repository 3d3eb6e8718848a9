"""Busy vs wedged: the watchdog's decisions on hand-built samples, and /metrics read from a real exposition."""

from __future__ import annotations

import httpx
import pytest

from gptoss_deploy.engines import registry
from gptoss_deploy.serve.watchdog import Judge, Load, read_load

pytestmark = pytest.mark.unit


def judge() -> Judge:
    return Judge(wedge_s=60, canary_timeout_s=2, budget_cap_s=30)


def test_a_busy_engine_is_never_restarted_whatever_the_canary_does() -> None:
    j = judge()
    assert not j.decide(0, Load(100, running=2, waiting=8), None, 2).restart
    for t in range(10, 300, 10):  # minutes of a full queue: tokens keep coming, the canary keeps timing out
        d = j.decide(t, Load(100 + 50 * t, running=2, waiting=8), "no answer within 20 s", 20)
        assert not d.restart and d.state == "busy"
    assert "2 running, 8 waiting" in d.reason and "+500 tokens" in d.reason


def test_no_progress_with_requests_running_is_a_wedge_after_the_limit() -> None:
    j = judge()
    j.decide(0, Load(500, running=2, waiting=0), None, 2)
    assert j.decide(30, Load(500, running=2, waiting=0), "no answer within 6 s", 6).state == "busy"
    d = j.decide(61, Load(500, running=2, waiting=0), "no answer within 6 s", 6)
    assert d.restart and d.state == "wedged" and "last token progress 61 s ago" in d.reason


def test_an_idle_engine_must_answer() -> None:
    j = judge()
    d = j.decide(0, Load(0, running=0, waiting=0), "HTTP 500", 2)
    assert d.restart and "idle" in d.reason


def test_without_metrics_two_failed_intervals_restart() -> None:
    j = judge()
    first = j.decide(0, None, "no answer within 2 s", 2)
    assert not first.restart and first.state == "unknown"
    assert j.decide(10, None, "no answer within 2 s", 2).restart
    j2 = judge()
    j2.decide(0, None, "no answer within 2 s", 2)
    assert not j2.decide(10, None, None, 2).restart  # an answer resets the count
    assert not j2.decide(20, None, "no answer within 2 s", 2).restart


def test_counters_reset_by_a_restart_count_as_progress() -> None:
    j = judge()
    j.decide(0, Load(10_000, running=1, waiting=0), None, 2)
    assert not j.decide(100, Load(3, running=1, waiting=0), "no answer", 2).restart


def test_the_canary_budget_grows_with_the_queue_up_to_the_interval() -> None:
    j = judge()
    assert j.canary_budget(None) == 2 and j.canary_budget(Load(0, 0, 0)) == 2
    assert j.canary_budget(Load(0, running=2, waiting=3)) == 12
    assert j.canary_budget(Load(0, running=2, waiting=300)) == 30


VLLM_METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 5.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 1234.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e9
"""
LLAMA_METRICS = """# TYPE llamacpp:n_decode_total counter
llamacpp:n_decode_total 77
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 10
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3
"""


@pytest.mark.parametrize("engine,text,expected", [("vllm", VLLM_METRICS, Load(1234, 3, 5)),
                                                  ("llamacpp", LLAMA_METRICS, Load(77, 1, 3))])
def test_metrics_are_read_with_each_engines_names(engine: str, text: str, expected: Load) -> None:
    spec = registry.get(engine)
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, text=text)))
    assert read_load(client, "http://x", {}, spec.progress_counter, spec.gauges) == expected
    broken = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, text="nonsense{")))
    assert read_load(broken, "http://x", {}, spec.progress_counter, spec.gauges) is None
