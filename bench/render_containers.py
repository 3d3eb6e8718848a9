"""Benchmark: what the rendered-deployment container tests add to a test run. Writes
bench/results/render_containers.json.

Runs tests/engine/test_render_containers.py with every vLLM run on (GPTOSS_CONTAINERS=all) and records each test's
time (setup + call + teardown, from pytest's JUnit report: the first test of a fixture pays its build), the
stand-in image builds timed here first (0 s when cached by their key), and the two sums that matter: the full
matrix and the default set CI runs (the tests that are not GPTOSS_CONTAINERS=all only). Measured, not estimated:
a cold image build is only recorded when the images were absent at start.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from gptoss_deploy.lane import ensure_lane
from tests import containers

FULL_ONLY = ("test_docker_run_script_serves[vllm]", "test_compose_file_serves[vllm]",
             "test_kubernetes_deployment_serves_in_podman_play_kube[vllm]", "test_quadlet_unit_serves_as_its_podman_run[vllm]",
             "test_image_healthcheck_reads_the_key_from_api_key_too")


def timed(build: object) -> float:
    """Seconds one build call takes."""
    started = time.monotonic()
    build()  # type: ignore[operator]
    return round(time.monotonic() - started, 1)


def main() -> int:
    out = PROJECT / "bench" / "results" / "render_containers.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    if containers.unavailable():
        print(f"skipped: {containers.unavailable()}", file=sys.stderr)
        return 2
    lane = ensure_lane()
    cold = containers._label(containers.VLLM_IMAGE) != containers.key()
    images = {"vllm_standin_s": timed(lambda: containers.vllm_image(lane)),
              "llamacpp_standin_s": timed(lambda: containers.llama_image(lane))}
    report = Path("/tmp") / f"render_containers-{os.getpid()}.xml"
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                          "tests/engine/test_render_containers.py"], cwd=PROJECT,
                         env=os.environ | {"GPTOSS_CONTAINERS": "all"}, capture_output=True, text=True)
    wall = time.monotonic() - started
    print(run.stdout[-3000:], file=sys.stderr)
    tests = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        tests[case.get("name", "")] = {"s": round(float(case.get("time", 0)), 1), "outcome": outcome}
    report.unlink()
    ci = sum(t["s"] for name, t in tests.items() if name not in FULL_ONLY)
    result = {
        "benchmark": "render_containers", "returncode": run.returncode,
        "standin_images": images if cold else previous.get("standin_images", images),
        "standin_images_cold": cold or previous.get("standin_images_cold", False),
        "tests_s": tests, "full_matrix_s": round(wall, 1), "ci_default_set_s": round(ci, 1),
        "full_only": list(FULL_ONLY), "cores": os.cpu_count(), "python": platform.python_version(),
        "podman": subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
