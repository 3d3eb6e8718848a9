"""argparse value checkers that turn bad input into exit code 2 with a clear message."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(low: float, high: float, *, integer: bool = False, low_open: bool = False, allow_inf: bool = False,
            what: str = "") -> Callable[[str], float]:
    """An argparse type: `inputs.bounded`'s number, its reason shown by argparse (exit 2)."""
    from gptoss_deploy.inputs import bounded as parser

    parse = parser(low, high, integer=integer, low_open=low_open, allow_inf=allow_inf, what=what)

    def convert(text: str) -> float:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


# The numeric flag types every command uses: all finite, all bounded.
positive_float = bounded(0, 1e9, low_open=True)
fraction = bounded(0, 1, low_open=True, what=": a fraction of GPU memory, e.g. 0.9")
port: Callable[[str], int] = bounded(1, 65535, integer=True, what=": a TCP port")  # type: ignore[assignment]
seconds = bounded(0, 7 * 86400, low_open=True, what=": seconds (a week at most)")
non_negative = bounded(0, 1e9)
byte_count: Callable[[str], int] = bounded(1, 2**50, integer=True)  # type: ignore[assignment]
tokens: Callable[[str], int] = bounded(1, 1 << 24, integer=True, what=": tokens")  # type: ignore[assignment]
gpu_count: Callable[[str], int] = bounded(1, 4096, integer=True)  # type: ignore[assignment]
seed: Callable[[str], int] = bounded(0, 2**32 - 1, integer=True)  # type: ignore[assignment]


def add_engine_knobs(parser: argparse.ArgumentParser) -> None:
    """Engine settings shared by `plan`, `serve`, `try` and `render` (None = not given: the planner, env or config
    decides)."""
    from gptoss_deploy.engines import registry

    knobs = parser.add_argument_group("engine settings (default: the planner chooses)")
    knobs.add_argument("--engine", choices=["auto", *registry.names()])
    knobs.add_argument("--max-model-len", type=tokens, help="context length per request")
    knobs.add_argument("--tensor-parallel-size", "--tp", type=gpu_count)
    knobs.add_argument("--gpu-memory-utilization", type=fraction, help="fraction in (0, 1]")
    knobs.add_argument("--max-num-batched-tokens", type=tokens)
    knobs.add_argument("--max-num-seqs", type=bounded(1, 1_000_000, integer=True))
    knobs.add_argument("--kv-cache-dtype", choices=["auto", "fp8"])
    knobs.add_argument("--kv-cache-memory-bytes", type=byte_count, help="KV budget per GPU, bypassing util")
    knobs.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / torch.compile")
    knobs.add_argument("--no-tools", action="store_true", help="leave out the tool-calling flags")
    knobs.add_argument("--force", action="store_true", help="keep a setting the known-issue table refuses")


def add_host_flags(parser: argparse.ArgumentParser, title: str = "hardware (default: detect this host)") -> None:
    """--profile, --gpu/--gpus, --gpu-memory-gib, --ram-gib: the host to plan for."""
    where = parser.add_argument_group(title)
    where.add_argument("--profile", help="named profile: 4xL40S, h100-80gb, dgx-spark, strix-halo-128gb, 8xh100, ...")
    where.add_argument("--gpu", help="GPU name to compose a host with --gpus (e.g. L40S, H100, 'RTX 4090')")
    where.add_argument("--gpus", type=gpu_count, default=None, help="number of GPUs with --gpu (default 1)")
    where.add_argument("--gpu-memory-gib", type=bounded(0, 65536, low_open=True), help="override the memory of each GPU, GiB")
    where.add_argument("--ram-gib", type=bounded(0, 1 << 24, low_open=True), help="host RAM, GiB (for CPU-offloaded experts)")
    where.add_argument("--gpu-bandwidth-gbs", type=bounded(0, 1e6, low_open=True),
                       help="memory bandwidth of each GPU, GB/s (a GPU the catalog lacks, or to override it)")
    where.add_argument("--compute-capability", help="describe an NVIDIA GPU the catalog lacks: MAJOR.MINOR (with "
                                                   "--gpu NAME --gpu-memory-gib G)")
    where.add_argument("--gfx-target", help="describe an AMD GPU the catalog lacks: gfxNNNN (with --gpu NAME "
                                           "--gpu-memory-gib G)")


def host_choice(args: argparse.Namespace):
    """The host the flags describe."""
    from gptoss_deploy.planning import HostChoice

    return HostChoice(profile=args.profile, gpu=args.gpu, gpus=args.gpus, gpu_memory_gib=args.gpu_memory_gib,
                      ram_gib=args.ram_gib, gpu_bandwidth_gbs=args.gpu_bandwidth_gbs,
                      compute_capability=args.compute_capability, gfx_target=args.gfx_target)


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
        nodes=args.nodes, goal=getattr(args, "goal", "throughput"),
        data_parallel_size=getattr(args, "data_parallel_size", None),
        pipeline_parallel_size=getattr(args, "pipeline_parallel_size", None),
        input_tokens=getattr(args, "input_tokens", 1024), output_tokens=getattr(args, "output_tokens", 1024),
        slo_ttft_ms=getattr(args, "slo_ttft_ms", None), slo_tpot_ms=getattr(args, "slo_tpot_ms", None),
        calibration=read_calibration(args.calibrate) if getattr(args, "calibrate", None) else None)


def read_calibration(path: str) -> list[dict[str, float | None]]:
    """Load levels from a `gptoss bench [--sweep] --json` file: concurrency, mean input and output tokens per
    request, output tokens/s and median TPOT of each result; InputError when there are none."""
    import json

    from gptoss_deploy.errors import InputError
    from gptoss_deploy.inputs import read_user_file

    text = read_user_file(path, what="--calibrate file")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--calibrate {path} is not JSON ({exc.msg}, line {exc.lineno})",
                         hint="pass the file `gptoss bench --sweep --json > FILE` wrote") from None
    body = document.get("data", document) if isinstance(document, dict) else {}
    results = body.get("results") if isinstance(body, dict) else None
    levels: list[dict[str, float | None]] = []
    for r in results if isinstance(results, list) else []:
        try:
            done = int(r["completed"])
            if done < 1 or not r.get("max_concurrency"):
                continue
            levels.append({"concurrency": int(r["max_concurrency"]),
                           "input_tokens": max(1, round(r["total_input_tokens"] / done)),
                           "output_tokens": max(1, round(r["total_output_tokens"] / done)),
                           "output_tokens_per_s": float(r["output_throughput"]),
                           "tpot_ms": float(r["median_tpot_ms"]) or None})
        except (KeyError, TypeError, ValueError):
            continue
    levels = [lv for lv in levels if (lv["output_tokens_per_s"] or 0) > 0]
    if not levels:
        raise InputError(f"--calibrate {path} holds no bench result with a concurrency and a throughput",
                         hint="run `gptoss bench --sweep --json > FILE` against this host's server first")
    return levels


def read_key_file(path: str) -> str:
    """The one API key in a file (blank lines and # comments ignored); InputError when it is not exactly one, or
    the file is not a small regular text file (a FIFO, /dev/zero or a folder is refused before it is read)."""
    from gptoss_deploy.errors import InputError
    from gptoss_deploy.inputs import SECRET_FILE_MAX, read_user_file

    text = read_user_file(path, "API key file", SECRET_FILE_MAX)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise InputError(f"API key file {path} must hold exactly one key (found {len(lines)} lines)",
                         hint="write the key alone on one line")
    if any(ord(c) < 33 or ord(c) == 127 for c in lines[0]):
        raise InputError(f"API key file {path}: the key holds spaces or control characters",
                         hint="write the key alone on one line, without spaces")
    from gptoss_deploy.redact import remember

    remember(lines[0])
    return lines[0]
