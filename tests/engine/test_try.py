"""`gptoss try` on the engine lane: a first rung that fails for real in vLLM followed by one that serves, and a
ladder that ends on llama-server when vLLM is unavailable; the journal holds every attempt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gptoss_deploy.bench.journal import read_journal
from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import free_port
from tests.lane_support import data_of

GPTOSS = [sys.executable, "-m", "gptoss_deploy.cli.main"]
LANE_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1", "VLLM_SYSTEM_START_DATE": "2026-01-01",
            "VLLM_NO_USAGE_STATS": "1"}


def run_try(*args: str, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GPTOSS, "try", "--port", str(free_port()), *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ | LANE_ENV)


def test_impossible_context_fails_in_vllm_then_the_plan_serves(lane: Lane, tmp_path: Path) -> None:
    journal = tmp_path / "try.jsonl"
    out = run_try("--model", lane.model, "--engine", "vllm", "--vllm-python", lane.python, "--max-model-len",
                  "200000", "--kv-cache-memory-bytes", str(2**30), "--max-num-seqs", "8", "--journal", str(journal),
                  "--json", "--", "--dtype", "bfloat16")
    assert out.returncode == 0, out.stderr[-3000:]
    attempts = [r for r in read_journal(journal) if r["kind"] == "attempt"]
    assert [a["rung"] for a in attempts] == ["as requested", "planned"]
    first, second = attempts
    assert first["outcome"] == "max_len_over_model"  # vLLM's own refusal, classified from its log
    assert "--max-model-len 200000" in first["command"] and "200000" in first["log_excerpt"]
    assert second["outcome"] == "ready" and second["check"]["fail"] == 0
    assert any(row["quantity"].startswith("KV cache") for row in second["plan_vs_actual"])
    assert data_of(out.stdout, "try")[-1]["rung"] == "planned"


def test_ladder_ends_on_llama_server_when_vllm_is_unavailable(lane: Lane, tmp_path: Path) -> None:
    journal = tmp_path / "try.jsonl"
    args = ("--model", lane.model, "--engine", "vllm", "--vllm-python", str(tmp_path / "no-python"), "--gguf",
            lane.gguf, "--llama-server", lane.llama_server, "--max-model-len", "4096", "--journal", str(journal))
    out = run_try(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    attempts = [r for r in read_journal(journal) if r["kind"] == "attempt"]
    outcomes = {a["rung"]: a["outcome"] for a in attempts}
    assert outcomes["planned"] == "engine_missing"
    assert all(outcomes[r] == "skipped" for r in ("smaller batch", "shorter context", "eager"))
    assert outcomes["llama.cpp"] == "ready" and attempts[-1]["rung"] == "llama.cpp"
    assert "llama-server" in attempts[-1]["command"]
    assert "gptoss try" in out.stdout and "llama.cpp" in out.stdout  # the summary table
    resumed = run_try(*args, "--resume")
    assert resumed.returncode == 0
    assert "planned: already tried (--resume), skipped" in resumed.stderr
    assert len([r for r in read_journal(journal) if r["kind"] == "attempt"]) == len(attempts) + 4
