"""A green server can be wrong: the tiny model with one tensor damaged (lane.damaged_model) keeps /health at 200 and
passes every API-shape check, but the quality canary fails, names the items and what came back, and the watchdog
with the quality probe restarts it, then gives up after its restart limit (it stays broken)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from gptoss_deploy.check.runner import run_checks
from gptoss_deploy.lane import Lane, damaged_model
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer
from gptoss_deploy.serve.supervisor import SuperviseOptions

pytestmark = pytest.mark.engine
GPTOSS = [sys.executable, "-m", "gptoss_deploy.cli.main"]
SHAPE_CHECKS = ("chat/content", "chat/reasoning field", "streaming/same as non-streamed", "streaming/finish_reason",
                "tools/tool call", "tools/tool result round trip", "responses//v1/responses")


def test_damaged_weights_pass_every_shape_check_and_fail_the_quality_canary(lane: Lane, tmp_path: Path) -> None:
    broken = damaged_model(lane, tmp_path / "damaged")
    log = tmp_path / "serve.log"
    options = SuperviseOptions(watchdog=True, canary_interval_s=5, canary_timeout_s=2, quality_every_s=5,
                               quality_timeout_s=60, max_restarts=1, restart_window_s=3600, ready_timeout_s=900,
                               stop_grace_s=10)
    server = LaneServer(broken, log_path=log, options=options)
    served: list[int] = []
    try:
        server.start()
        assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
        report = run_checks(server.base_url, model=SERVED_NAME, quality=True)
        statuses = {f"{r.group}/{r.name}": r for r in report.results}
        for key in SHAPE_CHECKS:
            assert statuses[key].status == "pass", (key, statuses[key])
        score = statuses["quality/quality score"]
        assert score.status == "fail" and "wrong:" in score.reason, score
        wrong = [r for r in report.results if r.group == "quality" and r.status == "fail" and r.name != "quality score"]
        assert len(wrong) >= 2 and all("expected" in r.reason and r.excerpt for r in wrong), wrong
        cli = subprocess.run([*GPTOSS, "check", server.base_url, "--quality", "--json"], capture_output=True,
                             text=True, timeout=600)
        assert cli.returncode == 1 and '"quality score"' in cli.stdout

        # the watchdog's quality probe: restart once, then give up (the weights are still damaged)
        started = time.monotonic()
        watcher = threading.Thread(target=lambda: served.append(server.supervisor.serve()))
        watcher.start()
        watcher.join(900)
        assert served == [1], log.read_text()[-3000:]
        text = log.read_text()
        assert "quality canary failed: " in text and "restarting (1/1)" in text, text[-3000:]
        assert "ready again after restart 1" in text and "giving up: 1 restarts" in text, text[-3000:]
        assert text.index("restarting (1/1)") < text.index("ready again after restart 1") < text.index("giving up")
        print(f"quality watchdog: restarted and gave up in {time.monotonic() - started:.0f} s")
    finally:
        server.supervisor.stop_event.set()
        assert server.stop() == []
