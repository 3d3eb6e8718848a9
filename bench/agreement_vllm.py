"""Agreement: `gptoss bench` against `vllm bench serve` (from the same vllm-cpu install) on one server.

One vLLM-CPU server with the lane's tiny gpt-oss model; the two tools take turns (vLLM, ours, ours, vLLM, ...)
with the same workload: vLLM's random dataset (`--input-len` tokens; ours builds it the same way through the
server's tokenizer, so a seed gives both tools the same prompts), `--output-len` tokens with ignore_eos on
/v1/completions, `--num-prompts` at `--concurrency`, the same number of warm-up requests. Run n uses seed 2n for
vLLM's tool and 2n+1 for ours: same distribution, different prompts, so neither tool finds the other's prompts in
the server's prefix cache. Compared on the medians
over the runs: total output tokens (must be equal), output throughput (ratio within 0.97-1.03), median TPOT and
median TTFT (within 5 %). Each tool's own run-to-run spread is written beside the ratios.

On a small CPU host the server and the client share cores, and the host's speed drifts between runs (the same
tool varied 80-110 tok/s here). So the script binds vLLM-CPU's compute threads to core 0 and runs both clients on
the other cores (`taskset`), and judges on the median of the per-pair ratios (each pair = adjacent runs, which
cancels slow drift); the ratio of the medians is written too.

Both tools send the same request: ours with `--no-continuous-usage`, since vLLM's tool does not ask for usage in every
chunk and asking for it changes the server's work (with it, over 10 pairs, the server's own mean ITL was 57.8 ms
during our turns against 56.1 ms during vLLM's: bench/results/agreement_vllm_continuous_usage.json).

Beside each run the server's own view is recorded (vLLM's histograms vllm:time_to_first_token_seconds and
vllm:inter_token_latency_seconds, mean over the run's requests including its warm-ups): when the two tools' numbers
differ, it tells a client that measures differently from a server that ran slower during that tool's turn.

Usage: python bench/agreement_vllm.py [--runs 6] [--url URL] [--out bench/results/agreement_vllm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VLLM_BENCH = ("import sys\n"
              "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
              "from vllm.benchmarks.serve import add_cli_args, main\n"
              "parser = FlexibleArgumentParser()\n"
              "add_cli_args(parser)\n"
              "main(parser.parse_args(sys.argv[1:]))\n")  # `vllm bench serve` without the console script (no metadata)
COMPARED = ("output_throughput", "median_tpot_ms", "median_ttft_ms", "mean_tpot_ms", "median_itl_ms",
            "request_throughput", "duration")
TARGETS = {"output_throughput": (0.97, 1.03), "median_tpot_ms": (0.95, 1.05), "median_ttft_ms": (0.95, 1.05)}


def client_cpus() -> list[str]:
    """taskset prefix putting a client on every core but 0 (where the server computes); none on one core."""
    cores = os.cpu_count() or 1
    return ["taskset", "-c", f"1-{cores - 1}"] if cores > 1 and shutil.which("taskset") else []


def run_vllm_bench(lane, base_url: str, model: str, args: argparse.Namespace, workdir: Path, n: int) -> dict:
    name = f"vllm-{n}.json"
    cmd = [*client_cpus(), lane.python, "-c", VLLM_BENCH, "--backend", "openai", "--base-url", base_url, "--endpoint",
           "/v1/completions", "--model", model, "--tokenizer", lane.model, "--dataset-name", "random",
           "--input-len", str(args.input_len), "--output-len", str(args.output_len),
           "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.concurrency),
           "--seed", str(2 * n), "--ignore-eos", "--num-warmups", str(args.warmups), "--disable-tqdm",
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
           "--save-result", "--result-dir", str(workdir), "--result-filename", name]
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"vllm bench serve failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads((workdir / name).read_text())


def run_ours(base_url: str, args: argparse.Namespace, workdir: Path, n: int) -> dict:
    cmd = [*client_cpus(), sys.executable, "-m", "gptoss_deploy.cli.main", "bench", base_url, "--input-len", str(args.input_len),
           "--output-len", str(args.output_len), "--num-prompts", str(args.num_prompts),
           "--concurrency", str(args.concurrency), "--seed", str(2 * n + 1), "--warmups", str(args.warmups),
           "--journal", str(workdir / "journal.jsonl"), "--json", "--no-continuous-usage", *args.gptoss_arg]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"gptoss bench failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)["data"]["results"][0]


SERVER_HISTOGRAMS = {"server_mean_ttft_ms": "vllm:time_to_first_token_seconds",
                     "server_mean_itl_ms": "vllm:inter_token_latency_seconds"}


def server_histograms(base_url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of vLLM's TTFT and inter-token histograms, from /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {name: key for key, name in SERVER_HISTOGRAMS.items()}
    totals = {key: [0.0, 0.0] for key in SERVER_HISTOGRAMS}
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=10).text):
        if family.name in wanted:
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    totals[wanted[family.name]][0] += sample.value
                elif sample.name.endswith("_count"):
                    totals[wanted[family.name]][1] += sample.value
    return {key: (total, count) for key, (total, count) in totals.items()}


def server_means(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean of each histogram over what happened between two scrapes, in ms."""
    return {key: 1000 * (after[key][0] - before[key][0]) / max(1.0, after[key][1] - before[key][1]) for key in after}


def spread(values: list[float]) -> float:
    """(max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values) if values and statistics.median(values) else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6, help="runs per tool (interleaved)")
    parser.add_argument("--url", help="an already running vLLM server (default: start the lane's vLLM-CPU)")
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmups", type=int, default=8)
    parser.add_argument("--gptoss-arg", action="append", default=[], help="extra flag for gptoss bench (repeatable)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "agreement_vllm.json"))
    args = parser.parse_args()

    from gptoss_deploy.lane import VLLM_CPU, ensure_lane
    from gptoss_deploy.lane.server import SERVED_NAME, LaneServer

    lane = ensure_lane(progress=lambda text: print(text, file=sys.stderr))
    runs: dict[str, list[dict]] = {"vllm": [], "gptoss": []}
    server_cm = _Given(args.url) if args.url else LaneServer(lane)
    if isinstance(server_cm, LaneServer) and client_cpus():
        server_cm.launch.env["VLLM_CPU_OMP_THREADS_BIND"] = "0"  # compute on core 0; the clients get the rest
    with tempfile.TemporaryDirectory() as tmp, server_cm as server:
        workdir = Path(tmp)
        for n in range(args.runs):
            order = ("vllm", "gptoss") if n % 2 == 0 else ("gptoss", "vllm")
            for tool in order:
                started = time.monotonic()
                before = server_histograms(server.base_url)
                result = (run_vllm_bench(lane, server.base_url, SERVED_NAME, args, workdir, n) if tool == "vllm"
                          else run_ours(server.base_url, args, workdir, n))
                runs[tool].append({k: result[k] for k in COMPARED + ("total_output_tokens", "total_input_tokens",
                                                                      "completed", "failed")}
                                  | server_means(before, server_histograms(server.base_url)))
                print(f"run {n} {tool}: {result['output_throughput']:.1f} tok/s, TPOT {result['median_tpot_ms']:.2f} ms, "
                      f"TTFT {result['median_ttft_ms']:.1f} ms (server mean {runs[tool][-1]['server_mean_ttft_ms']:.1f}),"
                      f" {result['total_output_tokens']} tokens "
                      f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    medians = {tool: {k: statistics.median(r[k] for r in rs) for k in COMPARED} for tool, rs in runs.items()}
    ratio_of_medians = {k: medians["gptoss"][k] / medians["vllm"][k] for k in COMPARED if medians["vllm"][k]}
    ratios = {k: statistics.median(ours[k] / theirs[k] for ours, theirs in zip(runs["gptoss"], runs["vllm"], strict=True))
              for k in COMPARED}
    tokens_equal = all(r["total_output_tokens"] == args.num_prompts * args.output_len
                       for rs in runs.values() for r in rs)
    verdicts = {k: lo <= ratios[k] <= hi for k, (lo, hi) in TARGETS.items()} | {"total_output_tokens_equal": tokens_equal}
    record = {
        "bench": "agreement_vllm", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
        "cpu_count": __import__("os").cpu_count(), "vllm": VLLM_CPU,
        "workload": {"endpoint": "/v1/completions", "dataset": "random (vLLM's construction in both tools)",
                     "seeds": "vllm 2n, gptoss 2n+1", "input_len": args.input_len,
                     "output_len": args.output_len, "num_prompts": args.num_prompts, "concurrency": args.concurrency,
                     "warmups": args.warmups, "ignore_eos": True, "runs_per_tool": args.runs,
                     "order": "interleaved, alternating which tool goes first",
                     "gptoss_args": ["--no-continuous-usage", *args.gptoss_arg]},
        "server_compute_cores": "0" if args.url is None and client_cpus() else "unpinned",
        "client_cores": " ".join(client_cpus()[2:]) or "unpinned",
        "runs": runs, "medians": medians, "median_of_pair_ratios_gptoss_over_vllm": ratios,
        "ratio_of_medians_gptoss_over_vllm": ratio_of_medians,
        "server_side_medians": {tool: {k: statistics.median(r[k] for r in rs) for k in SERVER_HISTOGRAMS}
                                for tool, rs in runs.items()},
        "spread_per_tool": {tool: {k: spread([r[k] for r in rs]) for k in TARGETS} for tool, rs in runs.items()},
        "targets": {k: list(v) for k, v in TARGETS.items()}, "verdicts": verdicts, "all_met": all(verdicts.values()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"median_of_pair_ratios": ratios, "ratio_of_medians": ratio_of_medians, "verdicts": verdicts},
                     indent=2))
    return 0 if record["all_met"] else 1


class _Given:
    """A server someone else started (no start, no stop)."""

    def __init__(self, url: str) -> None:
        self.base_url = url.rstrip("/")

    def __enter__(self) -> _Given:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
