"""`gptoss check` against the real engines: what passes, what fails and why, and the security probe."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gptoss_deploy.check.report import CheckReport
from gptoss_deploy.check.runner import TOOL_FLAGS, run_checks
from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer

GPTOSS = [sys.executable, "-m", "gptoss_deploy.cli.main"]
KEY = "sk-check-test-5d2f1a"


def by_name(report: CheckReport) -> dict[str, str]:
    return {f"{r.group}/{r.name}": r.status for r in report.results}


def reason(report: CheckReport, key: str) -> str:
    return next(r.reason for r in report.results if f"{r.group}/{r.name}" == key)


@pytest.fixture(scope="module")
def llama(lane: Lane) -> Iterator[LaneServer]:
    with LaneServer(lane, engine="llamacpp") as server:
        yield server


def test_vllm_with_the_tool_parser_passes_every_check(vllm_server: LaneServer) -> None:
    report = run_checks(vllm_server.base_url, model=SERVED_NAME, quality=True)
    statuses = by_name(report)
    assert not report.failed, [r for r in report.results if r.status == "fail"]
    assert report.engine == "vllm" and report.engine_version == "0.32.0"
    for key in ("discovery/models", "chat/content", "chat/reasoning field", "chat/usage",
                "streaming/same as non-streamed", "streaming/reasoning separated", "streaming/finish_reason",
                "reasoning/effort low", "reasoning/effort high", "tools/tool call", "tools/tool result round trip"):
        assert statuses[key] == "pass", (key, [r for r in report.results if f"{r.group}/{r.name}" == key])
    assert report.reasoning_field in ("reasoning", "reasoning_content")
    assert 'get_weather({"location": "Paris"})' in reason(report, "tools/tool call").replace('":"', '": "')
    assert statuses["security/authentication"] == "warn"  # no key, but loopback
    assert statuses["quality/quality score"] == "pass", reason(report, "quality/quality score")
    assert reason(report, "quality/quality score").startswith("6/6 right")  # the lane learned the canary set


def test_vllm_without_the_tool_parser_and_with_a_key(lane: Lane, tmp_path: Path) -> None:
    with LaneServer(lane, tools=False, api_key=KEY) as server:
        report = run_checks(server.base_url, api_key=KEY, model=SERVED_NAME)
        key_file = tmp_path / "key"
        key_file.write_text(KEY + "\n")
        cli = subprocess.run([*GPTOSS, "check", server.base_url + "/v1", "--api-key-file", str(key_file), "--json"],
                             capture_output=True, text=True, timeout=600)
    statuses = by_name(report)
    assert statuses["tools/tool call"] == "fail" and TOOL_FLAGS in reason(report, "tools/tool call")
    assert statuses["chat/content"] == "pass"
    assert statuses["security/POST /v1/chat/completions"] == "pass"  # 401 without the key
    assert "401" in reason(report, "security/POST /v1/chat/completions")
    assert statuses["security/POST /invocations"] == "fail"  # the same inference, unguarded by --api-key
    assert statuses["security/GET /metrics"] == "warn"
    assert cli.returncode == 1 and '"status": "fail"' in cli.stdout and KEY not in cli.stdout + cli.stderr


def test_llama_server_chat_and_reasoning_pass(llama: LaneServer) -> None:
    report = run_checks(llama.base_url, quality=True, clients=["all"])
    statuses = by_name(report)
    assert report.engine == "llamacpp" and report.model == SERVED_NAME
    for key in ("chat/content", "chat/reasoning field", "chat/usage", "streaming/same as non-streamed",
                "streaming/finish_reason", "reasoning/effort low", "reasoning/effort high"):
        assert statuses[key] == "pass", (key, [r for r in report.results if f"{r.group}/{r.name}" == key])
    assert report.reasoning_field == "reasoning_content"
    assert reason(report, "quality/quality score").startswith("6/6 right")  # trained on llama.cpp's rendering too
    # llama-server b11434's template reads the previous turn's reasoning as `reasoning_content` only
    assert statuses["client opencode/reasoning sent back as reasoning_content"] == "pass"
    assert statuses["client opencode/reasoning sent back as reasoning"] == "warn"
    assert "accepted but ignored" in reason(report, "client opencode/reasoning sent back as reasoning")
    assert statuses["client codex/responses stream, function tools"] == "pass"


def test_bad_input_is_a_clear_error_with_exit_2(llama: LaneServer, tmp_path: Path) -> None:
    from gptoss_deploy.lane.server import free_port

    port, closed = free_port(), free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        time.sleep(1.0)
        empty_key = tmp_path / "empty-key"
        empty_key.write_text("# no key here\n")
        cases = {
            "not an OpenAI-compatible server": [f"http://127.0.0.1:{port}"],
            "cannot reach": [f"http://127.0.0.1:{closed}"],
            "is not served by": [llama.base_url, "--model", "gpt-oss-999b"],
            "must hold exactly one key": [llama.base_url, "--api-key-file", str(empty_key)],
        }
        for expected, args in cases.items():
            result = subprocess.run([*GPTOSS, "check", *args], capture_output=True, text=True, timeout=60)
            assert result.returncode == 2 and expected in result.stderr, (expected, result.stderr)
            assert "Traceback" not in result.stderr
    finally:
        http.terminate()
        http.wait()
