"""argparse value checkers that turn bad input into exit code 2 with a clear message."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def _positive(text: str, convert: Callable[[str], Number], kind: str) -> Number:
    try:
        value = convert(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be greater than 0")
    return value


def positive_int(text: str) -> int:
    """An integer > 0 (1_000 and 1,000 accepted)."""
    return _positive(text, int, "a whole number")


def positive_float(text: str) -> float:
    """A number > 0."""
    return _positive(text, float, "a number")


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{value:g} is outside (0, 1]: it is a fraction of GPU memory, e.g. 0.9")
    return value


def add_engine_knobs(parser: argparse.ArgumentParser) -> None:
    """Engine settings shared by `plan`, `serve`, `try` and `render` (None = not given: the planner, env or config
    decides)."""
    from gptoss_deploy.engines import registry

    knobs = parser.add_argument_group("engine settings (default: the planner chooses)")
    knobs.add_argument("--engine", choices=["auto", *registry.names()])
    knobs.add_argument("--max-model-len", type=positive_int, help="context length per request")
    knobs.add_argument("--tensor-parallel-size", "--tp", type=positive_int)
    knobs.add_argument("--gpu-memory-utilization", type=fraction, help="fraction in (0, 1]")
    knobs.add_argument("--max-num-batched-tokens", type=positive_int)
    knobs.add_argument("--max-num-seqs", type=positive_int)
    knobs.add_argument("--kv-cache-dtype", choices=["auto", "fp8"])
    knobs.add_argument("--kv-cache-memory-bytes", type=positive_int, help="KV budget per GPU, bypassing util")
    knobs.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / torch.compile")
    knobs.add_argument("--no-tools", action="store_true", help="leave out the tool-calling flags")
    knobs.add_argument("--force", action="store_true", help="keep a setting the known-issue table refuses")


def add_host_flags(parser: argparse.ArgumentParser, title: str = "hardware (default: detect this host)") -> None:
    """--profile, --gpu/--gpus, --gpu-memory-gib, --ram-gib: the host to plan for."""
    where = parser.add_argument_group(title)
    where.add_argument("--profile", help="named profile: 4xL40S, h100-80gb, dgx-spark, strix-halo-128gb, 8xh100, ...")
    where.add_argument("--gpu", help="GPU name to compose a host with --gpus (e.g. L40S, H100, 'RTX 4090')")
    where.add_argument("--gpus", type=positive_int, default=None, help="number of GPUs with --gpu (default 1)")
    where.add_argument("--gpu-memory-gib", type=positive_float, help="override the memory of each GPU, GiB")
    where.add_argument("--ram-gib", type=positive_float, help="host RAM, GiB (for CPU-offloaded experts)")


def host_choice(args: argparse.Namespace):
    """The host the flags describe."""
    from gptoss_deploy.planning import HostChoice

    return HostChoice(profile=args.profile, gpu=args.gpu, gpus=args.gpus, gpu_memory_gib=args.gpu_memory_gib,
                      ram_gib=args.ram_gib)


def add_engine_locations(parser: argparse.ArgumentParser) -> None:
    """One flag per engine for where it is installed (--vllm-python, --llama-server)."""
    from gptoss_deploy.engines import registry

    where = parser.add_argument_group("engines")
    for engine in registry.engines():
        where.add_argument(engine.location_flag, dest=f"location_{engine.name}", help=engine.location_help)


def engine_locations(args: argparse.Namespace) -> dict[str, str | None]:
    """Engine name -> the location flag's value."""
    from gptoss_deploy.engines import registry

    return {engine.name: getattr(args, f"location_{engine.name}", None) for engine in registry.engines()}


def plan_request(args: argparse.Namespace):
    """The plan request `plan` and `render` flags ask for (the environment's part is filled in by planning)."""
    from gptoss_deploy.plan.types import PlanRequest

    return PlanRequest(
        engine=args.engine or "auto", vllm_version=args.vllm_version, max_model_len=args.max_model_len,
        tensor_parallel_size=args.tensor_parallel_size, gpu_memory_utilization=args.gpu_memory_utilization,
        max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs,
        kv_cache_dtype=args.kv_cache_dtype or "auto", kv_cache_memory_bytes=args.kv_cache_memory_bytes,
        enforce_eager=args.enforce_eager, tool_calling=not args.no_tools, offline=args.offline, force=args.force,
        nodes=args.nodes)


def read_key_file(path: str) -> str:
    """The one API key in a file (blank lines and # comments ignored); InputError when it is not exactly one."""
    from gptoss_deploy.errors import InputError

    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise InputError(f"cannot read API key file {path}: {exc.strerror}", hint="check the path and permissions") from None
    except UnicodeDecodeError:
        raise InputError(f"API key file {path} is not text", hint="write the key alone on one line") from None
    if len(lines) != 1:
        raise InputError(f"API key file {path} must hold exactly one key (found {len(lines)} lines)",
                         hint="write the key alone on one line")
    return lines[0]
