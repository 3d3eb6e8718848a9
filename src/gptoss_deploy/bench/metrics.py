"""Run-level metrics from request records: `vllm bench serve`'s keys with its definitions, plus an `ext` object.

vLLM definitions (../shared/reference/bench.md §1.2, read in vllm/benchmarks/serve.py `calculate_metrics`):
throughputs over the run's wall `duration`; TPOT per request = (latency - ttft) / (output_tokens - 1) for
requests with more than one token (request-weighted); ITL pooled over every chunk gap; statistics are numpy's
mean, median, population std and linear percentiles, in ms, 0 for an empty list; goodput counts successful
requests meeting every SLO (TPOT 0 when one token) per second, null without SLOs.

Where we differ on purpose (kept under `ext`, documented): `max_output_tokens_per_s` counts tokens from the
server's usage deltas, not chunks (vLLM counts chunks, PR #50677); `max_concurrent_requests` is the exact peak of
overlapping requests, not a per-second bucket count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gptoss_deploy.bench.stream import ROLE, RequestRecord

VLLM_METRICS = ("ttft", "tpot", "itl", "e2el")
DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0)
EXT_SCHEMA = "gptoss-bench-result/1"


def percentile_key(p: float) -> str:
    """vLLM's key spelling: 99 -> 'p99', 99.9 -> 'p99.9'."""
    return f"p{int(p)}" if float(p).is_integer() else f"p{p}"


def stats_ms(values_s: Sequence[float], percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict[str, float]:
    """mean, median, std (ddof=0) and percentiles in ms, computed exactly as vLLM does (0 for no values)."""
    data = list(values_s) or [0.0]
    out = {"mean": float(np.mean(data)) * 1000, "median": float(np.median(data)) * 1000,
           "std": float(np.std(data)) * 1000}
    for p in percentiles:
        out[percentile_key(p)] = float(np.percentile(data, p)) * 1000
    out["count"] = len(values_s)
    return out


def tpot_s(record: RequestRecord) -> float | None:
    """vLLM's TPOT for one successful request; None with one output token or fewer."""
    n = record.output_tokens
    if not record.ok or n <= 1 or record.latency is None or record.ttft is None:
        return None
    return (record.latency - record.ttft) / (n - 1)


def token_itls_s(record: RequestRecord) -> list[float]:
    """Per-token gaps: each chunk gap divided by the tokens the chunk carried, repeated that many times."""
    out: list[float] = []
    chunks = [c for c in record.chunks if c.kind != ROLE or c.tokens]
    for before, chunk in zip(chunks, chunks[1:], strict=False):
        n = chunk.tokens if chunk.tokens is not None else 1
        if n > 0:
            out += [(chunk.t - before.t) / n] * n
    return out


def peak_concurrency(records: Sequence[RequestRecord]) -> int:
    """The largest number of successful requests in flight at once, over [t_send, t_send + latency)."""
    events = []
    for r in records:
        if r.ok and r.latency is not None:
            events += [(r.t_send, 1), (r.t_send + r.latency, -1)]
    peak = current = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        current += step
        peak = max(peak, current)
    return peak


def peak_per_second(records: Sequence[RequestRecord], count_tokens: bool) -> float:
    """The largest count in any 1-s bucket from the first send: output tokens (ours) or chunks (vLLM's figure)."""
    ok = [r for r in records if r.ok]
    if not ok:
        return 0.0
    start = min(r.t_send for r in ok)
    buckets: dict[int, float] = {}
    for r in ok:
        for chunk in r.chunks:
            weight = (chunk.tokens if chunk.tokens is not None else 1) if count_tokens else 1
            if chunk.kind == ROLE and count_tokens and not chunk.tokens:
                continue
            second = int(r.t_send + chunk.t - start)
            buckets[second] = buckets.get(second, 0) + weight
    return float(max(buckets.values(), default=0))


def goodput_count(records: Sequence[RequestRecord], slos_ms: dict[str, float]) -> int:
    """Successful requests meeting every SLO (ttft, tpot, e2el in ms); TPOT counts as 0 with one token."""
    good = 0
    for r in records:
        if not r.ok:
            continue
        values = {"ttft": r.ttft or 0.0, "tpot": tpot_s(r) or 0.0, "e2el": r.latency or 0.0}
        if all(values[name] * 1000 <= limit for name, limit in slos_ms.items()):
            good += 1
    return good


def summarize(records: Sequence[RequestRecord], duration_s: float, *, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
              goodput_slos_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """The vLLM-compatible top-level keys (metrics and per-request arrays) for the measured requests."""
    measured = [r for r in records if r.phase == "measure"]
    ok = [r for r in measured if r.ok]
    duration = max(duration_s, 1e-9)
    output_lens = [r.output_tokens if r.ok else 0 for r in measured]
    total_input = sum(r.input_tokens for r in ok)
    total_output = sum(output_lens)
    series: dict[str, list[float]] = {
        "ttft": [r.ttft for r in ok if r.ttft is not None], "tpot": [t for t in map(tpot_s, ok) if t is not None],
        "itl": [gap for r in ok for gap in r.itl], "e2el": [r.latency for r in ok if r.latency is not None]}
    result: dict[str, Any] = {
        "duration": duration_s, "completed": len(ok), "failed": len(measured) - len(ok),
        "total_input_tokens": total_input, "total_output_tokens": total_output,
        "request_throughput": len(ok) / duration,
        "request_goodput": (goodput_count(ok, goodput_slos_ms) / duration) if goodput_slos_ms else None,
        "output_throughput": total_output / duration,
        "total_token_throughput": (total_input + total_output) / duration,
        "max_output_tokens_per_s": peak_per_second(measured, count_tokens=True),
        "max_concurrent_requests": peak_concurrency(measured),
    }
    for name in VLLM_METRICS:
        stats = stats_ms(series[name], percentiles)
        result[f"mean_{name}_ms"], result[f"median_{name}_ms"] = stats["mean"], stats["median"]
        result[f"std_{name}_ms"] = stats["std"]
        for p in percentiles:
            result[f"{percentile_key(p)}_{name}_ms"] = stats[percentile_key(p)]
    result |= {
        "input_lens": [r.input_tokens for r in measured], "output_lens": output_lens,
        "ttfts": [r.ttft or 0.0 for r in measured], "itls": [r.itl for r in measured],
        "latencies": [r.latency or 0.0 for r in measured], "start_times": [r.t_send for r in measured],
        "errors": [r.error or "" for r in measured],
    }
    return result


def ext_metrics(records: Sequence[RequestRecord], percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict[str, Any]:
    """What vLLM does not report: first visible/content token, per-token ITL, queueing, reasoning, chunking."""
    measured = [r for r in records if r.phase == "measure"]
    ok = [r for r in measured if r.ok]
    tpots = [t for t in map(tpot_s, ok) if t is not None]
    chunk_tokens = [c.tokens for r in ok for c in r.chunks if c.kind != ROLE and c.tokens is not None]
    reasoning = [r.reasoning_tokens for r in ok if r.reasoning_tokens is not None]
    sources = sorted({r.reasoning_token_source for r in ok if r.reasoning_token_source})
    errors: dict[str, int] = {}
    for r in measured:
        if not r.ok:
            key = (r.error or "unknown")[:120]
            errors[key] = errors.get(key, 0) + 1
    sends = [r.t_send for r in ok]
    ends = [r.t_send + r.latency for r in ok if r.latency is not None]
    return {
        "stats": {
            "ttft_visible_ms": stats_ms([r.ttft_visible for r in ok if r.ttft_visible is not None], percentiles),
            "ttfo_ms": stats_ms([r.ttfo for r in ok if r.ttfo is not None], percentiles),
            "itl_token_ms": stats_ms([g for r in ok for g in token_itls_s(r)], percentiles),
            "e2el_sched_ms": stats_ms([r.t_send - r.t_sched + r.latency for r in ok if r.latency is not None],
                                      percentiles),
            "client_queue_ms": stats_ms([max(0.0, r.t_send - r.t_sched) for r in measured], percentiles),
            "decode_tps_per_user": {k: v / 1000 for k, v in stats_ms([1 / t for t in tpots if t > 0], percentiles).items()
                                    if k != "count"} | {"count": len(tpots)},
        },
        "active_duration": (max(ends) - min(sends)) if ends else 0.0,
        "total_reasoning_tokens": sum(reasoning) if reasoning else None,
        "reasoning_token_source": sources,
        "reasoning_share": (sum(reasoning) / max(1, sum(r.output_tokens for r in ok))) if reasoning else None,
        "tokens_per_chunk_mean": (sum(chunk_tokens) / len(chunk_tokens)) if chunk_tokens else None,
        "token_source": "server_usage" if all(r.completion_tokens for r in ok) else "chunk_count",
        "max_output_chunks_per_s_vllm": peak_per_second(measured, count_tokens=False),
        "max_output_tokens_per_s_counts": "tokens",
        "finish_reasons": _histogram(r.finish_reason or "none" for r in ok),
        "error_histogram": errors,
        "retries_on_stale_connection": sum(r.retries for r in measured),
    }


def _histogram(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def osl_mismatches(records: Sequence[RequestRecord]) -> int:
    """Successful measured requests whose output length differs from the requested max_tokens (ignore_eos runs)."""
    return sum(1 for r in records if r.phase == "measure" and r.ok and r.output_tokens != r.max_tokens)


def finite_or_inf(rate: float) -> float | str:
    """vLLM writes an unbounded request rate as the string "inf"."""
    return "inf" if math.isinf(rate) else rate
