"""Start the lane's engines (vLLM-CPU, llama-server) for the tiny model, wait until they serve, stop cleanly.

The command comes from a Plan through `engines` (the path real models take); the supervision is minimal until
`gptoss serve` (issue #4) replaces it: own process group, log to a file,
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

from gptoss_deploy.engines import Endpoint, Launch, llamacpp, vllm
from gptoss_deploy.errors import EngineError
from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.lane import VLLM_CPU, Lane
from gptoss_deploy.plan.types import Plan, PlanRequest

SERVED_NAME = "tiny-gpt-oss"
READY_TIMEOUT_S = 600
STOP_GRACE_S = 20


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_plan(lane: Lane, engine: str, gguf: str | None = None, tools: bool = True) -> Plan:
    """The plan for the tiny model on this CPU host, as `gptoss plan` would make it."""
    from gptoss_deploy.hardware.detect import detect_host
    from gptoss_deploy.models.resolve import resolve_model
    from gptoss_deploy.plan.planner import make_plan

    model = resolve_model(lane.model if engine == "vllm" else (gguf or lane.gguf))
    host = detect_host().model_copy(update={"gpus": []})  # the lane serves on the CPU even where a GPU exists
    request = PlanRequest(engine=engine, vllm_version=VLLM_CPU.split("==")[1], max_model_len=4096, max_num_seqs=8,
                          kv_cache_memory_bytes=GIB, vocab_dir=lane.vocab_dir, tool_calling=tools)
    return make_plan(model, host, request, with_alternatives=False)


def lane_launch(lane: Lane, engine: str, endpoint: Endpoint, gguf: str | None = None, tools: bool = True) -> Launch:
    """Plan -> engine launch, plus what only the lane wants (bf16 on CPU, offline, a fixed start date)."""
    plan = tiny_plan(lane, engine, gguf, tools)
    if engine == "vllm":
        launch = vllm.launch(plan, endpoint, python=lane.python)
        launch.argv += ["--dtype", "bfloat16"]
        launch.env |= {"VLLM_SYSTEM_START_DATE": "2026-01-01", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                       "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
        return launch
    return llamacpp.launch(plan, endpoint, binary=lane.llama_server)


class LaneServer:
    """A running lane engine (vLLM-CPU by default, or llama-server); use as a context manager."""

    def __init__(self, lane: Lane, port: int | None = None, log_path: Path | None = None, tools: bool = True,
                 engine: str = "vllm", gguf: str | None = None) -> None:
        self.lane = lane
        self.engine = engine
        self.port = port or free_port()
        endpoint = Endpoint(port=self.port, served_name=SERVED_NAME)
        self.base_url = endpoint.base_url
        self.log_path = log_path or Path(lane.root) / f"{engine}-{self.port}.log"
        self.launch = lane_launch(lane, engine, endpoint, gguf, tools)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LaneServer:
        """Launch in a new session (process group) with the log going to `log_path`."""
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.launch.argv, env=os.environ | self.launch.env, stdout=log, stderr=subprocess.STDOUT,
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
