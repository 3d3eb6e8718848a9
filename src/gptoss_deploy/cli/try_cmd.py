"""`gptoss try`: run a ranked ladder of serving attempts until one is ready and passes `gptoss check`."""

from __future__ import annotations

import argparse
import sys

from gptoss_deploy.cli.args import add_engine_knobs, add_engine_locations, add_host_flags, port, seconds

EXAMPLES = """examples:
  gptoss try --model gpt-oss-120b --dry-run                  # print the ladder
  gptoss try --model gpt-oss-120b --gguf ./gpt-oss-120b-mxfp4-00001-of-00003.gguf --bench
  gptoss try --model gpt-oss-120b --resume                   # skip rungs that already failed
  gptoss try --model ./my-model -- --dtype bfloat16          # extra engine arguments for every vLLM rung
Every attempt (command with secrets masked, duration, outcome, log excerpt, plan vs actual) goes to the journal.
exit codes: 0 a rung is ready and passed the check, 1 every rung failed, 2 bad input.
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `try`."""
    p = commands.add_parser("try", parents=[common], help="try serving setups in order until one works",
                            description="Build a ranked ladder from the plan (as requested -> planned -> smaller batch "
                                        "-> shorter context -> eager -> llama.cpp), run each through `gptoss serve` "
                                        "with a deadline, classify failures, stop at the first that serves and "
                                        "passes `gptoss check`.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", default="gpt-oss-120b", help="catalog id, Hub id, model directory or .gguf")
    add_engine_knobs(p)
    p.add_argument("--gguf", help="GGUF (first shard) for the llama.cpp rung (default: the model's known GGUF)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--served-model-name")
    p.add_argument("--api-key-file", help="file holding the API key (or env API_KEY)")
    add_engine_locations(p)
    add_host_flags(p, "preview another machine (with --dry-run)")
    p.add_argument("--rung-timeout", type=seconds, help="seconds each rung may take to become ready "
                                                               "(default: by model size)")
    p.add_argument("--journal", default="gptoss-try.jsonl", help="attempt journal (JSONL, appended)")
    p.add_argument("--resume", action="store_true", help="skip rungs already in the journal")
    p.add_argument("--dry-run", action="store_true", help="print the ladder, start nothing")
    p.add_argument("--no-check", action="store_true", help="ready is enough (skip `gptoss check`)")
    p.add_argument("--bench", action="store_true", help="benchmark the rung that works (8 requests, concurrency 2)")
    p.set_defaults(handler=run, extra_engine_args=[])


def run(args: argparse.Namespace) -> int:
    """Plan the ladder, then run it (or print it)."""
    from pathlib import Path

    from gptoss_deploy.cli.output import emit_json, message
    from gptoss_deploy.cli.serve_cmd import inputs_from, settings_from
    from gptoss_deploy.serve.service import require_port_free, require_this_machine
    from gptoss_deploy.serve.supervisor import logs_dir
    from gptoss_deploy.trial.ladder import Ladder, build_ladder

    settings = settings_from(args, config_file=False)
    inputs = inputs_from(args, require_engine=not args.dry_run)
    if not args.dry_run:
        require_this_machine(inputs.hardware)  # before the ladder: every rung would be refused for the same reason
    rungs, plan_error = build_ladder(settings, inputs, args.gguf)
    if args.dry_run:
        return _dry_run(args, settings, inputs, rungs)
    require_port_free(settings.host, settings.port)
    ladder = Ladder(settings, inputs, rungs, Path(args.journal), args.rung_timeout, logs_dir(),
                    run_check=not args.no_check, bench=args.bench,
                    say=lambda text: print(text, file=sys.stderr, flush=True))
    attempts = ladder.run(resume=args.resume)
    if args.json:
        emit_json("try", [a.model_dump(mode="json") for a in attempts])
    else:
        _summary(attempts)
    message(f"journal: {args.journal}")
    return 0 if attempts and attempts[-1].outcome == "ready" else 1


def _dry_run(args: argparse.Namespace, settings, inputs, rungs) -> int:
    """Each rung with its exact command (secrets masked), or why it cannot be prepared."""
    from gptoss_deploy.cli.output import emit_json
    from gptoss_deploy.errors import GptossError
    from gptoss_deploy.trial.ladder import prepare_rung

    shown = []
    for rung in rungs:
        entry = {"rung": rung.name, "expected": rung.expected, "settings": rung.settings, "inputs": rung.inputs,
                 "verbatim": rung.verbatim}
        try:
            prepared = prepare_rung(settings, inputs, rung)
            prepared.launch.remove_files()
            entry |= {"engine": prepared.launch.engine, "argv": prepared.launch.argv,
                      "env": prepared.launch.masked_env(), "engine_args": prepared.plan.engine_args,
                      "plan_env": prepared.plan.env, "command": prepared.launch.describe()}
        except GptossError as exc:
            entry["error"] = exc.message
        shown.append(entry)
    if args.json:
        emit_json("try-dry-run", shown)
        return 0
    for number, entry in enumerate(shown, 1):
        print(f"{number}. {entry['rung']}  (guards against: {entry['expected']})")
        print(f"   {entry.get('command') or 'cannot be prepared: ' + entry.get('error', '')}")
    return 0


def _summary(attempts) -> None:
    from rich.table import Table

    from gptoss_deploy.cli.output import console

    table = Table(title="gptoss try", title_justify="left")
    for column in ("rung", "expected failure", "outcome", "seconds", "detail"):
        table.add_column(column, overflow="fold")
    for a in attempts:
        colour = "green" if a.outcome == "ready" else "red"
        table.add_row(a.rung, a.expected, f"[{colour}]{a.outcome}[/]", f"{a.duration_s:.0f}", a.detail[:160])
    console().print(table)
