"""The tiny gpt-oss GGUF on a real llama-server built from source."""

from __future__ import annotations

from collections.abc import Iterator

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
