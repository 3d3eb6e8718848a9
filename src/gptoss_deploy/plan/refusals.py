"""Requested settings that a known issue refuses: replaced by a safe value and reported, or kept with --force.

Only explicit settings are refused here; the planner's own choices avoid refused values by construction. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gptoss_deploy.hardware.types import Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.search import Knobs, evaluate
from gptoss_deploy.plan.types import Change, PlanRequest

REFUSABLE: dict[str, object] = {  # explicit settings a known issue can refuse, and the value planned instead
    "kv_cache_dtype": "auto",
    "async_scheduling": None,
    "attention_backend": None,
}
# Settings of the probe configuration the refusal rules are evaluated on (they test backends, dtype and
# version, not memory).
PROBE_UTIL, PROBE_MNBT, PROBE_SEQS = 0.9, 2048, 256


@dataclass
class Refusals:
    """The request with refused values replaced, the changes that says so, and warnings for forced ones."""

    request: PlanRequest
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def refuse_requested(model: ModelSpec, host: Host, request: PlanRequest, version: str) -> Refusals:
    """Replace requested settings that a known issue refuses (kept with --force), saying why."""
    asked = {k: getattr(request, k) for k, safe in REFUSABLE.items() if getattr(request, k) != safe}
    if not asked:
        return Refusals(request)
    probe = evaluate(model, host, request, version,
                     Knobs(request.tensor_parallel_size or 1, PROBE_UTIL, PROBE_MNBT, PROBE_SEQS,
                           request.max_model_len or model.arch.max_position_embeddings, request.kv_cache_dtype))
    result = Refusals(request)
    replaced: dict[str, object] = {}
    for setting, value in asked.items():
        refusals = [i for i in probe.issues if i.severity == "refuse" and setting in i.conditions]
        if not refusals:
            continue
        if request.force:
            result.warnings += [f"--force keeps {setting}={value} despite: {i.title}" for i in refusals]
            continue
        replaced[setting] = REFUSABLE[setting]
        reason = "; ".join(f"{i.title} ({i.source})" for i in refusals)
        result.changes.append(Change(setting=setting, requested=str(value),
                                     planned=str(REFUSABLE[setting] or "default"), reason=f"refused: {reason}",
                                     refused=True))
    result.request = request.model_copy(update=replaced)
    return result
