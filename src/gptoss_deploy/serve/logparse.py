"""Engine log lines -> startup phases and reported facts, with each engine's own patterns (Engine.log_patterns).

A phase is entered when its pattern matches; facts (weights GiB, KV GiB, KV tokens, concurrency, graph capture
progress) are captured by name; a failure pattern names a class below, whose text and fix are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gptoss_deploy.engines import registry
from gptoss_deploy.engines.base import Pattern, Phase
from gptoss_deploy.util import is_number

__all__ = ["FAILURES", "Failure", "LogState", "Phase", "describe_failure", "parse_log"]


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


@dataclass
class LogState:
    """What the log has shown so far."""

    engine: str
    phase: Phase = Phase.STARTING
    phases_seen: list[Phase] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    failure: str | None = None
    warnings: list[str] = field(default_factory=list)
    patterns: tuple[Pattern, ...] = ()

    def __post_init__(self) -> None:
        if not self.patterns:
            self.patterns = registry.get(self.engine).log_patterns

    def feed(self, line: str) -> Phase | None:
        """Read one line; return the phase it entered (None when the phase did not change)."""
        entered = None
        # tqdm progress bars arrive as one "line" with many \r-separated updates: read the last one.
        text = line.rsplit("\r", 1)[-1] if "\r" in line else line
        if " WARNING " in text or text.startswith("WARNING"):
            self.warnings.append(text.strip())
        for pattern in self.patterns:
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
