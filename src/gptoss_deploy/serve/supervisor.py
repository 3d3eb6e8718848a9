"""Supervise an engine: start, follow its phases to readiness, classify failures, watchdog, restart, stop.

Readiness is /health 200 *and* /v1/models listing the served name (with the key). A wedged engine keeps
/health green (shared/reference/reliability.md §1), so the watchdog reads the engine's counters and sends a 1-token
canary every interval; serve/watchdog.py tells busy from wedged (a busy engine is never restarted), and the engine
is restarted, with exponential backoff, when it is wedged or exits; it gives up after `max_restarts` restarts within
`restart_window_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, Field

from gptoss_deploy.engines import Endpoint, Launch
from gptoss_deploy.engines.base import HF_TOKEN_ENV
from gptoss_deploy.errors import EngineError
from gptoss_deploy.httpclient import bounded_client
from gptoss_deploy.plan.types import Plan, Speed
from gptoss_deploy.serve.compare import Comparison, compare
from gptoss_deploy.serve.logparse import Phase, describe_failure
from gptoss_deploy.serve.nodes import (
    LOST_AFTER_S,
    POLL_S,
    NodeAgent,
    NodeRole,
    NodeStatus,
    WorkerWatch,
    read_status,
)
from gptoss_deploy.serve.notify import notify
from gptoss_deploy.serve.process import EngineProcess, LogSink
from gptoss_deploy.serve.progress import Snapshot, StartupProgress
from gptoss_deploy.serve.watchdog import Judge, QualityProbe

if TYPE_CHECKING:
    from gptoss_deploy.check.quality import QualityOutcome

REPORT_SCHEMA_VERSION = 1
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 60.0
RESTART_STOP_GRACE_S = 5.0  # an engine being restarted is already considered broken
READY_POLL_S = 0.5
WORKERS_RESTART_S = 300.0  # how long the head waits for the worker nodes to restart their engines


@dataclass
class SuperviseOptions:
    """Timeouts and watchdog settings."""

    ready_timeout_s: float = 1800.0
    stall_timeout_s: float = 600.0
    stop_grace_s: float = 30.0
    failure_grace_s: float = 20.0
    watchdog: bool = False
    canary_interval_s: float = 30.0
    canary_timeout_s: float = 20.0
    wedge_s: float = 120.0  # requests running and no token generated this long: wedged
    quality_every_s: float = 0.0  # the quality canary (check/quality.py) this often; 0: never
    quality_timeout_s: float = 300.0  # one canary request's wait (it may queue behind real requests)
    max_restarts: int = 5
    restart_window_s: float = 900.0


def logs_dir() -> Path:
    """Where engine logs go: ~/.cache/gptoss-deploy/logs."""
    from gptoss_deploy.vocab import cache_root

    return cache_root() / "logs"


def default_log_path(port: int) -> Path:
    """`gptoss serve`'s log for a port (what `gptoss bench` looks for beside a local server)."""
    return logs_dir() / f"serve-{port}.log"


def report_path_for(log_path: Path) -> Path:
    """The plan-vs-actual report written beside an engine log."""
    return log_path.with_suffix(".plan-vs-actual.json")


def ready_timeout_for(checkpoint_bytes: int | None, downloads: bool = True) -> float:
    """Startup deadline scaled to the model: 10 min plus 30 s per GiB of checkpoint when the engine downloads and
    loads it, 10 s per GiB when it only loads it (pulled first)."""
    return 600.0 + (30.0 if downloads else 10.0) * (checkpoint_bytes or 0) / 2**30


class PhaseTime(BaseModel):
    """When a phase began, seconds after the engine started."""

    phase: str
    started_s: float


class ServeReport(BaseModel):
    """What one supervised start did, written as JSON next to the log."""

    schema_version: int = REPORT_SCHEMA_VERSION
    engine: str
    model: str
    served_model_name: str
    base_url: str
    log: str
    pid: int = Field(description="the engine's main process, also its process group id")
    ready: bool
    ready_seconds: float | None = None
    phases: list[PhaseTime] = Field(default_factory=list)
    facts: dict[str, str] = Field(default_factory=dict)
    plan_vs_actual: list[Comparison] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    restarts: int = 0
    failure: str | None = None
    speed: Speed | None = Field(default=None, description="the plan's single-stream decode ceiling (gptoss bench reads it)")


def check_ready(endpoint: Endpoint, client: httpx.Client, timeout_s: float = 3.0, engine: str | None = None) -> bool:
    """The engine's health route answers 200 and its models route lists the served name (/health, /v1/models)."""
    from gptoss_deploy.engines import registry

    spec = registry.get(engine) if engine else registry.default()
    try:
        if client.get(f"{endpoint.base_url}{spec.health_path}", timeout=timeout_s).status_code != 200:
            return False
        models = client.get(f"{endpoint.base_url}{spec.models_path}", headers=endpoint.headers, timeout=timeout_s)
        return models.status_code == 200 and any(m.get("id") == endpoint.served_name
                                                 for m in models.json().get("data", []))
    except (httpx.HTTPError, ValueError):
        return False


def canary(endpoint: Endpoint, client: httpx.Client, timeout_s: float) -> str | None:
    """One 1-token completion; None when it answered, else why not."""
    body = {"model": endpoint.served_name, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    try:
        reply = client.post(f"{endpoint.base_url}/v1/completions", json=body, headers=endpoint.headers, timeout=timeout_s)
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as exc:
        return f"request failed: {type(exc).__name__}"
    if reply.status_code != 200:
        return f"HTTP {reply.status_code}"
    try:
        if not reply.json().get("choices"):
            return "no choices in the answer"
    except ValueError:
        return "the answer is not JSON"
    return None


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (how Docker, systemd and Kubernetes stop us).

    Handlers are installed explicitly: a process started in the background may inherit SIGINT as ignored.
    """
    import signal

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def secrets_of(launch: Launch, endpoint: Endpoint) -> list[str]:
    """Values that must never reach the log: the API key and HF tokens (from the launch or our environment)."""
    import os

    names = [*launch.secret_env, *HF_TOKEN_ENV]
    values = [endpoint.api_key or ""] + [launch.env.get(k, "") or os.environ.get(k, "") for k in names]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def uses_gpu(plan: Plan) -> bool:
    """True when the plan puts work on a GPU (worth reading GPU memory during startup)."""
    from gptoss_deploy.engines import registry

    return plan.engine is not None and registry.get(plan.engine).uses_gpu(plan)


class Supervisor:
    """Runs one engine launch under supervision (see the module docstring)."""

    def __init__(self, launch: Launch, plan: Plan, endpoint: Endpoint, log_path: Path,
                 options: SuperviseOptions | None = None, progress: StartupProgress | None = None,
                 stop_event: threading.Event | None = None, notes: list[str] | None = None,
                 download_probe: Callable[[], tuple[int, int | None]] | None = None,
                 role: NodeRole | None = None) -> None:
        self.launch = launch
        self.plan = plan
        self.endpoint = endpoint
        self.options = options or SuperviseOptions()
        self.progress = progress or StartupProgress(enabled=False)
        self.stop_event = stop_event or threading.Event()
        self.sink = LogSink(log_path, secrets_of(launch, endpoint))
        self._on_gpu = uses_gpu(plan)
        # One client for every poll: a new httpx client per request costs ~50 ms of CPU (SSL context), which
        # competes with the engine's own startup on small machines.
        self._http = bounded_client(60.0)
        self._gpu_used: tuple[float, int | None] = (0.0, None)
        self.notes = list(notes or [])
        self.download_probe = download_probe  # () -> (bytes so far, expected total or None)
        self.engine: EngineProcess | None = None
        self.judge = Judge(self.options.wedge_s, self.options.canary_timeout_s, self.options.canary_interval_s)
        self.restarts: list[float] = []
        self.report: ServeReport | None = None
        self.role = role  # this machine's part of a server across nodes (serve/nodes.py)
        self.node = NodeStatus(rank=role.rank if role else 0)
        self.agent: NodeAgent | None = None
        self.watch: WorkerWatch | None = None
        self._head_since: float | None = None
        self._quality: QualityProbe | None = None
        if role is not None:
            self.agent = NodeAgent(role.own_address, role.agent_port, lambda: self.node).start()
            self.watch = WorkerWatch(role, self._http) if role.head else None

    @property
    def log_path(self) -> Path:
        """The serve log."""
        return self.sink.path

    # -- startup -------------------------------------------------------------------------------------------
    def start(self) -> ServeReport:
        """Launch and wait until ready; on failure stop the engine and raise EngineError with the cause."""
        if self.role is not None and not self.role.head:
            return self._start_worker()
        self.engine = EngineProcess(self.launch, self.sink).start()
        self.node.state, self.node.pid, self.node.exit_code = "starting", self.engine.pid, None
        notify("STATUS=starting " + self.launch.engine)
        try:
            self._wait_ready(self.engine)
        except BaseException:
            self.engine.stop(self.options.stop_grace_s)
            self.progress.close()
            raise
        self.progress.close()
        self.node.state = "running"
        self.report = self._report(self.engine, ready=True)
        self._save(self.report)
        notify("READY=1", f"STATUS=serving {self.endpoint.served_name} on {self.endpoint.base_url}")
        return self.report

    def _snapshot(self, engine: EngineProcess, last_download: list[int]) -> Snapshot:
        now = time.monotonic()
        snap = Snapshot(state=engine.state, elapsed_s=now - engine.started, quiet_s=now - engine.last_output)
        if self.download_probe is not None and engine.state.phase in (Phase.STARTING, Phase.DOWNLOAD):
            got, total = self.download_probe()
            if not last_download:  # what the cache held before the start is not download progress
                last_download += [got, got]
            elif got > last_download[1]:
                last_download[1] = got
                engine.last_output = now  # bytes arriving are progress too
                snap.quiet_s = 0.0
            if last_download[1] > last_download[0]:
                snap.downloaded_bytes, snap.download_total_bytes = got, total
        if self._on_gpu:
            if now - self._gpu_used[0] >= 2.0:
                from gptoss_deploy.hardware.nvidia import memory_used_bytes

                self._gpu_used = (now, memory_used_bytes())
            snap.gpu_used_bytes = self._gpu_used[1]
        return snap

    def _wait_ready(self, engine: EngineProcess) -> None:
        options = self.options
        failure_seen_at: float | None = None
        last_download: list[int] = []  # [bytes in the cache at start, bytes now]
        next_check = next_watch = 0.0
        while True:
            if self.stop_event.is_set():
                self.sink.event("stop requested during startup")
                raise KeyboardInterrupt
            if self.watch is not None and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + POLL_S
                lost = self.watch.poll(self.node.epoch)
                if lost is not None:
                    raise EngineError(f"{lost} while the head was starting; log {self.log_path}",
                                      hint="see that node's `gptoss serve` log; every node must run the same plan")
            snap = self._snapshot(engine, last_download)
            self.progress.update(snap)
            code = engine.poll()
            if code is not None:
                engine.finish_reading()
                raise self._startup_error(engine, f"exited with code {code}")
            state = engine.state
            if state.failure is not None:
                failure_seen_at = failure_seen_at or time.monotonic()
                if time.monotonic() - failure_seen_at > options.failure_grace_s:
                    raise self._startup_error(engine, "reported a fatal error and did not exit")
            if snap.quiet_s > options.stall_timeout_s:
                raise EngineError(
                    f"{engine.launch.engine} hung: no log progress for {snap.quiet_s:.0f} s while "
                    f"{state.phase.value} (after {snap.elapsed_s:.0f} s); log {self.log_path}:\n{self.sink.tail(1500)}",
                    hint=f"a phase slower than --stall-timeout {options.stall_timeout_s:g}? raise it; otherwise see "
                         "the log (a known hang for this GPU may be in `gptoss plan`'s issues)")
            if snap.elapsed_s > options.ready_timeout_s:
                raise EngineError(f"{engine.launch.engine} not ready after {snap.elapsed_s:.0f} s (last phase: "
                                  f"{state.phase.value}); log {self.log_path}:\n{self.sink.tail(1500)}",
                                  hint="raise --ready-timeout for slow disks or downloads")
            now = time.monotonic()
            if now >= next_check and state.failure is None:
                next_check = now + READY_POLL_S
                if check_ready(self.endpoint, self._http, engine=self.launch.engine):
                    if engine.state.phase is not Phase.READY:
                        engine.state.phase = Phase.READY
                        engine.phase_times.append((Phase.READY.value, now - engine.started))
                    return
            self.stop_event.wait(0.25)

    def _startup_error(self, engine: EngineProcess, what: str) -> EngineError:
        state = engine.state
        self.report = self._report(engine, ready=False)
        self._save(self.report)
        if state.failure is not None:
            cause, hint = describe_failure(state.failure, state.facts)
            self.sink.event(f"startup failed ({state.failure}): {cause}")
            return EngineError(f"{engine.launch.engine} failed while {self._failed_phase(engine)}: {cause} "
                               f"[{state.failure}]; log {self.log_path}", hint=hint)
        return EngineError(f"{engine.launch.engine} {what} while {self._failed_phase(engine)}; log {self.log_path}:\n"
                           f"{self.sink.tail(1500)}", hint="see the log tail above")

    @staticmethod
    def _failed_phase(engine: EngineProcess) -> str:
        seen = [p for p, _ in engine.phase_times if p != Phase.FAILED.value]
        return seen[-1] if seen else Phase.STARTING.value

    def _report(self, engine: EngineProcess, ready: bool) -> ServeReport:
        ready_at = next((t for p, t in engine.phase_times if p == Phase.READY.value), None)
        return ServeReport(engine=engine.launch.engine, model=self.plan.model,
                           served_model_name=self.endpoint.served_name, base_url=self.endpoint.base_url,
                           log=str(self.log_path), pid=engine.pid, ready=ready, ready_seconds=round(ready_at, 2) if ready_at else None,
                           phases=[PhaseTime(phase=p, started_s=round(t, 2)) for p, t in engine.phase_times],
                           facts=dict(engine.state.facts), plan_vs_actual=compare(self.plan, engine.state),
                           notes=self.notes, restarts=len(self.restarts), failure=engine.state.failure,
                           speed=self.plan.speed)

    def report_path(self) -> Path:
        """Where the plan-vs-actual report goes: beside the log."""
        return report_path_for(self.log_path)

    def _save(self, report: ServeReport) -> None:
        path = self.report_path()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(report.model_dump_json(indent=2))
        tmp.replace(path)

    # -- running -------------------------------------------------------------------------------------------
    def serve(self) -> int:
        """Watch the engine until stop is requested: 0 after a clean stop, 1 when restarts were exhausted."""
        assert self.engine is not None
        if self.role is not None and not self.role.head:
            return self._serve_worker()
        last_canary = last_watch = time.monotonic()
        if self.options.watchdog and self.options.quality_every_s > 0:
            self._quality = QualityProbe(self.endpoint, self.options.quality_every_s, self.options.quality_timeout_s)
        try:
            return self._serve_head(last_canary, last_watch)
        finally:
            if self._quality is not None:
                self._quality.close()

    def _serve_head(self, last_canary: float, last_watch: float) -> int:
        assert self.engine is not None
        while not self.stop_event.wait(0.5):
            code = self.engine.poll()
            reason = None
            if code is not None:
                reason = f"the engine exited with code {code}"
            elif self._quality is not None and (said := self._quality.poll()) is not None:
                reason = self._quality_verdict(said)
            elif self.watch is not None and time.monotonic() - last_watch >= POLL_S:
                last_watch = time.monotonic()
                reason = self.watch.poll(self.node.epoch)
            elif self.options.watchdog and time.monotonic() - last_canary >= self.options.canary_interval_s:
                last_canary = time.monotonic()
                reason = self._watch_once()
            if reason is None:
                continue
            if not self.options.watchdog:
                self._say(f"[serve] {reason}; not restarting (run with --watchdog to restart automatically)")
                self.node.state = "stopping"
                return 1
            if not self._restart(reason):
                return 1
            last_canary = time.monotonic()
            if self._quality is not None:
                self._quality.restarted()
        return 0

    def _quality_verdict(self, outcome: QualityOutcome) -> str | None:
        """Log the quality canary's outcome; the restart reason when too many answers were wrong."""
        if outcome.failed:
            return f"quality canary failed: {outcome.summary()}"
        if outcome.conclusive:
            self.sink.event(f"[watchdog] quality canary: {outcome.summary()}")
        else:
            self._say(f"[watchdog] quality canary inconclusive (not restarting): {outcome.summary()}")
        return None

    def _watch_once(self) -> str | None:
        """One watchdog interval: /metrics, a canary with a budget grown by the queue, the judge's decision (logged
        with its numbers); the restart reason, or None."""
        from gptoss_deploy.engines import registry
        from gptoss_deploy.serve.watchdog import read_load

        engine = registry.get(self.launch.engine)
        load = read_load(self._http, self.endpoint.base_url, self.endpoint.headers, engine.progress_counter,
                         engine.gauges, timeout_s=min(max(self.options.canary_timeout_s, 0.5), 3.0))
        budget = self.judge.canary_budget(load)
        failed = canary(self.endpoint, self._http, budget)
        if self.stop_event.is_set():
            return None
        decision = self.judge.decide(time.monotonic(), load, failed, budget)
        if decision.state == "healthy":
            notify("WATCHDOG=1")
            self.sink.event(f"[watchdog] {decision.reason}")
        elif decision.state == "busy":
            notify("WATCHDOG=1")  # busy is alive: systemd's watchdog must not kill it either
            self._say(f"[watchdog] {decision.reason}")
        elif not decision.restart:
            self._say(f"[watchdog] {decision.reason}")
        return decision.reason if decision.restart else None

    def _say(self, text: str) -> None:
        self.sink.event(text)
        self.progress.event(text)

    def _restart(self, reason: str) -> bool:
        """Restart with backoff until the engine is ready again; False when the restart budget is spent."""
        while not self.stop_event.is_set():
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < self.options.restart_window_s] + [now]
            count = len(self.restarts)
            if count > self.options.max_restarts:
                self._say(f"[watchdog] {reason}; giving up: {count - 1} restarts within "
                          f"{self.options.restart_window_s:g} s (log {self.log_path})")
                notify("STATUS=gave up after repeated engine failures")
                return False
            delay = min(BACKOFF_BASE_S * 2 ** (count - 1), BACKOFF_MAX_S)
            self._say(f"[watchdog] {reason}; restarting ({count}/{self.options.max_restarts}) in {delay:g} s")
            notify(f"STATUS=restarting: {reason}")
            assert self.engine is not None
            self.node.state = "restarting"
            self.engine.stop(RESTART_STOP_GRACE_S)
            if self.stop_event.wait(delay):
                return True
            if self.watch is not None and not self._workers_first():
                reason = "the worker nodes did not restart their engines"
                continue
            try:
                self.start()
                self.judge = Judge(self.options.wedge_s, self.options.canary_timeout_s, self.options.canary_interval_s)
                self._say(f"[watchdog] {self.launch.engine} ready again after restart {count}")
                return True
            except EngineError as exc:
                reason = f"restart failed: {exc.message.splitlines()[0]}"
        return True

    # -- across nodes (serve/nodes.py) --------------------------------------------------------------------------
    def _workers_first(self) -> bool:
        """Raise the group epoch and wait until every worker node restarted its engine for it (workers, then the
        head: vLLM's workers must be waiting when the head's rendezvous starts)."""
        assert self.watch is not None and self.role is not None
        self.node.epoch += 1
        self._say(f"[watchdog] group epoch {self.node.epoch}: waiting for the {self.role.nnodes - 1} worker node(s) "
                  "to restart their engines first")
        deadline = time.monotonic() + WORKERS_RESTART_S
        while time.monotonic() < deadline:
            if self.watch.all_in(self.node.epoch):
                return True
            if self.stop_event.wait(POLL_S):
                return False
        return False

    def _start_worker(self) -> ServeReport:
        """A worker node: start its headless engine part (it serves no HTTP) in the head's current epoch."""
        assert self.role is not None
        head = read_status(self._http, self.role.master_addr, self.role.agent_port)
        if head is not None:
            self.node.epoch, self._head_since = head.epoch, head.since
        self.engine = EngineProcess(self.launch, self.sink).start()
        self.node.state, self.node.pid, self.node.exit_code = "running", self.engine.pid, None
        self._say(f"[node {self.role.rank}] {self.launch.engine} worker started (pid {self.engine.pid}, epoch "
                  f"{self.node.epoch}); it joins the head at {self.role.master_addr}:{self.role.master_port}")
        self.report = self._report(self.engine, ready=False)
        return self.report

    def _serve_worker(self) -> int:
        """Follow the head: restart this node's engine when the head starts a new epoch; report an engine that
        exited; stop when the head stops (or, without --watchdog, when it is gone)."""
        assert self.role is not None and self.engine is not None
        rank, head_addr = self.role.rank, self.role.master_addr
        silent_since: float | None = None
        exited_at: float | None = None
        while not self.stop_event.wait(POLL_S):
            now = time.monotonic()
            code = self.engine.poll()
            if code is not None and self.node.state != "exited":
                self.node.state, self.node.exit_code, exited_at = "exited", code, now
                self._say(f"[node {rank}] the {self.launch.engine} worker exited with code {code}; the head "
                          f"({head_addr}) is told through this node's agent")
            head = read_status(self._http, head_addr, self.role.agent_port)
            if head is None:
                silent_since = silent_since or now
                if now - silent_since > LOST_AFTER_S and not self.options.watchdog:
                    self._say(f"[node {rank}] the head node ({head_addr}) is gone: stopping this node")
                    return 1
                continue
            silent_since = None
            if self._head_since is None:  # the head came up after this node: its epoch is the one to follow
                self.node.epoch, self._head_since = head.epoch, head.since
                continue
            if head.state == "stopping":
                self._say(f"[node {rank}] the head node ({head_addr}) is stopping the group")
                return 1 if self.node.state == "exited" else 0
            if (head.epoch != self.node.epoch or head.since != self._head_since) and head.state != "exited":
                self._say(f"[node {rank}] the head started group epoch {head.epoch}: restarting this node's engine")
                self.engine.stop(RESTART_STOP_GRACE_S)
                self.node.epoch, self._head_since = head.epoch, head.since
                self.engine = EngineProcess(self.launch, self.sink).start()
                self.node.state, self.node.pid, self.node.exit_code = "running", self.engine.pid, None
                exited_at = None
                continue
            if exited_at is not None and not self.options.watchdog and now - exited_at > 3 * LOST_AFTER_S:
                self._say(f"[node {rank}] the head did not stop the group; stopping this node")
                return 1
        return 0

    def stop(self) -> list[int]:
        """Stop the engine (SIGTERM, grace, SIGKILL of its group); returns pids left alive (should be [])."""
        notify("STOPPING=1")
        if self.agent is not None and self.role is not None and self.role.head:
            self.node.state = "stopping"  # workers poll every POLL_S: let them see it before the agent goes
            time.sleep(2 * POLL_S)
        left = self.engine.stop(self.options.stop_grace_s) if self.engine is not None else []
        if self.agent is not None:
            self.agent.close()
        self.launch.remove_files()
        self.sink.close()
        self._http.close()
        return left
