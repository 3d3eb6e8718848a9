"""Throughput -> cost: $ per million output tokens and per million total tokens.

    $/M tokens = price per hour / (tokens per second x 3600) x 10^6

A rented GPU's hourly price comes from the bundled, dated table (`data/prices.yaml`), a user price file of the
same shape, or `--price-per-hour`; owned hardware costs purchase / (months x 730 h) + kW x $/kWh per hour.
gpt-oss reasoning tokens are billed output: the cost per *visible* output token is reported beside it.

One measured tokens/s is only the throughput of the GPU it was measured on. A table row for another GPU gets the
throughput model's prediction for that GPU (same model, GPU count, workload and concurrency; labelled
"predicted"), or no cost at all when the model has no prediction there ("not comparable"); without knowing which
GPU the measurement ran on, table providers are not ranked on it (InputError).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from gptoss_deploy.data.schema import PriceTable
from gptoss_deploy.errors import InputError

HOURS_PER_MONTH = 730.0  # 8760 h / 12


class Price(BaseModel):
    """An hourly price for the whole serving box."""

    name: str
    per_hour: float
    basis: str  # where the figure comes from
    recorded: str | None = None
    gpu: str | None = Field(None, description="the catalog GPU the price rents (table rows); None: the measured box")
    gpus: int = 1


class CostRow(BaseModel):
    """Cost of one throughput at one price."""

    price: Price
    scenario: str
    throughput: Literal["measured", "given", "predicted", "not comparable"] = Field(
        description="measured (the results, on this GPU), given (--tok-s), predicted (the throughput model for the "
                    "row's GPU) or not comparable (no cost shown)")
    throughput_note: str = ""
    output_tokens_per_s: float | None
    total_tokens_per_s: float | None
    usd_per_m_output: float | None
    usd_per_m_total: float | None
    usd_per_m_visible_output: float | None = None
    reasoning_share: float | None = None
    reasoning_effort: str | None = None


def per_million(per_hour: float, tokens_per_s: float) -> float:
    """Dollars per million tokens at `tokens_per_s` on a box costing `per_hour`."""
    if tokens_per_s <= 0 or not math.isfinite(tokens_per_s):
        raise InputError(f"throughput must be a positive number of tokens/s, got {tokens_per_s}",
                         hint="benchmark first (gptoss bench) or pass --tok-s")
    return per_hour / (tokens_per_s * 3600.0) * 1e6


def _positive(value: float | None, what: str, flag: str) -> float:
    if value is None or not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive number, got {value!r}", hint=f"pass {flag} with a value > 0")
    return float(value)


def owned_price(purchase_usd: float, months: float, watts: float, usd_per_kwh: float) -> Price:
    """Owned hardware: straight-line amortisation plus electricity at the measured draw."""
    purchase = _positive(purchase_usd, "the purchase price", "--purchase-price")
    months = _positive(months, "the amortisation period", "--amortise-months")
    if watts < 0 or usd_per_kwh < 0 or not (math.isfinite(watts) and math.isfinite(usd_per_kwh)):
        raise InputError(f"power ({watts} W) and electricity price ({usd_per_kwh} $/kWh) cannot be negative",
                         hint="pass --watts and --usd-per-kwh as numbers >= 0")
    hourly = purchase / (months * HOURS_PER_MONTH) + watts / 1000 * usd_per_kwh
    return Price(name="owned", per_hour=hourly,
                 basis=f"${purchase:,.0f} over {months:g} months ({HOURS_PER_MONTH:.0f} h each) + {watts:g} W at "
                       f"${usd_per_kwh:g}/kWh")


def load_price_table(path: Path | None = None) -> PriceTable:
    """The bundled table, or a user file of the same shape (checked: names, positive finite numbers)."""
    import yaml
    from pydantic import ValidationError

    from gptoss_deploy.data import describe_validation, price_table

    if path is None:
        return price_table()
    from gptoss_deploy.inputs import MIB, read_user_file, yaml_position

    text = read_user_file(path, "price file", 4 * MIB)
    try:
        content = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise InputError(f"the price file {path} is not valid YAML{yaml_position(exc)}",
                         hint="a YAML file with providers: {name: {price_per_hour: N}}") from None
    if not isinstance(content, dict) or not isinstance(content.get("providers"), dict):
        raise InputError(f"{path} has no `providers:` mapping", hint="see gptoss_deploy/data/prices.yaml for the shape")
    try:
        return PriceTable.model_validate(content)
    except ValidationError as exc:
        raise InputError(f"price file {path}: {describe_validation(exc)}",
                         hint="prices are positive numbers of dollars per GPU-hour (or null when unknown)") from None


def table_prices(table: PriceTable, providers: list[str] | None, gpus: int) -> list[Price]:
    """Prices for the named providers (all priced ones when none are named), times the GPU count."""
    entries = table.providers
    names = providers or [n for n, e in entries.items() if e.price_per_hour is not None]
    prices = []
    for name in names:
        if name not in entries:
            raise InputError(f"unknown provider {name!r}", hint=f"known: {', '.join(entries)}; or pass --price-per-hour")
        entry = entries[name]
        if entry.price_per_hour is None:
            raise InputError(f"no price is recorded for {name!r} ({entry.provider} {entry.gpu})",
                             hint="pass today's price with --price-per-hour, or a --prices file")
        per_gpu = float(entry.price_per_hour)
        source = table.sources.get(entry.source or "", entry.source or "user file")
        from gptoss_deploy.hardware.profiles import find_gpu_key

        gpu = (find_gpu_key(entry.gpu) or entry.gpu) if entry.gpu else None
        prices.append(Price(name=name, per_hour=per_gpu * gpus, recorded=table.recorded, gpu=gpu, gpus=gpus,
                            basis=f"{entry.provider or name} {entry.gpu or ''} ${per_gpu:g}/GPU-h x {gpus}; {source}"))
    return prices


def scenarios_from_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput scenarios from benchmark results: one per result, labelled, with its reasoning effort/share."""
    scenarios = []
    for result in results:
        if not result.get("output_throughput"):
            continue
        ext = result.get("ext", {})
        effort = (ext.get("workload") or {}).get("reasoning_effort")
        label = result.get("label") or f"c={result.get('max_concurrency') or 'inf'}"
        done = max(int(result.get("completed") or 0), 1)
        scenarios.append({"scenario": label + (f" effort={effort}" if effort else ""),
                          "output_tokens_per_s": float(result["output_throughput"]),
                          "total_tokens_per_s": float(result.get("total_token_throughput") or 0) or None,
                          "reasoning_share": ext.get("reasoning_share"), "reasoning_effort": effort,
                          "concurrency": result.get("max_concurrency") or result.get("num_prompts"),
                          "input_tokens": max(1, round((result.get("total_input_tokens") or 0) / done)),
                          "output_tokens": max(1, round((result.get("total_output_tokens") or 0) / done))})
    if not scenarios:
        raise InputError("the results file holds no finished benchmark with a throughput",
                         hint="run `gptoss bench ... --journal FILE` (or --save-result) first")
    return scenarios


# (GPU key, GPU count, scenario) -> (output tokens/s or None, how it is known)
Predictor = Callable[[str, int, dict[str, Any]], tuple[float | None, str]]


def comparable(prices: list[Price], measured_gpu: str | None) -> None:
    """InputError when table prices for GPUs would be ranked on a throughput whose GPU is unknown."""
    rented = sorted({p.gpu for p in prices if p.gpu})
    if rented and measured_gpu is None:
        raise InputError(f"one tokens/s cannot rank providers of {', '.join(rented)}: it is the throughput of the GPU "
                         "it was measured on, and that GPU is not known",
                         hint="add --gpu NAME (the GPU of the measurement: its rows use it, other GPUs' rows the "
                              "throughput model's prediction), or price your own box with --price-per-hour")


def _throughput(scenario: dict[str, Any], price: Price, measured_gpu: str | None, given: bool,
                predict: Predictor | None) -> tuple[str, float | None, float | None, str]:
    """(kind, output tokens/s, total tokens/s, note) of one scenario on one price's hardware."""
    output, total = scenario["output_tokens_per_s"], scenario.get("total_tokens_per_s")
    if price.gpu is None or price.gpu == measured_gpu:
        return ("given" if given else "measured"), output, total, ""
    if predict is None:
        return "not comparable", None, None, f"measured on {measured_gpu}, priced for {price.gpu}"
    predicted, note = predict(price.gpu, price.gpus, scenario)
    if predicted is None:
        return "not comparable", None, None, note
    return "predicted", predicted, (total * predicted / output if total else None), note


def cost_rows(scenarios: list[dict[str, Any]], prices: list[Price], measured_gpu: str | None = None,
              predict: Predictor | None = None, given: bool = False) -> list[CostRow]:
    """Every scenario at every price, each at the throughput of the price's own hardware: the measurement where
    it ran there (or the price is for the measured box), else `predict`'s figure for that GPU, else no cost."""
    rows = []
    for scenario in scenarios:
        for price in prices:
            kind, output, total, note = _throughput(scenario, price, measured_gpu, given, predict)
            share = scenario.get("reasoning_share")
            usd_output = per_million(price.per_hour, output) if output else None
            usd_total = per_million(price.per_hour, total) if total else None
            visible = usd_output / (1 - share) if usd_output and share is not None and share < 1 else None
            rows.append(CostRow(price=price, scenario=scenario["scenario"], throughput=kind,
                                throughput_note=note, output_tokens_per_s=output, total_tokens_per_s=total,
                                usd_per_m_output=usd_output, usd_per_m_total=usd_total,
                                usd_per_m_visible_output=visible, reasoning_share=share,
                                reasoning_effort=scenario.get("reasoning_effort")))
    return rows


def check_price_per_hour(value: float) -> Price:
    """A price given on the command line."""
    return Price(name="given", per_hour=_positive(value, "the price per hour", "--price-per-hour"),
                 basis="--price-per-hour")
