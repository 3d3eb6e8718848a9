"""Plan versus what the engine reported: each predicted quantity next to the logged one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from gptoss_deploy.hardware.types import GIB, MIB
from gptoss_deploy.plan.types import Plan
from gptoss_deploy.serve.logparse import LogState

TOLERANCE = 0.05  # relative difference still called a match for estimated quantities


class Comparison(BaseModel):
    """One quantity, planned and actual."""

    quantity: str
    planned: str
    actual: str
    relative_difference: float | None = None
    status: Literal["match", "differs", "not logged"]


def _number(value: str) -> float:
    return float(value.replace(",", ""))


def _numeric(quantity: str, planned: float, actual: str | None, fmt: str) -> Comparison:
    if actual is None:
        return Comparison(quantity=quantity, planned=fmt.format(planned), actual="-", status="not logged")
    value = _number(actual)
    difference = (value - planned) / planned if planned else 0.0
    status = "match" if abs(difference) <= TOLERANCE else "differs"
    return Comparison(quantity=quantity, planned=fmt.format(planned), actual=fmt.format(value),
                      relative_difference=round(difference, 4), status=status)


def _exact(quantity: str, planned: str, actual: str | None) -> Comparison:
    if actual is None:
        return Comparison(quantity=quantity, planned=planned, actual="-", status="not logged")
    status = "match" if planned.lower() == actual.lower() else "differs"
    return Comparison(quantity=quantity, planned=planned, actual=actual, status=status)


def compare(plan: Plan, log: LogState) -> list[Comparison]:
    """Rows for every quantity the plan predicted and the log can show."""
    if plan.llamacpp is not None:
        return _compare_llamacpp(plan, log)
    facts = log.facts
    if plan.vllm is None or plan.memory is None or plan.kv is None:
        return []
    rows = [
        _exact("max_model_len", str(plan.vllm.max_model_len), facts.get("max_model_len")),
        _exact("max_num_batched_tokens", str(plan.vllm.max_num_batched_tokens), facts.get("max_num_batched_tokens")),
        _exact("attention backend", plan.vllm.attention_backend, facts.get("attention_backend")),
        _exact("MoE backend", plan.vllm.moe_backend, facts.get("moe_backend")),
        _numeric("weights (GiB)", plan.memory.weights_bytes / GIB, facts.get("weights_gib"), "{:.2f}"),
        _numeric("KV cache memory (GiB)", plan.memory.kv_bytes / GIB, facts.get("kv_gib"), "{:.2f}"),
        _numeric("KV cache size (tokens)", plan.kv.logged_tokens, facts.get("kv_tokens"), "{:,.0f}"),
        _numeric("max concurrency (x)", plan.kv.max_concurrency, facts.get("max_concurrency"), "{:.2f}"),
    ]
    return rows


def _compare_llamacpp(plan: Plan, log: LogState) -> list[Comparison]:
    """llama-server's buffer sizes (logged at verbosity 4) and slot layout against the plan."""
    settings, facts = plan.llamacpp, log.facts
    assert settings is not None
    slot_ctx = settings.n_ctx // max(settings.n_parallel, 1)
    return [
        _exact("slots (-np)", str(settings.n_parallel), facts.get("n_slots")),
        _exact("context per slot", str(slot_ctx), facts.get("n_ctx_slot")),
        _numeric("model buffers (MiB)", settings.model_bytes / MIB, facts.get("weights_mib"), "{:.2f}"),
        _numeric("KV cache, full + SWA (MiB)", (settings.kv_bytes + settings.swa_bytes) / MIB, facts.get("kv_mib"),
                 "{:.2f}"),
        _numeric("compute buffers (MiB)", settings.compute_bytes / MIB, facts.get("compute_mib"), "{:.2f}"),
    ]
