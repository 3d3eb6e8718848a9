"""The fake-server tier: `gptoss check` against an in-process OpenAI-compatible server replaying known failure
shapes (the one place a fake is allowed: a real engine cannot be made to produce these on demand), and the judges
on hand-built observations, so every fail and warn branch of `check` has a test."""

from __future__ import annotations

import pytest

from gptoss_deploy.check import judges
from gptoss_deploy.check.probes import ChoiceObservation, Exchange, RouteAnswers, StreamObservation, ToolCall
from gptoss_deploy.check.report import CheckReport
from gptoss_deploy.check.runner import run_checks
from gptoss_deploy.cli.main import main
from tests.fake_openai import fake_server
from tests.lane_support import data_of

KEY = "sk-fake-check-key-42"


def status_of(report: CheckReport, name: str) -> tuple[str, str]:
    found = [r for r in report.results if r.name == name]
    assert found, [r.name for r in report.results]
    return found[0].status, found[0].reason


def test_a_healthy_server_passes(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_server(api_key=KEY) as server:
        report = run_checks(server.base_url, api_key=KEY)
    assert not report.failed, [r for r in report.results if r.status == "fail"]
    assert report.engine == "vllm" and report.reasoning_field == "reasoning_content"
    assert not any(path == "/pause" for _, path, _ in server.requests)
    assert status_of(report, "state-changing routes")[0] == "warn"


@pytest.mark.parametrize(("fault", "check", "status", "needle"), [
    ("empty_with_tokens", "content", "fail", "both empty with 12 completion tokens"),
    ("harmony_in_content", "content", "fail", "raw harmony markup"),
    ("drop_stream_tokens", "same as non-streamed", "fail", "vLLM #28635"),
    ("unparsed_tools", "tool call", "fail", "arrived as text in content"),
    ("error_200", "chat", "fail", "HTTP 200 with an error body"),
    ("no_reasoning", "reasoning field", "warn", "analysis channel was dropped"),
    ("bad_usage", "usage", "fail", "total_tokens 24 != prompt + completion"),
    ("no_finish", "finish_reason", "fail", "no chunk carried finish_reason"),
    ("effort_rejected", "effort high", "fail", "rejected"),
    ("required_ignored", "tool_choice=required", "warn", "no tool call came back"),
    ("round_trip_broken", "tool result round trip", "fail", "llama.cpp #17040"),
    ("bad_arguments", "tool call", "fail", "arguments are not JSON"),
    ("open_metrics", "GET /metrics", "warn", "visible without the key"),
    ("open_inference", "POST /v1/chat/completions", "fail", "the API key does not guard it"),
])
def test_each_failure_shape_is_named(fault: str, check: str, status: str, needle: str) -> None:
    with fake_server(fault, api_key=KEY) as server:
        report = run_checks(server.base_url, api_key=KEY, timeout_s=10)
    got, reason = status_of(report, check)
    assert got == status and needle in reason, reason


def test_the_cli_reports_a_failure_as_exit_1_with_valid_json(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", KEY)
    with fake_server("empty_with_tokens", api_key=KEY) as server:
        code = main(["check", server.base_url + "/v1", "--json"])
    report = data_of(capsys.readouterr().out, "check")
    assert code == 1 and any(r["status"] == "fail" and r["name"] == "content" for r in report["results"])


def test_a_server_without_a_key_is_a_warning_on_loopback() -> None:
    with fake_server() as server:
        report = run_checks(server.base_url)
    assert status_of(report, "authentication") == ("warn", "no API key: anyone who reaches the port can use the model")


# -- the judges on observations a server would rarely give --------------------------------------------------------
def test_chat_judge_branches() -> None:
    assert judges.chat(Exchange(error="ConnectError: refused"))[0][0].status == "fail"
    no_choices = judges.chat(Exchange(status=500, body={"detail": "boom"}))[0][0]
    assert no_choices.status == "fail" and "HTTP 500 without choices" in no_choices.reason
    empty = judges.chat(Exchange(status=200, body={"choices": [{"message": {"content": "", "reasoning": "r"}}],
                                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                             "total_tokens": 2}}))[0]
    assert empty[0].status == "fail" and empty[0].reason == "empty content"
    assert empty[1].status == "pass" and "`reasoning`" in empty[1].reason
    no_usage = judges.chat(Exchange(status=200, body={"choices": [{"message": {"content": "hi"}}]}))[0]
    assert no_usage[2].status == "fail" and no_usage[2].reason == "no usage in the answer"


def test_stream_judge_branches() -> None:
    assert judges.stream(StreamObservation(error="boom"), "x")[0].status == "fail"
    skipped = judges.stream(StreamObservation(content=["a"], reasoning=["r"], finish_reason="stop", usage={}), None)
    assert skipped[0].status == "skip"
    leaked = judges.stream(StreamObservation(content=["<|channel|>final"], reasoning=[""], finish_reason="stop"), None)
    assert leaked[1].status == "fail" and leaked[3].status == "warn"  # markup in content; no usage chunk
    plain = judges.stream(StreamObservation(content=["a"], reasoning=[""], finish_reason="stop", usage={"x": 1}), "a")
    assert [r.status for r in plain] == ["pass", "warn", "pass", "pass"]  # no reasoning deltas is a warning


def test_tool_judge_branches() -> None:
    assert "the server rejected" in judges.tool_call(ChoiceObservation(error="400 tools", rejected=True)).reason
    nowhere = judges.tool_call(ChoiceObservation(finish_reason="stop", content="Sunny."))
    assert nowhere.status == "fail" and "arrived nowhere" in nowhere.reason
    wrong = judges.tool_call(ChoiceObservation(finish_reason="stop", content="<|call|>",
                                               tool_calls=[ToolCall("1", "get_time", '{"city": 1}')]))
    assert wrong.status == "fail"
    for needle in ("finish_reason is stop", "unknown function 'get_time'", "'location' is a required property",
                   "raw harmony markup"):
        assert needle in wrong.reason
    assert judges.round_trip(ChoiceObservation(content="<|channel|>final")).status == "fail"
    assert judges.tool_required(ChoiceObservation(error="400", rejected=True)).status == "warn"
    assert judges.tool_required(ChoiceObservation(error="timeout")).status == "fail"


def test_responses_judge_branches() -> None:
    assert judges.responses(None, False).status == "skip"
    assert judges.responses(Exchange(status=404), True).status == "skip"
    assert judges.responses(Exchange(error="ReadTimeout"), True).status == "fail"
    assert "error body" in judges.responses(Exchange(status=200, body={"error": "busy"}), True).reason
    assert judges.responses(Exchange(status=200, body={"output": []}), True).status == "fail"


def test_security_judge_branches() -> None:
    assert judges.address("10.0.0.5", loopback=False)[0].status == "warn"
    assert judges.address("127.0.0.1", loopback=True) == []
    assert judges.no_key(200, loopback=False).status == "fail" and judges.no_key(401, loopback=False).status == "pass"
    assert judges.route(RouteAnswers("GET", "/v1/models", {"no key": 401, "wrong key": 403})).status == "pass"
    unserved = judges.route(RouteAnswers("GET", "/x", {"no key": 404, "wrong key": "ReadTimeout"}))
    assert unserved.status == "pass" and "not served" in unserved.reason
    assert judges.route(RouteAnswers("POST", "/invocations", {"no key": 200, "wrong key": 401})).status == "fail"
    assert judges.route(RouteAnswers("GET", "/version", {"no key": 200, "wrong key": 200})).status == "warn"


def test_client_profiles_flag_an_error_carried_in_a_200() -> None:
    # a proxy or server answering HTTP 200 with {"error": ...}: every client profile must call it a failure
    with fake_server("error_200", api_key=KEY) as server:
        report = run_checks(server.base_url, api_key=KEY, timeout_s=10, clients=["litellm", "agents"])
    rows = [r for r in report.results if r.group.startswith("client ")]
    assert {r.group for r in rows} == {"client litellm", "client agents"}
    carried = [r for r in rows if "HTTP 200 carrying an error" in r.reason]
    assert carried and all(r.status == "fail" for r in carried)


def test_client_names_select_their_cases() -> None:
    from gptoss_deploy.check.clients import CLIENTS, cases_for

    assert [c.client for c in cases_for(["codex"])] == ["codex"] * len(CLIENTS["codex"])
    assert len(cases_for(["all"])) == sum(len(cases) for cases in CLIENTS.values())
    assert {c.client for c in cases_for(["opencode", "agents"])} == {"opencode", "agents"}
