"""`gptoss plan`: will this model fit this hardware, with which engine, flags and expected speed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from gptoss_deploy.cli.args import add_engine_knobs, add_engine_locations, add_host_flags, bounded

if TYPE_CHECKING:
    from gptoss_deploy.plan.types import Plan
    from gptoss_deploy.planning import Planned

EXAMPLES = """examples:
  gptoss plan --profile 4xL40S --model gpt-oss-120b
  gptoss plan --gpu L40S --gpus 4 --model unsloth/gpt-oss-120b-BF16
  gptoss plan --profile h100 --model gpt-oss-120b --max-model-len 65536 --explain
  gptoss plan --profile dgx-spark --model gpt-oss-120b --vllm-version 0.14.0 --json
  gptoss plan --model ./gpt-oss-20b-mxfp4.gguf          (detects this host)
  gptoss plan --model gpt-oss-120b --save plan.json     then: gptoss serve --plan plan.json
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `plan`."""
    p = commands.add_parser("plan", parents=[common], help="plan memory, engine, flags and speed for a model",
                            description="Decide whether a gpt-oss model fits this host (or a named profile), with "
                                        "which engine, flags, context and concurrency; predict what vLLM will log.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_plan_flags(p)
    p.add_argument("--explain", action="store_true", help="show every formula with its inputs")
    p.add_argument("--save", metavar="FILE", help="write the plan (the deployable unit) for `gptoss serve --plan FILE`")
    p.add_argument("--save-config", metavar="FILE",
                   help="write the plan's settings as YAML for `gptoss serve --config FILE` (editable, re-planned)")
    p.set_defaults(handler=run)


def add_plan_flags(p: argparse.ArgumentParser) -> None:
    """Model, hardware and engine flags shared by `plan` and `render`."""
    p.add_argument("--model", "-m", default="gpt-oss-120b",
                   help="catalog id (gpt-oss-120b, unsloth/gpt-oss-120b-BF16, ...), model directory, or .gguf file")
    add_host_flags(p)
    add_engine_knobs(p)
    p.add_argument("--vllm-version", help="plan for this vLLM release (default: installed, else the newest known)")
    p.add_argument("--offline", action="store_true", help="plan for a host without internet (harmony vocab)")
    p.add_argument("--nodes", type=bounded(1, 1024, integer=True), default=1,
                   help="machines like this one: replicas of a one-node server, or TP within a node and pipeline "
                        "stages across nodes when one node cannot hold the model")
    g = p.add_argument_group("layout (TP x DP x PP, chosen with the throughput model)")
    g.add_argument("--goal", choices=("throughput", "latency", "context"), default="throughput",
                   help="throughput: most tokens/s at the context asked for (default); latency: fastest single "
                        "stream; context: most requests of full length in the KV cache")
    g.add_argument("--data-parallel-size", type=bounded(1, 64, integer=True),
                   help="replicas per node (vLLM --data-parallel-size; default: fill the node)")
    g.add_argument("--pipeline-parallel-size", type=bounded(1, 64, integer=True),
                   help="pipeline stages, one per node (needs --nodes; default: only when one node cannot hold "
                        "the model)")
    g.add_argument("--input-tokens", type=bounded(1, 10_000_000, integer=True), default=1024,
                   help="prompt tokens per request, for the throughput model (default 1024)")
    g.add_argument("--output-tokens", type=bounded(1, 10_000_000, integer=True), default=1024,
                   help="output tokens per request, for the throughput model (default 1024)")
    g.add_argument("--slo-ttft-ms", type=bounded(0.001, 1e9), help="only layouts and loads with TTFT under this")
    g.add_argument("--slo-tpot-ms", type=bounded(0.001, 1e9), help="only layouts and loads with TPOT under this")
    g.add_argument("--calibrate", metavar="FILE",
                   help="a `gptoss bench --sweep --json` result from this host: fit the model's efficiency to it")
    add_engine_locations(p)


def build_planned(args: argparse.Namespace) -> Planned:
    """Resolve the model and host, detect the installed engines, plan (planning.plan_for)."""
    from gptoss_deploy.cli.args import engine_locations, host_choice, plan_request
    from gptoss_deploy.planning import plan_for

    return plan_for(args.model, host_choice(args), plan_request(args), engine_locations(args))


def build_plan(args: argparse.Namespace) -> Plan:
    """The plan the flags ask for."""
    return build_planned(args).plan


def _save(plan, path, write, serve_command: str) -> None:
    """Write a plan that fits with `write(plan, path)` and say how to serve it; a plan that does not fit is not saved."""
    from gptoss_deploy.cli.output import message

    if plan.engine is None:
        message(f"not saved: the plan does not fit, there is nothing to serve ({path})")
        return
    write(plan, path)
    message(f"saved {path}: serve it with `{serve_command}`")


def run(args: argparse.Namespace) -> int:
    """`gptoss plan`: exit 0 when it fits (with or without changes), 1 when it does not."""
    from pathlib import Path

    from gptoss_deploy.cli.output import emit_json

    plan = build_plan(args)
    if args.save:
        from gptoss_deploy.planning import save_plan

        _save(plan, Path(args.save), save_plan, f"gptoss serve --plan {args.save}")
    if args.save_config:
        from gptoss_deploy.serve.config import write_config

        _save(plan, Path(args.save_config), write_config, f"gptoss serve --config {args.save_config}")
    if args.json:
        emit_json("plan", plan)
    else:
        from gptoss_deploy.cli.plan_view import render_plan

        render_plan(plan, explain=args.explain)
    return 0 if plan.verdict != "does not fit" else 1
