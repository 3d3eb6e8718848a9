"""`gptoss serve` end to end on the real engines: readiness, phases, plan vs actual, secrets, faults, stopping."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from gptoss_deploy.engines import Endpoint
from gptoss_deploy.errors import EngineError
from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import SERVED_NAME, free_port, lane_launch, tiny_plan
from gptoss_deploy.serve.logparse import Phase
from gptoss_deploy.serve.process import group_members
from gptoss_deploy.serve.supervisor import SuperviseOptions, Supervisor
from tests.lane_support import data_of

GPTOSS = [sys.executable, "-m", "gptoss_deploy.cli.main"]
API_KEY = "sk-planted-key-7c1e9d"
HF_TOKEN = "hf_planted_token_42ab"
PHASE_ORDER = list(Phase)


@dataclass
class Served:
    """A `gptoss serve` subprocess and where its output goes."""

    process: subprocess.Popen[str]
    port: int
    log: Path
    out: Path
    err: Path

    def report(self, timeout_s: float) -> dict:
        """The JSON report printed on stdout once the engine is ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.out.read_text()
            if text.rstrip().endswith("}"):
                try:
                    return data_of(text, "serve-ready")
                except ValueError:
                    pass
            assert self.process.poll() is None, f"serve exited early:\n{self.err.read_text()[-3000:]}"
            time.sleep(0.5)
        raise AssertionError(f"not ready after {timeout_s} s:\n{self.err.read_text()[-3000:]}")

    def wait_log(self, text: str, timeout_s: float, after: int = 0) -> float:
        """Wait until the serve log holds `text` past offset `after`; returns when it was seen."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace")[after:]:
                return time.monotonic()
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in the log after {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def interrupt(self) -> int:
        """Ctrl-C, and the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=120)


def serve(tmp_path: Path, args: list[str], env: dict[str, str] | None = None, ignore_sigint: bool = False) -> Served:
    """Start `gptoss serve --json` with its output in files."""
    port = free_port()
    log, out, err = tmp_path / "serve.log", tmp_path / "out.json", tmp_path / "err.txt"
    process = subprocess.Popen(
        [*GPTOSS, "serve", "--json", "--port", str(port), "--log-file", str(log), "--served-model-name", SERVED_NAME,
         *args], stdout=out.open("w"), stderr=err.open("w"), text=True,
        env=os.environ | {"API_KEY": API_KEY, "HF_TOKEN": HF_TOKEN} | (env or {}),
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None)
    return Served(process, port, log, out, err)


def llama_args(lane: Lane) -> list[str]:
    return ["--model", lane.gguf, "--llama-server", lane.llama_server, "--max-model-len", "4096"]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text and HF_TOKEN not in text


def assert_phases_in_order(phases: list[dict]) -> None:
    names = [Phase(p["phase"]) for p in phases]
    assert names[0] is Phase.STARTING and names[-1] is Phase.READY
    assert [PHASE_ORDER.index(n) for n in names] == sorted(PHASE_ORDER.index(n) for n in names), names
    times = [p["started_s"] for p in phases]
    assert times == sorted(times)


@pytest.fixture
def llama_served(lane: Lane, tmp_path: Path) -> Iterator[Served]:
    served = serve(tmp_path, [*llama_args(lane), "--watchdog", "--canary-interval", "3", "--canary-timeout", "2"])
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait()


def test_llama_server_ready_with_phases_plan_vs_actual_and_no_secrets(llama_served: Served) -> None:
    report = llama_served.report(120)
    assert report["ready"] and report["engine"] == "llamacpp" and report["served_model_name"] == SERVED_NAME
    assert_phases_in_order(report["phases"])
    assert {Phase.WEIGHTS.value, Phase.KV_CACHE.value} <= {p["phase"] for p in report["phases"]}
    saved = json.loads(llama_served.log.with_suffix(".plan-vs-actual.json").read_text())
    rows = {row["quantity"]: row for row in saved["plan_vs_actual"]}
    assert rows["slots (-np)"]["status"] == rows["context per slot"]["status"] == "match"
    assert abs(rows["KV cache, full + SWA (MiB)"]["relative_difference"]) < 0.01
    assert abs(rows["model buffers (MiB)"]["relative_difference"]) < 0.01
    pid = report["pid"]
    key = {"Authorization": f"Bearer {API_KEY}"}
    base = f"http://127.0.0.1:{llama_served.port}"
    assert httpx.post(f"{base}/v1/chat/completions", json={"model": SERVED_NAME, "messages": []}).status_code == 401
    answer = httpx.post(f"{base}/v1/chat/completions", headers=key, timeout=60, json={
        "model": SERVED_NAME, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 60})
    assert answer.status_code == 200
    command = cmdline(pid)
    assert "--api-key-file" in command
    assert_no_secrets(command, llama_served.log.read_text())
    key_file = Path(command.split("--api-key-file ", 1)[1].split()[0])
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert llama_served.interrupt() == 0
    assert group_members(pid) == []
    assert not key_file.exists()  # removed with the engine
    assert_no_secrets(llama_served.out.read_text(), llama_served.err.read_text())


def test_watchdog_restarts_a_killed_and_a_wedged_engine(llama_served: Served) -> None:
    first = llama_served.report(120)["pid"]
    os.kill(first, signal.SIGKILL)
    llama_served.wait_log("ready again after restart 1", 60)
    second = json.loads(llama_served.log.with_suffix(".plan-vs-actual.json").read_text())["pid"]
    assert second != first and group_members(first) == []
    offset = len(llama_served.log.read_text(errors="replace"))
    stopped_at = time.monotonic()
    os.kill(second, signal.SIGSTOP)  # a wedge: the process lives, /health would not answer either
    detected_at = llama_served.wait_log("canary failed", 30, after=offset)
    # within two watchdog cycles: interval 3 s + /metrics (2 s, silent when stopped) + the canary (2 s), + slack
    assert detected_at - stopped_at <= 2 * (3 + 2 + 2) + 1.0
    llama_served.wait_log("ready again after restart 2", 60, after=offset)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{llama_served.port}/v1", api_key=API_KEY, max_retries=0)
    reply = client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": "Hello!"}],
                                           max_tokens=60, temperature=0)
    assert reply.choices[0].message.content
    third = json.loads(llama_served.log.with_suffix(".plan-vs-actual.json").read_text())["pid"]
    assert llama_served.interrupt() == 0
    assert group_members(second) == [] and group_members(third) == []


def test_port_in_use_is_a_clear_error(lane: Lane, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([*GPTOSS, "serve", *llama_args(lane), "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_dir_is_a_clear_error(lane: Lane) -> None:
    result = subprocess.run([*GPTOSS, "serve", "--model", "/nonexistent/gpt-oss-20b", "--llama-server",
                             lane.llama_server], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "model path /nonexistent/gpt-oss-20b does not exist" in result.stderr and "Traceback" not in result.stderr


def test_engine_that_exits_while_starting_is_reported_with_its_log(lane: Lane, tmp_path: Path) -> None:
    served = serve(tmp_path, [*llama_args(lane), "--", "--ctx-size", "not-a-number"])
    code = served.process.wait(timeout=60)
    err = served.err.read_text()
    assert code == 1 and "llamacpp exited with code" in err and "while starting" in err
    assert "not-a-number" in err  # the log tail shows what the engine said
    assert "Traceback" not in err


def test_a_startup_hang_is_reported_with_the_last_phase(lane: Lane, tmp_path: Path) -> None:
    plan = tiny_plan(lane, "llamacpp")
    endpoint = Endpoint(port=free_port(), served_name=SERVED_NAME)
    launch = lane_launch(lane, plan, endpoint)
    # The real llama-server, stopped by its own shell before it can print a line: a hang at startup.
    launch.argv = ["/bin/sh", "-c", 'kill -STOP $$; exec "$@"', "sh", *launch.argv]
    supervisor = Supervisor(launch, plan, endpoint, tmp_path / "hang.log",
                            SuperviseOptions(stall_timeout_s=3, ready_timeout_s=60, stop_grace_s=5))
    with pytest.raises(EngineError, match=r"hung: no log progress for \d+ s while starting"):
        supervisor.start()
    assert supervisor.engine is not None and group_members(supervisor.engine.pid) == []
    supervisor.stop()


def test_vllm_cpu_served_end_to_end(lane: Lane, tmp_path: Path) -> None:
    lane_env = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1", "VLLM_SYSTEM_START_DATE": "2026-01-01",
                "TIKTOKEN_ENCODINGS_BASE": lane.vocab_dir, "MAX_NUM_SEQS": "8"}
    served = serve(tmp_path, ["--model", lane.model, "--engine", "vllm", "--vllm-python", lane.python,
                              "--max-model-len", "4096", "--kv-cache-memory-bytes", str(2**30), "--", "--dtype",
                              "bfloat16"], env=lane_env, ignore_sigint=True)
    try:
        report = served.report(600)
        assert report["engine"] == "vllm"
        assert_phases_in_order(report["phases"])
        seen = {p["phase"] for p in report["phases"]}
        assert {Phase.WEIGHTS.value, Phase.KV_CACHE.value, Phase.API.value} <= seen
        saved = json.loads(served.log.with_suffix(".plan-vs-actual.json").read_text())
        rows = {row["quantity"]: row for row in saved["plan_vs_actual"]}
        assert rows["KV cache size (tokens)"]["status"] == "match"
        assert abs(rows["KV cache size (tokens)"]["relative_difference"]) < 0.01
        assert rows["max_model_len"]["status"] == "match"
        base = f"http://127.0.0.1:{served.port}"
        assert httpx.get(f"{base}/v1/models").status_code == 401
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        reply = client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": "Hello!"}],
                                               max_tokens=60, temperature=0)
        assert reply.choices[0].message.content
        pid = report["pid"]
        members = group_members(pid)
        assert len(members) >= 2  # API server + engine core
        assert_no_secrets(served.log.read_text(), *(cmdline(p) for p in members))
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert API_KEY.encode() in environ  # the key reaches vLLM through VLLM_API_KEY, not argv
        assert served.interrupt() == 0  # SIGINT arrived ignored, the handler still honours it
        assert group_members(pid) == []
        assert_no_secrets(served.out.read_text(), served.err.read_text())
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", served.port)) != 0
    finally:
        if served.process.poll() is None:
            served.process.kill()


def test_watchdog_gives_up_after_its_restart_budget(lane: Lane, tmp_path: Path) -> None:
    import threading

    plan = tiny_plan(lane, "llamacpp")
    endpoint = Endpoint(port=free_port(), served_name=SERVED_NAME)
    supervisor = Supervisor(lane_launch(lane, plan, endpoint), plan, endpoint, tmp_path / "budget.log",
                            SuperviseOptions(watchdog=True, canary_interval_s=2, canary_timeout_s=1, max_restarts=1,
                                             restart_window_s=600, ready_timeout_s=60, stop_grace_s=5))
    supervisor.start()
    result: list[int] = []
    watcher = threading.Thread(target=lambda: result.append(supervisor.serve()))
    watcher.start()
    try:
        first = supervisor.engine.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while supervisor.engine.pid == first or "ready again" not in (tmp_path / "budget.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "budget.log").read_text()[-2000:]
            time.sleep(0.2)
        os.kill(supervisor.engine.pid, signal.SIGKILL)
        watcher.join(60)
        assert result == [1]
        assert "giving up: 1 restarts within 600 s" in (tmp_path / "budget.log").read_text()
    finally:
        supervisor.stop_event.set()
        watcher.join(60)
        assert supervisor.stop() == []
