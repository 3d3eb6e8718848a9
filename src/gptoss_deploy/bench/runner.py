"""Run a benchmark against an OpenAI-compatible server: warm up, measure, journal every request, summarise.

The request loop is `vllm bench serve`'s (open-loop arrivals, a semaphore for the concurrency limit, streaming
with usage) on aiohttp, as vLLM's own client; the result is a superset of its JSON (see `metrics`), with
self-checks under `ext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import resource
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import aiohttp
import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gptoss_deploy import __version__
from gptoss_deploy.bench import metrics, selfcheck
from gptoss_deploy.bench.journal import Journal
from gptoss_deploy.bench.stream import RequestRecord, SSEDecoder, StreamTracker
from gptoss_deploy.bench.workload import (
    GPT_OSS_VOCAB_SIZE,
    Prompt,
    ServerTokenizer,
    arrival_offsets,
    story_prompts,
    vllm_random_prompts,
    word_prompts,
)
from gptoss_deploy.engines import bearer
from gptoss_deploy.errors import InputError

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class BenchConfig(BaseModel):
    """One benchmark run: target, workload, load shape, statistics."""

    model_config = ConfigDict(frozen=True)

    url: str
    model: str | None = None
    api_key: str | None = Field(default=None, exclude=True, repr=False)
    dataset: Literal["random", "words", "story"] = "random"
    endpoint: Literal["completions", "chat"] | None = None  # default: completions for random, chat for story
    num_prompts: int = 100
    input_len: int = 1024
    output_len: int = 128
    range_ratio: float = 0.0
    vocab_size: int = GPT_OSS_VOCAB_SIZE  # random: ids drawn from range(vocab_size), as vLLM's random dataset
    story_words: int = 300
    seed: int = 0
    max_concurrency: int | None = None
    request_rate: float = math.inf
    burstiness: float = 1.0
    warmups: int | None = None  # default: two rounds at the target concurrency
    ignore_eos: bool | None = None  # default: on for completions (fixed output length), off for chat
    temperature: float | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    percentiles: tuple[float, ...] = metrics.DEFAULT_PERCENTILES
    goodput_slos_ms: dict[str, float] | None = None
    label: str | None = None
    timeout_s: float = 600.0
    server_log: Path | None = None
    save_detailed: bool = False
    continuous_usage: bool = True  # vLLM's per-chunk usage: tokens per chunk and per-token ITL

    @property
    def api(self) -> str:
        """The endpoint actually used."""
        return self.endpoint or ("chat" if self.dataset == "story" else "completions")

    @property
    def eos_ignored(self) -> bool:
        """Whether requests ask the server to run to max_tokens."""
        return self.ignore_eos if self.ignore_eos is not None else self.api == "completions"

    @property
    def warmup_count(self) -> int:
        """Warm-up requests: by default two rounds at the concurrency that will be measured."""
        if self.warmups is not None:
            return self.warmups
        return 2 * (self.max_concurrency or min(self.num_prompts, 64))


def request_body(config: BenchConfig, model: str, prompt: Prompt) -> dict[str, Any]:
    """The JSON for one streamed request (usage on; vLLM's continuous usage gives tokens per chunk)."""
    body: dict[str, Any] = {"model": model, "max_tokens": prompt.max_tokens, "stream": True,
                            "stream_options": {"include_usage": True}}
    if config.continuous_usage:
        body["stream_options"]["continuous_usage_stats"] = True
    if config.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt.text}]
        if config.reasoning_effort:
            body["reasoning_effort"] = config.reasoning_effort
    else:
        body["prompt"] = prompt.text
    if config.eos_ignored:
        body["ignore_eos"] = True
    if config.temperature is not None:
        body["temperature"] = config.temperature
    return body


class PreparedRequest(NamedTuple):
    """One request, encoded before the client slot is taken: JSON encoding stays out of TTFT and the send follows a
    freed slot at once (see `Benchmark._phase`)."""

    url: str
    data: bytes
    headers: dict[str, str]


def prepare(url: str, body: dict[str, Any], headers: dict[str, str]) -> PreparedRequest:
    """Encode `body` once, with the JSON content type and the caller's headers."""
    return PreparedRequest(url, json.dumps(body).encode(), {"Content-Type": "application/json"} | headers)


def open_session(max_concurrency: int | None, timeout_s: float) -> aiohttp.ClientSession:
    """The benchmark's HTTP client: aiohttp with a keep-alive pool of `max_concurrency` connections.

    aiohttp, as in `vllm bench serve`, rather than httpx: under load (4 streams in flight on one slow core) httpx
    took 1.55 ms median from `send` to the request on the wire against aiohttp's 0.34 ms (each anyio checkpoint in
    its pool lets every other ready callback run first), and it writes headers and body in two segments where aiohttp
    writes one. That delay is inside TTFT and can make a request miss the engine's next scheduling step.
    """
    connector = aiohttp.TCPConnector(limit=max_concurrency or 0, keepalive_timeout=60)
    # total: one request (headers and the whole stream) ends within --timeout, however slowly a server drips
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


# A pooled keep-alive connection the server has closed meanwhile fails like this before any response byte.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # one streamed response; a never-ending stream stops here (or at --timeout)
STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


async def send_one(session: aiohttp.ClientSession, request: PreparedRequest, record: RequestRecord,
                   run_start: float) -> RequestRecord:
    """Send one streamed request and fill `record` from its events.

    A pooled keep-alive connection that the server closed in the meantime (cpp-httplib closes after a few
    requests) fails before any response byte; that request is sent once more on a fresh connection, its clock
    restarted, and counted in `record.retries`.
    """
    for attempt in range(2):
        sent = time.perf_counter()
        record.t_send = sent - run_start
        tracker = StreamTracker(record)
        decoder = SSEDecoder()
        try:
            async with session.post(request.url, data=request.data, headers=request.headers) as response:
                record.status = response.status
                if response.status != 200:
                    text = (await response.read()).decode("utf-8", errors="replace")
                    record.error = f"HTTP {response.status}: {text[:300]}"
                    return tracker.finish()
                received = 0
                async for chunk in response.content.iter_any():
                    now = time.perf_counter() - sent
                    received += len(chunk)
                    if received > MAX_RESPONSE_BYTES:
                        raise ValueError(f"the stream passed {MAX_RESPONSE_BYTES:,} bytes: stopped reading")
                    for payload in decoder.feed(chunk):
                        tracker.on_payload(payload, now)
                for payload in decoder.flush():
                    tracker.on_payload(payload, time.perf_counter() - sent)
        except STALE_CONNECTION_ERRORS as exc:
            if record.status is None and attempt == 0:
                record.retries += 1
                continue
            record.error = f"{type(exc).__name__}: {exc}"[:300]
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.error = f"{type(exc).__name__}: {str(exc) or 'timed out'}"[:300]
        except ValueError as exc:  # a stream past its caps (bytes, one event's size)
            record.error = str(exc)[:300]
        return tracker.finish()
    return tracker.finish()


class Benchmark:
    """One run: prepares prompts, warms up, measures, writes the journal, returns the result dict."""

    def __init__(self, config: BenchConfig, journal: Journal | None = None, progress: Progress | None = None) -> None:
        from gptoss_deploy.check.runner import discover, normalise_url

        self.config = config
        self.base_url = normalise_url(config.url)
        self.target, report = discover(self.base_url, config.api_key, config.model, min(config.timeout_s, 60))
        self.engine, self.engine_version = report.engine or "unknown", report.engine_version
        self.model = self.target.model
        self.headers = bearer(config.api_key)
        self.journal = journal
        self.progress = progress or (lambda phase, done, total: None)
        self.run_id = uuid.uuid4().hex[:12]
        self.records: list[RequestRecord] = []
        self.interrupted = False
        self.tokenizer: ServerTokenizer | None = None

    # -- preparation ---------------------------------------------------------------------------------------
    def prompts(self) -> tuple[list[Prompt], list[Prompt]]:
        """(warm-up prompts, measured prompts): same shapes, different seeds, so warm-up never primes the cache.

        `random` needs the server's /tokenize and /detokenize; without them it falls back to words of approximate
        length (`ext.workload.prompts` says which)."""
        c = self.config
        if c.dataset == "story":
            return (story_prompts(c.warmup_count, c.story_words, c.output_len, c.seed + 1),
                    story_prompts(c.num_prompts, c.story_words, c.output_len, c.seed))
        tokenizer = ServerTokenizer(self.target.http, self.base_url, self.model, self.engine, c.api_key,
                                    min(c.timeout_s, 60.0))
        self.tokenizer = tokenizer if tokenizer.available() else None
        if c.dataset == "random" and self.tokenizer is not None:
            # The warm-up's generator is seeded by (seed, 1), a stream no integer seed gives, so a later run with
            # seed + 1 does not find its first prompts in the prefix cache.
            try:
                return (vllm_random_prompts(c.warmup_count, c.input_len, c.output_len, c.range_ratio,
                                            np.random.default_rng([c.seed, 1]), self.tokenizer, c.vocab_size),
                        vllm_random_prompts(c.num_prompts, c.input_len, c.output_len, c.range_ratio,
                                            np.random.default_rng(c.seed), self.tokenizer, c.vocab_size))
            except httpx.HTTPStatusError as exc:
                raise InputError(f"the server could not detokenize random token ids below {c.vocab_size} "
                                 f"(HTTP {exc.response.status_code})",
                                 hint="give the model's vocabulary size with --vocab-size, or use --dataset words"
                                 ) from None
        return (word_prompts(c.warmup_count, c.input_len, c.output_len, c.range_ratio, c.seed + 1, self.tokenizer),
                word_prompts(c.num_prompts, c.input_len, c.output_len, c.range_ratio, c.seed, self.tokenizer))

    @property
    def prompt_source(self) -> str:
        """What the prompts were built from, for the result's workload record."""
        if self.config.dataset == "story":
            return "story"
        if self.tokenizer is None:
            return "words (approximate lengths: the server offers no /tokenize)"
        return "vllm-random" if self.config.dataset == "random" else "words"

    def _journal(self, record: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        """Append a record tagged with the run id; a callable is built on the journal's thread, off the event loop."""
        if self.journal is None:
            return
        if callable(record):
            self.journal.append(lambda: {"run_id": self.run_id} | record())
        else:
            self.journal.append({"run_id": self.run_id} | record)

    # -- running -------------------------------------------------------------------------------------------
    async def _phase(self, session: aiohttp.ClientSession, prompts: list[Prompt], phase: str, offsets: list[float]) -> float:
        c = self.config
        url = f"{self.base_url}/v1/{'chat/completions' if c.api == 'chat' else 'completions'}"
        limit = asyncio.Semaphore(c.max_concurrency) if c.max_concurrency else contextlib.nullcontext()
        done = 0
        start = time.perf_counter()

        async def one(index: int, prompt: Prompt, offset: float) -> None:
            nonlocal done
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = RequestRecord(index=index, phase=phase, t_sched=offset, t_send=0.0,
                                   requested_input_len=prompt.input_len, max_tokens=prompt.max_tokens)
            request = prepare(url, request_body(c, self.model, prompt), self.headers)
            async with limit:
                await send_one(session, request, record, start)
            # Let the request waiting for this slot send first: a late send misses the engine's next scheduling
            # step and adds up to a whole decode step to its TTFT (measured: +9 % TTFT against vllm bench serve).
            await asyncio.sleep(0)
            self.records.append(record)
            self._journal(lambda: {"kind": "request"} | record.to_json())  # nothing delays the next send here
            done += 1
            self.progress(phase, done, len(prompts))

        tasks = [asyncio.create_task(one(i, p, t)) for i, (p, t) in enumerate(zip(prompts, offsets, strict=True))]
        self._tasks = tasks
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.interrupted = True
        return time.perf_counter() - start

    def _interrupt(self) -> None:
        self.interrupted = True
        for task in getattr(self, "_tasks", []):
            task.cancel()

    async def _run(self, warmup: list[Prompt], measured: list[Prompt]) -> dict[str, Any]:
        c = self.config
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # only possible in the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):  # SIGTERM (docker stop, systemd, kill) as Ctrl-C
                loop.add_signal_handler(signum, self._interrupt)
        async with open_session(c.max_concurrency, c.timeout_s) as session:
            warmup_s = 0.0
            if warmup:
                warmup_s = await self._phase(session, warmup, "warmup", [0.0] * len(warmup))
            if self.interrupted:
                return {"warmup_s": warmup_s, "duration": 0.0}
            counters_before = selfcheck.scrape_counters(self.target.http, self.base_url, self.headers, self.engine)
            watcher = selfcheck.LogWatcher(c.server_log)
            watcher.start()
            lag = selfcheck.LoopLag()
            lag.start()
            cpu_before = _cpu_seconds()
            offsets = arrival_offsets(len(measured), c.request_rate, c.burstiness, c.seed)
            duration = await self._phase(session, measured, "measure", offsets)
            cpu = _cpu_seconds() - cpu_before
            health = await lag.stop() | {"cpu_pct": 100 * cpu / max(duration, 1e-9)}
        counters_after = await self._settled_counters(counters_before)
        return {"warmup_s": warmup_s, "duration": duration, "client_health": health,
                "counters": selfcheck.counter_deltas(counters_before, counters_after),
                "log_warnings": watcher.warnings()}

    async def _settled_counters(self, before: dict[str, float] | None) -> dict[str, float] | None:
        """Counters after the run; re-read briefly while the server's generation counter still lags the client."""
        expected = sum(r.output_tokens for r in self.records if r.phase == "measure" and r.ok)
        after = None
        for _ in range(6):
            after = selfcheck.scrape_counters(self.target.http, self.base_url, self.headers, self.engine)
            delta = selfcheck.counter_deltas(before, after) or {}
            if after is None or delta.get("generation_tokens", expected) >= expected:
                break
            await asyncio.sleep(0.5)
        return after

    def run(self) -> dict[str, Any]:
        """Warm up, measure, and return the vLLM-compatible result (also journaled). Ctrl-C keeps what finished."""
        c = self.config
        warmup, measured = self.prompts()
        self._journal({"kind": "run", "tool_version": __version__, "started": _now_iso(), "base_url": self.base_url,
                       "model": self.model, "engine": self.engine, "engine_version": self.engine_version,
                       "config": c.model_dump(mode="json")})
        outcome = asyncio.run(self._run(warmup, measured))
        result = self.result(outcome, measured)
        self._journal({"kind": "result", "result": result})
        return result

    # -- result --------------------------------------------------------------------------------------------
    def result(self, outcome: dict[str, Any], measured: list[Prompt]) -> dict[str, Any]:
        """Assemble vLLM's keys, then `ext` with the workload, self-checks and our extra statistics."""
        c = self.config
        records = [r for r in self.records if r.phase == "measure"]
        summary = metrics.summarize(records, outcome["duration"], percentiles=c.percentiles,
                                    goodput_slos_ms=c.goodput_slos_ms)
        result: dict[str, Any] = {
            "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
            "endpoint_type": "openai-chat" if c.api == "chat" else "openai",
            "backend": "openai-chat" if c.api == "chat" else "openai", "label": c.label,
            "model_id": self.model, "tokenizer_id": self.model, "num_prompts": c.num_prompts,
            "request_rate": metrics.finite_or_inf(c.request_rate), "burstiness": c.burstiness,
            "max_concurrency": c.max_concurrency,
        } | summary
        ext = metrics.ext_metrics(records, c.percentiles)
        counters = outcome.get("counters")
        report = (selfcheck.read_serve_report(c.server_log) if c.server_log
                  else selfcheck.serve_report_for(self.base_url))
        warnings = outcome.get("log_warnings", [])
        ext |= {
            "schema": metrics.EXT_SCHEMA, "tool_version": __version__, "run_id": self.run_id,
            "interrupted": self.interrupted,
            "server": {"kind": self.engine, "version": self.engine_version, "base_url": self.base_url,
                       "endpoint": f"/v1/{'chat/completions' if c.api == 'chat' else 'completions'}",
                       "log": str(c.server_log) if c.server_log else (report or {}).get("log")},
            "workload": {"dataset": c.dataset, "prompts": self.prompt_source,
                         "input_len": c.input_len if c.dataset != "story" else None,
                         "vocab_size": c.vocab_size if self.prompt_source == "vllm-random" else None,
                         "output_len": c.output_len, "range_ratio": c.range_ratio, "seed": c.seed,
                         "story_words": c.story_words if c.dataset == "story" else None,
                         "ignore_eos": c.eos_ignored, "temperature": c.temperature,
                         "reasoning_effort": c.reasoning_effort, "warmups": c.warmup_count,
                         "load_mode": "rate" if not math.isinf(c.request_rate) else "concurrency",
                         "prompt_lengths": "exact (server /tokenize)" if measured and all(p.exact_length for p in measured)
                         else "approximate"},
            "warmup": {"requests": sum(1 for r in self.records if r.phase == "warmup"),
                       "failed": sum(1 for r in self.records if r.phase == "warmup" and not r.ok),
                       "duration": outcome.get("warmup_s", 0.0)},
            "osl_mismatch_count": metrics.osl_mismatches(records) if c.eos_ignored else None,
            "server_counters_delta": counters,
            "counter_check": _counter_check(counters, summary),
            "client_health": outcome.get("client_health"),
            "token_check": selfcheck.retokenized_diff_pct(self.tokenizer, records),
            "roofline": selfcheck.roofline((report or {}).get("speed"), summary["median_tpot_ms"], c.max_concurrency),
            "engine_warnings": warnings,
            "contaminated": bool(warnings) or bool((counters or {}).get("preemptions")),
        }
        if c.save_detailed:
            ext["requests"] = [r.to_json() for r in records]
        return result | {"ext": ext}


def _counter_check(counters: dict[str, float] | None, summary: dict[str, Any]) -> dict[str, Any] | None:
    """Server-side token counters over the measured window against the client's totals."""
    if not counters or "generation_tokens" not in counters:
        return None
    client = summary["total_output_tokens"]
    server = counters["generation_tokens"]
    return {"client_output_tokens": client, "server_generation_tokens": server,
            "diff_pct": abs(server - client) / max(client, 1) * 100, "agrees": server == client}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_benchmark(config: BenchConfig, journal_path: Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run one benchmark; every request and the result are appended to `journal_path` when given."""
    if config.num_prompts < 1:
        raise InputError("--num-prompts must be at least 1")
    benchmark = Benchmark(config, None, progress)  # reach the server first: bad input writes no journal
    benchmark.journal = Journal(journal_path) if journal_path else None
    try:
        return benchmark.run()
    finally:
        if benchmark.journal is not None:
            benchmark.journal.close()
