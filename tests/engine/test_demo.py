"""The README's main job, end to end: `gptoss demo --once` serves the tiny model and answers."""

from __future__ import annotations

import os
import subprocess
import sys

from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import LaneServer, free_port
from tests.lane_support import data_of


def test_demo_once_serves_and_answers(lane: Lane) -> None:
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "gptoss_deploy.cli.main", "demo", "--once", "--port", str(port),
                             "--json"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    info = data_of(result.stdout, "demo")
    assert info["endpoint"] == f"http://127.0.0.1:{port}/v1" and info["model"] == "tiny-gpt-oss"
    assert info["curl"].startswith("curl -s")
    assert "[demo] content:   'Hello!" in result.stderr
    assert "reasoning:" in result.stderr


def test_stopping_leaves_no_process_in_the_group(lane: Lane) -> None:
    server = LaneServer(lane, engine="llamacpp")
    server.start()
    group = os.getpgid(server.pid)
    assert server.stop() == []
    try:
        os.killpg(group, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
