"""Busy is not wedged: under a load that fills the tiny vLLM-CPU server's queue (--max-num-seqs 2, long outputs) a
watchdog with a 2-s canary restarts nothing for 3 minutes; a SIGSTOPped engine is restarted within two intervals.
The log explains both decisions with the numbers behind them."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer
from gptoss_deploy.serve.process import group_members
from gptoss_deploy.serve.supervisor import SuperviseOptions

pytestmark = pytest.mark.engine
INTERVAL_S = 5.0
LOAD_S = 180.0
USERS = 6


def keep_busy(base_url: str, stop: threading.Event, done: list[int]) -> None:
    """One user: long completions back to back (ignore_eos keeps each generating its whole budget)."""
    with httpx.Client(timeout=600) as client:
        while not stop.is_set():
            try:
                reply = client.post(f"{base_url}/v1/completions", json={
                    "model": SERVED_NAME, "prompt": "Count slowly:", "max_tokens": 1500, "ignore_eos": True,
                    "temperature": 0})
                done.append(reply.status_code)
            except httpx.HTTPError:
                if stop.is_set():
                    return
                time.sleep(0.5)


def test_a_full_queue_is_busy_and_a_stopped_engine_is_wedged(lane: Lane, tmp_path: Path) -> None:
    log = tmp_path / "watchdog.log"
    options = SuperviseOptions(watchdog=True, canary_interval_s=INTERVAL_S, canary_timeout_s=2, wedge_s=60,
                               ready_timeout_s=900, stop_grace_s=10)
    server = LaneServer(lane, log_path=log, options=options, overrides={"max_num_seqs": 2})
    server.start()
    served: list[int] = []
    watcher = threading.Thread(target=lambda: served.append(server.supervisor.serve()))
    watcher.start()
    stop = threading.Event()
    done: list[int] = []
    users = [threading.Thread(target=keep_busy, args=(server.base_url, stop, done)) for _ in range(USERS)]
    try:
        for user in users:
            user.start()
        time.sleep(LOAD_S)
        text = log.read_text()
        assert "restarting" not in text, text[-3000:]
        busy = [line for line in text.splitlines() if "busy, not wedged" in line]
        assert busy, text[-3000:]  # the canary did wait in the queue, and the engine was judged busy
        assert "2 running" in busy[-1] and "waiting" in busy[-1] and "tokens since the last sample" in busy[-1]
        assert done and all(code == 200 for code in done)
        first = server.pid
        stop.set()
        offset = len(log.read_text())
        stopped_at = time.monotonic()
        os.kill(first, signal.SIGSTOP)  # wedged: alive, silent, /metrics silent too
        deadline = stopped_at + 3 * (INTERVAL_S + 2 + 2) + 5
        while "restarting (1/" not in log.read_text()[offset:]:
            assert time.monotonic() < deadline, log.read_text()[offset:][-3000:]
            time.sleep(0.5)
        assert time.monotonic() - stopped_at <= 2 * (INTERVAL_S + 2 + 2) + 3  # within two intervals
        after = log.read_text()[offset:]
        assert "/metrics does not answer and the canary failed" in after
        deadline = time.monotonic() + 300
        while "ready again after restart 1" not in log.read_text()[offset:]:
            assert time.monotonic() < deadline, log.read_text()[offset:][-3000:]
            time.sleep(1)
        assert group_members(first) == []
    finally:
        stop.set()
        for user in users:
            user.join(60)
        server.supervisor.stop_event.set()
        watcher.join(60)
        assert server.stop() == []
    assert served == [0]
