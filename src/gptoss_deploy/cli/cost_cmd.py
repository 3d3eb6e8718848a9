"""`gptoss cost`: benchmark throughput -> $ per million tokens, for rented or owned hardware."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptoss_deploy.cli.args import bounded, non_negative, positive_float

EXAMPLES = """examples:
  gptoss cost --results gptoss-bench.jsonl                       # every priced provider in the bundled table
  gptoss cost --tok-s 20 --price-per-hour 0.78                   # -> $10.83 per million output tokens
  gptoss cost --results r.json --provider lambda-h100 --gpus 4
  gptoss cost --tok-s 45 --purchase-price 2000 --amortise-months 36 --watts 120 --usd-per-kwh 0.30
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `cost`."""
    p = commands.add_parser("cost", parents=[common], help="turn measured tokens/s into $ per million tokens",
                            description="Cost per million output (and total) tokens from a benchmark result and an "
                                        "hourly price: the bundled dated table, a price file, a given price, or "
                                        "owned hardware (amortisation + electricity). Reasoning tokens are billed "
                                        "output; the cost per visible token is shown when the result knows the share.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("throughput (one of)")
    src.add_argument("--results", help="journal or result JSON from `gptoss bench` (or `vllm bench serve`)")
    src.add_argument("--tok-s", type=positive_float, help="output tokens per second")
    src.add_argument("--total-tok-s", type=positive_float, help="input + output tokens per second (optional)")
    price = p.add_argument_group("price (default: every priced provider in the bundled table)")
    price.add_argument("--provider", action="append", help="provider id from the table (repeatable)")
    price.add_argument("--prices", help="price file (YAML, the shape of gptoss_deploy/data/prices.yaml)")
    price.add_argument("--price-per-hour", type=positive_float, help="what the whole box costs per hour, $")
    price.add_argument("--gpus", type=bounded(1, 100000, integer=True), default=1, help="GPUs rented (table prices are per GPU-hour)")
    owned = p.add_argument_group("owned hardware")
    owned.add_argument("--purchase-price", type=positive_float, help="$ paid for the box")
    owned.add_argument("--amortise-months", type=bounded(0, 1200, low_open=True), default=36.0, help="write-off period (default 36)")
    owned.add_argument("--watts", type=non_negative, default=0.0, help="average draw while serving")
    owned.add_argument("--usd-per-kwh", type=non_negative, default=0.0, help="electricity price")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """`gptoss cost`: prints the table (or JSON); 2 on missing or bad numbers."""
    from gptoss_deploy.bench import cost
    from gptoss_deploy.bench.journal import results_in
    from gptoss_deploy.errors import InputError

    if (args.results is None) == (args.tok_s is None):
        raise InputError("give exactly one of --results FILE or --tok-s N",
                         hint="e.g. gptoss cost --tok-s 20 --price-per-hour 0.78")
    if args.gpus < 1:
        raise InputError(f"--gpus {args.gpus} must be at least 1")
    if args.results:
        scenarios = cost.scenarios_from_results(results_in(Path(args.results)))
    else:
        cost.per_million(1.0, args.tok_s)  # validates the number
        scenarios = [{"scenario": f"{args.tok_s:g} tok/s", "output_tokens_per_s": args.tok_s,
                      "total_tokens_per_s": args.total_tok_s, "reasoning_share": None, "reasoning_effort": None}]
    if args.price_per_hour is not None:
        prices = [cost.check_price_per_hour(args.price_per_hour)]
    elif args.purchase_price is not None:
        prices = [cost.owned_price(args.purchase_price, args.amortise_months, args.watts, args.usd_per_kwh)]
    else:
        table = cost.load_price_table(Path(args.prices) if args.prices else None)
        prices = cost.table_prices(table, args.provider, args.gpus)
    rows = cost.cost_rows(scenarios, prices)
    if args.json:
        from gptoss_deploy.cli.output import emit_json

        emit_json("cost", [row.model_dump(mode="json") for row in rows])
        return 0
    _render(rows)
    return 0


def _render(rows) -> None:
    from rich.table import Table

    from gptoss_deploy.cli.output import console, message

    table = Table(title="cost per million tokens", title_justify="left")
    for column in ("scenario", "price", "$/h", "output tok/s", "$/M output", "$/M total", "$/M visible output"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.scenario, row.price.name, f"{row.price.per_hour:.2f}", f"{row.output_tokens_per_s:.1f}",
                      f"{row.usd_per_m_output:.2f}", "-" if row.usd_per_m_total is None else f"{row.usd_per_m_total:.2f}",
                      "-" if row.usd_per_m_visible_output is None else
                      f"{row.usd_per_m_visible_output:.2f} ({row.reasoning_share:.0%} reasoning)")
    console().print(table)
    for price in {row.price.name: row.price for row in rows}.values():
        message(f"{price.name}: {price.basis}" + (f" (recorded {price.recorded})" if price.recorded else ""))
