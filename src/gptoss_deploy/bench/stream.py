"""One streamed request, as the benchmark sees it: SSE framing, event kinds, and the per-request record.

Times are seconds on `time.perf_counter()`. Definitions follow `vllm bench serve` (../shared/reference/bench.md §1.1):
TTFT is the first SSE event with a non-empty `choices` list (for chat that is usually the role chunk), the ITL list
holds the gaps between such events (chunks, not tokens), and the latency ends at the last of them (the usage-only
chunk and `[DONE]` do not extend it). Beside those we keep what vLLM drops: the first visible token (content,
reasoning or tool delta), the first content token, per-chunk token deltas from vLLM's continuous usage, and the
reasoning tokens apart from the visible ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLE, CONTENT, REASONING, TOOL, EMPTY = "role", "content", "reasoning", "tool", "empty"
VISIBLE = (CONTENT, REASONING, TOOL)


MAX_EVENT_CHARS = 1024 * 1024  # one SSE event (a token delta is a few hundred bytes)


class SSEDecoder:
    """Turns the bytes of an SSE response, in reads of any size, into `data:` payloads (comments dropped)."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, chunk: bytes | str) -> list[str]:
        """Payloads completed by this read; a message split across reads waits for its end."""
        self._buffer += chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        self._buffer = self._buffer.replace("\r\n", "\n")
        *messages, self._buffer = self._buffer.split("\n\n")
        if len(self._buffer) > MAX_EVENT_CHARS:
            raise ValueError(f"one SSE event passed {MAX_EVENT_CHARS:,} characters: stopped reading")
        return [p for p in (self._payload(m) for m in messages) if p is not None]

    def flush(self) -> list[str]:
        """A last message that the server did not terminate with a blank line."""
        rest, self._buffer = self._buffer, ""
        payload = self._payload(rest)
        return [payload] if payload is not None else []

    @staticmethod
    def _payload(message: str) -> str | None:
        data = [line[5:].removeprefix(" ") for line in message.split("\n") if line.startswith("data:")]
        return "\n".join(data) if data else None  # comments (":ping") and empty messages have no data lines


def event_kind(choice: dict[str, Any]) -> str:
    """What a choice carries: content, reasoning (vLLM `reasoning`, llama.cpp `reasoning_content`), tool, role."""
    if "delta" not in choice:  # /v1/completions
        return CONTENT if choice.get("text") else EMPTY
    delta = choice.get("delta") or {}
    if delta.get("tool_calls"):
        return TOOL
    if delta.get("reasoning") or delta.get("reasoning_content"):
        return REASONING
    if delta.get("content"):
        return CONTENT
    return ROLE if delta.get("role") else EMPTY


def _choice_text(choice: dict[str, Any]) -> tuple[str, str]:
    """(visible text, reasoning text) carried by one choice."""
    if "delta" not in choice:
        return choice.get("text") or "", ""
    delta = choice.get("delta") or {}
    tools = "".join((c.get("function") or {}).get("arguments") or "" for c in delta.get("tool_calls") or [])
    return (delta.get("content") or "") + tools, delta.get("reasoning") or delta.get("reasoning_content") or ""


@dataclass
class Chunk:
    """One choice-bearing SSE event: seconds after the send, its kind, tokens it added (None when unknown)."""

    t: float
    kind: str
    tokens: int | None


@dataclass
class RequestRecord:
    """Everything measured for one request; times in seconds (relative to the run start, or to `t_send`)."""

    index: int
    phase: str  # "warmup" or "measure"
    t_sched: float  # planned arrival, from the run start
    t_send: float  # after the client slot was acquired, just before the request is written
    requested_input_len: int
    max_tokens: int
    ok: bool = False
    status: int | None = None
    error: str | None = None
    ttft: float | None = None  # vLLM: first choice-bearing event
    ttft_visible: float | None = None  # first content, reasoning or tool delta
    ttfo: float | None = None  # first content delta (aiperf TTFO)
    latency: float | None = None  # last choice-bearing event
    itl: list[float] = field(default_factory=list)  # gaps between choice-bearing events (chunks)
    chunks: list[Chunk] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    reasoning_token_source: str | None = None  # "usage_details", "continuous_usage" or "chunk_count"
    finish_reason: str | None = None
    text: str = ""
    reasoning_text: str = ""
    timings: dict[str, Any] | None = None  # llama.cpp's own timings (predicted_n, predicted_per_second, ...)
    retries: int = 0  # sends repeated because a stale keep-alive connection closed before any response

    @property
    def output_tokens(self) -> int:
        """Server-counted output tokens; without usage, the chunk token deltas (1 per chunk when unknown)."""
        if self.completion_tokens:
            return self.completion_tokens
        return sum(c.tokens if c.tokens is not None else 1 for c in self.chunks if c.kind != ROLE)

    @property
    def input_tokens(self) -> int:
        """Server-counted prompt tokens (chat template included), else the requested length."""
        return self.prompt_tokens if self.prompt_tokens is not None else self.requested_input_len

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (chunks as [t, kind, tokens] triples, as the journal stores them).

        Built field by field, not with `dataclasses.asdict`: this runs on the event loop between two sends, and
        asdict's deep copy of every chunk cost ~2 ms per request on a slow core (it delayed the next send)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["timings"] = dict(self.timings) if self.timings is not None else None
        data["chunks"] = [[round(c.t, 6), c.kind, c.tokens] for c in self.chunks]
        data["itl"] = [round(x, 6) for x in self.itl]
        data["output_tokens"] = self.output_tokens
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        """The inverse of `to_json` (derived keys are dropped)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["chunks"] = [Chunk(t, kind, tokens) for t, kind, tokens in data.get("chunks", [])]
        return cls(**fields)


class StreamTracker:
    """Feeds SSE payloads with their arrival times into a RequestRecord."""

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        self._last_t: float | None = None
        self._cumulative_tokens: int | None = None
        self._reasoning_by_delta = 0
        self._continuous = False

    def on_payload(self, payload: str, t: float) -> None:
        """One `data:` payload received `t` seconds after the send; a payload of the wrong shape (a list where
        an object goes, a count that is not a number) is the request's error, not a crash."""
        try:
            self._on_payload(payload, t)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError) as exc:
            self.record.error = f"malformed SSE event ({type(exc).__name__}): {payload[:120]!r}"

    def _on_payload(self, payload: str, t: float) -> None:
        record = self.record
        if payload.strip() == "[DONE]":
            return
        try:
            data = json.loads(payload)
        except ValueError:
            record.error = f"unparseable SSE data: {payload[:120]!r}"
            return
        if not isinstance(data, dict):
            return
        if data.get("error"):
            error = data["error"]
            record.error = str(error.get("message", error) if isinstance(error, dict) else error)[:500]
            return
        if data.get("timings"):
            record.timings = data["timings"]
        choices = data.get("choices") or []
        usage = data.get("usage") or None
        if choices:
            self._on_choice(choices[0], t, usage)
        elif usage:
            self._on_usage(usage, final=True)

    def _on_choice(self, choice: dict[str, Any], t: float, usage: dict[str, Any] | None) -> None:
        record = self.record
        kind = event_kind(choice)
        tokens = None
        if usage and usage.get("completion_tokens") is not None:  # vLLM continuous_usage_stats: cumulative counts
            self._continuous = True
            cumulative = int(usage["completion_tokens"])
            tokens = cumulative - (self._cumulative_tokens or 0)
            self._cumulative_tokens = cumulative
            if kind == REASONING:
                self._reasoning_by_delta += tokens
            self._on_usage(usage, final=False)
        if record.ttft is None or self._last_t is None:
            record.ttft = t if record.ttft is None else record.ttft
        else:
            record.itl.append(t - self._last_t)
        self._last_t = t
        record.latency = t
        if kind in VISIBLE and record.ttft_visible is None:
            record.ttft_visible = t
        if kind == CONTENT and record.ttfo is None:
            record.ttfo = t
        record.chunks.append(Chunk(t, kind, tokens))
        text, reasoning = _choice_text(choice)
        record.text += text
        record.reasoning_text += reasoning
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]

    def _on_usage(self, usage: dict[str, Any], final: bool) -> None:
        record = self.record
        if usage.get("prompt_tokens") is not None:
            record.prompt_tokens = int(usage["prompt_tokens"])
        if final and usage.get("completion_tokens") is not None:
            record.completion_tokens = int(usage["completion_tokens"])
        details = usage.get("completion_tokens_details") or {}
        if final and details.get("reasoning_tokens") is not None:
            record.reasoning_tokens = int(details["reasoning_tokens"])
            record.reasoning_token_source = "usage_details"

    def finish(self) -> RequestRecord:
        """Close the record: success needs a choice-bearing event and no error event."""
        record = self.record
        record.ok = record.ttft is not None and record.error is None
        if record.completion_tokens is None and self._continuous:
            record.completion_tokens = self._cumulative_tokens
        if record.reasoning_token_source is None and any(c.kind == REASONING for c in record.chunks):
            if self._continuous:
                record.reasoning_tokens, record.reasoning_token_source = self._reasoning_by_delta, "continuous_usage"
            else:
                record.reasoning_tokens = sum(1 for c in record.chunks if c.kind == REASONING)
                record.reasoning_token_source = "chunk_count"
        elif record.reasoning_tokens is None and record.ok and record.chunks:
            record.reasoning_tokens, record.reasoning_token_source = 0, "no_reasoning_events"
        if not record.ok and record.error is None:
            record.error = "no choice-bearing event arrived (never received a token)"
        return record
