"""Benchmark: wall time of `gptoss plan --profile 4xL40S --model gpt-oss-120b` and the CLI import time.

Targets (issue #2): plan < 1 s, `import gptoss_deploy.cli` < 300 ms. Writes JSON (default bench/results/plan_speed.json).
Usage: python bench/plan_speed.py [--runs 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

PLAN_ARGV = ["plan", "--profile", "4xL40S", "--model", "gpt-oss-120b", "--json"]


def time_plan(runs: int) -> list[float]:
    """Seconds per full CLI run in a fresh interpreter (what a user waits for)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gptoss_deploy.cli.main", *PLAN_ARGV], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def import_time_ms() -> float:
    """Cumulative import time of gptoss_deploy.cli.main from `python -X importtime`, in ms."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import gptoss_deploy.cli.main"],
                            check=True, capture_output=True, text=True)
    cumulative = [int(m.group(1)) for m in re.finditer(r"\|\s+(\d+) \| gptoss_deploy\.cli\.main$", result.stderr, re.M)]
    return cumulative[-1] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "plan_speed.json")
    args = parser.parse_args()
    plan_times = time_plan(args.runs)
    result = {
        "benchmark": "plan_speed", "argv": ["gptoss", *PLAN_ARGV], "runs": args.runs,
        "plan_wall_s": {"median": statistics.median(plan_times), "max": max(plan_times), "all": plan_times},
        "import_cli_ms": import_time_ms(), "targets": {"plan_wall_s": 1.0, "import_cli_ms": 300},
        "python": platform.python_version(), "machine": platform.machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    result["meets_targets"] = (result["plan_wall_s"]["median"] < 1.0 and result["import_cli_ms"] < 300)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("plan_wall_s", "import_cli_ms", "meets_targets")}))
    return 0 if result["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
