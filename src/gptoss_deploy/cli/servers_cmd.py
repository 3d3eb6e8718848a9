"""`gptoss ps`, `gptoss logs NAME [-f]`, `gptoss stop NAME|--all`: the servers this user runs (serve/state.py)."""

from __future__ import annotations

import argparse
import time

from pydantic import BaseModel, Field

from gptoss_deploy.cli.args import bounded, seconds

PS_EXAMPLES = """examples:
  gptoss serve -m gpt-oss-20b --detach --name oss20   # then:
  gptoss ps                    # every server: model, endpoint, health, uptime, running/waiting, tokens/s
  gptoss logs oss20 -f         # follow its log
  gptoss stop oss20            # graceful, whole process group, verified gone (--all for every one)
"""


class ServerRow(BaseModel):
    """One line of `gptoss ps`."""

    name: str
    model: str
    served_name: str
    engine: str
    endpoint: str
    pid: int
    status: str
    health: str = Field(description="/health's status code, or the transport error")
    uptime_s: float
    running: float | None = None
    waiting: float | None = None
    tokens_per_s: float | None = Field(None, description="generated tokens per second over the sampling interval")
    kv_cache_usage: float | None = None
    log: str


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `ps`, `logs` and `stop`."""
    ps = commands.add_parser("ps", parents=[common], help="the servers this user runs, live",
                             description="List every `gptoss serve` this user runs, with health, uptime, requests "
                                         "running and waiting and tokens/s from each engine's /metrics.",
                             epilog=PS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ps.add_argument("--sample", type=bounded(0.1, 60.0), default=1.0,
                    help="seconds between the two /metrics reads tokens/s comes from (default 1)")
    ps.set_defaults(handler=run_ps)
    logs = commands.add_parser("logs", parents=[common], help="a server's log (-f to follow)",
                               description="Print the end of a server's log (engine output and gptoss's own events).",
                               epilog=PS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    logs.add_argument("name", help="the server's name (gptoss ps)")
    logs.add_argument("-n", "--lines", type=bounded(0, 1_000_000, integer=True), default=50)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the server stops")
    logs.set_defaults(handler=run_logs)
    stop = commands.add_parser("stop", parents=[common], help="stop a server (or --all) and verify it is gone",
                               description="SIGTERM to the server's gptoss serve (it stops the engine's whole "
                                           "process group), then SIGKILL what is left after --timeout; verified "
                                           "in /proc.", epilog=PS_EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    stop.add_argument("name", nargs="?", help="the server's name (gptoss ps)")
    stop.add_argument("--all", action="store_true", help="every server this user runs")
    stop.add_argument("--timeout", type=seconds, default=60.0, help="grace before SIGKILL (default 60 s)")
    stop.set_defaults(handler=run_stop)


def _health(client, base_url: str) -> str:
    import httpx

    try:
        return str(client.get(f"{base_url}/health", timeout=3).status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def rows(sample_s: float = 1.0) -> list[ServerRow]:
    """Every live server with its health and /metrics (two reads `sample_s` apart for tokens/s)."""
    from gptoss_deploy.engines import registry
    from gptoss_deploy.httpclient import bounded_client
    from gptoss_deploy.serve import live, state

    entries = state.servers()
    if not entries:
        return []
    client = bounded_client(5.0)
    try:
        first = [live.read(client, e.base_url, {}, registry.get(e.engine)) for e in entries]
        time.sleep(sample_s)
        second = [live.read(client, e.base_url, {}, registry.get(e.engine)) for e in entries]
        found = []
        for entry, before, after in zip(entries, first, second, strict=True):
            rate = live.rate(before, after, "generation_tokens")
            values = after.values if after is not None else {}
            found.append(ServerRow(name=entry.name, model=entry.model, served_name=entry.served_name,
                                   engine=entry.engine, endpoint=entry.base_url, pid=entry.pid, status=entry.status,
                                   health=_health(client, entry.base_url),
                                   uptime_s=round(time.time() - entry.started_at, 1), running=values.get("running"),
                                   waiting=values.get("waiting"), tokens_per_s=None if rate is None else round(rate, 1),
                                   kv_cache_usage=values.get("kv_usage"), log=entry.log))
        return found
    finally:
        client.close()


def _uptime(seconds_up: float) -> str:
    minutes, secs = divmod(int(seconds_up), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_ps(args: argparse.Namespace) -> int:
    """`gptoss ps`."""
    from rich.table import Table

    from gptoss_deploy.cli.output import console, emit_json, message

    found = rows(args.sample)
    if args.json:
        emit_json("ps", found)
        return 0
    if not found:
        message("no servers running (start one with gptoss serve --detach)")
        return 0
    table = Table(title_justify="left")
    for column in ("name", "model", "endpoint", "status", "health", "uptime", "running", "waiting", "tok/s", "KV"):
        table.add_column(column)
    for row in found:
        table.add_row(row.name, row.served_name, row.endpoint, row.status, row.health, _uptime(row.uptime_s),
                      _number(row.running), _number(row.waiting), _number(row.tokens_per_s, 1),
                      "-" if row.kv_cache_usage is None else f"{row.kv_cache_usage:.0%}")
    console().print(table)
    return 0


def run_logs(args: argparse.Namespace) -> int:
    """`gptoss logs NAME [-f]`."""
    import sys
    from pathlib import Path

    from gptoss_deploy.serve import state

    entry = state.find(args.name)
    paths = [Path(entry.log)] + ([Path(entry.console_log)] if entry.console_log else [])
    log = next((p for p in paths if p.exists()), Path(entry.log))
    offset = 0
    if log.exists():
        text = log.read_text(errors="replace")
        lines = text.splitlines()
        sys.stdout.write("\n".join(lines[-args.lines:]) + ("\n" if lines and args.lines else ""))
        offset = len(text.encode(errors="replace"))
    sys.stdout.flush()
    if not args.follow:
        return 0
    while state.running(args.name) is not None:
        try:
            size = log.stat().st_size
        except OSError:
            size = offset
        if size > offset:
            with log.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read(size - offset)
            offset = size
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        time.sleep(0.3)
    return 0


def run_stop(args: argparse.Namespace) -> int:
    """`gptoss stop NAME|--all`: 0 when every process is gone, 1 when some survived."""
    from gptoss_deploy.cli.output import message
    from gptoss_deploy.errors import InputError
    from gptoss_deploy.serve import state

    if bool(args.name) == bool(args.all):
        raise InputError("name one server or pass --all", hint="gptoss ps lists them")
    targets = state.servers() if args.all else [state.find(args.name)]
    if not targets:
        message("no servers running")
        return 0
    failed = False
    for entry in targets:
        left = state.stop(entry, args.timeout)
        if left:
            failed = True
            message(f"[stop] {entry.name}: processes still alive after SIGKILL: {left}")
        else:
            message(f"[stop] {entry.name} stopped (pid {entry.pid} and its engine's process group are gone)")
    return 1 if failed else 0
