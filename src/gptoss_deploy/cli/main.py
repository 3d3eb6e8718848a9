"""`gptoss` entry point: parse flags, dispatch, and turn known errors into messages and exit codes (the single error
boundary). Flags are never abbreviated; a usage error is an error like any other (exit 2, JSON under --json)."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from gptoss_deploy import __version__
from gptoss_deploy.cli import (
    bench_cmd,
    chat_cmd,
    check_cmd,
    completion_cmd,
    cost_cmd,
    demo_cmd,
    doctor_cmd,
    gguf_cmd,
    hardware_cmd,
    plan_cmd,
    pull_cmd,
    render_cmd,
    serve_cmd,
    servers_cmd,
    top_cmd,
    try_cmd,
    vocab_cmd,
)
from gptoss_deploy.errors import InputError

COMMANDS = (plan_cmd, pull_cmd, serve_cmd, servers_cmd, chat_cmd, top_cmd, check_cmd, bench_cmd, cost_cmd, render_cmd,
            doctor_cmd, try_cmd, gguf_cmd, hardware_cmd, vocab_cmd, demo_cmd, completion_cmd)
BUG_EXIT = 70  # EX_SOFTWARE: an unexpected exception, i.e. a bug in gptoss


class UsageError(InputError):
    """The command line itself is wrong (unknown flag, bad value, missing argument)."""


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations, raising UsageError instead of printing and exiting."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        """Raise instead of exiting, so the error boundary reports it (as JSON under --json)."""
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _common_flags(default: object) -> argparse.ArgumentParser:
    flags = Parser(add_help=False)
    flags.add_argument("--json", action="store_true", default=default, help="print machine-readable JSON on stdout")
    flags.add_argument("--quiet", "-q", action="store_true", default=default,
                       help="no messages on stderr (errors and data are still shown)")
    flags.add_argument("--debug", action="store_true", default=default, help="show tracebacks for errors")
    return flags


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command registers its own flags)."""
    parser = Parser(
        prog="gptoss", description="Plan, serve, check and benchmark gpt-oss-120b / gpt-oss-20b on vLLM and llama.cpp.",
        parents=[_common_flags(argparse.SUPPRESS)])
    parser.set_defaults(json=False, debug=False, quiet=False)
    # A separate parent with SUPPRESS defaults: a subcommand's copy of these flags must not reset a value
    # given before the subcommand (`gptoss --debug plan ...`).
    common = _common_flags(argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"gpt-oss-deploy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.register(commands, common)
    return parser


def _report(exc: BaseException, as_json: bool) -> int:
    from gptoss_deploy.cli.output import emit_json, error
    from gptoss_deploy.errors import GptossError

    if isinstance(exc, GptossError):
        if as_json:
            emit_json("error", exc.to_dict())
        error(f"error: {exc.message}")
        if exc.hint:
            error(f"hint: {exc.hint}")
        return exc.exit_code
    error(f"error: unexpected {type(exc).__name__}: {exc}")
    error("hint: this is a bug in gptoss; run again with --debug for the traceback and report it")
    return BUG_EXIT


def main(argv: Sequence[str] | None = None) -> int:
    """Run `gptoss`; returns the exit code (0 ok, 1 failure, 2 bad input, 130 interrupted)."""
    from gptoss_deploy.cli.output import set_quiet

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after `--` goes to the engine unchanged (gptoss serve ... -- --dtype bfloat16)
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    as_json = "--json" in argv
    set_quiet("--quiet" in argv or "-q" in argv)
    try:
        args = parser.parse_args(argv)
        if extra and not hasattr(args, "extra_engine_args"):
            raise UsageError("arguments after `--` are only for `gptoss serve` and `gptoss try`",
                             hint="put engine flags after `--` only with serve or try")
    except UsageError as exc:
        return _report(exc, as_json)
    if extra:
        args.extra_engine_args = extra
    args.raw_argv = argv + (["--", *extra] if extra else [])  # `serve --detach` re-runs the same command
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    _sigterm_interrupts()
    _remember_environment_secrets()
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the single error boundary
        from gptoss_deploy.inputs import user_error

        if getattr(args, "debug", False):
            traceback.print_exc()
        return _report(user_error(exc) or exc, getattr(args, "json", False))


SECRET_VARIABLES = ("API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY", "LLAMA_API_KEY")


def _remember_environment_secrets() -> None:
    """Secrets given by environment are masked in everything the command writes, as key files are."""
    import os

    from gptoss_deploy.redact import remember

    remember(*(os.environ.get(name) for name in SECRET_VARIABLES))


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sigterm_interrupts() -> None:
    """SIGTERM stops a command the way Ctrl-C does (records marked interrupted, files closed, exit 130); `serve`
    installs its own handlers for its supervised stop."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


if __name__ == "__main__":
    sys.exit(main())
