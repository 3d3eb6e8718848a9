"""`gptoss check` pieces that need no server: URL handling, argument validation, route classes."""

from __future__ import annotations

import pytest

from gptoss_deploy.check.judges import argument_problem, is_state_changing
from gptoss_deploy.check.report import CheckReport, CheckResult
from gptoss_deploy.check.runner import normalise_url
from gptoss_deploy.errors import InputError


@pytest.mark.parametrize(("given", "expected"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000"),
    ("127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://api.example.com/proxy/v1", "https://api.example.com/proxy"),
])
def test_urls_are_normalised(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


def test_non_http_urls_are_bad_input() -> None:
    with pytest.raises(InputError, match="not an http"):
        normalise_url("ftp://host/v1")


def test_tool_arguments_are_checked_against_the_schema() -> None:
    assert argument_problem('{"location": "Paris"}') is None
    assert "not JSON" in (argument_problem("{location: Paris}") or "")
    assert "'location' is a required property" in (argument_problem('{"city": "Paris"}') or "")
    assert "is not of type 'string'" in (argument_problem('{"location": 3}') or "")


def test_state_changing_routes_are_never_called() -> None:
    for path in ("/pause", "/resume", "/sleep", "/reset_prefix_cache", "/scale_elastic_ep", "/update_weights",
                 "/abort_requests", "/collective_rpc", "/v1/load_lora_adapter", "/start_profile"):
        assert is_state_changing(path), path
    for path in ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/invocations", "/tokenize", "/load"):
        assert not is_state_changing(path), path


def test_report_fails_only_on_fail() -> None:
    report = CheckReport(url="http://x", model="m", results=[
        CheckResult(group="g", name="a", status="pass", reason=""),
        CheckResult(group="g", name="b", status="warn", reason="")])
    assert not report.failed and report.counts() == {"pass": 1, "warn": 1, "fail": 0, "skip": 0}
    report.results.append(CheckResult(group="g", name="c", status="fail", reason=""))
    assert report.failed


def test_differences_name_what_a_proxy_changed() -> None:
    from gptoss_deploy.check.compare import differences
    from gptoss_deploy.check.report import CheckReport, CheckResult

    def report(field: str, chunks: int, status: str) -> CheckReport:
        return CheckReport(url="u", model="m", reasoning_field=field, results=[
            CheckResult(group="streaming", name="same", status="pass", reason=f"{chunks} chunks join"),
            CheckResult(group="tools", name="call", status=status, reason="r"),  # type: ignore[arg-type]
            CheckResult(group="security", name="GET /x", status="pass", reason="refused"),
            CheckResult(group="chat", name="content", status="pass", reason="ok")])

    direct, proxied = report("reasoning", 29, "pass"), report("reasoning_content", 30, "fail")
    proxied.results[2] = CheckResult(group="security", name="GET /x", status="fail", reason="open")
    found = {(d.group, d.name): d for d in differences(direct, proxied)}
    assert set(found) == {("chat", "reasoning field name"), ("streaming", "same"), ("tools", "call")}
    assert found[("chat", "reasoning field name")].proxied == "reasoning_content"
    assert found[("tools", "call")].direct == "pass" and found[("tools", "call")].proxied == "fail"
    assert differences(direct, direct) == []
