"""`gptoss top [URL|NAME]`: a live terminal view of a server from its /metrics (vLLM and llama.cpp).

Each refresh reads /metrics once: requests running and waiting, KV cache usage, prompt and generated tokens/s
(over the last refresh), TTFT and inter-token latency percentiles from the histograms (over the last 10 s of
observations), preemptions. `q` (or Ctrl-C) quits. `--once` prints one frame after one interval and exits;
`--json` prints that sample as JSON.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from typing import Any

from pydantic import BaseModel

from gptoss_deploy.cli.args import bounded

WINDOW_S = 10.0

EXAMPLES = """examples:
  gptoss top                 # the only running server (gptoss ps)
  gptoss top oss20 --interval 2
  gptoss top http://host:8000 --once --json
"""


class TopSample(BaseModel):
    """One refresh of `gptoss top`."""

    base_url: str
    engine: str
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p90_s: float | None = None
    ttft_p99_s: float | None = None
    itl_p50_s: float | None = None
    itl_p99_s: float | None = None
    preemptions: float | None = None
    requests_finished: float | None = None


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `top`."""
    p = commands.add_parser("top", parents=[common], help="a live view of a server's queue, KV cache and speed",
                            description="Requests running and waiting, KV cache usage, tokens/s, TTFT and "
                                        "inter-token latency percentiles and preemptions from /metrics, each second.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="a server name (gptoss ps) or URL (default: the only running server)")
    p.add_argument("--api-key-file", help="file holding the server's API key, if /metrics needs it (env API_KEY)")
    p.add_argument("--interval", type=bounded(0.2, 60.0), default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="one frame after one interval, then exit")
    p.set_defaults(handler=run)


def sample(base_url: str, engine_name: str, history: deque[Any], now: Any) -> TopSample:
    """The sample from the newest reading `now` against the previous one (rates) and the one ~10 s back
    (percentiles)."""
    from gptoss_deploy.serve import live

    previous = history[-1] if history else None
    window = next((r for r in history if now.at - r.at <= WINDOW_S), previous) if history else None
    values = now.values

    def pct(key: str, q: float) -> float | None:
        return live.percentile(window, now, key, q)

    return TopSample(base_url=base_url, engine=engine_name, running=values.get("running"),
                     waiting=values.get("waiting"), kv_cache_usage=values.get("kv_usage"),
                     prompt_tokens_per_s=live.rate(previous, now, "prompt_tokens"),
                     generation_tokens_per_s=live.rate(previous, now, "generation_tokens"),
                     ttft_p50_s=pct("ttft", 0.5), ttft_p90_s=pct("ttft", 0.9), ttft_p99_s=pct("ttft", 0.99),
                     itl_p50_s=pct("itl", 0.5), itl_p99_s=pct("itl", 0.99), preemptions=values.get("preemptions"),
                     requests_finished=values.get("requests_finished"))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def frame(s: TopSample, title: str) -> Any:
    """The sample as a rich table."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("running", _num(s.running), "waiting", _num(s.waiting))
    table.add_row("KV cache", "-" if s.kv_cache_usage is None else f"{s.kv_cache_usage:.1%}",
                  "preemptions", _num(s.preemptions))
    table.add_row("prompt tok/s", _num(s.prompt_tokens_per_s, 1), "gen tok/s", _num(s.generation_tokens_per_s, 1))
    table.add_row("TTFT p50", _ms(s.ttft_p50_s), "TTFT p99", _ms(s.ttft_p99_s))
    table.add_row("ITL p50", _ms(s.itl_p50_s), "ITL p99", _ms(s.itl_p99_s))
    table.add_row("finished", _num(s.requests_finished), "", "")
    return Group(Text(title, style="bold"), table)


def _engine_of(base_url: str, headers: dict[str, str]) -> str:
    from gptoss_deploy.engines import registry
    from gptoss_deploy.httpclient import bounded_client

    client = bounded_client(5.0)
    try:
        for engine in registry.engines():
            if engine.identify(client, base_url, headers) is not None:
                return engine.name
    finally:
        client.close()
    return registry.default().name


class Keys:
    """`q` pressed? (the terminal in cbreak mode while the view runs; nothing when stdin is not a terminal)"""

    def __init__(self) -> None:
        import sys

        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved: Any = None

    def __enter__(self) -> Keys:
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def quit_within(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when q was pressed."""
        if self.fd is None:
            time.sleep(seconds)
            return False
        import os
        import select

        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and os.read(self.fd, 1) in (b"q", b"Q"):
                return True
        return False

    def __exit__(self, *_: object) -> None:
        if self.fd is not None and self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def run(args: argparse.Namespace) -> int:
    """`gptoss top`: until q or Ctrl-C (or one frame with --once)."""
    import os

    from rich.live import Live

    from gptoss_deploy.cli.args import read_key_file
    from gptoss_deploy.cli.chat_cmd import resolve_target
    from gptoss_deploy.cli.output import console, emit_json
    from gptoss_deploy.engines import bearer, registry
    from gptoss_deploy.errors import InputError
    from gptoss_deploy.httpclient import bounded_client
    from gptoss_deploy.serve import live

    key = read_key_file(args.api_key_file) if args.api_key_file else (os.environ.get("API_KEY") or None)
    base_url = resolve_target(args.target)
    headers = bearer(key)
    engine_name = _engine_of(base_url, headers)
    engine = registry.get(engine_name)
    client = bounded_client(10.0)
    history: deque[Any] = deque(maxlen=int(WINDOW_S / args.interval) + 2)
    try:
        first = live.read(client, base_url, headers, engine)
        if first is None:
            raise InputError(f"{base_url}/metrics does not answer with Prometheus metrics",
                             hint="is the server running (gptoss ps)? does /metrics need --api-key-file?")
        history.append(first)
        title = f"gptoss top: {base_url} ({engine.label})  q to quit"
        if args.once or args.json:
            time.sleep(args.interval)
            now = live.read(client, base_url, headers, engine) or first
            result = sample(base_url, engine_name, history, now)
            if args.json:
                emit_json("top", result)
            else:
                console().print(frame(result, title))
            return 0
        with Keys() as keys, Live(frame(sample(base_url, engine_name, deque(), first), title), console=console(),
                                  auto_refresh=False) as view:
            while not keys.quit_within(args.interval):
                latest = live.read(client, base_url, headers, engine)
                if latest is None:
                    view.update(f"[red]{base_url}/metrics stopped answering[/]", refresh=True)
                    continue
                view.update(frame(sample(base_url, engine_name, history, latest), title), refresh=True)
                history.append(latest)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
