"""Throughput -> cost: $ per million output tokens and per million total tokens.

    $/M tokens = price per hour / (tokens per second x 3600) x 10^6

A rented GPU's hourly price comes from the bundled, dated table (`data/prices.yaml`), a user price file of the
same shape, or `--price-per-hour`; owned hardware costs purchase / (months x 730 h) + kW x $/kWh per hour.
gpt-oss reasoning tokens are billed output: the cost per *visible* output token is reported beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gptoss_deploy.data.schema import PriceTable
from gptoss_deploy.errors import InputError

HOURS_PER_MONTH = 730.0  # 8760 h / 12


class Price(BaseModel):
    """An hourly price for the whole serving box."""

    name: str
    per_hour: float
    basis: str  # where the figure comes from
    recorded: str | None = None


class CostRow(BaseModel):
    """Cost of one throughput at one price."""

    price: Price
    scenario: str
    output_tokens_per_s: float
    total_tokens_per_s: float | None
    usd_per_m_output: float
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
        prices.append(Price(name=name, per_hour=per_gpu * gpus, recorded=table.recorded,
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
        scenarios.append({"scenario": label + (f" effort={effort}" if effort else ""),
                          "output_tokens_per_s": float(result["output_throughput"]),
                          "total_tokens_per_s": float(result.get("total_token_throughput") or 0) or None,
                          "reasoning_share": ext.get("reasoning_share"), "reasoning_effort": effort})
    if not scenarios:
        raise InputError("the results file holds no finished benchmark with a throughput",
                         hint="run `gptoss bench ... --journal FILE` (or --save-result) first")
    return scenarios


def cost_rows(scenarios: list[dict[str, Any]], prices: list[Price]) -> list[CostRow]:
    """Every scenario at every price."""
    rows = []
    for scenario in scenarios:
        for price in prices:
            output = per_million(price.per_hour, scenario["output_tokens_per_s"])
            total = (per_million(price.per_hour, scenario["total_tokens_per_s"])
                     if scenario.get("total_tokens_per_s") else None)
            share = scenario.get("reasoning_share")
            visible = output / (1 - share) if share is not None and share < 1 else None
            rows.append(CostRow(price=price, scenario=scenario["scenario"],
                                output_tokens_per_s=scenario["output_tokens_per_s"],
                                total_tokens_per_s=scenario.get("total_tokens_per_s"), usd_per_m_output=output,
                                usd_per_m_total=total, usd_per_m_visible_output=visible, reasoning_share=share,
                                reasoning_effort=scenario.get("reasoning_effort")))
    return rows


def check_price_per_hour(value: float) -> Price:
    """A price given on the command line."""
    return Price(name="given", per_hour=_positive(value, "the price per hour", "--price-per-hour"),
                 basis="--price-per-hour")
