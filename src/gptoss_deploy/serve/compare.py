"""Plan versus what the engine reported: each predicted quantity next to the logged one (the rows are the engine's)."""

from __future__ import annotations

from gptoss_deploy.engines import registry
from gptoss_deploy.engines.base import Comparison
from gptoss_deploy.plan.types import Plan
from gptoss_deploy.serve.logparse import LogState

__all__ = ["Comparison", "compare"]


def compare(plan: Plan, log: LogState) -> list[Comparison]:
    """Rows for every quantity the plan predicted and the log can show."""
    if plan.engine is None:
        return []
    return registry.get(plan.engine).plan_vs_actual(plan, log.facts)
