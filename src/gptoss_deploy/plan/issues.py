"""Evaluate data/known_issues.yaml against a plan's context."""

from __future__ import annotations

from typing import Any

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


def _condition_holds(key: str, expected: Any, ctx: IssueContext) -> bool:
    if key == "max_gpu_gib":
        return ctx.gpu_gib <= float(expected)
    if key == "min_gpu_gib":
        return ctx.gpu_gib >= float(expected)
    actual = getattr(ctx, key)
    if isinstance(expected, list):
        return actual in expected
    return actual == expected


def matching_issues(ctx: IssueContext) -> list[IssueHit]:
    """Every known issue whose engine, version range and conditions hold."""
    hits = []
    for rule in data.load("known_issues")["issues"]:
        if rule["engine"] != ctx.engine or not versions.in_range(ctx.version, rule.get("versions")):
            continue
        if all(_condition_holds(k, v, ctx) for k, v in (rule.get("when") or {}).items()):
            fix = rule.get("fix") or {}
            hits.append(IssueHit(id=rule["id"], title=rule["title"], severity=rule["severity"],
                                 effect=rule["effect"], fix=fix.get("text", ""), source=rule["source"],
                                 applied_env={k: str(v) for k, v in (fix.get("env") or {}).items()},
                                 defaults=fix.get("defaults") or {}, conditions=list(rule.get("when") or {})))
    return hits
