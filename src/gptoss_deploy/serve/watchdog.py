"""Busy or wedged: the watchdog's decision from the engine's own counters next to the canary.

A canary that waits in a full queue says nothing about the engine; generated tokens do. Each interval the
watchdog reads /metrics (a progress counter, requests running and waiting: `Engine.progress_counter`, `gauges`)
and sends a 1-token canary whose wait budget grows with the queue. Then:

- tokens were generated recently while requests run: **busy**, never restarted, whatever the canary did;
- requests run (or wait) but no token was generated for `wedge_s`: **wedged**, restart;
- nothing runs or waits and the canary fails: **wedged** (an idle engine must answer), restart;
- /metrics does not answer either (a stopped or hung process): the canary decides, two failed intervals in a row
  restart (so a wedge is caught within two intervals);
- an exited engine is restarted at once (the supervisor sees the exit code);
- with a quality probe (`QualityProbe`): the quality canary's answers are wrong too often (an engine computing
  garbage behind a green /health): restart. Unanswered canary requests never count.

Every decision carries the numbers behind it. `Judge` is pure (the supervisor feeds it samples); `QualityProbe` asks
the canary in a thread of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from concurrent.futures import Future

    from gptoss_deploy.check.quality import QualityOutcome


@dataclass(frozen=True)
class Load:
    """One /metrics sample."""

    generated: float          # the engine's progress counter: generated tokens (vLLM), decode steps (llama.cpp)
    running: float
    waiting: float

    @property
    def queued(self) -> float:
        """Requests running or waiting."""
        return self.running + self.waiting


@dataclass(frozen=True)
class Decision:
    """What the watchdog does this interval, and why (with the numbers)."""

    restart: bool
    state: str                # healthy, busy, wedged, unknown
    reason: str


def metric_families(client: httpx.Client, base_url: str, headers: dict[str, str],
                    timeout_s: float = 10.0) -> list[Any] | None:
    """/metrics parsed into Prometheus metric families; None when it does not answer 200 or parse."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        reply = client.get(f"{base_url}/metrics", headers=headers, timeout=timeout_s)
        if reply.status_code != 200:
            return None
        return list(text_string_to_metric_families(reply.text))
    except (httpx.HTTPError, ValueError):
        return None


def family_total(family: Any) -> float:
    """A counter's or gauge's value summed over its labels (one sample per engine on a multi-engine server)."""
    return float(sum(s.value for s in family.samples if s.name.endswith("_total") or s.name == family.name))


def scrape_metrics(client: httpx.Client, base_url: str, headers: dict[str, str], wanted: dict[str, str],
                   timeout_s: float = 10.0) -> dict[str, float] | None:
    """/metrics families named in `wanted` (Prometheus family name -> our key), each summed over its labels (a
    server with several engines reports one sample per engine); None when /metrics does not answer or parse."""
    families = metric_families(client, base_url, headers, timeout_s)
    if families is None:
        return None
    return {wanted[f.name]: family_total(f) for f in families if f.name in wanted}


def read_load(client: httpx.Client, base_url: str, headers: dict[str, str], progress: str | None,
              gauges: dict[str, str], timeout_s: float = 3.0) -> Load | None:
    """The progress counter, running and waiting requests from /metrics; None when it does not answer in time or
    lacks them."""
    if progress is None:
        return None
    values = scrape_metrics(client, base_url, headers, {progress: "generation_tokens", **gauges}, timeout_s)
    if values is None or not {"generation_tokens", "running", "waiting"} <= values.keys():
        return None
    return Load(generated=values["generation_tokens"], running=values["running"], waiting=values["waiting"])


class Judge:
    """Busy vs wedged across intervals (see the module docstring)."""

    def __init__(self, wedge_s: float, canary_timeout_s: float, budget_cap_s: float) -> None:
        self.wedge_s = wedge_s
        self.canary_timeout_s = canary_timeout_s
        self.budget_cap_s = budget_cap_s
        self.last: Load | None = None
        self.progress_at: float | None = None
        self.blind_failures = 0

    def canary_budget(self, load: Load | None) -> float:
        """The canary's wait: the base timeout per request ahead of it (running or waiting), capped at the interval."""
        ahead = load.queued if load is not None else 0.0
        return min(self.budget_cap_s, self.canary_timeout_s * (1 + ahead))

    def decide(self, now: float, load: Load | None, canary_error: str | None, budget_s: float) -> Decision:
        """This interval's decision from the sample and the canary's outcome (None: it answered)."""
        if load is None:
            return self._blind(canary_error)
        self.blind_failures = 0
        before, self.last = self.last, load
        made = load.generated - before.generated if before is not None else 0.0
        if made > 0 or self.progress_at is None or (before is not None and load.generated < before.generated):
            self.progress_at = now  # first sample, new tokens, or counters reset by a restart
        quiet = now - self.progress_at
        numbers = (f"{load.running:g} running, {load.waiting:g} waiting, +{max(made, 0):g} tokens since the last "
                   f"sample, last token progress {quiet:.0f} s ago")
        if canary_error is None:
            return Decision(False, "healthy", f"canary answered within {budget_s:g} s; {numbers}")
        if load.queued > 0 and quiet <= self.wedge_s:
            return Decision(False, "busy", f"busy, not wedged: the canary failed ({canary_error}; budget {budget_s:g} s) "
                                           f"while {numbers}")
        if load.queued > 0:
            return Decision(True, "wedged", f"wedged: {numbers} (over {self.wedge_s:g} s) and the canary "
                                            f"{canary_error}")
        return Decision(True, "wedged", f"wedged: idle ({numbers}) and the canary failed ({canary_error})")

    def _blind(self, canary_error: str | None) -> Decision:
        """No /metrics: the canary alone, two failed intervals in a row."""
        if canary_error is None:
            self.blind_failures = 0
            return Decision(False, "healthy", "canary answered (/metrics did not)")
        self.blind_failures += 1
        if self.blind_failures >= 2:
            return Decision(True, "wedged", f"/metrics does not answer and the canary failed "
                                            f"({canary_error}), {self.blind_failures} intervals in a row")
        return Decision(False, "unknown", f"/metrics does not answer and the canary failed "
                                          f"({canary_error}): once, waiting one more interval")


class QualityProbe:
    """The quality canary (check/quality.py) in the background every `every_s` seconds: its requests may wait in a
    full queue for minutes, which must not hold up the watchdog's other checks. An outcome from an engine that was
    restarted meanwhile is dropped."""

    def __init__(self, endpoint: Any, every_s: float, timeout_s: float) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.endpoint = endpoint
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quality-canary")
        self._future: Future[QualityOutcome] | None = None
        self._generation = 0
        self._asked_generation = 0
        self._last = time.monotonic()

    def poll(self) -> QualityOutcome | None:
        """The outcome of a finished run of this engine (then None until the next one ends); starts a run when due."""
        if self._future is not None and self._future.done():
            future, self._future = self._future, None
            if self._asked_generation == self._generation and future.exception() is None:
                return future.result()
        if self._future is None and time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self._asked_generation = self._generation
            self._future = self._pool.submit(self._ask)
        return None

    def restarted(self) -> None:
        """The engine was restarted: drop what is in flight, wait a full interval before the next run."""
        self._generation += 1
        self._future = None
        self._last = time.monotonic()

    def close(self) -> None:
        """Stop scheduling; a run in flight ends on its own timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _ask(self) -> QualityOutcome:
        from gptoss_deploy.check.probes import Target
        from gptoss_deploy.check.quality import run_quality
        from gptoss_deploy.httpclient import bounded_client

        target = Target(self.endpoint.base_url, self.endpoint.api_key, self.endpoint.served_name, self.timeout_s,
                        bounded_client(self.timeout_s))
        try:
            return run_quality(target)
        finally:
            target.close()
