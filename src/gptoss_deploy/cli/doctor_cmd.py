"""`gptoss doctor`: read-only preflight of this host for a model (and a deployment target)."""

from __future__ import annotations

import argparse

from gptoss_deploy.cli.args import add_host_flags, port

EXAMPLES = """examples:
  gptoss doctor                                   # gpt-oss-120b on this host
  gptoss doctor --model gpt-oss-20b --target docker --json
  gptoss doctor --profile dgx-spark               # what-if: GPU, plan and known issues of another machine
Doctor only reads (sysfs, /proc, NVML, /dev, disks, variable *names*); it never changes the host.
exit codes: 0 nothing failed (warnings allowed), 1 a check failed, 2 bad input.
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `doctor`."""
    p = commands.add_parser("doctor", parents=[common], help="check this host before serving (read-only)",
                            description="Preflight: GPU and driver vs the engine, container toolkit, Strix Halo "
                                        "kernel/GTT/devices, unified memory, disk, shared memory, RAM, port, HF token "
                                        "(presence only), harmony vocab, installed engines vs known issues.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", default="gpt-oss-120b", help="model to check for (catalog id, path, .gguf)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--target", choices=["docker", "compose", "image", "systemd", "kubernetes"],
                   help="how it will be deployed (adds the container checks for docker/compose/image)")
    add_host_flags(p, "what-if: another machine (only the checks of its GPUs, plan and known issues)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Gather, plan, judge, print; 1 when a check failed."""
    from gptoss_deploy import data
    from gptoss_deploy.cli.args import host_choice
    from gptoss_deploy.cli.output import message
    from gptoss_deploy.doctor import checks, facts
    from gptoss_deploy.plan.types import PlanRequest
    from gptoss_deploy.planning import plan_for

    choice = host_choice(args)
    if choice.is_this_machine:
        host_facts = facts.gather(port=args.port)
        planned = plan_for(args.model, host_facts.host, PlanRequest(), with_alternatives=False)
        model, plan = planned.model, planned.plan
        gated = False if model.source == "catalog" else None
        results = checks.run(host_facts, plan, model, args.target, gated, data.engine_facts().vllm_cuda)
    else:
        planned = plan_for(args.model, choice, PlanRequest(), detect_installed=False, with_alternatives=False)
        model, plan = planned.model, planned.plan
        results = checks.what_if(facts.HostFacts(host=planned.host, port=args.port), plan)
        message(f"what-if for {planned.host.describe()}: the driver, container, disk, memory, port, token and "
                "installed-engine checks read this machine and are left out")
    if args.json:
        from gptoss_deploy.cli.output import emit_json

        emit_json("doctor", {"model": model.id, "checks": [r.model_dump() for r in results]})
    else:
        _render(results)
    return 1 if any(r.status == "fail" for r in results) else 0


def _render(results) -> None:
    from rich.table import Table

    from gptoss_deploy.cli.output import console, message

    colours = {"pass": "green", "warn": "yellow", "fail": "red"}
    table = Table(title_justify="left")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", r.detail, r.fix or "")
    console().print(table)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "warn", "fail")}
    message(", ".join(f"{n} {s}" for s, n in counts.items()))
