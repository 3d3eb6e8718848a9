"""A running engine's live numbers from its /metrics (for `gptoss ps` and `gptoss top`): counters turned into rates
between two reads, gauges, and percentiles from histogram buckets over the same window (what changed between the
reads, not since the start). Which families an engine exports is the engine module's (`counters`, `gauges`,
`live_gauges`, `histograms`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Reading:
    """One /metrics read: values by our key (counters and gauges, summed over labels), histogram buckets."""

    at: float
    values: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # key -> upper bound -> cumulative count


def read(client: httpx.Client, base_url: str, headers: dict[str, str], engine: object,
         timeout_s: float = 3.0) -> Reading | None:
    """The engine's families from /metrics; None when it does not answer or parse."""
    from gptoss_deploy.serve.watchdog import family_total, metric_families

    names: dict[str, str] = {**getattr(engine, "counters", {}), **getattr(engine, "gauges", {}),
                             **getattr(engine, "live_gauges", {})}
    histograms: dict[str, str] = getattr(engine, "histograms", {})
    families = metric_families(client, base_url, headers, timeout_s)
    if families is None:
        return None
    reading = Reading(at=time.monotonic())
    for family in families:
        if family.name in names:
            reading.values[names[family.name]] = family_total(family)
        elif family.name in histograms:
            buckets: dict[float, float] = {}
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels.get("le", "inf"))
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
            reading.buckets[histograms[family.name]] = buckets
    return reading


def rate(before: Reading | None, after: Reading | None, key: str) -> float | None:
    """Per-second growth of a counter between two reads (None when either lacks it; 0 after a counter reset)."""
    if before is None or after is None or key not in before.values or key not in after.values:
        return None
    elapsed = after.at - before.at
    return max(after.values[key] - before.values[key], 0.0) / elapsed if elapsed > 0 else None


def percentile(before: Reading | None, after: Reading | None, key: str, q: float) -> float | None:
    """The q-quantile (0..1) of the observations made between two reads, interpolated within its bucket as
    Prometheus' histogram_quantile does; None when nothing was observed."""
    if after is None or key not in after.buckets:
        return None
    now = after.buckets[key]
    then = before.buckets.get(key, {}) if before is not None else {}
    bounds = sorted(now)
    counts = [max(now[b] - then.get(b, 0.0), 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # in the open top bucket: its lower edge, as histogram_quantile does
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, cumulative
    return lower
