"""Checks printed with every result, so a number can be trusted or is visibly contaminated: client event-loop
lag and CPU, server Prometheus counter deltas against the client's totals, preemptions, re-tokenised output vs the
server's usage, the plan's single-stream roofline, and engine warnings logged during the run."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from gptoss_deploy.bench.stream import RequestRecord
from gptoss_deploy.bench.workload import ServerTokenizer
from gptoss_deploy.engines import is_loopback, registry

# What in an engine log marks a measurement as contaminated (source: ../shared/reference/logs, vLLM 0.23 H100).
CONTAMINATING = (
    (re.compile(r"JIT compilation during inference"), "Triton JIT compilation during the run (warm up longer)"),
    (re.compile(r"preempt", re.IGNORECASE), "requests were preempted (KV cache full)"),
    (re.compile(r"out of memory|CUDA error|Traceback", re.IGNORECASE), "engine error during the run"),
)


def scrape_counters(client: httpx.Client, base_url: str, headers: dict[str, str], engine: str) -> dict[str, float] | None:
    """The engine's token/request counters from /metrics (summed over labels); None when not offered."""
    from gptoss_deploy.serve.watchdog import scrape_metrics

    values = scrape_metrics(client, base_url, headers, registry.known_or_default(engine).counters)
    return values or None


def counter_deltas(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    """after - before, per counter present in both."""
    if not before or not after:
        return None
    return {k: after[k] - before[k] for k in after if k in before}


class LoopLag:
    """Samples how late the client's event loop wakes up (a busy client inflates every latency it measures)."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.lags.append(max(0.0, time.perf_counter() - started - self.interval_s))

    def start(self) -> None:
        """Begin sampling (inside the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, float]:
        """Stop and summarise (ms)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        lags = sorted(self.lags) or [0.0]
        return {"loop_lag_p50_ms": lags[len(lags) // 2] * 1000,
                "loop_lag_p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000,
                "loop_lag_max_ms": lags[-1] * 1000, "samples": len(self.lags)}


class LogWatcher:
    """Reads what an engine log gained between `start()` and `warnings()`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._offset = 0

    def start(self) -> None:
        """Remember the log's current end."""
        if self.path is not None and self.path.exists():
            self._offset = self.path.stat().st_size

    def warnings(self, limit: int = 20) -> list[dict[str, str]]:
        """Lines logged since `start()` that contaminate a measurement, with why."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            text = handle.read().decode("utf-8", errors="replace")
        found = []
        for line in text.splitlines():
            for pattern, why in CONTAMINATING:
                if pattern.search(line):
                    found.append({"why": why, "line": line.strip()[:300]})
                    break
        return found[:limit]


def retokenized_diff_pct(tokenizer: ServerTokenizer | None, records: Sequence[RequestRecord],
                         sample: int = 32) -> dict[str, Any] | None:
    """Median |server usage - server re-tokenisation of the streamed text| in % over a sample of requests.

    The streamed text (content + reasoning) is what the client saw; harmony's channel markers are not in it, so a
    chat run differs by a few tokens per request; a large gap means the stream lost or duplicated text.
    """
    if tokenizer is None:
        return None
    diffs = []
    for record in [r for r in records if r.ok and r.completion_tokens][:sample]:
        expected = record.completion_tokens or 0
        try:
            counted = len(tokenizer.encode(record.reasoning_text + record.text)) if (record.text or record.reasoning_text) else 0
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        diffs.append(abs(expected - counted) / expected * 100)
    if not diffs:
        return None
    return {"usage_vs_client_diff_pct_p50": statistics.median(diffs), "usage_vs_client_diff_pct_max": max(diffs),
            "sampled": len(diffs)}


def serve_report_for(base_url: str) -> dict[str, Any] | None:
    """The plan-vs-actual report of a loopback server that `gptoss serve` started on this port, if any."""
    from gptoss_deploy.serve.supervisor import default_log_path

    parsed = urlparse(base_url)
    if not is_loopback(parsed.hostname or "") or parsed.port is None:
        return None
    return read_serve_report(default_log_path(parsed.port))


def read_serve_report(log_path: Path) -> dict[str, Any] | None:
    """`<log>.plan-vs-actual.json` beside an engine log, when present and readable."""
    from gptoss_deploy.serve.supervisor import report_path_for

    path = report_path_for(log_path)
    try:
        report = json.loads(path.read_text())
        return report if isinstance(report, dict) else None
    except (OSError, ValueError):
        return None


def roofline(speed: dict[str, Any] | None, median_tpot_ms: float, max_concurrency: int | None) -> dict[str, Any] | None:
    """Measured single-stream decode as a fraction of the plan's bandwidth ceiling (only for concurrency 1)."""
    if not speed or not median_tpot_ms or max_concurrency != 1:
        return None
    measured = 1000.0 / median_tpot_ms
    ceiling = float(speed["ceiling_tokens_per_s"])
    out = {"bytes_per_token_gb": speed["bytes_per_token"] / 1e9, "tok_s": ceiling,
           "expected_tok_s": speed.get("expected_tokens_per_s"), "measured_tok_s": measured,
           "fraction_of_roofline": measured / ceiling}
    if measured > ceiling:
        out["warning"] = ("single-stream decode above the bandwidth ceiling: speculative decoding, or a counting "
                          "error (chunks taken for tokens, reasoning counted twice)")
    return out
