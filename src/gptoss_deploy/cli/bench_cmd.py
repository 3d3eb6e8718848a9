"""`gptoss bench`: a vLLM-compatible serving benchmark (single run or concurrency sweep) with self-checks."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from gptoss_deploy.cli.args import bounded, seconds, seed, tokens

EXAMPLES = """examples:
  gptoss bench http://127.0.0.1:8000 --concurrency 8 --num-prompts 200          # random 1024 in / 128 out
  gptoss bench http://127.0.0.1:8000 --sweep --sweep-max 64 --plot plots/       # 1, 2, 4, ... until the knee
  gptoss bench http://127.0.0.1:8000 --dataset story --story-words 300 --reasoning-effort low
  gptoss bench http://127.0.0.1:8000 --request-rate 4 --burstiness 0.5 --goodput ttft:500 tpot:50

Metric names and units are those of `vllm bench serve`; every request and result is appended to the journal
(JSONL, fsynced), and Ctrl-C keeps every finished request. Then: gptoss cost --results gptoss-bench.jsonl
"""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `bench`."""
    p = commands.add_parser("bench", parents=[common], help="benchmark a running endpoint (vLLM-compatible metrics)",
                            description="Benchmark an OpenAI-compatible server: TTFT, TPOT, ITL, E2EL, throughput "
                                        "and goodput as `vllm bench serve` defines them, plus first-content token, "
                                        "per-token ITL, reasoning tokens and self-checks.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="base URL, with or without /v1")
    p.add_argument("--api-key-file", help="file holding the server's API key (also env API_KEY)")
    p.add_argument("--model", help="model to benchmark (default: the first one /v1/models lists)")
    work = p.add_argument_group("workload")
    work.add_argument("--dataset", choices=["random", "words", "story"], default="random",
                      help="random: vLLM's random dataset built with the server's tokenizer (same seed, same prompts "
                           "as `vllm bench serve --dataset-name random`); words: readable random words of exact "
                           "token length; story: 'Write an N-word story' chat scenarios")
    work.add_argument("--endpoint", choices=["completions", "chat"],
                      help="default: completions for random (fixed lengths with ignore_eos), chat for story")
    work.add_argument("--num-prompts", type=bounded(1, 1_000_000, integer=True), default=100)
    work.add_argument("--input-len", type=tokens, default=1024, help="prompt tokens (random)")
    work.add_argument("--output-len", "--max-tokens", dest="output_len", type=tokens, default=None,
                      help="max_tokens per request (default 128 random, 1024 story)")
    work.add_argument("--range-ratio", type=bounded(0, 1), default=0.0,
                      help="lengths uniform in L(1±r): input and output for random (as vLLM), input for words")
    work.add_argument("--vocab-size", type=bounded(2, 1 << 24, integer=True), default=None,
                      help="random: token ids are drawn below this (default 199998, gpt-oss's ordinary tokens)")
    work.add_argument("--story-words", type=bounded(1, 1_000_000, integer=True), default=300)
    work.add_argument("--seed", type=seed, default=0)
    work.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=None,
                      help="run every request to max_tokens (default: on for completions, off for chat)")
    work.add_argument("--temperature", type=bounded(0, 2))
    work.add_argument("--reasoning-effort", choices=["low", "medium", "high"])
    load = p.add_argument_group("load")
    load.add_argument("--concurrency", "--max-concurrency", dest="concurrency", type=bounded(1, 100_000, integer=True),
                      help="requests in flight at most (default: unbounded)")
    load.add_argument("--request-rate", type=bounded(0, 1e9, low_open=True, allow_inf=True), default=math.inf,
                      help="arrivals per second, Gamma-distributed gaps (default: all at once)")
    load.add_argument("--burstiness", type=bounded(0, 1000, low_open=True), default=1.0, help="Gamma shape: 1 Poisson, <1 burstier")
    load.add_argument("--warmups", type=bounded(0, 10**6, integer=True), help="warm-up requests (default: two rounds at the concurrency)")
    load.add_argument("--sweep", action="store_true", help="concurrency 1, 2, 4, ... until throughput stops rising")
    load.add_argument("--sweep-max", type=bounded(1, 100_000, integer=True), default=256, help="largest sweep concurrency (default 256)")
    stats = p.add_argument_group("statistics and output")
    stats.add_argument("--percentiles", default="50,90,95,99", help="comma-separated (default 50,90,95,99)")
    stats.add_argument("--goodput", nargs="+", metavar="METRIC:MS", help="SLOs, e.g. ttft:500 tpot:50 e2el:10000")
    stats.add_argument("--label", help="name for this scenario in tables and the journal")
    stats.add_argument("--journal", default="gptoss-bench.jsonl", help="results journal (JSONL, appended)")
    stats.add_argument("--save-result", help="also write the (last) result as one vLLM-style JSON file")
    stats.add_argument("--save-detailed", action="store_true", help="keep per-request events in the result")
    stats.add_argument("--markdown", help="write the headline table as markdown to this file")
    stats.add_argument("--plot", help="write PNG plots (throughput, TTFT/TPOT vs concurrency) to this folder")
    stats.add_argument("--server-log", help="the engine's log, to flag JIT compilation / preemption during the run "
                                            "(found automatically for a local `gptoss serve`)")
    stats.add_argument("--no-continuous-usage", dest="continuous_usage", action="store_false",
                       help="do not ask vLLM for usage in every chunk (then tokens per chunk are not known and the "
                            "per-token ITL assumes one token per chunk; the request matches vllm bench serve's)")
    stats.add_argument("--timeout", type=seconds, default=600.0, help="seconds per request (default 600)")
    p.set_defaults(handler=run)


def parse_percentiles(text: str) -> tuple[float, ...]:
    """'50,90,99' -> (50.0, 90.0, 99.0); each in (0, 100]."""
    from gptoss_deploy.errors import InputError

    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--percentiles {text!r} is not a comma-separated list of numbers", hint="e.g. 50,90,99") from None
    if not values or any(not 0 < v <= 100 for v in values):
        raise InputError(f"--percentiles {text!r}: each must be in (0, 100]", hint="e.g. 50,90,99")
    return values


def parse_goodput(pairs: list[str] | None) -> dict[str, float] | None:
    """['ttft:500', 'tpot:50'] -> {'ttft': 500.0, 'tpot': 50.0} (ms)."""
    from gptoss_deploy.errors import InputError

    if not pairs:
        return None
    slos = {}
    for pair in pairs:
        name, _, value = pair.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if name not in ("ttft", "tpot", "e2el") or number <= 0:
            raise InputError(f"--goodput {pair!r} is not METRIC:MS with METRIC ttft, tpot or e2el and MS > 0",
                             hint="e.g. --goodput ttft:500 tpot:50")
        slos[name] = number
    return slos


def config_from_args(args: argparse.Namespace):
    """Flags -> BenchConfig."""
    import os

    from gptoss_deploy.bench.runner import BenchConfig
    from gptoss_deploy.bench.workload import GPT_OSS_VOCAB_SIZE
    from gptoss_deploy.cli.args import read_key_file
    from gptoss_deploy.errors import InputError

    if not 0 <= args.range_ratio < 1:
        raise InputError(f"--range-ratio {args.range_ratio} must be in [0, 1)", hint="e.g. 0.1 for lengths L±10 %")
    if args.warmups is not None and args.warmups < 0:
        raise InputError("--warmups cannot be negative", hint="0 disables warm-up")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed} is negative", hint="seeds are integers from 0 up, as in vllm bench serve")
    key = read_key_file(args.api_key_file) if args.api_key_file else (os.environ.get("API_KEY") or None)
    output_len = args.output_len or (1024 if args.dataset == "story" else 128)
    return BenchConfig(url=args.url, model=args.model, api_key=key, dataset=args.dataset, endpoint=args.endpoint,
                       num_prompts=args.num_prompts, input_len=args.input_len, output_len=output_len,
                       range_ratio=args.range_ratio, vocab_size=args.vocab_size or GPT_OSS_VOCAB_SIZE,
                       story_words=args.story_words, seed=args.seed,
                       max_concurrency=args.concurrency, request_rate=args.request_rate, burstiness=args.burstiness,
                       warmups=args.warmups, ignore_eos=args.ignore_eos, temperature=args.temperature,
                       reasoning_effort=args.reasoning_effort, percentiles=parse_percentiles(args.percentiles),
                       goodput_slos_ms=parse_goodput(args.goodput), label=args.label, timeout_s=args.timeout,
                       server_log=Path(args.server_log) if args.server_log else None,
                       save_detailed=args.save_detailed, continuous_usage=args.continuous_usage)


def _progress(phase: str, done: int, total: int) -> None:
    step = max(1, total // 10)
    if done == total or done % step == 0:
        sys.stderr.write(f"[bench] {phase} {done}/{total}\n")
        sys.stderr.flush()


def render(results: list[dict[str, Any]]) -> None:
    """Headline table on stdout, self-checks on stderr."""
    from rich.table import Table

    from gptoss_deploy.bench.report import headline_rows, self_check_lines
    from gptoss_deploy.cli.output import console, message

    columns, rows = headline_rows(results)
    first = results[0]
    server = first.get("ext", {}).get("server", {})
    table = Table(title=f"{first['model_id']} on {server.get('kind')} {server.get('version') or ''} "
                        f"{server.get('endpoint', '')}", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)
    for result in results:
        prefix = f"[{result.get('label')}] " if len(results) > 1 else ""
        for line in self_check_lines(result):
            message(prefix + line)


def run(args: argparse.Namespace) -> int:
    """`gptoss bench URL`: 0 done, 1 every request failed, 2 bad input, 130 interrupted (finished requests kept)."""
    import json

    from gptoss_deploy.bench.report import markdown_table, plot_sweep
    from gptoss_deploy.bench.runner import run_benchmark
    from gptoss_deploy.bench.sweep import concurrency_levels, run_sweep
    from gptoss_deploy.cli.output import emit_json, message

    config = config_from_args(args)
    journal = Path(args.journal)
    sweep = None
    if args.sweep:
        sweep = run_sweep(config, concurrency_levels(1, args.sweep_max),
                          lambda c: run_benchmark(c, journal, _progress))
        results = sweep.results
    else:
        results = [run_benchmark(config, journal, _progress)]
    if args.save_result:
        Path(args.save_result).write_text(json.dumps(results[-1], indent=2, default=str))
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(results))
    if args.plot:
        paths = plot_sweep(results, Path(args.plot), results[0]["model_id"])
        message("plots: " + ", ".join(str(p) for p in paths))
    if args.json:
        emit_json("bench", {"results": results} | ({"sweep": sweep.model_dump()} if sweep else {}))
    else:
        render(results)
    if sweep is not None:
        message(f"sweep: {sweep.stop_reason}; knee at concurrency {sweep.knee_concurrency} "
                f"(best {sweep.best_output_throughput:.1f} output tok/s)")
    message(f"journal: {journal}")
    if any(r.get("ext", {}).get("interrupted") for r in results):
        return 130
    return 1 if all(r["completed"] == 0 for r in results) else 0
