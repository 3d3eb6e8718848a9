"""Benchmark: time to ready through `gptoss serve` versus the same engine command run directly.

Both sides start from a cold process and count until the model answers readiness (/health 200 and /v1/models
lists it, polled every 0.5 s); `gptoss serve` is timed until it prints its ready report, so its own import,
planning, probing and plan-vs-actual parsing are included. Runs are interleaved (direct, serve, direct, ...).
Target (issue #4): median ratio serve / direct <= 1.05.

Usage: python bench/serve_overhead.py [--engine vllm|llamacpp] [--runs 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

GPTOSS = [sys.executable, "-m", "gptoss_deploy.cli.main"]
POLL_S = 0.5
LANE_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1", "VLLM_SYSTEM_START_DATE": "2026-01-01",
            "VLLM_NO_USAGE_STATS": "1"}


def serve_args(lane, engine: str) -> list[str]:
    if engine == "vllm":
        return ["--model", lane.model, "--engine", "vllm", "--vllm-python", lane.python, "--max-model-len", "4096",
                "--max-num-seqs", "8", "--kv-cache-memory-bytes", str(2**30), "--served-model-name", "tiny",
                "--", "--dtype", "bfloat16"]
    return ["--model", lane.gguf, "--llama-server", lane.llama_server, "--max-model-len", "4096",
            "--served-model-name", "tiny"]


def free_port() -> int:
    from gptoss_deploy.lane.server import free_port as pick

    return pick()


def stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


HTTP = httpx.Client()  # one client: a new one per poll costs ~50 ms of CPU that the engine's startup would miss


def ready(port: int) -> bool:
    base = f"http://127.0.0.1:{port}"
    try:
        if HTTP.get(f"{base}/health", timeout=2).status_code != 200:
            return False
        return any(m["id"] == "tiny" for m in HTTP.get(f"{base}/v1/models", timeout=2).json().get("data", []))
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def time_direct(lane, engine: str, env: dict[str, str]) -> float:
    port = free_port()
    dry = subprocess.run([*GPTOSS, "serve", "--json", "--dry-run", "--port", str(port), *serve_args(lane, engine)],
                         capture_output=True, text=True, check=True, env=os.environ | env)
    launch = json.loads(dry.stdout)["data"]
    start = time.perf_counter()
    process = subprocess.Popen(launch["argv"], env=os.environ | env | launch["env"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not ready(port):
            if process.poll() is not None:
                raise RuntimeError(f"direct {engine} exited with {process.returncode}")
            time.sleep(POLL_S)
        return time.perf_counter() - start
    finally:
        stop_group(process)


def time_serve(lane, engine: str, env: dict[str, str], log: Path) -> float:
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen([*GPTOSS, "serve", "--json", "--no-progress", "--port", str(port), "--log-file",
                                str(log), *serve_args(lane, engine)], env=os.environ | env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the JSON report starts once the engine is ready
        if not first.startswith("{"):
            raise RuntimeError(f"gptoss serve did not become ready (exit {process.wait()})")
        return time.perf_counter() - start
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            stop_group(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["vllm", "llamacpp"], default="vllm")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from gptoss_deploy.lane import ensure_lane

    lane = ensure_lane(progress=lambda text: print(text, file=sys.stderr))
    env = LANE_ENV | {"TIKTOKEN_ENCODINGS_BASE": lane.vocab_dir}
    log = Path(lane.root) / "logs" / "bench-serve-overhead.log"
    time_direct(lane, args.engine, env)  # warm the page cache and the engine probe cache; not counted
    direct, served = [], []
    for run in range(args.runs):
        direct.append(time_direct(lane, args.engine, env))
        served.append(time_serve(lane, args.engine, env, log))
        print(f"run {run + 1}: direct {direct[-1]:.2f} s, gptoss serve {served[-1]:.2f} s", file=sys.stderr)
    ratio = statistics.median(served) / statistics.median(direct)
    result = {
        "benchmark": "serve_overhead", "engine": args.engine, "runs": args.runs,
        "direct_s": [round(t, 2) for t in direct], "serve_s": [round(t, 2) for t in served],
        "direct_median_s": round(statistics.median(direct), 2), "serve_median_s": round(statistics.median(served), 2),
        "ratio_median": round(ratio, 3),
        "ratio_per_pair": [round(b / a, 3) for a, b in zip(direct, served, strict=True)],
        "target_ratio": 1.05, "meets_target": ratio <= 1.05,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
    }
    out = args.out or Path(__file__).parent / "results" / f"serve_overhead_{args.engine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
