"""Evaluate data/known_issues.yaml against a plan's context."""

from __future__ import annotations

from pydantic import BaseModel

from gptoss_deploy import data
from gptoss_deploy.plan import versions
from gptoss_deploy.plan.types import IssueHit


class IssueContext(BaseModel):
    """The facts a known-issue condition can test."""

    engine: str
    version: str
    arch: str | None = None
    attention_backend: str | None = None
    moe_backend: str | None = None
    kv_cache_dtype: str = "auto"
    model_arch: str | None = None
    tp: int = 1
    gpu_gib: float = 0.0
    unified_memory: bool = False
    tool_calling: bool = False
    offline: bool = False
    cudagraph_estimate: bool = False
    async_scheduling: bool = False


def _condition_holds(key: str, expected: object, ctx: IssueContext) -> bool:
    if key in ("max_gpu_gib", "min_gpu_gib"):
        assert isinstance(expected, int | float)
        return ctx.gpu_gib <= expected if key == "max_gpu_gib" else ctx.gpu_gib >= expected
    actual: object = getattr(ctx, key)
    if isinstance(expected, list):
        return actual in expected
    return bool(actual == expected)


def matching_issues(ctx: IssueContext) -> list[IssueHit]:
    """Every known issue whose engine, version range and conditions hold."""
    hits = []
    for rule in data.known_issues().issues:
        if rule.engine != ctx.engine or not versions.in_range(ctx.version, rule.versions):
            continue
        conditions = rule.when.keys()
        if all(_condition_holds(k, getattr(rule.when, k), ctx) for k in conditions):
            hits.append(IssueHit(id=rule.id, title=rule.title, severity=rule.severity, effect=rule.effect,
                                 fix=rule.fix.text, source=rule.source,
                                 applied_env={k: str(v) for k, v in rule.fix.env.items()},
                                 defaults=dict(rule.fix.defaults), conditions=conditions,
                                 not_applied=rule.fix.not_applied))
    return hits
