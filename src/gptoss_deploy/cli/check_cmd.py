"""`gptoss check`: gpt-oss API conformance and security probe for any OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse

from gptoss_deploy.cli.args import seconds

EXAMPLES = """examples:
  gptoss check http://127.0.0.1:8000                      # our server or anyone's (vLLM, llama.cpp, ...)
  gptoss check http://host:8000/v1 --api-key-file key.txt --model gpt-oss-120b
  gptoss check http://127.0.0.1:8080 --json > report.json
  gptoss check http://127.0.0.1:8000 --client all       # what Codex, OpenCode, LiteLLM, Agents SDK send
  gptoss check http://127.0.0.1:8000 --quality            # also: are the answers right? (arithmetic, copying,
                                                          # a format, a tool argument; temperature 0)

exit codes: 0 nothing failed (warnings allowed), 1 a check failed, 2 bad input (unreachable URL, not an
OpenAI-compatible server, unknown model, unreadable key file).
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `check`."""
    p = commands.add_parser("check", parents=[common], help="probe an endpoint: chat, streaming, reasoning, tools, auth",
                            description="Run gpt-oss conformance checks (reasoning field, streaming equality, tool "
                                        "calls and the tool-result round trip, /v1/responses) and a security probe "
                                        "(routes that answer without the key) against an OpenAI-compatible server.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="base URL, with or without /v1")
    p.add_argument("--api-key-file", help="file holding the server's API key (also env API_KEY)")
    p.add_argument("--model", help="model to test (default: the first one /v1/models lists)")
    p.add_argument("--timeout", type=seconds, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--client", action="append", choices=("codex", "opencode", "litellm", "agents", "all"),
                   help="also send this client's real request shapes (Codex CLI's Responses API with namespace tools, "
                        "OpenCode's reasoning sent back, LiteLLM's forwarded turns, the Agents SDK's tool_choice and "
                        "response_format); repeatable; `all` for every one")
    p.add_argument("--quality", action="store_true",
                   help="also ask the quality canary (prompts with checkable answers at temperature 0) and fail when "
                        "fewer than its threshold are right: catches an engine that computes garbage behind a green "
                        "/health")
    p.set_defaults(handler=run)


def render_report(report) -> None:
    """The report as a rich table on stdout, with the counts on stderr."""
    from rich.table import Table

    from gptoss_deploy.cli.output import console, message

    colours = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    table = Table(title=f"{report.url}  model {report.model}  engine {report.engine} {report.engine_version or ''}",
                  title_justify="left")
    for column in ("group", "check", "status", "reason"):
        table.add_column(column, overflow="fold")
    for r in report.results:
        reason = r.reason + (f"\n[dim]{r.excerpt}[/dim]" if r.excerpt else "")
        table.add_row(r.group, r.name, f"[{colours[r.status]}]{r.status}[/]", reason)
    console().print(table)
    counts = report.counts()
    message(", ".join(f"{n} {s}" for s, n in counts.items()) + ("" if not report.failed else "  -> FAILED"))


def run(args: argparse.Namespace) -> int:
    """`gptoss check URL`: 0 when nothing failed, 1 when a check failed, 2 on bad input."""
    import os

    from gptoss_deploy.check.runner import run_checks
    from gptoss_deploy.cli.args import read_key_file
    from gptoss_deploy.cli.output import emit_json

    key = read_key_file(args.api_key_file) if args.api_key_file else (os.environ.get("API_KEY") or None)
    report = run_checks(args.url, api_key=key, model=args.model, timeout_s=args.timeout, quality=args.quality,
                        clients=args.client)
    if args.json:
        emit_json("check", report)
    else:
        render_report(report)
    return 1 if report.failed else 0
