"""One run of an engine: its own process group, its output streamed to a redacted log file and the log parser.

Stopping is SIGTERM to the whole group -> grace period -> SIGKILL of the whole group, then a check that no
member of the group is left (vLLM's EngineCore and TP workers outlive a killed API server: vllm#55510).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import BinaryIO

from gptoss_deploy.engines import Launch
from gptoss_deploy.errors import EngineError
from gptoss_deploy.serve.logparse import LogState

READ_CHUNK = 65536


class LogSink:
    """The serve log: engine output and gptoss's own events, with secrets replaced by '***'."""

    def __init__(self, path: Path, secrets: list[str]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = path.open("ab")
        self._secrets = [s for s in secrets if s]
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        """The text with every secret masked."""
        from gptoss_deploy.redact import redact

        return redact(text, self._secrets)

    def write(self, text: str) -> None:
        """Append text (already line-terminated or a progress fragment)."""
        with self._lock:
            self._file.write(self.redact(text).encode("utf-8", errors="replace"))
            self._file.flush()

    def event(self, text: str) -> None:
        """A gptoss event line, marked so it cannot be mistaken for engine output."""
        self.write(f"[gptoss {time.strftime('%Y-%m-%d %H:%M:%S')}] {text}\n")

    def tail(self, chars: int = 3000) -> str:
        """The end of the log."""
        with self._lock:
            self._file.flush()
        try:
            with self.path.open("rb") as handle:
                handle.seek(max(0, self.path.stat().st_size - chars))
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class EngineProcess:
    """A started engine: pid, process group, live log state, time of its last output."""

    def __init__(self, launch: Launch, sink: LogSink) -> None:
        self.launch = launch
        self.sink = sink
        self.state = LogState(engine=launch.engine)
        self.started = time.monotonic()
        self.last_output = self.started
        self.phase_times: list[tuple[str, float]] = [(self.state.phase.value, 0.0)]
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stopped = False

    @property
    def pid(self) -> int:
        """The engine's main process id."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> EngineProcess:
        """Launch in a new session (its own process group) and start streaming its output."""
        self.sink.event(f"starting {self.launch.engine}: {self.launch.describe()}")
        try:
            self._process = subprocess.Popen(self.launch.argv, env=os.environ | self.launch.env,
                                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError as exc:
            raise EngineError(f"engine program {self.launch.argv[0]} not found",
                              hint="install the engine, or pass its path (--vllm-python / --llama-server)") from exc
        except PermissionError as exc:
            raise EngineError(f"engine program {self.launch.argv[0]} is not executable",
                              hint="check its permissions, or pass another path") from exc
        self.started = self.last_output = time.monotonic()
        self._reader = threading.Thread(target=self._read, name="engine-log", daemon=True)
        self._reader.start()
        return self

    def _feed(self, text: str) -> None:
        if self.state.feed(text) is not None:
            self.phase_times.append((self.state.phase.value, time.monotonic() - self.started))

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        pending = b""
        while True:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError:
                break
            if not chunk:
                break
            self.last_output = time.monotonic()
            self.sink.write(chunk.decode("utf-8", errors="replace"))
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._feed(line.decode("utf-8", errors="replace"))
            if b"\r" in pending:  # a progress bar redrawn in place: read its newest state now
                self._feed(pending.rsplit(b"\r", 1)[0].decode("utf-8", errors="replace"))
        if pending:
            self._feed(pending.decode("utf-8", errors="replace"))

    def poll(self) -> int | None:
        """The exit code, or None while running."""
        assert self._process is not None
        return self._process.poll()

    def finish_reading(self, timeout_s: float = 5.0) -> None:
        """Wait for the log reader to drain the output of an exited engine."""
        if self._reader is not None:
            self._reader.join(timeout_s)

    def stop(self, grace_s: float) -> list[int]:
        """SIGTERM the group, wait up to grace_s, SIGKILL what is left; returns pids that still survive."""
        if self._process is None or self._stopped:
            return []
        self._stopped = True
        pgid = self._process.pid  # start_new_session: the group id is the leader's pid
        if self._process.poll() is None or group_members(pgid):
            _signal_group(pgid, signal.SIGTERM)
            _signal_group(pgid, signal.SIGCONT)  # a stopped (wedged) process handles SIGTERM only once continued
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and (self._process.poll() is None or group_members(pgid)):
                time.sleep(0.2)
            _signal_group(pgid, signal.SIGKILL)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.finish_reading()
        left = group_members(pgid)
        self.sink.event(f"{self.launch.engine} stopped (exit code {self._process.returncode})"
                        + (f"; processes still alive: {left}" if left else "; no process left in its group"))
        return left
