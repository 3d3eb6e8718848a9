"""The operator's day on the lane, through the CLI as a user types it: pull (from the Hub stand-in, through the real
huggingface_hub client) -> serve --detach -> ps shows it healthy with tokens/s under a bench load -> logs -f shows new
lines -> chat answers in a real terminal (tmux) with reasoning and a tool call shown -> top shows requests running
under load -> stop leaves no process and no state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import free_port
from gptoss_deploy.serve.process import group_members
from gptoss_deploy.serve.state import alive
from tests.hub_standin import hub_standin

pytestmark = pytest.mark.engine
GPTOSS = [sys.executable, "-m", "gptoss_deploy.cli.main"]
REPO = "test-org/tiny-gpt-oss"
NAME = "laneday"


def tmux(*args: str, check: bool = True) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, check=check).stdout


def pane_until(session: str, needle: str, timeout_s: float) -> str:
    """The pane's text once it holds `needle`."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = tmux("capture-pane", "-t", session, "-p", "-S", "-200")
        if needle in text:
            return text
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} not in the pane after {timeout_s} s:\n{text}")


def read_lines(process: subprocess.Popen[bytes], count: int, timeout_s: float) -> list[str]:
    """Up to `count` lines from the process's stdout within `timeout_s` (never blocks past it)."""
    import select

    assert process.stdout is not None
    fd, buffer, lines = process.stdout.fileno(), b"", []
    deadline = time.monotonic() + timeout_s
    while len(lines) < count and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        lines += [line.decode(errors="replace") for line in complete]
    return lines[:count]


def keep_busy(base_url: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=600) as client:
        while not stop.is_set():
            try:
                client.post(f"{base_url}/v1/completions", json={"model": REPO, "prompt": "Count slowly:",
                                                                 "max_tokens": 600, "ignore_eos": True})
            except httpx.HTTPError:
                time.sleep(0.5)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (the chat and top views need a terminal)")
def test_pull_serve_detached_ps_logs_chat_top_stop(lane: Lane, tmp_path: Path) -> None:
    state_home, cache = tmp_path / "state", tmp_path / "hf-cache"
    env = os.environ | {"XDG_STATE_HOME": str(state_home), "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1",
                        "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_SYSTEM_START_DATE": "2026-01-01",
                        "TIKTOKEN_ENCODINGS_BASE": lane.vocab_dir, "VLLM_NO_USAGE_STATS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    port = free_port()
    stop_load = threading.Event()
    load: list[threading.Thread] = []
    try:
        with hub_standin(REPO, Path(lane.model)) as (endpoint, hub):
            pulled = subprocess.run([*GPTOSS, "pull", REPO], capture_output=True, text=True, timeout=300,
                                    env=env | {"HF_ENDPOINT": endpoint})
            assert pulled.returncode == 0, pulled.stderr
            assert "sha256" in pulled.stderr and Path(pulled.stdout.strip(), "model.safetensors").exists()
            assert any(method == "GET" and path.endswith("model.safetensors") for method, path, _ in hub.requests)
        env |= {"HF_HUB_OFFLINE": "1"}  # the stand-in is gone: serving needs only the cache now
        started = subprocess.run([*GPTOSS, "serve", "--model", REPO, "--engine", "vllm", "--vllm-python", lane.python,
                                  "--max-model-len", "4096", "--kv-cache-memory-bytes", str(2**30), "--max-num-seqs",
                                  "2", "--port", str(port), "--detach", "--name", NAME, "--", "--dtype", "bfloat16"],
                                 capture_output=True, text=True, timeout=900, env=env)
        assert started.returncode == 0, started.stderr[-3000:]
        base_url = started.stdout.strip()
        assert base_url == f"http://127.0.0.1:{port}" and f"{NAME} ready" in started.stderr
        assert "pulling" not in started.stderr  # it was in the cache already

        load = [threading.Thread(target=keep_busy, args=(base_url, stop_load)) for _ in range(3)]
        for user in load:
            user.start()
        time.sleep(8)
        ps = subprocess.run([*GPTOSS, "ps", "--json"], capture_output=True, text=True, timeout=60, env=env)
        rows = json.loads(ps.stdout)["data"]
        assert [r["name"] for r in rows] == [NAME], ps.stdout
        row = rows[0]
        assert row["health"] == "200" and row["status"] == "ready" and row["engine"] == "vllm"
        assert row["running"] >= 1 and row["tokens_per_s"] > 0, row

        follow = subprocess.Popen([*GPTOSS, "logs", NAME, "-f", "-n", "5"], stdout=subprocess.PIPE, env=env)
        try:
            first = read_lines(follow, 5, 30)
            assert len(first) == 5, first
            fresh = read_lines(follow, 1, 60)  # a line written while we follow (access log, engine stats)
            assert fresh and fresh[0].strip(), first
        finally:
            follow.terminate()
            follow.wait(10)

        shell_env = " ".join(f"{k}={v}" for k, v in (("XDG_STATE_HOME", state_home), ("HF_HUB_OFFLINE", "1")))
        command = " ".join(GPTOSS)
        tmux("kill-session", "-t", "gptoss-top", check=False)
        tmux("new-session", "-d", "-s", "gptoss-top", "-x", "140", "-y", "30", f"env {shell_env} {command} top {NAME}")
        try:
            view = pane_until("gptoss-top", "gen tok/s", 60)
            time.sleep(3)
            view = tmux("capture-pane", "-t", "gptoss-top", "-p")
            running = next(line for line in view.splitlines() if line.strip().startswith("running"))
            assert int(running.split()[1]) >= 1, view
            tmux("send-keys", "-t", "gptoss-top", "q")
            deadline = time.monotonic() + 30  # q is read at once; exiting Python beside a busy engine takes seconds
            pressed = time.monotonic()
            while subprocess.run(["tmux", "has-session", "-t", "gptoss-top"], capture_output=True).returncode == 0:
                assert time.monotonic() < deadline, "top did not quit on q"
                time.sleep(0.2)
            print(f"top quit {time.monotonic() - pressed:.1f} s after q, under load")
        finally:
            tmux("kill-session", "-t", "gptoss-top", check=False)
        stop_load.set()
        for user in load:
            user.join(120)

        transcript = tmp_path / "chat.json"
        tmux("kill-session", "-t", "gptoss-chat", check=False)
        tmux("new-session", "-d", "-s", "gptoss-chat", "-x", "160", "-y", "40",
             f"env {shell_env} {command} chat {NAME} --tools demo --temperature 0")
        try:
            pane_until("gptoss-chat", "you>", 60)
            tmux("send-keys", "-t", "gptoss-chat", "What's the weather like in Paris?", "Enter")
            screen = pane_until("gptoss-chat", "gpt-oss:", 120)
            assert "thinking: Need to use function get_weather." in screen, screen
            assert 'tool call get_weather({"location": "Paris"})' in screen, screen
            assert "tool result" in screen and "temperature_c" in screen
            tmux("send-keys", "-t", "gptoss-chat", f"/save {transcript}", "Enter")
            pane_until("gptoss-chat", "saved", 30)
            tmux("send-keys", "-t", "gptoss-chat", "/exit", "Enter")
        finally:
            tmux("kill-session", "-t", "gptoss-chat", check=False)
        saved = json.loads(transcript.read_text())
        roles = [m["role"] for m in saved["messages"]]
        assert roles[:3] == ["user", "assistant", "tool"] and roles[-1] == "assistant"
        assert saved["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"

        entry = json.loads((state_home / "gptoss-deploy" / "servers" / f"{NAME}.json").read_text())
        stopped = subprocess.run([*GPTOSS, "stop", NAME], capture_output=True, text=True, timeout=180, env=env)
        assert stopped.returncode == 0 and "are gone" in stopped.stderr, stopped.stderr
        assert group_members(entry["engine_pgid"]) == [] and not alive(entry["pid"])  # (a zombie awaits init)
        assert list((state_home / "gptoss-deploy" / "servers").iterdir()) == []
        ps = subprocess.run([*GPTOSS, "ps", "--json"], capture_output=True, text=True, timeout=60, env=env)
        assert json.loads(ps.stdout)["data"] == []
    finally:
        stop_load.set()
        subprocess.run([*GPTOSS, "stop", "--all", "--timeout", "20"], capture_output=True, timeout=120, env=env)
