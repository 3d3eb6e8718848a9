"""`gptoss chat [URL|NAME]`: an interactive terminal chat with a gpt-oss server, like `ollama run`.

Streams each answer; the reasoning is shown apart (dim; `/fold` hides it to one line per turn), tool calls are
shown with their JSON arguments. `--tools demo` offers a `get_weather` tool that answers locally, so a tool call
completes its round trip. Multi-turn history sends the reasoning of tool-calling turns back under the field name
the server itself uses (`reasoning` or `reasoning_content`: check/clients.py measures which one a server reads);
harmony drops the reasoning of turns that ended in a final answer, so those are not sent back. Commands:
/effort low|medium|high, /fold, /save FILE, /reset, /exit.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptoss_deploy.cli.args import bounded, seconds

EXAMPLES = """examples:
  gptoss chat                          # the only running server (gptoss ps), else http://127.0.0.1:8000
  gptoss chat oss20 --effort high      # a server by its name
  gptoss chat http://host:8000 --api-key-file key.txt --tools demo
commands inside: /effort low|medium|high  /fold  /save FILE  /reset  /exit
"""

def demo_tools() -> list[dict[str, Any]]:
    """The demo tool: the classic get_weather function (the one `gptoss check` calls)."""
    from gptoss_deploy.check.probes import WEATHER_TOOL

    return [WEATHER_TOOL]


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `chat`."""
    p = commands.add_parser("chat", parents=[common], help="talk to a server in the terminal (reasoning, tools)",
                            description="An interactive chat: streaming, reasoning shown apart, tool calls with "
                                        "their JSON, multi-turn history, /save of the transcript.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="a server name (gptoss ps) or URL (default: the only running server)")
    p.add_argument("--model", help="model name (default: the first /v1/models lists)")
    p.add_argument("--api-key-file", help="file holding the server's API key (also env API_KEY)")
    p.add_argument("--effort", choices=("low", "medium", "high"), default="medium", help="reasoning effort")
    p.add_argument("--system", help="a system message (the developer instructions in harmony)")
    p.add_argument("--tools", choices=("none", "demo"), default="none",
                   help="demo: offer a get_weather tool answered locally, to see a tool round trip")
    p.add_argument("--max-tokens", type=bounded(1, 1_000_000, integer=True), default=2048)
    p.add_argument("--temperature", type=bounded(0.0, 2.0), help="sampling temperature (default: the server's)")
    p.add_argument("--timeout", type=seconds, default=600.0, help="seconds per answer (default 600)")
    p.set_defaults(handler=run)


def resolve_target(target: str | None) -> str:
    """A running server's URL by name, a URL as given, the only running server, else 127.0.0.1:8000."""
    from gptoss_deploy.check.runner import normalise_url
    from gptoss_deploy.errors import InputError
    from gptoss_deploy.serve import state

    running = state.servers()
    if target is None:
        if len(running) > 1:
            raise InputError(f"{len(running)} servers run: name one",
                             hint="gptoss chat " + " | ".join(s.name for s in running))
        return running[0].base_url if running else "http://127.0.0.1:8000"
    named = next((s for s in running if s.name == target), None)
    if named is not None:
        return named.base_url
    if "://" not in target and ":" not in target and "/" not in target:
        raise InputError(f"no running server called {target!r}",
                         hint=f"running: {', '.join(s.name for s in running) or 'none'}; or pass a URL")
    return normalise_url(target)


@dataclass
class Turn:
    """One assistant answer as streamed."""

    content: str = ""
    reasoning: str = ""
    reasoning_field: str | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


@dataclass
class Session:
    """The conversation and its settings."""

    base_url: str
    model: str
    headers: dict[str, str]
    effort: str
    tools: list[dict[str, Any]]
    max_tokens: int
    timeout_s: float
    temperature: float | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    fold: bool = False
    reasoning_field: str = "reasoning_content"


def stream_turn(session: Session, client: Any, show: Any) -> Turn:
    """Send the history, stream the answer; `show(kind, text)` draws reasoning, content and tool calls."""
    body: dict[str, Any] = {"model": session.model, "messages": session.messages, "stream": True,
                            "max_tokens": session.max_tokens, "reasoning_effort": session.effort,
                            "stream_options": {"include_usage": True}}
    if session.tools:
        body |= {"tools": session.tools, "tool_choice": "auto"}
    if session.temperature is not None:
        body["temperature"] = session.temperature
    turn = Turn()
    with client.stream("POST", f"{session.base_url}/v1/chat/completions", json=body, headers=session.headers,
                       timeout=session.timeout_s) as reply:
        if reply.status_code != 200:
            text = reply.read().decode(errors="replace")
            raise RuntimeError(f"HTTP {reply.status_code}: {text[:300]}")
        for line in reply.iter_lines():
            if not line.startswith("data:") or line[5:].strip() in ("", "[DONE]"):
                continue
            event = json.loads(line[5:])
            if event.get("usage"):
                turn.usage = event["usage"]
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                for name in ("reasoning_content", "reasoning"):
                    if delta.get(name):
                        turn.reasoning_field = name
                        turn.reasoning += delta[name]
                        show("reasoning", delta[name])
                if delta.get("content"):
                    turn.content += delta["content"]
                    show("content", delta["content"])
                for call in delta.get("tool_calls") or []:
                    slot = turn.tool_calls.setdefault(int(call.get("index", 0)), {"id": None, "name": "", "arguments": ""})
                    slot["id"] = call.get("id") or slot["id"]
                    function = call.get("function") or {}
                    slot["name"] += function.get("name") or ""
                    slot["arguments"] += function.get("arguments") or ""
                turn.finish_reason = choice.get("finish_reason") or turn.finish_reason
    return turn


def assistant_message(turn: Turn, reasoning_field: str) -> dict[str, Any]:
    """The turn as history: tool-calling turns keep their reasoning (under the server's own field name)."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.content}
    if turn.tool_calls:
        message["tool_calls"] = [{"id": c["id"] or f"call_{i}", "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for i, c in sorted(turn.tool_calls.items())]
        if turn.reasoning:
            message[reasoning_field] = turn.reasoning
    return message


def demo_tool_result(name: str, arguments: str) -> str:
    """The demo tool's answer (a canned weather report for the asked city)."""
    try:
        city = json.loads(arguments).get("location", "?")
    except (ValueError, AttributeError):
        city = "?"
    if name != "get_weather":
        return json.dumps({"error": f"unknown tool {name}"})
    return json.dumps({"location": city, "temperature_c": 18, "conditions": "sunny"})


def run(args: argparse.Namespace) -> int:
    """`gptoss chat`: until /exit or end of input."""
    import os

    from rich.console import Console

    from gptoss_deploy.check.runner import discover
    from gptoss_deploy.cli.args import read_key_file
    from gptoss_deploy.httpclient import bounded_client

    key = read_key_file(args.api_key_file) if args.api_key_file else (os.environ.get("API_KEY") or None)
    base_url = resolve_target(args.target)
    target, _ = discover(base_url, key, args.model, min(args.timeout, 30.0))
    target.close()
    out = Console(highlight=False, soft_wrap=True)
    session = Session(base_url=base_url, model=target.model, headers=target.headers, effort=args.effort,
                      tools=demo_tools() if args.tools == "demo" else [], max_tokens=args.max_tokens,
                      timeout_s=args.timeout, temperature=args.temperature)
    if args.system:
        session.messages.append({"role": "system", "content": args.system})
    out.print(f"[bold]gptoss chat[/] {target.model} at {base_url} (effort {session.effort}"
              f"{', demo tools' if session.tools else ''}); /exit to quit, /save FILE, /fold, /effort LEVEL")
    client = bounded_client(args.timeout)
    try:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                out.print()
                return 0
            if not line.strip():
                continue
            if line.startswith("/"):
                if _command(line.strip(), session, out):
                    return 0
                continue
            session.messages.append({"role": "user", "content": line})
            _answer(session, client, out)
    except KeyboardInterrupt:
        out.print()
        return 130
    finally:
        client.close()


def _answer(session: Session, client: Any, out: Any) -> None:
    """One user turn: stream, show, and run demo tool calls until a final answer (at most 4 rounds)."""
    import httpx

    for _ in range(4):
        show = Printer(out, session.fold)
        try:
            turn = stream_turn(session, client, show)
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:
            out.print(f"\n[red]error:[/] {_escape(str(exc)[:300])}")
            if session.messages and session.messages[-1]["role"] == "user":
                session.messages.pop()
            return
        if turn.reasoning_field:
            session.reasoning_field = turn.reasoning_field
        if session.fold and turn.reasoning:
            out.print(f"\n[dim](reasoning folded: {len(turn.reasoning)} characters; /fold to show)[/]", end="")
        session.messages.append(assistant_message(turn, session.reasoning_field))
        if not turn.tool_calls:
            out.print()
            return
        for index, call in sorted(turn.tool_calls.items()):
            out.print(f"\n[bold cyan]tool call[/] {call['name']}({_escape(call['arguments'])})", end="")
            result = demo_tool_result(call["name"], call["arguments"]) if session.tools else json.dumps(
                {"error": "no tools in this chat"})
            out.print(f"\n[cyan]tool result[/] {_escape(result)}", end="")
            session.messages.append({"role": "tool", "tool_call_id": call["id"] or f"call_{index}", "content": result})
    out.print("\n[yellow](stopped after 4 tool rounds)[/]")


class Printer:
    """Draws a streamed turn: a header when the kind changes, reasoning dim (hidden when folded)."""

    def __init__(self, out: Any, fold: bool) -> None:
        self.out = out
        self.fold = fold
        self.kind: str | None = None

    def __call__(self, kind: str, text: str) -> None:
        """Draw one delta."""
        if kind == "reasoning" and self.fold:
            return
        if self.kind != kind:
            self.out.print("\n[dim]thinking:[/] " if kind == "reasoning" else "\n[bold]gpt-oss:[/] ", end="")
            self.kind = kind
        self.out.print(f"[dim]{_escape(text)}[/]" if kind == "reasoning" else _escape(text), end="")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _command(line: str, session: Session, out: Any) -> bool:
    """A /command; True when the chat should end."""
    word, _, rest = line.partition(" ")
    if word in ("/exit", "/quit", "/bye"):
        return True
    if word == "/fold":
        session.fold = not session.fold
        out.print(f"reasoning {'folded' if session.fold else 'shown'}")
    elif word == "/effort" and rest.strip() in ("low", "medium", "high"):
        session.effort = rest.strip()
        out.print(f"reasoning effort {session.effort}")
    elif word == "/reset":
        session.messages = [m for m in session.messages if m["role"] == "system"]
        out.print("history cleared")
    elif word == "/save" and rest.strip():
        path = Path(rest.strip()).expanduser()
        try:
            path.write_text(json.dumps({"model": session.model, "base_url": session.base_url,
                                        "effort": session.effort, "messages": session.messages}, indent=2))
        except OSError as exc:
            out.print(f"[red]cannot save:[/] {exc}")
        else:
            out.print(f"saved {len(session.messages)} messages to {path}")
    else:
        out.print("commands: /effort low|medium|high, /fold, /save FILE, /reset, /exit")
    return False
