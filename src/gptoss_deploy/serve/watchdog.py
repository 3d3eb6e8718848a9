"""Busy or wedged: the watchdog's decision from the engine's own counters next to the canary.

A canary that waits in a full queue says nothing about the engine; generated tokens do. Each interval the
watchdog reads /metrics (a progress counter, requests running and waiting: `Engine.progress_counter`, `gauges`)
and sends a 1-token canary whose wait budget grows with the queue. Then:

- tokens were generated recently while requests run: **busy**, never restarted, whatever the canary did;
- requests run (or wait) but no token was generated for `wedge_s`: **wedged**, restart;
- nothing runs or waits and the canary fails: **wedged** (an idle engine must answer), restart;
- /metrics does not answer either (a stopped or hung process): the canary decides, two failed intervals in a row
  restart (so a wedge is caught within two intervals);
- an exited engine is restarted at once (the supervisor sees the exit code).

Every decision carries the numbers behind it. Pure: the supervisor feeds it samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx


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


def scrape_metrics(client: httpx.Client, base_url: str, headers: dict[str, str], wanted: dict[str, str],
                   timeout_s: float = 10.0) -> dict[str, float] | None:
    """/metrics families named in `wanted` (Prometheus family name -> our key), each summed over its labels (a
    server with several engines reports one sample per engine); None when /metrics does not answer or parse."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        reply = client.get(f"{base_url}/metrics", headers=headers, timeout=timeout_s)
        if reply.status_code != 200:
            return None
        families = list(text_string_to_metric_families(reply.text))
    except (httpx.HTTPError, ValueError):
        return None
    values: dict[str, float] = {}
    for family in families:
        key = wanted.get(family.name)
        if key is not None:
            values[key] = sum(s.value for s in family.samples if s.name.endswith("_total") or s.name == family.name)
    return values


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
