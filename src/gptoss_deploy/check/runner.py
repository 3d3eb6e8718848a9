"""Run the gpt-oss conformance and security checks against an OpenAI-compatible endpoint.

Client-facing checks use the official `openai` client (what users run); raw httpx is used where the JSON as
sent matters (which reasoning field the server uses, routes answered without a key). Known failure classes:
reasoning in the wrong field or nowhere (vLLM #41902), tokens lost in streaming (vLLM #28635), tool calls left
as text (no `--tool-call-parser openai --enable-auto-tool-choice`), broken tool-result round trips (llama.cpp
#17040, vLLM #22403), routes left open under `--api-key` (shared/reference/reliability.md §1-2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from gptoss_deploy.check.report import CheckReport, CheckResult, Status
from gptoss_deploy.engines import bearer, is_loopback, registry
from gptoss_deploy.errors import InputError

HARMONY_MARKERS = ("<|channel|>", "<|message|>", "<|start|>", "<|end|>", "to=functions", "<|call|>")
TOOL_FLAGS = "--tool-call-parser openai --enable-auto-tool-choice"
# The classic function-calling example (also what the lane's tiny model was trained on, so the engine lane can
# test it end to end).
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["location"]}}}
WEATHER_QUESTION = "What's the weather like in Paris?"
STATE_CHANGING = ("pause", "resume", "sleep", "wake_up", "reset", "scale", "update_weights", "abort",
                  "collective_rpc", "shutdown", "profile", "lora", "clear", "slots/", "weights")
INFERENCE_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/invocations", "/completion",
                    "/completions", "/chat/completions", "/v1/messages", "/infill", "/v1/embeddings", "/embedding",
                    "/pooling", "/classify", "/score", "/rerank", "/v1/rerank")
@dataclass
class Target:
    """The endpoint under test."""

    base_url: str  # without /v1
    api_key: str | None
    model: str
    timeout_s: float = 120.0
    http: httpx.Client = field(default_factory=httpx.Client)  # one client: each new one costs ~50 ms of CPU

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header when a key is known."""
        return bearer(self.api_key)


def normalise_url(url: str) -> str:
    """http://host:port from what a user pastes (with or without /v1, with a trailing slash)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"{url!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:8000 or http://host:8000/v1")
    path = parsed.path.rstrip("/")
    path = path[:-3] if path.endswith("/v1") else path
    return f"{parsed.scheme}://{parsed.netloc}{path}"


def _excerpt(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + " ..."


def _result(group: str, name: str, status: Status, reason: str, excerpt: Any = None) -> CheckResult:
    return CheckResult(group=group, name=name, status=status, reason=reason,
                       excerpt=None if excerpt is None or status == "pass" else _excerpt(excerpt))


# -- discovery -----------------------------------------------------------------------------------------------
def discover(base_url: str, api_key: str | None, model: str | None, timeout_s: float) -> tuple[Target, CheckReport]:
    """Reach the server, list its models, find the engine; bad input raises InputError (exit 2)."""
    http = httpx.Client()
    try:
        return _discover(http, base_url, api_key, model, timeout_s)
    except BaseException:
        http.close()
        raise


def _discover(http: httpx.Client, base_url: str, api_key: str | None, model: str | None,
              timeout_s: float) -> tuple[Target, CheckReport]:
    try:
        models = http.get(f"{base_url}/v1/models", headers=bearer(api_key),
                           timeout=min(timeout_s, 30))
    except httpx.HTTPError as exc:
        raise InputError(f"cannot reach {base_url}: {type(exc).__name__}: {exc}",
                         hint="is the server running? check the host, port and scheme") from None
    if models.status_code == 401:
        raise InputError(f"{base_url}/v1/models answered 401: " + ("the API key was rejected" if api_key
                                                                  else "the server needs an API key"),
                         hint="pass the right key with --api-key-file FILE")
    try:
        listed = [m["id"] for m in models.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{base_url} is not an OpenAI-compatible server: /v1/models answered HTTP "
                         f"{models.status_code} with {_excerpt(models.text, 120)!r}",
                         hint="point at the server's base URL, e.g. http://host:8000 (vLLM) or :8080 (llama.cpp)") from None
    if not listed:
        raise InputError(f"{base_url} serves no model", hint="wait until the model is loaded")
    if model is not None and model not in listed:
        raise InputError(f"model {model!r} is not served by {base_url}", hint=f"it serves: {', '.join(listed)}")
    target = Target(base_url, api_key, model or listed[0], timeout_s, http)
    engine, version = _engine(target)
    report = CheckReport(url=base_url, model=target.model, engine=engine, engine_version=version)
    report.results.append(_result("discovery", "models", "pass", f"/v1/models lists {target.model}"))
    health = _status(http, f"{base_url}/health", timeout_s)
    report.results.append(_result("discovery", "health", "pass" if health == 200 else "warn",
                                  "/health answered 200" if health == 200 else f"/health answered {health}"))
    report.results.append(_result("discovery", "engine", "pass" if engine != "unknown" else "warn",
                                  f"{engine} {version or ''}".strip() if engine != "unknown" else
                                  "neither vLLM's /version nor llama.cpp's /props answered"))
    return target, report


def _status(http: httpx.Client, url: str, timeout_s: float) -> int | str:
    try:
        return http.get(url, timeout=min(timeout_s, 30)).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def _engine(target: Target) -> tuple[str, str | None]:
    """(engine name, version) as the server identifies itself to each known engine's probe; "unknown" otherwise."""
    for engine in registry.engines():
        version = engine.identify(target.http, target.base_url, target.headers)
        if version is not None:
            return engine.name, version or None
    return "unknown", None


def known_routes(engine: str | None) -> list[tuple[str, str]]:
    """The engine's routes a security probe must cover (the default engine's for an unknown server)."""
    return list(registry.known_or_default(engine).security_routes)


# -- chat ----------------------------------------------------------------------------------------------------
def _chat_body(target: Target, **extra: Any) -> dict[str, Any]:
    return {"model": target.model, "messages": [{"role": "user", "content": "Hello! Answer in one sentence."}],
            "max_tokens": 256, "temperature": 0, "seed": 0} | extra


def check_chat(target: Target, report: CheckReport) -> str | None:
    """Non-streamed chat as the JSON arrives: content, the reasoning field, usage. Returns the content."""
    try:
        reply = target.http.post(f"{target.base_url}/v1/chat/completions", json=_chat_body(target), headers=target.headers,
                           timeout=target.timeout_s)
        body = reply.json()
        message, usage = body["choices"][0]["message"], body.get("usage") or {}
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        report.results.append(_result("chat", "chat", "fail", f"no chat answer: {type(exc).__name__}: {exc}"))
        return None
    content = message.get("content")
    field = next((f for f in ("reasoning_content", "reasoning") if message.get(f)), None)
    report.reasoning_field = field
    completion = usage.get("completion_tokens") or 0
    if not content and not field and completion > 0:
        report.results.append(_result("chat", "content", "fail", f"content and reasoning are both empty with "
                                      f"{completion} completion tokens (the vLLM #41902 class)", body))
    elif not content:
        report.results.append(_result("chat", "content", "fail", "empty content", body))
    elif any(m in content for m in HARMONY_MARKERS):
        report.results.append(_result("chat", "content", "fail", "raw harmony markup in content", content))
    else:
        report.results.append(_result("chat", "content", "pass", f"{len(content)} characters of content"))
    if field:
        other = "reasoning" if field == "reasoning_content" else "reasoning_content"
        report.results.append(_result("chat", "reasoning field", "pass",
                                      f"reasoning in `{field}`" + (" (also `reasoning`)" if message.get(other) else "")))
    else:
        report.results.append(_result("chat", "reasoning field", "warn",
                                      "no reasoning_content or reasoning field: the analysis channel was dropped "
                                      "or merged", message))
    total = usage.get("total_tokens")
    if not usage:
        report.results.append(_result("chat", "usage", "fail", "no usage in the answer", body))
    elif total != (usage.get("prompt_tokens") or 0) + completion:
        report.results.append(_result("chat", "usage", "fail", f"total_tokens {total} != prompt + completion", usage))
    else:
        report.results.append(_result("chat", "usage", "pass", f"{usage.get('prompt_tokens')} prompt + "
                                      f"{completion} completion tokens"))
    return content


def _client(target: Target):  # noqa: ANN202 - openai.OpenAI, imported lazily
    import openai

    return openai.OpenAI(base_url=f"{target.base_url}/v1", api_key=target.api_key or "none", max_retries=0,
                         timeout=target.timeout_s)


def _delta_reasoning(delta: Any) -> str:
    extra = getattr(delta, "model_extra", None) or {}
    return extra.get("reasoning_content") or extra.get("reasoning") or ""


def check_stream(target: Target, report: CheckReport, expected: str | None) -> None:
    """Streamed chat at temperature 0 equals the non-streamed answer; reasoning apart; finish_reason at the end."""
    import openai

    content, reasoning, finish, usage = [], [], None, None
    try:
        stream = _client(target).chat.completions.create(
            **_chat_body(target), stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                content.append(choice.delta.content or "")
                reasoning.append(_delta_reasoning(choice.delta))
                finish = choice.finish_reason or finish
    except openai.OpenAIError as exc:
        report.results.append(_result("streaming", "stream", "fail", f"streaming failed: {exc}"))
        return
    text = "".join(content)
    if expected is None:
        report.results.append(_result("streaming", "same as non-streamed", "skip", "no non-streamed answer"))
    elif text == expected:
        report.results.append(_result("streaming", "same as non-streamed", "pass",
                                      f"{len(content)} chunks join to the non-streamed content"))
    else:
        report.results.append(_result("streaming", "same as non-streamed", "fail",
                                      "streamed content differs from the non-streamed answer at temperature 0 "
                                      "(tokens lost or reordered: the vLLM #28635 class)",
                                      {"streamed": text, "non_streamed": expected}))
    leaked = any(m in text for m in HARMONY_MARKERS)
    report.results.append(_result("streaming", "reasoning separated", "fail" if leaked else
                                  ("pass" if "".join(reasoning) else "warn"),
                                  "harmony markup in streamed content" if leaked else
                                  ("reasoning arrived in its own deltas" if "".join(reasoning) else
                                   "no reasoning deltas"), text if leaked else None))
    report.results.append(_result("streaming", "finish_reason", "pass" if finish else "fail",
                                  f"final chunk finish_reason={finish}" if finish else "no chunk carried finish_reason"))
    report.results.append(_result("streaming", "usage", "pass" if usage else "warn",
                                  "usage chunk with include_usage" if usage else "no usage chunk with include_usage"))


def check_effort(target: Target, report: CheckReport) -> None:
    """reasoning_effort low and high are accepted."""
    import openai

    for effort in ("low", "high"):
        try:
            _client(target).chat.completions.create(**_chat_body(target, max_tokens=64), reasoning_effort=effort)
            report.results.append(_result("reasoning", f"effort {effort}", "pass", "accepted"))
        except openai.OpenAIError as exc:
            report.results.append(_result("reasoning", f"effort {effort}", "fail", f"rejected: {exc}"))


def _validate_arguments(arguments: str) -> str | None:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return f"arguments are not JSON: {arguments!r}"
    import jsonschema

    try:
        jsonschema.validate(parsed, WEATHER_TOOL["function"]["parameters"])
    except jsonschema.ValidationError as exc:
        return f"arguments do not match the declared schema: {exc.message}"
    return None


def check_tools(target: Target, report: CheckReport) -> None:
    """One function call with schema-valid JSON arguments, then the tool-result round trip, then tool_choice."""
    import openai

    client = _client(target)
    question = [{"role": "user", "content": WEATHER_QUESTION}]
    try:
        reply = client.chat.completions.create(model=target.model, messages=question, tools=[WEATHER_TOOL],
                                               tool_choice="auto", temperature=0, seed=0, max_tokens=256)
    except openai.OpenAIError as exc:
        report.results.append(_result("tools", "tool call", "fail", f"the server rejected a request with tools: {exc}; "
                                      f"vLLM needs {TOOL_FLAGS}"))
        return
    choice = reply.choices[0]
    calls = choice.message.tool_calls or []
    content = choice.message.content or ""
    if not calls:
        where = "as text in content" if any(m in content for m in HARMONY_MARKERS) or "get_weather" in content \
            else "nowhere"
        report.results.append(_result("tools", "tool call", "fail",
                                      f"no tool_calls (finish_reason={choice.finish_reason}); the call arrived {where}: "
                                      f"the server does not parse gpt-oss tool calls (vLLM: serve with {TOOL_FLAGS})",
                                      choice.message.model_dump()))
        return
    call = calls[0]
    problems = [p for p in (
        None if choice.finish_reason == "tool_calls" else f"finish_reason is {choice.finish_reason}, not tool_calls",
        None if call.function.name == "get_weather" else f"unknown function {call.function.name!r}",
        _validate_arguments(call.function.arguments),
        "raw harmony markup in content" if any(m in content for m in HARMONY_MARKERS) else None) if p]
    report.results.append(_result("tools", "tool call", "fail" if problems else "pass",
                                  "; ".join(problems) if problems else
                                  f"get_weather({call.function.arguments}) with finish_reason=tool_calls",
                                  choice.message.model_dump()))
    _round_trip(client, target, report, question, call)
    try:
        forced = client.chat.completions.create(model=target.model, messages=question, tools=[WEATHER_TOOL],
                                                tool_choice="required", temperature=0, max_tokens=256)
        ok = bool(forced.choices[0].message.tool_calls)
        report.results.append(_result("tools", "tool_choice=required", "pass" if ok else "warn",
                                      "a tool call came back" if ok else "accepted, but no tool call came back"))
    except openai.BadRequestError as exc:
        report.results.append(_result("tools", "tool_choice=required", "warn", f"unsupported by this server: {exc}"))
    except openai.OpenAIError as exc:
        report.results.append(_result("tools", "tool_choice=required", "fail", f"failed: {exc}"))


def _round_trip(client: Any, target: Target, report: CheckReport, question: list[dict], call: Any) -> None:
    import openai

    messages = question + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id or "call_0", "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id or "call_0", "content": json.dumps({"temperature_c": 18})}]
    try:
        final = client.chat.completions.create(model=target.model, messages=messages, tools=[WEATHER_TOOL],
                                               temperature=0, seed=0, max_tokens=256)
    except openai.OpenAIError as exc:
        report.results.append(_result("tools", "tool result round trip", "fail",
                                      f"the server rejected the tool result (llama.cpp #17040 / vLLM #22403 class): {exc}"))
        return
    message = final.choices[0].message
    text = message.content or ""
    if text and not any(m in text for m in HARMONY_MARKERS):
        report.results.append(_result("tools", "tool result round trip", "pass", f"final answer: {_excerpt(text, 80)}"))
    else:
        report.results.append(_result("tools", "tool result round trip", "fail",
                                      "no clean final answer after the tool result", message.model_dump()))


def check_responses(target: Target, report: CheckReport, routes: set[str]) -> None:
    """A basic /v1/responses call when the server offers it."""
    if routes and "/v1/responses" not in routes:
        report.results.append(_result("responses", "/v1/responses", "skip", "not offered by this server"))
        return
    reply = target.http.post(f"{target.base_url}/v1/responses", headers=target.headers, timeout=target.timeout_s,
                       json={"model": target.model, "input": "Hello!", "max_output_tokens": 256})
    if reply.status_code == 404:
        report.results.append(_result("responses", "/v1/responses", "skip", "not offered by this server (404)"))
        return
    try:
        body = reply.json()
        texts = [c.get("text", "") for item in body.get("output", []) if item.get("type") == "message"
                 for c in item.get("content", [])]
    except (ValueError, AttributeError):
        body, texts = reply.text, []
    ok = reply.status_code == 200 and any(texts)
    report.results.append(_result("responses", "/v1/responses", "pass" if ok else "fail",
                                  "an output message with text" if ok else f"HTTP {reply.status_code} without an "
                                  "output message", body))


# -- security ------------------------------------------------------------------------------------------------
def openapi_routes(target: Target) -> list[tuple[str, str]]:
    """(method, path) pairs from /openapi.json, or [] when the server offers none."""
    try:
        reply = target.http.get(f"{target.base_url}/openapi.json", timeout=10)
        paths = reply.json()["paths"] if reply.status_code == 200 else {}
    except (httpx.HTTPError, ValueError, KeyError):
        return []
    return [(method.upper(), path) for path, spec in paths.items() for method in spec
            if method.upper() in ("GET", "POST") and "{" not in path]


def _is_state_changing(path: str) -> bool:
    return any(word in path.lower() for word in STATE_CHANGING) and path not in INFERENCE_ROUTES


def _probe(target: Target, method: str, path: str, key: str | None) -> int | str:
    headers = bearer(key)
    body = {"model": target.model, "messages": [{"role": "user", "content": "hi"}], "prompt": "hi",
            "input": "hi", "max_tokens": 1, "max_output_tokens": 16, "n_predict": 1, "content": "hi"}
    try:
        if method == "GET":
            return target.http.get(f"{target.base_url}{path}", headers=headers, timeout=30).status_code
        return target.http.post(f"{target.base_url}{path}", headers=headers, json=body, timeout=60).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def check_security(target: Target, report: CheckReport, routes: list[tuple[str, str]]) -> None:
    """Call every route without a key and with a wrong key; inference answering 2xx is a fail, info a warn."""
    host = urlparse(target.base_url).hostname or ""
    if not is_loopback(host):
        report.results.append(_result("security", "address", "warn", f"the server is reachable at {host}, not "
                                      "loopback: put an allowlisting reverse proxy in front"))
    # The engine's known routes too: /openapi.json leaves out mounts such as vLLM's Prometheus /metrics.
    probe_list = list(dict.fromkeys(routes + known_routes(report.engine)))
    skipped = sorted({p for _, p in probe_list if _is_state_changing(p)})
    if skipped:
        report.results.append(_result("security", "state-changing routes", "warn",
                                      f"offered and not called (they would change the server): {', '.join(skipped)}"))
    if not target.api_key:
        status = _probe(target, "POST", "/v1/chat/completions", None)
        open_ = isinstance(status, int) and status < 300
        report.results.append(_result("security", "authentication", ("fail" if not is_loopback(host) else "warn")
                                      if open_ else "pass", "no API key: anyone who reaches the port can use the "
                                      "model" if open_ else f"/v1/chat/completions without a key answered {status}"))
        return
    for method, path in probe_list:
        if _is_state_changing(path):
            continue
        answers = {label: _probe(target, method, path, key) for label, key in (("no key", None),
                                                                               ("wrong key", "sk-wrong-gptoss-check"))}
        open_with = [label for label, status in answers.items() if isinstance(status, int) and status < 300]
        inference = path in INFERENCE_ROUTES
        name = f"{method} {path}"
        if all(status in (401, 403) for status in answers.values()):
            report.results.append(_result("security", name, "pass", f"refused ({answers['no key']}, "
                                          f"{answers['wrong key']})"))
        elif not open_with:
            report.results.append(_result("security", name, "pass", f"no key check, but our probe was not served "
                                          f"({answers['no key']}, {answers['wrong key']})"))
        elif inference:
            report.results.append(_result("security", name, "fail", f"inference open with {' and '.join(open_with)}"
                                          f" ({answers['no key']}): the API key does not guard it", answers))
        else:
            report.results.append(_result("security", name, "warn", f"answers with {' and '.join(open_with)}: "
                                          "information (load, versions, metrics) visible without the key", answers))


def run_checks(url: str, api_key: str | None = None, model: str | None = None,
               timeout_s: float = 120.0) -> CheckReport:
    """Every check against `url` (see the module docstring)."""
    target, report = discover(normalise_url(url), api_key, model, timeout_s)
    try:
        content = check_chat(target, report)
        check_stream(target, report, content)
        check_effort(target, report)
        check_tools(target, report)
        routes = openapi_routes(target)
        check_responses(target, report, {p for _, p in routes})
        check_security(target, report, routes)
    finally:
        target.http.close()
    return report
