"""Every server this user runs: one small JSON file per `gptoss serve` under the XDG state folder.

`gptoss serve` (foreground or `--detach`) writes `$XDG_STATE_HOME/gptoss-deploy/servers/NAME.json` (mode 0600: the
pid, the engine's process group, the endpoint, the model, the log, the start time, the status) when it starts and
removes it when it ends. `gptoss ps`, `logs` and `stop` read it; an entry whose process is gone (killed, a reboot)
is stale and removed when read. No secret is ever written there (the key stays in the environment or its file).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from gptoss_deploy.errors import InputError

STATE_SCHEMA_VERSION = 1
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ServerState(BaseModel):
    """One running `gptoss serve`."""

    schema_version: int = STATE_SCHEMA_VERSION
    name: str
    pid: int = Field(description="the gptoss serve process (it supervises the engine)")
    engine_pgid: int | None = Field(None, description="the engine's process group (its main pid)")
    engine: str
    model: str
    served_name: str
    base_url: str
    log: str
    console_log: str | None = Field(None, description="a detached server's own output (messages, errors)")
    plan: str | None = None
    started_at: float
    status: Literal["starting", "ready", "restarting", "stopping"] = "starting"


def state_dir() -> Path:
    """$XDG_STATE_HOME/gptoss-deploy/servers (default ~/.local/state/...)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gptoss-deploy" / "servers"


def check_name(name: str) -> str:
    """A server name usable as a file name (letters, digits, . _ -), else InputError."""
    if not NAME.fullmatch(name):
        raise InputError(f"{name[:80]!r} is not a usable server name",
                         hint="letters, digits, '.', '_' and '-', up to 64 characters, e.g. gpt-oss-20b")
    return name


def _path(name: str) -> Path:
    return state_dir() / f"{check_name(name)}.json"


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _is_gptoss(pid: int) -> bool:
    """The pid is still a gptoss serve (not a pid reused by another program after a reboot)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "gptoss" in cmdline and "serve" in cmdline


def write(state: ServerState) -> Path:
    """Write (or replace) the server's entry atomically, readable by this user only."""
    path = _path(state.name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as sink:
        sink.write(state.model_dump_json(indent=2))
    tmp.replace(path)
    return path


def remove(name: str, pid: int | None = None) -> None:
    """Remove the entry (only when it is still this pid's, when given)."""
    path = _path(name)
    try:
        if pid is not None and json.loads(path.read_text()).get("pid") != pid:
            return
        path.unlink()
    except (OSError, ValueError):
        pass


def servers() -> list[ServerState]:
    """Every live server, oldest first; stale or unreadable entries are removed."""
    found = []
    folder = state_dir()
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            state = ServerState.model_validate_json(path.read_text())
        except (OSError, ValidationError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if not (alive(state.pid) and _is_gptoss(state.pid)):
            path.unlink(missing_ok=True)  # the process died without cleaning up
            _forget_console(state.name)
            continue
        found.append(state)
    return sorted(found, key=lambda s: s.started_at)


def find(name: str) -> ServerState:
    """The live server called `name`, else InputError naming the ones that run."""
    for state in servers():
        if state.name == name:
            return state
    running = ", ".join(s.name for s in servers()) or "none"
    raise InputError(f"no running server called {name!r}", hint=f"running: {running} (see gptoss ps)")


def running(name: str) -> ServerState | None:
    """The live server called `name`, or None."""
    return next((s for s in servers() if s.name == name), None)


def stop(state: ServerState, grace_s: float = 60.0) -> list[int]:
    """SIGTERM the serve process (it stops its engine's group cleanly), wait, then SIGKILL whatever is left of
    both; the pids still alive afterwards (none expected). The entry is removed."""
    from gptoss_deploy.serve.process import group_members

    try:
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (alive(state.pid) or (state.engine_pgid and group_members(state.engine_pgid))):
        time.sleep(0.2)
    for pgid in (state.engine_pgid, state.pid):
        if pgid and group_members(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if alive(state.pid):
        try:
            os.kill(state.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)
    left = [pid for pid in [state.pid] if alive(pid)]
    left += group_members(state.engine_pgid) if state.engine_pgid else []
    remove(state.name)
    _forget_console(state.name)
    return left


def _forget_console(name: str) -> None:
    """A detached server's console output goes with its entry (its engine log stays, under the cache's logs/)."""
    (state_dir() / f"{check_name(name)}.out").unlink(missing_ok=True)
