"""`gptoss bench` against the real engines: vLLM-compatible keys, exact token totals confirmed by the server's
own counters, chat scenarios, a sweep with plots, and a journal that survives Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gptoss_deploy.bench.journal import read_journal
from gptoss_deploy.bench.workload import ServerTokenizer, vllm_random_prompts
from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer
from tests.lane_support import data_of

GPTOSS = [sys.executable, "-m", "gptoss_deploy.cli.main"]
VLLM_KEYS = ("date", "backend", "model_id", "num_prompts", "request_rate", "burstiness", "max_concurrency",
             "duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
             "request_goodput", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
             "max_concurrent_requests", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
             "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms", "mean_e2el_ms",
             "p99_e2el_ms", "input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "errors")


@pytest.fixture(scope="module")
def llama(lane: Lane) -> Iterator[LaneServer]:
    with LaneServer(lane, engine="llamacpp") as server:
        yield server


def bench(url: str, journal: Path, *extra: str, timeout: int = 900) -> tuple[int, dict, str]:
    out = subprocess.run([*GPTOSS, "bench", url, "--journal", str(journal), "--json", *extra],
                         capture_output=True, text=True, timeout=timeout)
    payload = data_of(out.stdout, "bench") if out.stdout.strip() else {}
    return out.returncode, payload, out.stderr


def test_vllm_fixed_length_run_agrees_with_the_servers_counters(vllm_server: LaneServer, tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    rc, payload, err = bench(vllm_server.base_url, journal, "--num-prompts", "8", "--input-len", "32",
                             "--output-len", "16", "--concurrency", "2", "--warmups", "2",
                             "--server-log", str(vllm_server.log_path), "--goodput", "ttft:60000")
    assert rc == 0, err
    result = payload["results"][0]
    assert set(VLLM_KEYS) <= set(result)
    assert result["completed"] == 8 and result["failed"] == 0
    assert result["total_output_tokens"] == 8 * 16  # ignore_eos on /v1/completions: every request runs to 16
    assert result["total_input_tokens"] == 8 * 32  # exact prompt lengths through the server's /tokenize
    assert result["request_rate"] == "inf" and result["max_concurrency"] == 2
    assert 1 <= result["max_concurrent_requests"] <= 2
    assert result["request_goodput"] == pytest.approx(result["request_throughput"])  # a 60-s TTFT SLO: all good
    ext = result["ext"]
    assert ext["workload"]["prompts"] == "vllm-random"
    assert ext["workload"]["prompt_lengths"].startswith("exact") and ext["osl_mismatch_count"] == 0
    assert ext["counter_check"]["agrees"], ext["counter_check"]  # vllm:generation_tokens_total delta == 128
    assert ext["server_counters_delta"]["prompt_tokens"] == 8 * 32
    assert ext["token_source"] == "server_usage" and ext["tokens_per_chunk_mean"] == pytest.approx(1.0)
    assert ext["warmup"]["requests"] == 2 and ext["server"]["kind"] == "vllm"
    assert ext["client_health"]["samples"] > 0
    assert 0 < result["median_tpot_ms"] < result["median_e2el_ms"]
    kinds = [r["kind"] for r in read_journal(journal)]
    assert kinds == ["run"] + ["request"] * 10 + ["result"]


def test_vllm_chat_story_scenario_reports_visible_and_first_content_tokens(vllm_server: LaneServer,
                                                                           tmp_path: Path) -> None:
    rc, payload, err = bench(vllm_server.base_url, tmp_path / "j.jsonl", "--dataset", "story", "--num-prompts", "3",
                             "--output-len", "24", "--concurrency", "3", "--warmups", "1", "--save-detailed",
                             "--reasoning-effort", "low")
    assert rc == 0, err
    result = payload["results"][0]
    assert result["backend"] == "openai-chat" and result["completed"] == 3
    ext = result["ext"]
    assert ext["server"]["endpoint"] == "/v1/chat/completions" and ext["workload"]["ignore_eos"] is False
    assert ext["workload"]["reasoning_effort"] == "low"
    for request in ext["requests"]:
        assert request["ok"] and request["completion_tokens"] >= 1
        assert request["chunks"][0][1] == "role"  # vLLM's role chunk comes first: it is vLLM's TTFT
        if request["ttft_visible"] is not None:
            assert request["ttft_visible"] >= request["ttft"]
    assert ext["total_reasoning_tokens"] is not None


def test_sweep_writes_levels_plots_and_markdown(vllm_server: LaneServer, tmp_path: Path) -> None:
    plots, md = tmp_path / "plots", tmp_path / "table.md"
    rc, payload, err = bench(vllm_server.base_url, tmp_path / "j.jsonl", "--sweep", "--sweep-max", "2",
                             "--num-prompts", "2", "--input-len", "16", "--output-len", "8", "--warmups", "1",
                             "--plot", str(plots), "--markdown", str(md))
    assert rc == 0, err
    levels = payload["sweep"]["levels"]
    assert [level["max_concurrency"] for level in levels] == [1, 2] or len(levels) == 2
    assert payload["sweep"]["knee_concurrency"] in (1, 2) and payload["sweep"]["stop_reason"]
    for name in ("throughput.png", "latency.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = md.read_text().splitlines()
    assert table[0].startswith("| scenario |") and len(table) == 2 + 2
    assert "sweep-c1" in table[2] and "sweep-c2" in table[3]


def test_journal_keeps_every_finished_request_after_sigint(vllm_server: LaneServer, tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    process = subprocess.Popen([*GPTOSS, "bench", vllm_server.base_url, "--journal", str(journal), "--num-prompts",
                                "200", "--input-len", "16", "--output-len", "32", "--concurrency", "2",
                                "--warmups", "0", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count('"kind":"request"') >= 3:
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = journal.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole JSON
    requests = [r for r in records if r["kind"] == "request"]
    result = records[-1]
    assert result["kind"] == "result" and result["result"]["ext"]["interrupted"] is True
    assert 3 <= len(requests) < 200
    assert result["result"]["completed"] + result["result"]["failed"] == len(requests)
    assert all(r["ok"] and r["output_tokens"] == 32 for r in requests)  # only finished requests are journaled
    assert data_of(out, "bench")["results"][0]["completed"] == len(requests)


VLLM_RANDOM_DATASET = """
import json, sys
from transformers import AutoTokenizer
from vllm.benchmarks.datasets import RandomDataset
requests = RandomDataset(random_seed=11).sample(tokenizer=AutoTokenizer.from_pretrained(sys.argv[1]), num_requests=12,
                                                input_len=48, output_len=16, range_ratio=0.25)
print(json.dumps([[r.prompt, r.prompt_len, r.expected_output_len] for r in requests]))
"""


def test_random_prompts_are_vllms_random_dataset(vllm_server: LaneServer, lane: Lane) -> None:
    """Same seed, same prompts as `vllm bench serve --dataset-name random` (its own code, from the lane's vLLM)."""
    out = subprocess.run([lane.python, "-c", VLLM_RANDOM_DATASET, lane.model], capture_output=True, text=True,
                         timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": os.environ["PATH"], "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    with httpx.Client() as client:
        tokenizer = ServerTokenizer(client, vllm_server.base_url, SERVED_NAME, "vllm", None)
        ours = vllm_random_prompts(12, 48, 16, 0.25, np.random.default_rng(11), tokenizer)
    assert [[p.text, p.input_len, p.max_tokens] for p in ours] == theirs
    assert len({p.input_len for p in ours}) > 3 and len({p.max_tokens for p in ours}) > 3  # the range ratio applied


def test_llama_server_counters_and_timings(llama: LaneServer, tmp_path: Path) -> None:
    rc, payload, err = bench(llama.base_url, tmp_path / "j.jsonl", "--num-prompts", "4", "--input-len", "24",
                             "--output-len", "12", "--concurrency", "1", "--warmups", "1", "--save-detailed")
    assert rc == 0, err
    result = payload["results"][0]
    ext = result["ext"]
    assert ext["server"]["kind"] == "llamacpp"
    assert result["failed"] == 0, result["errors"]
    assert result["total_output_tokens"] == 4 * 12 and result["total_input_tokens"] == 4 * 24, result["output_lens"]
    assert ext["counter_check"]["agrees"], ext["counter_check"]  # llamacpp:tokens_predicted_total (--metrics)
    for request in ext["requests"]:  # llama.cpp's own count agrees with usage
        assert request["timings"]["predicted_n"] == request["completion_tokens"] == 12
