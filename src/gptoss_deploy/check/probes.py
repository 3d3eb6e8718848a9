"""Probes: send what real clients send and record what came back, judging nothing (check/judges.py judges).

Client-facing probes use the official `openai` client (what users run); raw httpx is used where the JSON as sent
matters (which reasoning field the server uses, routes answered without a key). Every probe returns an
observation; a failure to get an answer is recorded in it, never raised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from gptoss_deploy.engines import bearer
from gptoss_deploy.httpclient import bounded_client

# The classic function-calling example (also what the lane's tiny model was trained on, so the engine lane can
# test it end to end).
WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["location"]}}}
WEATHER_QUESTION = "What's the weather like in Paris?"
WRONG_KEY = "sk-wrong-gptoss-check"


# What a hostile or broken server can make a probe raise besides the client's own errors: a transport error in
# the middle of a stream (the deadline, the byte cap), or JSON of the wrong shape the client did not validate.
TRANSPORT_OR_SHAPE: tuple[type[Exception], ...] = (httpx.HTTPError, AttributeError, TypeError, ValueError, KeyError,
                                                   IndexError, RecursionError)


def probe_errors() -> tuple[type[Exception], ...]:
    """Everything a client-facing probe records instead of raising: the openai client's errors and the above."""
    import openai

    return (openai.OpenAIError, *TRANSPORT_OR_SHAPE)


def describe(exc: BaseException) -> str:
    """A probe failure as one line: the error's type and message."""
    text = str(exc) or "no message"
    return text if isinstance(exc, Exception) and type(exc).__module__.startswith("openai") else f"{type(exc).__name__}: {text}"


@dataclass
class Target:
    """The endpoint under test."""

    base_url: str  # without /v1
    api_key: str | None
    model: str
    timeout_s: float = 120.0
    http: httpx.Client = field(default_factory=lambda: bounded_client(120.0))  # one client (each costs ~50 ms)
    _openai: Any = None

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header when a key is known."""
        return bearer(self.api_key)

    @property
    def openai(self) -> Any:
        """The official client for this endpoint (made once: each new one costs ~50 ms of CPU)."""
        if self._openai is None:
            import openai

            self._openai = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self.api_key or "none",
                                         max_retries=0, timeout=self.timeout_s,
                                         # openai 3.x is typed for httpx2 but uses the client by its interface;
                                         # the hostile-server tests prove the deadline holds through it
                                         http_client=bounded_client(self.timeout_s))  # type: ignore[arg-type]
        return self._openai

    def close(self) -> None:
        """Close both clients."""
        if self._openai is not None:
            self._openai.close()
        self.http.close()


@dataclass
class Exchange:
    """One HTTP request's outcome: status and body (JSON when it parsed), or why there was no answer."""

    status: int | None = None
    body: Any = None
    text: str = ""
    error: str | None = None


@dataclass
class StreamObservation:
    """A streamed chat completion as the openai client assembled it."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class ToolCall:
    """One parsed tool call."""

    id: str | None
    name: str
    arguments: str


@dataclass
class ChoiceObservation:
    """A non-streamed chat completion through the openai client: the first choice, or the error."""

    finish_reason: str | None = None
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    message: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rejected: bool = False  # the server answered 400 (the request shape is not supported)


@dataclass
class RouteAnswers:
    """What one route answered without a key and with a wrong one (a status, or the transport error's name)."""

    method: str
    path: str
    answers: dict[str, int | str]


def post_json(target: Target, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Exchange:
    """POST a JSON body; the status and the parsed answer."""
    try:
        reply = target.http.post(f"{target.base_url}{path}", json=body,
                                 headers=target.headers if headers is None else headers, timeout=target.timeout_s)
    except httpx.HTTPError as exc:
        return Exchange(error=f"{type(exc).__name__}: {exc}")
    try:
        parsed = reply.json()
    except ValueError:
        parsed = None
    return Exchange(status=reply.status_code, body=parsed, text=reply.text[:2000])


def chat_body(target: Target, **extra: Any) -> dict[str, Any]:
    """The plain chat request the checks start from."""
    return {"model": target.model, "messages": [{"role": "user", "content": "Hello! Answer in one sentence."}],
            "max_tokens": 256, "temperature": 0, "seed": 0} | extra


def chat(target: Target) -> Exchange:
    """A non-streamed chat completion as raw JSON (which field carries the reasoning is the point)."""
    return post_json(target, "/v1/chat/completions", chat_body(target))


def _delta_reasoning(delta: Any) -> str:
    extra = getattr(delta, "model_extra", None) or {}
    return str(extra.get("reasoning_content") or extra.get("reasoning") or "")


def stream(target: Target) -> StreamObservation:
    """The same chat streamed with the official client (include_usage on)."""

    seen = StreamObservation()
    try:
        events = target.openai.chat.completions.create(**chat_body(target), stream=True,
                                                         stream_options={"include_usage": True})
        for chunk in events:
            if chunk.usage is not None:
                seen.usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                seen.content.append(choice.delta.content or "")
                seen.reasoning.append(_delta_reasoning(choice.delta))
                seen.finish_reason = choice.finish_reason or seen.finish_reason
    except probe_errors() as exc:
        seen.error = describe(exc)
    return seen


def effort(target: Target, level: str) -> str | None:
    """None when reasoning_effort=`level` is accepted, else the error."""

    try:
        target.openai.chat.completions.create(**chat_body(target, max_tokens=64), reasoning_effort=level)
    except probe_errors() as exc:
        return describe(exc)
    return None


def choice(target: Target, max_tokens: int = 256, **request: Any) -> ChoiceObservation:
    """A non-streamed chat completion at temperature 0 through the official client: the first choice, or the error
    (a 400 marked `rejected`)."""
    import openai

    try:
        reply = target.openai.chat.completions.create(model=target.model, temperature=0, max_tokens=max_tokens,
                                                      **request)
    except openai.BadRequestError as exc:
        return ChoiceObservation(error=str(exc), rejected=True)
    except probe_errors() as exc:
        return ChoiceObservation(error=describe(exc))
    try:
        if not reply.choices:
            return ChoiceObservation(error="the answer has no choices")
        choice = reply.choices[0]
        calls = [ToolCall(id=c.id, name=str(c.function.name), arguments=str(c.function.arguments))
                 for c in choice.message.tool_calls or [] if getattr(c, "function", None) is not None]
        return ChoiceObservation(finish_reason=choice.finish_reason, content=str(choice.message.content or ""),
                                 tool_calls=calls, message=choice.message.model_dump())
    except TRANSPORT_OR_SHAPE as exc:
        return ChoiceObservation(error=describe(exc))


def tool_call(target: Target) -> ChoiceObservation:
    """The weather question with the weather tool, tool_choice=auto."""
    return choice(target, messages=[{"role": "user", "content": WEATHER_QUESTION}], tools=[WEATHER_TOOL],
                   tool_choice="auto", seed=0)


def round_trip(target: Target, call: ToolCall) -> ChoiceObservation:
    """The conversation continued with the tool's result: a final answer is expected."""
    call_id = call.id or "call_0"
    messages = [{"role": "user", "content": WEATHER_QUESTION},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]},
                {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"temperature_c": 18})}]
    return choice(target, messages=messages, tools=[WEATHER_TOOL], seed=0)


def tool_required(target: Target) -> ChoiceObservation:
    """The weather question with tool_choice=required."""
    return choice(target, messages=[{"role": "user", "content": WEATHER_QUESTION}], tools=[WEATHER_TOOL],
                   tool_choice="required")


def responses(target: Target) -> Exchange:
    """A basic /v1/responses call."""
    return post_json(target, "/v1/responses", {"model": target.model, "input": "Hello!", "max_output_tokens": 256})


def openapi_routes(target: Target) -> list[tuple[str, str]]:
    """(method, path) pairs from /openapi.json, or [] when the server offers none."""
    try:
        reply = target.http.get(f"{target.base_url}/openapi.json", timeout=min(10.0, target.timeout_s))
        paths = reply.json()["paths"] if reply.status_code == 200 else {}
        return [(method.upper(), path) for path, spec in paths.items() for method in spec
                if method.upper() in ("GET", "POST") and "{" not in path]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _probe(target: Target, method: str, path: str, key: str | None) -> int | str:
    body = {"model": target.model, "messages": [{"role": "user", "content": "hi"}], "prompt": "hi",
            "input": "hi", "max_tokens": 1, "max_output_tokens": 16, "n_predict": 1, "content": "hi"}
    try:
        if method == "GET":
            return target.http.get(f"{target.base_url}{path}", headers=bearer(key), timeout=min(30.0, target.timeout_s)).status_code
        return target.http.post(f"{target.base_url}{path}", headers=bearer(key), json=body,
                                timeout=min(60.0, target.timeout_s)).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def unauthenticated(target: Target, method: str, path: str) -> RouteAnswers:
    """The route called without a key and with a wrong key."""
    return RouteAnswers(method, path, {label: _probe(target, method, path, key)
                                       for label, key in (("no key", None), ("wrong key", WRONG_KEY))})


def open_chat(target: Target) -> int | str:
    """/v1/chat/completions without any key (for a server we were given no key for)."""
    return _probe(target, "POST", "/v1/chat/completions", None)
