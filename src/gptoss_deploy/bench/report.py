"""Presenting results: the headline rows, a markdown table like the seeds' (tokens, time, tokens/s per
scenario), and PNG plots (throughput and TTFT/TPOT percentiles against concurrency)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

HEADLINE = (
    ("scenario", lambda r: r.get("label") or f"c={r.get('max_concurrency') or 'inf'}"),
    ("requests", lambda r: f"{r['completed']}/{r['completed'] + r['failed']}"),
    ("output tokens", lambda r: f"{r['total_output_tokens']:,}"),
    ("reasoning", lambda r: _opt(r.get("ext", {}).get("total_reasoning_tokens"), "{:,}")),
    ("time (s)", lambda r: f"{r['duration']:.2f}"),
    ("output tok/s", lambda r: f"{r['output_throughput']:.1f}"),
    ("total tok/s", lambda r: f"{r['total_token_throughput']:.1f}"),
    ("TTFT p50/p99 (ms)", lambda r: f"{r['median_ttft_ms']:.1f} / {r.get('p99_ttft_ms', 0):.1f}"),
    ("TPOT p50/p99 (ms)", lambda r: f"{r['median_tpot_ms']:.2f} / {r.get('p99_tpot_ms', 0):.2f}"),
    ("tok/s per user", lambda r: _opt(1000 / r["median_tpot_ms"] if r["median_tpot_ms"] else None, "{:.1f}")),
)


def _opt(value: Any, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def headline_rows(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Column names and one row per result."""
    return [name for name, _ in HEADLINE], [[cell(r) for _, cell in HEADLINE] for r in results]


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The headline as a GitHub markdown table."""
    columns, rows = headline_rows(results)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def self_check_lines(result: dict[str, Any]) -> list[str]:
    """One line per self-check, prefixed ok / WARN, for the person reading the result."""
    ext = result.get("ext", {})
    lines = []
    health = ext.get("client_health") or {}
    if health:
        lag = health.get("loop_lag_p99_ms", 0.0)
        lines.append(f"{'ok' if lag < 5 else 'WARN'}: client loop lag p99 {lag:.2f} ms, client CPU {health.get('cpu_pct', 0):.0f} %"
                     + ("" if lag < 5 else " (the client is a bottleneck: latencies are inflated)"))
    check = ext.get("counter_check")
    if check:
        lines.append(f"{'ok' if check['agrees'] else 'WARN'}: server counted {check['server_generation_tokens']:,.0f} "
                     f"generated tokens, client {check['client_output_tokens']:,} ({check['diff_pct']:.2f} % apart)")
    else:
        lines.append("note: no server token counters (/metrics not offered; llama-server needs --metrics)")
    tokens = ext.get("token_check")
    if tokens:
        diff = tokens["usage_vs_client_diff_pct_p50"]
        lines.append(f"{'ok' if diff <= 10 else 'WARN'}: streamed text re-tokenised by the server is {diff:.1f} % "
                     f"from usage (median of {tokens['sampled']})")
    if ext.get("osl_mismatch_count"):
        lines.append(f"WARN: {ext['osl_mismatch_count']} requests did not reach max_tokens although ignore_eos was set")
    preemptions = (ext.get("server_counters_delta") or {}).get("preemptions")
    if preemptions:
        lines.append(f"WARN: {preemptions:.0f} preemptions during the run (KV cache full: lower concurrency)")
    roof = ext.get("roofline")
    if roof:
        lines.append(f"{'WARN' if roof.get('warning') else 'ok'}: single-stream decode {roof['measured_tok_s']:.0f} tok/s "
                     f"= {roof['fraction_of_roofline']:.0%} of the plan's {roof['tok_s']:.0f} tok/s bandwidth ceiling"
                     + (f" ({roof['warning']})" if roof.get("warning") else ""))
    for warning in ext.get("engine_warnings", [])[:5]:
        lines.append(f"WARN: engine log during the run: {warning['why']}: {warning['line'][:160]}")
    if ext.get("contaminated"):
        lines.append("WARN: this result is contaminated (see above); rerun with more --warmups or lower load")
    if ext.get("interrupted"):
        lines.append("WARN: interrupted: the figures cover only the requests that finished")
    return lines


def plot_sweep(levels: Sequence[dict[str, Any]], out_dir: Path, title: str) -> list[Path]:
    """throughput.png (output tok/s vs concurrency) and latency.png (TTFT, TPOT p50/p99 vs concurrency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    xs = [level["max_concurrency"] for level in levels]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(xs, [level["output_throughput"] for level in levels], marker="o", label="output tok/s")
    ax.plot(xs, [level["output_throughput"] / level["max_concurrency"] for level in levels], marker="s",
            label="output tok/s per request slot")
    ax.set(xscale="log", xlabel="max concurrency", ylabel="tokens/s", title=f"{title}: throughput")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.grid(alpha=0.3)
    ax.legend()
    paths = [out_dir / "throughput.png"]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    for axis, metric, name in ((left, "ttft", "TTFT"), (right, "tpot", "TPOT")):
        axis.plot(xs, [level[f"median_{metric}_ms"] for level in levels], marker="o", label="p50")
        axis.plot(xs, [level[f"p99_{metric}_ms"] for level in levels], marker="^", label="p99")
        axis.set(xscale="log", xlabel="max concurrency", ylabel="ms", title=f"{name}")
        axis.set_xticks(xs, [str(x) for x in xs])
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"{title}: latency")
    fig.tight_layout()
    paths.append(out_dir / "latency.png")
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths
