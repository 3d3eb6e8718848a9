"""Benchmark: a longer run of the CLI fuzz (tests/unit/test_hardening.py) than CI's 2,000 invocations. Writes
bench/results/cli_fuzz.json with the fuzz's own counts: invocations, exit codes, the slowest invocation, peak RSS.

Usage: python bench/cli_fuzz.py [EXAMPLES]   (default 20,000)
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def main() -> int:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_hardening.py",
                          "-k", "fuzz"], cwd=PROJECT, capture_output=True, text=True,
                         env=os.environ | {"GPTOSS_FUZZ_EXAMPLES": str(examples)})
    line = next((x for x in run.stdout.splitlines() if x.startswith("CLI fuzz:")), "")
    counts = re.search(r"CLI fuzz: (\d+) invocations, exit codes (\{.*?\}), max ([\d.]+) s \((.*)\), max RSS (\d+) MB", line)
    if run.returncode != 0 or counts is None:
        print(run.stdout[-3000:], run.stderr[-2000:], file=sys.stderr)
        return 1
    codes = {int(k): v for k, v in ast.literal_eval(counts.group(2)).items()}
    result = {"benchmark": "cli_fuzz", "requested": examples, "invocations": int(counts.group(1)),
              "exit_codes": codes, "bug_exits": codes.get(70, 0), "hangs": 0, "leaks": 0,
              "max_invocation_s": float(counts.group(3)), "slowest": counts.group(4),
              "max_rss_mb": int(counts.group(5)), "wall_s": round(time.monotonic() - started, 1),
              "note": "the test fails on any exit outside {0, 1, 2}, a traceback, a planted secret in stdout/stderr, "
                      "non-strict JSON, or an invocation past 60 s: it passed, so bug exits, hangs and leaks are 0",
              "cores": os.cpu_count(), "python": platform.python_version(), "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = PROJECT / "bench" / "results" / "cli_fuzz.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
