"""`gptoss cost`: benchmark throughput -> $ per million tokens, for rented or owned hardware."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptoss_deploy.cli.args import bounded, non_negative, positive_float, tokens

EXAMPLES = """examples:
  gptoss cost --results gptoss-bench.jsonl --gpu H100           # every priced provider: H100 rows measured,
                                                                 # the other GPUs' rows predicted
  gptoss cost --tok-s 20 --price-per-hour 0.78                   # -> $10.83 per million output tokens
  gptoss cost --results r.json --gpu H100 --provider lambda-h100 --gpus 4
  gptoss cost --tok-s 2500 --gpu H100 --concurrency 64 --model gpt-oss-120b
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
    measured = p.add_argument_group("what was measured (to compare GPUs: other GPUs' rows get the throughput model's "
                                    "prediction for the same work)")
    measured.add_argument("--gpu", help="the GPU the throughput was measured on (L40S, H100, 'RTX 4090'); needed "
                                        "with table prices")
    measured.add_argument("--model", "-m", default="gpt-oss-120b", help="the model measured (default gpt-oss-120b)")
    measured.add_argument("--concurrency", type=bounded(1, 1_000_000, integer=True),
                          help="users in flight during the measurement (--results carry it)")
    measured.add_argument("--input-tokens", type=tokens, default=1024, help="prompt tokens per request (--tok-s)")
    measured.add_argument("--output-tokens", type=tokens, default=1024, help="output tokens per request (--tok-s)")
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
                      "total_tokens_per_s": args.total_tok_s, "reasoning_share": None, "reasoning_effort": None,
                      "concurrency": args.concurrency, "input_tokens": args.input_tokens,
                      "output_tokens": args.output_tokens}]
    if args.price_per_hour is not None:
        prices = [cost.check_price_per_hour(args.price_per_hour)]
    elif args.purchase_price is not None:
        prices = [cost.owned_price(args.purchase_price, args.amortise_months, args.watts, args.usd_per_kwh)]
    else:
        table = cost.load_price_table(Path(args.prices) if args.prices else None)
        prices = cost.table_prices(table, args.provider, args.gpus)
    measured_gpu = _gpu_key(args.gpu) if args.gpu else None
    cost.comparable(prices, measured_gpu)
    rows = cost.cost_rows(scenarios, prices, measured_gpu, _predictor(args.model), given=args.tok_s is not None)
    if args.json:
        from gptoss_deploy.cli.output import emit_json

        emit_json("cost", [row.model_dump(mode="json") for row in rows])
        return 0
    _render(rows)
    return 0


def _gpu_key(name: str) -> str:
    """The catalog key of --gpu (the catalog's InputError, with the close names, when unknown)."""
    from gptoss_deploy.errors import InputError, UnknownProfileError
    from gptoss_deploy.hardware.profiles import compose_host

    try:
        gpu = compose_host(name, 1).gpu
    except UnknownProfileError as exc:
        raise InputError(f"--gpu: {exc.message}", hint="`gptoss profiles` lists the GPUs the catalog knows") from None
    assert gpu is not None and gpu.key is not None
    return gpu.key


def _predictor(model: str):
    """(GPU key, count, scenario) -> the throughput model's tokens/s there, each plan made once."""
    import functools

    from gptoss_deploy.errors import InputError
    from gptoss_deploy.planning import predicted_throughput

    @functools.cache
    def predict_at(gpu: str, gpus: int, input_tokens: int, output_tokens: int, concurrency: int):
        return predicted_throughput(model, gpu, gpus, input_tokens, output_tokens, concurrency)

    def predict(gpu: str, gpus: int, scenario: dict):
        if not scenario.get("concurrency"):
            raise InputError("predicting another GPU's throughput needs the concurrency the measurement ran at",
                             hint="add --concurrency N (the users in flight while it was measured)")
        return predict_at(gpu, gpus, int(scenario["input_tokens"]), int(scenario["output_tokens"]),
                          int(scenario["concurrency"]))

    return predict


def _render(rows) -> None:
    from rich.table import Table

    from gptoss_deploy.cli.output import console, message

    def money(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    table = Table(title="cost per million tokens", title_justify="left")
    for column in ("scenario", "price", "$/h", "throughput", "output tok/s", "$/M output", "$/M total",
                   "$/M visible output"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.scenario, row.price.name, f"{row.price.per_hour:.2f}", row.throughput,
                      "-" if row.output_tokens_per_s is None else f"{row.output_tokens_per_s:.1f}",
                      money(row.usd_per_m_output), money(row.usd_per_m_total),
                      "-" if row.usd_per_m_visible_output is None else
                      f"{row.usd_per_m_visible_output:.2f} ({row.reasoning_share:.0%} reasoning)")
    console().print(table)
    for price in {row.price.name: row.price for row in rows}.values():
        message(f"{price.name}: {price.basis}" + (f" (recorded {price.recorded})" if price.recorded else ""))
    for note in dict.fromkeys(f"{row.price.name}: {row.throughput_note}" for row in rows if row.throughput_note):
        message(note)
    if any(row.throughput == "predicted" for row in rows):
        message("predicted rows use the throughput model for that GPU (estimated), not the measurement: compare "
                "measured rows with measured rows")
