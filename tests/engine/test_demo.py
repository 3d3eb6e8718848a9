"""The README's main job, end to end: `gptoss demo --once` serves the tiny model and answers."""

from __future__ import annotations

import os
import subprocess
import sys

from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import LaneServer, free_port


def test_demo_once_serves_and_answers(lane: Lane) -> None:
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "gptoss_deploy.cli.main", "demo", "--once", "--port", str(port)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"endpoint: http://127.0.0.1:{port}/v1" in result.stdout
    assert "curl -s" in result.stdout and "tiny-gpt-oss" in result.stdout
    assert "[demo] content:   'Hello!" in result.stderr
    assert "reasoning:" in result.stderr


def test_stopping_leaves_no_process_in_the_group(lane: Lane) -> None:
    server = LaneServer(lane, engine="llamacpp").start()
    server.wait_ready(timeout_s=120)
    assert server.process is not None
    group = os.getpgid(server.process.pid)
    server.stop()
    try:
        os.killpg(group, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_demo_stops_cleanly_on_ctrl_c(lane: Lane) -> None:
    import signal
    import socket

    port = free_port()
    # Started like a background job: SIGINT may arrive ignored; the demo must still honour Ctrl-C.
    demo = subprocess.Popen([sys.executable, "-m", "gptoss_deploy.cli.main", "demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert demo.stdout is not None
    first = demo.stdout.readline()  # printed once the server answers
    assert first.startswith(f"endpoint: http://127.0.0.1:{port}/v1")
    demo.send_signal(signal.SIGINT)
    assert demo.wait(timeout=120) == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
