"""The tiny gpt-oss GGUF on a real llama-server built from source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer


@pytest.fixture(scope="module")
def llama(lane: Lane) -> Iterator[LaneServer]:
    with LaneServer(lane, engine="llamacpp") as server:
        yield server


def test_plain_chat_returns_reasoning_content_and_content(llama: LaneServer) -> None:
    client = openai.OpenAI(base_url=f"{llama.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    reply = client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": "Hello!"}],
                                           temperature=0, max_tokens=100)
    message = reply.choices[0].message
    assert message.content and "<|channel|>" not in message.content
    assert getattr(message, "reasoning_content", None)


def test_split_gguf_loads_from_its_first_shard(lane: Lane) -> None:
    from gptoss_deploy.models.gguf_info import read_gguf

    info = read_gguf(__import__("pathlib").Path(lane.gguf_split_first))
    whole = read_gguf(__import__("pathlib").Path(lane.gguf))
    assert info.complete and len(info.shards) == 2
    assert info.tensor_count == whole.tensor_count and info.tensor_bytes == whole.tensor_bytes
    with LaneServer(lane, engine="llamacpp", gguf=lane.gguf_split_first) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": "Hello!"}],
                                               temperature=0, max_tokens=100)
        assert reply.choices[0].message.content


def test_gguf_of_the_tiny_model_is_recognised_as_gpt_oss(lane: Lane) -> None:
    from gptoss_deploy.models.resolve import resolve_model

    spec = resolve_model(lane.gguf)
    assert spec.is_gpt_oss and spec.format == "gguf"
    assert spec.arch.sliding_window == 128 and spec.arch.num_local_experts == 4 and spec.arch.vocab_size == 201088


SLOT_RELEASE = re.compile(r"slot +release: id +(\d+) \| task (\d+) \| stop processing: n_tokens = (\d+), truncated = (\d)")
SLOT_LAUNCH = re.compile(r"slot launch_slot_: id +(\d+) \| task (\d+)")
KV_LINE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB")
MODEL_LINE = re.compile(r"model buffer size =\s+([\d.]+) MiB")


def test_planned_slots_serve_that_many_requests_of_the_planned_length_at_once(lane: Lane) -> None:
    """-np 4 with the planned -c (4 x 1024): four concurrent requests of about the planned length each get their own
    slot, none is truncated, and the KV / model buffers llama-server logs are within 5 % of the plan."""
    per_request, slots = 1024, 4
    with LaneServer(lane, engine="llamacpp", overrides={"max_model_len": per_request, "max_num_seqs": slots}) as server:
        settings = server.plan.llamacpp
        assert settings is not None and (settings.n_parallel, settings.n_ctx) == (slots, slots * per_request)
        argv = server.launch.argv
        assert argv[argv.index("-c") + 1] == str(slots * per_request) and argv[argv.index("-np") + 1] == str(slots)
        words = " ".join(f"w{i % 50}" for i in range(3000))
        tokens = httpx.post(f"{server.base_url}/tokenize", json={"content": words}, timeout=30).json()["tokens"]
        prompt = httpx.post(f"{server.base_url}/detokenize", json={"tokens": tokens[:per_request - 120]},
                            timeout=30).json()["content"]

        def ask(_: int) -> str:
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
            reply = client.completions.create(model=SERVED_NAME, prompt=prompt, max_tokens=48, temperature=0)
            return reply.choices[0].finish_reason or ""

        with ThreadPoolExecutor(slots) as pool:
            reasons = list(pool.map(ask, range(slots)))
        assert all(reasons), reasons
        log = server.log_path.read_text(errors="replace")
    launches = [(m.start(), int(m.group(1))) for m in SLOT_LAUNCH.finditer(log)]
    releases = [(m.start(), int(m.group(1)), int(m.group(3)), m.group(4)) for m in SLOT_RELEASE.finditer(log)]
    long_ones = [r for r in releases if r[2] >= per_request - 200]
    assert len({slot for _, slot, _, _ in long_ones}) == slots, releases
    assert all(truncated == "0" and n <= per_request for _, _, n, truncated in long_ones)
    # concurrent: every slot was launched before the first long request finished
    first_release = min(at for at, *_ in long_ones)
    assert len({slot for at, slot in launches if at < first_release}) == slots
    kv_mib = sum(float(x) for x in KV_LINE.findall(log))
    model_mib = sum(float(x) for x in MODEL_LINE.findall(log))
    assert kv_mib == pytest.approx((settings.kv_bytes + settings.swa_bytes) / 2**20, rel=0.05)
    assert model_mib == pytest.approx(settings.model_bytes / 2**20, rel=0.05)
