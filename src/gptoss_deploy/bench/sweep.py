"""Concurrency sweep: 1, 2, 4, ... until output throughput stops rising or an SLO breaks; report the knee."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from gptoss_deploy.bench.runner import BenchConfig

MIN_GAIN = 0.05  # a doubling that adds less than 5 % output throughput ends the sweep
KNEE_FRACTION = 0.90  # the knee: the lowest concurrency reaching 90 % of the best throughput
GOOD_FRACTION = 0.90  # with SLOs, a level "breaks" when fewer than 90 % of its requests meet them


class SweepLevel(BaseModel):
    """One concurrency level's headline figures (the full result is in the journal)."""

    max_concurrency: int
    output_throughput: float
    request_throughput: float
    median_ttft_ms: float
    p99_ttft_ms: float
    median_tpot_ms: float
    p99_tpot_ms: float
    completed: int
    failed: int
    good_fraction: float | None = None
    contaminated: bool = False


class SweepResult(BaseModel):
    """All levels, why the sweep stopped, and the knee."""

    levels: list[SweepLevel] = Field(default_factory=list)
    stop_reason: str = ""
    knee_concurrency: int | None = None
    best_output_throughput: float = 0.0
    results: list[dict[str, Any]] = Field(default_factory=list, exclude=True)


def concurrency_levels(start: int, limit: int) -> list[int]:
    """1, 2, 4, ... capped at `limit` (which is included)."""
    levels, c = [], max(1, start)
    while c < limit:
        levels.append(c)
        c *= 2
    return levels + [limit]


def level_of(result: dict[str, Any]) -> SweepLevel:
    """The headline of one result."""
    good = (result["request_goodput"] / result["request_throughput"]
            if result.get("request_goodput") is not None and result["request_throughput"] else None)
    return SweepLevel(max_concurrency=result["max_concurrency"], output_throughput=result["output_throughput"],
                      request_throughput=result["request_throughput"], median_ttft_ms=result["median_ttft_ms"],
                      p99_ttft_ms=result.get("p99_ttft_ms", 0.0), median_tpot_ms=result["median_tpot_ms"],
                      p99_tpot_ms=result.get("p99_tpot_ms", 0.0), completed=result["completed"],
                      failed=result["failed"], good_fraction=good,
                      contaminated=bool(result.get("ext", {}).get("contaminated")))


def knee(levels: list[SweepLevel]) -> int | None:
    """The lowest concurrency whose throughput reaches KNEE_FRACTION of the best level's."""
    if not levels:
        return None
    best = max(level.output_throughput for level in levels)
    return next(level.max_concurrency for level in levels if level.output_throughput >= KNEE_FRACTION * best)


def stop_reason(levels: list[SweepLevel]) -> str | None:
    """Why to stop after the last level, or None to go on."""
    last = levels[-1]
    if last.failed and not last.completed:
        return f"every request failed at concurrency {last.max_concurrency}"
    if last.good_fraction is not None and last.good_fraction < GOOD_FRACTION:
        return (f"SLOs broken at concurrency {last.max_concurrency}: {last.good_fraction:.0%} of requests met them "
                f"(< {GOOD_FRACTION:.0%})")
    if len(levels) >= 2:
        before = max(level.output_throughput for level in levels[:-1])
        if last.output_throughput < before * (1 + MIN_GAIN):
            return (f"throughput stopped rising: {last.output_throughput:.1f} tok/s at concurrency "
                    f"{last.max_concurrency} vs {before:.1f} before (< +{MIN_GAIN:.0%})")
    return None


def run_sweep(base: BenchConfig, levels: list[int], run_one: Callable[[BenchConfig], dict[str, Any]],
              prompts_per_slot: int = 4) -> SweepResult:
    """Run each level (at least `prompts_per_slot` requests per concurrency slot) until a stop rule fires."""
    sweep = SweepResult()
    for concurrency in levels:
        config = base.model_copy(update={"max_concurrency": concurrency,
                                         "num_prompts": max(base.num_prompts, prompts_per_slot * concurrency),
                                         "label": f"{base.label or 'sweep'}-c{concurrency}"})
        result = run_one(config)
        sweep.results.append(result)
        sweep.levels.append(level_of(result))
        if result.get("ext", {}).get("interrupted"):
            sweep.stop_reason = "interrupted"
            break
        reason = stop_reason(sweep.levels)
        if reason:
            sweep.stop_reason = reason
            break
    else:
        sweep.stop_reason = f"reached the largest level ({levels[-1]})"
    sweep.knee_concurrency = knee(sweep.levels)
    sweep.best_output_throughput = max((level.output_throughput for level in sweep.levels), default=0.0)
    return sweep
