"""Benchmark math on hand-built event streams: vLLM's definitions, k tokens per chunk, reasoning, errors,
the SSE decoder, arrivals, sweep rules, the journal and cost arithmetic."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from gptoss_deploy.bench import cost, metrics
from gptoss_deploy.bench.journal import Journal, read_journal, results_in
from gptoss_deploy.bench.stream import RequestRecord, SSEDecoder, StreamTracker
from gptoss_deploy.bench.sweep import SweepLevel, knee, stop_reason
from gptoss_deploy.bench.workload import arrival_offsets, decode_to_length, input_lengths
from gptoss_deploy.cli.main import main
from gptoss_deploy.errors import InputError
from tests.lane_support import data_of


def record(index: int = 0, t_send: float = 0.0, max_tokens: int = 8, phase: str = "measure") -> RequestRecord:
    return RequestRecord(index=index, phase=phase, t_sched=t_send, t_send=t_send, requested_input_len=10,
                         max_tokens=max_tokens)


def completion_chunk(text: str, cumulative: int | None = None, finish: str | None = None) -> str:
    body = {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    if cumulative is not None:
        body["usage"] = {"prompt_tokens": 10, "completion_tokens": cumulative, "total_tokens": 10 + cumulative}
    return json.dumps(body)


def chat_chunk(**delta: str) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def usage_chunk(completion: int, prompt: int = 10, reasoning: int | None = None) -> str:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return json.dumps({"choices": [], "usage": usage})


def track(events: list[tuple[float, str]], rec: RequestRecord | None = None) -> RequestRecord:
    tracker = StreamTracker(rec or record())
    for t, payload in events:
        tracker.on_payload(payload, t)
    return tracker.finish()


def k_token_stream(k: int, total: int = 21, gap_s: float = 0.01, ttft_s: float = 0.1) -> RequestRecord:
    """`total` tokens: the first alone (prefill), then k per chunk, one token every `gap_s` (continuous usage on),
    as vLLM streams with --stream-interval k or speculative decoding."""
    events, produced, t = [], 0, ttft_s
    while produced < total:
        n = 1 if not produced else min(k, total - produced)
        if produced:
            t += gap_s * n
        produced += n
        events.append((t, completion_chunk("x" * n, cumulative=produced)))
    events.append((t + 0.001, usage_chunk(total)))
    events.append((t + 0.002, "[DONE]"))
    return track(events, record(max_tokens=total))


# -- stream parsing ------------------------------------------------------------------------------------------
def test_sse_decoder_handles_split_reads_comments_crlf_and_missing_done():
    decoder = SSEDecoder()
    out = decoder.feed(b": ping\n\ndata: {\"a\"")
    assert out == []  # the comment is dropped, the split event waits
    out = decoder.feed(b": 1}\r\n\r\ndata: {\"b\": 2}\n\ndata: [DONE]\n\n")
    assert out == ['{"a": 1}', '{"b": 2}', "[DONE]"]
    assert decoder.feed(b"data: {\"c\": 3}") == []
    assert decoder.flush() == ['{"c": 3}']  # no blank line at the end of the body


@pytest.mark.parametrize("k", [1, 2, 4, 20])
def test_k_tokens_per_chunk_same_tpot_and_token_itl(k: int):
    rec = k_token_stream(k)
    assert rec.ok and rec.output_tokens == 21 and rec.completion_tokens == 21
    assert metrics.tpot_s(rec) == pytest.approx(0.01)  # (latency - ttft) / (21 - 1) for every k
    token_gaps = metrics.token_itls_s(rec)
    assert len(token_gaps) == 20  # the first token has no gap
    assert statistics.median(token_gaps) == pytest.approx(0.01)
    if k < 20:
        assert statistics.median(rec.itl) == pytest.approx(0.01 * k)  # chunk ITL grows with k (vLLM's ITL)


def test_peak_output_per_second_counts_tokens_not_chunks():
    rec = k_token_stream(4, total=41, gap_s=0.001)
    assert metrics.peak_per_second([rec], count_tokens=True) == 41
    assert metrics.peak_per_second([rec], count_tokens=False) == 11  # vLLM's figure counts chunks


def test_role_chunk_first_sets_vllm_ttft_but_not_visible_ttft():
    rec = track([(0.05, chat_chunk(role="assistant", content="")), (0.20, chat_chunk(content="Hi")),
                 (0.21, chat_chunk(content=" there")), (0.22, usage_chunk(2)), (0.23, "[DONE]")])
    assert rec.ttft == 0.05  # vLLM: first event with choices, even the empty role chunk
    assert rec.ttft_visible == 0.20 and rec.ttfo == 0.20
    assert rec.latency == 0.21  # the usage-only chunk does not extend the request
    assert rec.itl == pytest.approx([0.15, 0.01])
    assert rec.text == "Hi there" and rec.output_tokens == 2


def test_reasoning_only_stream_counts_tokens_without_content():
    events = [(0.1 + 0.01 * i, chat_chunk(reasoning="think ")) for i in range(16)] + [(0.3, usage_chunk(16))]
    rec = track(events)
    assert rec.ok and rec.output_tokens == 16
    assert rec.ttft == pytest.approx(0.1) and rec.ttft_visible == pytest.approx(0.1)
    assert rec.ttfo is None
    assert rec.reasoning_tokens == 16 and rec.reasoning_token_source == "chunk_count"
    assert rec.text == "" and rec.reasoning_text.startswith("think")


def test_mixed_stream_ttfo_after_visible_and_llamacpp_reasoning_field():
    events = [(0.1, chat_chunk(reasoning_content="hmm")), (0.2, chat_chunk(reasoning_content="ok")),
              (0.3, chat_chunk(content="Answer")), (0.31, usage_chunk(3, reasoning=2))]
    rec = track(events)
    assert rec.ttfo > rec.ttft_visible
    assert rec.reasoning_tokens == 2 and rec.reasoning_token_source == "usage_details"


def test_continuous_usage_attributes_reasoning_tokens():
    events = [(0.1, json.dumps({"choices": [{"delta": {"reasoning": "a b"}}], "usage": {"completion_tokens": 2}})),
              (0.2, json.dumps({"choices": [{"delta": {"content": "c d e"}}], "usage": {"completion_tokens": 5}}))]
    rec = track(events)
    assert rec.completion_tokens == 5 and rec.reasoning_tokens == 2
    assert rec.reasoning_token_source == "continuous_usage"


def test_error_mid_stream_fails_the_request_and_it_leaves_the_statistics():
    bad = track([(0.1, completion_chunk("a", 1)), (0.2, json.dumps({"error": {"message": "engine died"}}))],
                record(index=1))
    assert not bad.ok and bad.error == "engine died"
    good = k_token_stream(1, total=8)
    summary = metrics.summarize([good, bad], duration_s=2.0)
    assert summary["completed"] == 1 and summary["failed"] == 1
    assert summary["total_output_tokens"] == 8  # the failed request adds nothing
    assert summary["output_lens"] == [8, 0] and summary["errors"] == ["", "engine died"]
    assert summary["mean_ttft_ms"] == pytest.approx(good.ttft * 1000)


def test_http_error_without_events_is_a_failure_with_reason():
    rec = record()
    rec.error = "HTTP 400: bad request"
    assert not StreamTracker(rec).finish().ok
    assert not track([(0.1, "[DONE]")]).ok


# -- run-level math against vLLM's formulas, derived by hand ------------------------------------------------
def test_summary_matches_vllm_formulas():
    recs = []
    for i, (ttft, gaps) in enumerate([(0.1, [0.01, 0.02, 0.03]), (0.2, [0.05]), (0.3, [])]):
        events, t = [(ttft, completion_chunk("a"))], ttft
        for g in gaps:
            t += g
            events.append((t, completion_chunk("b")))
        events.append((t + 0.001, usage_chunk(len(gaps) + 1, prompt=7)))
        recs.append(track(events, record(index=i, t_send=0.5 * i)))
    s = metrics.summarize(recs, duration_s=4.0, percentiles=(50, 99), goodput_slos_ms={"ttft": 250})
    assert s["total_output_tokens"] == 4 + 2 + 1 and s["total_input_tokens"] == 21
    assert s["output_throughput"] == pytest.approx(7 / 4) and s["request_throughput"] == pytest.approx(3 / 4)
    assert s["total_token_throughput"] == pytest.approx(28 / 4)
    tpots = [0.06 / 3, 0.05 / 1]  # (latency - ttft) / (n - 1); the 1-token request has no TPOT
    assert s["mean_tpot_ms"] == pytest.approx(statistics.fmean(tpots) * 1000)
    itls = [0.01, 0.02, 0.03, 0.05]  # pooled over requests
    assert s["median_itl_ms"] == pytest.approx(statistics.median(itls) * 1000)
    assert s["std_itl_ms"] == pytest.approx(statistics.pstdev(itls) * 1000)  # population std, as np.std
    # TTFTs 0.1, 0.2, 0.3 s; numpy's linear p99: rank 0.99 x 2 = 1.98 -> 0.2 + 0.98 x 0.1
    assert s["p99_ttft_ms"] == pytest.approx((0.2 + 0.98 * 0.1) * 1000)
    assert s["p50_ttft_ms"] == pytest.approx(200.0)
    assert s["mean_e2el_ms"] == pytest.approx(statistics.fmean([0.16, 0.25, 0.3]) * 1000)
    assert s["request_goodput"] == pytest.approx(2 / 4)  # ttft <= 250 ms: the first two
    assert s["max_concurrent_requests"] == 1  # 0-0.16, 0.5-0.75, 1.0-1.3 never overlap
    assert metrics.summarize(recs, 4.0)["request_goodput"] is None  # no SLOs -> null, as vLLM


def test_empty_statistics_are_zero_as_in_vllm():
    s = metrics.summarize([], duration_s=1.0)
    assert s["mean_ttft_ms"] == 0 and s["p99_tpot_ms"] == 0 and s["completed"] == 0
    assert metrics.percentile_key(99.9) == "p99.9" and metrics.percentile_key(99.0) == "p99"
    assert metrics.finite_or_inf(math.inf) == "inf"


def test_peak_concurrency_is_the_exact_overlap():
    recs = [k_token_stream(1, total=4) for _ in range(3)]
    for i, rec in enumerate(recs):
        rec.t_send = 0.05 * i  # each lasts 0.13 s: all three overlap at t = 0.1
    assert metrics.peak_concurrency(recs) == 3
    recs[2].t_send = 0.2
    assert metrics.peak_concurrency(recs) == 2


def test_ext_reports_reasoning_share_and_first_content():
    rec = track([(0.1, chat_chunk(reasoning="r")), (0.2, chat_chunk(reasoning="r")), (0.3, chat_chunk(content="c")),
                 (0.4, chat_chunk(content="d")), (0.5, usage_chunk(4))])
    ext = metrics.ext_metrics([rec])
    assert ext["total_reasoning_tokens"] == 2 and ext["reasoning_share"] == pytest.approx(0.5)
    assert ext["stats"]["ttfo_ms"]["median"] == pytest.approx(300.0)
    assert ext["stats"]["ttft_visible_ms"]["median"] == pytest.approx(100.0)


# -- arrivals ------------------------------------------------------------------------------------------------
def test_arrivals_normalised_poisson_and_constant():
    offsets = arrival_offsets(2000, request_rate=10.0, burstiness=1.0, seed=3)
    assert offsets[-1] == pytest.approx(2000 / 10.0)
    gaps = [b - a for a, b in zip([0.0] + offsets, offsets, strict=False)]
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.08)  # CV 1/sqrt(γ)
    bursty = arrival_offsets(2000, 10.0, 0.25, seed=3)
    bursty_gaps = [b - a for a, b in zip([0.0] + bursty, bursty, strict=False)]
    assert statistics.pstdev(bursty_gaps) / statistics.fmean(bursty_gaps) == pytest.approx(2.0, abs=0.2)
    constant = arrival_offsets(5, 2.0, math.inf, seed=0)
    assert constant == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    assert arrival_offsets(3, math.inf, 1.0, seed=0) == [0.0, 0.0, 0.0]
    assert arrival_offsets(50, 5.0, 1.0, seed=9) == arrival_offsets(50, 5.0, 1.0, seed=9)  # seeded


def test_input_lengths_stay_in_range():
    import random

    lengths = input_lengths(500, 100, 0.2, random.Random(0))
    assert min(lengths) >= 80 and max(lengths) <= 120 and len(set(lengths)) > 10


class MergeTokenizer:
    """A toy tokenizer whose round trip is not the identity: ids 0-25 are letters, id 26 decodes to "ab", which
    encodes back as two ids - the way BPE merges change the length of vLLM's decoded random ids."""

    def decode(self, ids: list[int]) -> str:
        return "".join("ab" if i == 26 else chr(ord("a") + i) for i in ids)

    def encode(self, text: str) -> list[int]:
        return [ord(ch) - ord("a") for ch in text]


def test_decode_to_length_cuts_pads_and_gives_up_like_vllm():
    import numpy as np

    toy = MergeTokenizer()
    text, ids = decode_to_length(toy, [26, 2], 2, np.random.default_rng(0), vocab_size=26)  # "abc": 3 -> cut to 2
    assert (text, ids) == ("ab", [0, 1])
    text, ids = decode_to_length(toy, [26, 2], 5, np.random.default_rng(0), vocab_size=26)  # 3 -> 2 random ids added
    assert len(ids) == 5 and toy.encode(text) == ids and ids[:3] == [0, 1, 2]
    text, ids = decode_to_length(toy, [26], 1, np.random.default_rng(0), vocab_size=26, tries=0)  # out of tries
    assert (text, ids) == ("ab", [0, 1])  # the text is returned with its true count, not the target


# -- sweep -----------------------------------------------------------------------------------------------------
def level(c: int, tput: float, good: float | None = None) -> SweepLevel:
    return SweepLevel(max_concurrency=c, output_throughput=tput, request_throughput=1, median_ttft_ms=1,
                      p99_ttft_ms=1, median_tpot_ms=1, p99_tpot_ms=1, completed=1, failed=0, good_fraction=good)


def test_sweep_stops_when_throughput_flattens_or_slos_break():
    levels = [level(1, 100), level(2, 190), level(4, 350)]
    assert stop_reason(levels) is None
    levels.append(level(8, 360))
    assert "stopped rising" in stop_reason(levels)
    assert knee(levels) == 4  # first level within 90 % of the best (360)
    assert "SLOs broken" in stop_reason([level(1, 100, good=1.0), level(2, 180, good=0.5)])


# -- journal ---------------------------------------------------------------------------------------------------
def test_journal_appends_fsynced_records_and_skips_a_torn_line(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append({"kind": "run", "run_id": "a"})
        journal.append({"kind": "result", "run_id": "a", "result": {"output_throughput": 5.0}})
    with path.open("a") as handle:
        handle.write('{"kind": "request", "run_id": "b", "ind')  # a crash mid-write
    assert [r["kind"] for r in read_journal(path)] == ["run", "result"]
    assert results_in(path) == [{"output_throughput": 5.0}]
    single = tmp_path / "r.json"
    single.write_text(json.dumps({"output_throughput": 7.0}, indent=2))
    assert results_in(single) == [{"output_throughput": 7.0}]


# -- cost ------------------------------------------------------------------------------------------------------
def test_cost_reproduces_the_seed_arithmetic():
    assert cost.per_million(0.78, 20.0) == pytest.approx(10.8333, abs=1e-3)  # $10.83/M
    rows = cost.cost_rows([{"scenario": "s", "output_tokens_per_s": 20.0, "total_tokens_per_s": 100.0,
                            "reasoning_share": 0.25}], [cost.check_price_per_hour(0.78)])
    assert rows[0].usd_per_m_total == pytest.approx(2.1667, abs=1e-3)
    assert rows[0].usd_per_m_visible_output == pytest.approx(10.8333 / 0.75, abs=1e-3)  # reasoning is billed output
    owned = cost.owned_price(2190, 36, 100, 0.30)  # 2190 / (36 x 730) + 0.1 kW x 0.30
    assert owned.per_hour == pytest.approx(2190 / 26280 + 0.03)


def test_cost_bundled_table_and_gpu_count():
    table = cost.load_price_table()
    prices = {p.name: p for p in cost.table_prices(table, None, gpus=4)}
    assert prices["thunder-a100"].per_hour == pytest.approx(4 * 0.78)
    assert "runpod-l40s" not in prices  # no sourced price: never invented
    with pytest.raises(InputError, match="no price is recorded"):
        cost.table_prices(table, ["runpod-l40s"], 1)


@pytest.mark.parametrize("argv, needle", [
    (["cost", "--tok-s", "20", "--price-per-hour", "-0.5"], "--price-per-hour: -0.5 is outside (0,"),
    (["cost", "--tok-s", "20", "--price-per-hour", "0"], "--price-per-hour: 0 is outside (0,"),
    (["cost", "--tok-s", "-3", "--price-per-hour", "1"], "--tok-s: -3 is outside (0,"),
    (["cost", "--price-per-hour", "1"], "exactly one of --results"),
    (["cost", "--tok-s", "20", "--provider", "nosuch"], "unknown provider"),
    (["cost", "--tok-s", "20", "--purchase-price", "-100"], "--purchase-price: -100 is outside"),
    (["cost", "--results", "/nonexistent/r.json", "--price-per-hour", "1"], "cannot read"),
])
def test_cost_rejects_bad_numbers_with_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cost_cli_json_from_a_results_file(tmp_path: Path, capsys):
    result = {"label": "c1", "max_concurrency": 1, "output_throughput": 20.0, "total_token_throughput": 40.0,
              "ext": {"reasoning_share": 0.5, "workload": {"reasoning_effort": "high"}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    assert main(["cost", "--results", str(path), "--price-per-hour", "0.78", "--json"]) == 0
    rows = data_of(capsys.readouterr().out, "cost")
    assert rows[0]["usd_per_m_output"] == pytest.approx(10.8333, abs=1e-3)
    assert rows[0]["usd_per_m_visible_output"] == pytest.approx(21.6667, abs=1e-3)
    assert rows[0]["scenario"] == "c1 effort=high"


def test_bench_rejects_bad_flags_with_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "http://127.0.0.1:9", "--goodput", "ttft"]) == 2
    assert "METRIC:MS" in capsys.readouterr().err
    assert main(["bench", "http://127.0.0.1:9", "--percentiles", "50,abc"]) == 2
    assert main(["bench", "http://127.0.0.1:9", "--seed", "-1"]) == 2
    assert "--seed: -1 is outside [0, 4,294,967,295]" in capsys.readouterr().err
    assert main(["bench", "http://127.0.0.1:9"]) == 2  # nothing listens: cannot reach
    assert "cannot reach" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no journal left behind by a run that never started


def test_cost_refuses_to_rank_gpus_on_one_tokens_per_second(capsys):
    assert main(["cost", "--tok-s", "2500"]) == 2
    err = capsys.readouterr().err
    assert "cannot rank providers of" in err and "--gpu NAME" in err
    assert main(["cost", "--tok-s", "2500", "--gpu", "H100"]) == 2  # predicting needs the concurrency
    assert "--concurrency N" in capsys.readouterr().err
    assert main(["cost", "--tok-s", "2500", "--gpu", "no-such-gpu", "--concurrency", "8"]) == 2
    assert "gptoss profiles" in capsys.readouterr().err


def test_cost_uses_each_gpus_own_throughput(capsys):
    from gptoss_deploy.planning import predicted_throughput

    argv = ["cost", "--tok-s", "2500", "--gpu", "H100", "--concurrency", "64", "--model", "gpt-oss-120b",
            "--provider", "lambda-h100", "--provider", "thunder-a100", "--provider", "gmi-h200", "--json"]
    assert main(argv) == 0
    rows = {r["price"]["name"]: r for r in data_of(capsys.readouterr().out, "cost")}
    assert rows["lambda-h100"]["throughput"] == "given" and rows["lambda-h100"]["output_tokens_per_s"] == 2500
    for name, gpu in (("thunder-a100", "a100-80gb"), ("gmi-h200", "h200")):
        expected, note = predicted_throughput("gpt-oss-120b", gpu, 1, 1024, 1024, 64)
        row = rows[name]
        assert row["throughput"] == "predicted" and row["output_tokens_per_s"] == pytest.approx(expected)
        assert row["usd_per_m_output"] == pytest.approx(cost.per_million(row["price"]["per_hour"], expected))
        assert row["throughput_note"] == note and "at 64 users" in note
    # the model's own ordering, not one number for all: H200 (4.8 TB/s) out-runs A100-80GB (2.0 TB/s)
    assert rows["gmi-h200"]["output_tokens_per_s"] > rows["thunder-a100"]["output_tokens_per_s"]


def test_cost_marks_a_gpu_without_a_prediction_not_comparable(tmp_path: Path, capsys):
    prices = tmp_path / "prices.yaml"
    prices.write_text("schema_version: 1\nrecorded: '2026-12-01'\ncurrency: USD\nproviders:\n"
                      "  desk-4090: {provider: Desk, gpu: rtx4090, price_per_hour: 0.4, source: mine}\n"
                      "  rent-h100: {provider: Rent, gpu: h100-sxm, price_per_hour: 2.0, source: mine}\n")
    result = {"label": "c8", "max_concurrency": 8, "num_prompts": 64, "completed": 64, "output_throughput": 900.0,
              "total_token_throughput": 1800.0, "total_input_tokens": 64 * 512, "total_output_tokens": 64 * 512}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    assert main(["cost", "--results", str(path), "--gpu", "H100", "--prices", str(prices), "--json"]) == 0
    rows = {r["price"]["name"]: r for r in data_of(capsys.readouterr().out, "cost")}
    assert rows["rent-h100"]["throughput"] == "measured" and rows["rent-h100"]["output_tokens_per_s"] == 900.0
    desk = rows["desk-4090"]
    assert desk["throughput"] == "not comparable" and desk["usd_per_m_output"] is None
    assert "1x rtx-4090" in desk["throughput_note"]
