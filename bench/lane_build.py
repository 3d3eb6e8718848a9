"""Benchmark: cold and warm time of the engine lane (ensure_lane), per step. Writes bench/results/lane_build.json.

Targets (issue #3): cold build <= 30 min on the CI machine (2 cores), warm check <= 10 s.
A cold figure is only recorded when the lane was absent at start; the per-step times come from the lane's markers.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from gptoss_deploy.lane import ensure_lane, lane_root


def main() -> int:
    out = Path(__file__).parent / "results" / "lane_build.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    cold = not (lane_root() / ".done-gguf").exists()
    started = time.monotonic()
    ensure_lane(progress=lambda text: print(text, file=sys.stderr, flush=True))
    first = time.monotonic() - started
    started = time.monotonic()
    ensure_lane()
    warm = time.monotonic() - started
    steps = {m.name.removeprefix(".done-"): json.loads(m.read_text())["seconds"]
             for m in sorted(lane_root().glob(".done-*"))}
    result = {
        "benchmark": "lane_build", "lane": str(lane_root()), "cold_s": round(first, 1) if cold else previous.get("cold_s"),
        "cold_steps_s": steps if cold else previous.get("cold_steps_s", steps), "warm_s": round(warm, 3),
        "targets": {"cold_s": 1800, "warm_s": 10}, "cores": os.cpu_count(), "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
