"""Judges: observations (check/probes.py) -> pass / warn / fail / skip results, each with a one-line reason.

Pure functions. Known failure classes: reasoning in the wrong field or nowhere (vLLM #41902), tokens lost in
streaming (vLLM #28635), tool calls left as text (no `--tool-call-parser openai --enable-auto-tool-choice`), broken
tool-result round trips (llama.cpp #17040, vLLM #22403), HTTP 200 with an error body, routes left open under
`--api-key` (shared/reference/reliability.md §1-2).
"""

from __future__ import annotations

import json
from typing import Any

from gptoss_deploy.check.probes import WEATHER_TOOL, ChoiceObservation, Exchange, RouteAnswers, StreamObservation
from gptoss_deploy.check.report import CheckResult, Status

HARMONY_MARKERS = ("<|channel|>", "<|message|>", "<|start|>", "<|end|>", "to=functions", "<|call|>")
TOOL_FLAGS = "--tool-call-parser openai --enable-auto-tool-choice"
STATE_CHANGING = ("pause", "resume", "sleep", "wake_up", "reset", "scale", "update_weights", "abort",
                  "collective_rpc", "shutdown", "profile", "lora", "clear", "slots/", "weights")
INFERENCE_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/invocations", "/completion",
                    "/completions", "/chat/completions", "/v1/messages", "/infill", "/v1/embeddings", "/embedding",
                    "/pooling", "/classify", "/score", "/rerank", "/v1/rerank")


def excerpt(value: Any, limit: int = 400) -> str:
    """What was received, cut to `limit` characters."""
    from gptoss_deploy.redact import redact

    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = redact(text if len(text) <= limit * 4 else text[:limit * 4])  # a server may echo the key back
    return text if len(text) <= limit else text[:limit] + " ..."


def result(group: str, name: str, status: Status, reason: str, shown: Any = None) -> CheckResult:
    """One check's result; the excerpt is kept only when it did not pass."""
    return CheckResult(group=group, name=name, status=status, reason=reason,
                       excerpt=None if shown is None or status == "pass" else excerpt(shown))


def has_harmony(text: str) -> bool:
    """Raw harmony markup in text meant for the user."""
    return any(marker in text for marker in HARMONY_MARKERS)


def error_body(exchange: Exchange) -> str | None:
    """The error a 200 answer carries in its body instead of a result (None when it carries none)."""
    body = exchange.body
    if exchange.status == 200 and isinstance(body, dict) and body.get("error") and "choices" not in body \
            and "output" not in body:
        error = body["error"]
        return str(error.get("message") if isinstance(error, dict) else error)
    return None


# -- chat ----------------------------------------------------------------------------------------------------
def chat(exchange: Exchange) -> tuple[list[CheckResult], str | None, str | None]:
    """(results, the content, the reasoning field's name) of a non-streamed chat answer."""
    if exchange.error is not None:
        return [result("chat", "chat", "fail", f"no chat answer: {exchange.error}")], None, None
    wrapped = error_body(exchange)
    if wrapped is not None:
        return [result("chat", "chat", "fail", f"HTTP 200 with an error body instead of an answer: {wrapped}",
                       exchange.body)], None, None
    try:
        message, usage = exchange.body["choices"][0]["message"], exchange.body.get("usage") or {}
        assert isinstance(message, dict) and isinstance(usage, dict)
    except (TypeError, KeyError, IndexError, AssertionError):
        return [result("chat", "chat", "fail", f"no chat answer: HTTP {exchange.status} without choices",
                       exchange.body if exchange.body is not None else exchange.text)], None, None
    content = message.get("content")
    content = content if isinstance(content, str) else None
    field = next((f for f in ("reasoning_content", "reasoning") if message.get(f)), None)
    completion = usage.get("completion_tokens") or 0
    out = [_content(content, field, completion, exchange.body), _reasoning_field(field, message),
           _usage(usage, completion, exchange.body)]
    return out, content, field


def _content(content: str | None, field: str | None, completion: int, body: Any) -> CheckResult:
    if not content and not field and completion > 0:
        return result("chat", "content", "fail", f"content and reasoning are both empty with {completion} completion "
                      "tokens (the vLLM #41902 class)", body)
    if not content:
        return result("chat", "content", "fail", "empty content", body)
    if has_harmony(content):
        return result("chat", "content", "fail", "raw harmony markup in content", content)
    return result("chat", "content", "pass", f"{len(content)} characters of content")


def _reasoning_field(field: str | None, message: dict[str, Any]) -> CheckResult:
    if field:
        other = "reasoning" if field == "reasoning_content" else "reasoning_content"
        return result("chat", "reasoning field", "pass",
                      f"reasoning in `{field}`" + (" (also `reasoning`)" if message.get(other) else ""))
    return result("chat", "reasoning field", "warn", "no reasoning_content or reasoning field: the analysis channel "
                  "was dropped or merged", message)


def _usage(usage: dict[str, Any], completion: int, body: Any) -> CheckResult:
    total = usage.get("total_tokens")
    if not usage:
        return result("chat", "usage", "fail", "no usage in the answer", body)
    if total != (usage.get("prompt_tokens") or 0) + completion:
        return result("chat", "usage", "fail", f"total_tokens {total} != prompt + completion", usage)
    return result("chat", "usage", "pass", f"{usage.get('prompt_tokens')} prompt + {completion} completion tokens")


def stream(seen: StreamObservation, expected: str | None) -> list[CheckResult]:
    """Streamed content equals the non-streamed answer at temperature 0; reasoning apart; finish_reason; usage."""
    if seen.error is not None:
        return [result("streaming", "stream", "fail", f"streaming failed: {seen.error}")]
    text = "".join(seen.content)
    out: list[CheckResult] = []
    if expected is None:
        out.append(result("streaming", "same as non-streamed", "skip", "no non-streamed answer"))
    elif text == expected:
        out.append(result("streaming", "same as non-streamed", "pass",
                          f"{len(seen.content)} chunks join to the non-streamed content"))
    else:
        out.append(result("streaming", "same as non-streamed", "fail", "streamed content differs from the "
                          "non-streamed answer at temperature 0 (tokens lost or reordered: the vLLM #28635 class)",
                          {"streamed": text, "non_streamed": expected}))
    reasoning = "".join(seen.reasoning)
    if has_harmony(text):
        out.append(result("streaming", "reasoning separated", "fail", "harmony markup in streamed content", text))
    elif reasoning:
        out.append(result("streaming", "reasoning separated", "pass", "reasoning arrived in its own deltas"))
    else:
        out.append(result("streaming", "reasoning separated", "warn", "no reasoning deltas"))
    out.append(result("streaming", "finish_reason", "pass" if seen.finish_reason else "fail",
                      f"final chunk finish_reason={seen.finish_reason}" if seen.finish_reason
                      else "no chunk carried finish_reason"))
    out.append(result("streaming", "usage", "pass" if seen.usage else "warn",
                      "usage chunk with include_usage" if seen.usage else "no usage chunk with include_usage"))
    return out


def effort(level: str, error: str | None) -> CheckResult:
    """reasoning_effort accepted or not."""
    if error is None:
        return result("reasoning", f"effort {level}", "pass", "accepted")
    return result("reasoning", f"effort {level}", "fail", f"rejected: {error}")


# -- tools ---------------------------------------------------------------------------------------------------
def argument_problem(arguments: str, schema: dict[str, Any] | None = None) -> str | None:
    """Why tool-call arguments are not a valid call of the tool with `schema` (default: the weather tool's) (None
    when they are)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return f"arguments are not JSON: {arguments!r}"
    import jsonschema

    try:
        jsonschema.validate(parsed, schema or WEATHER_TOOL["function"]["parameters"])
    except jsonschema.ValidationError as exc:
        return f"arguments do not match the declared schema: {exc.message}"
    return None


def tool_call(seen: ChoiceObservation) -> CheckResult:
    """A known function called with schema-valid JSON arguments and finish_reason=tool_calls."""
    if seen.error is not None:
        return result("tools", "tool call", "fail", f"the server rejected a request with tools: {seen.error}; vLLM "
                      f"needs {TOOL_FLAGS}")
    if not seen.tool_calls:
        where = ("as text in content" if has_harmony(seen.content) or "get_weather" in seen.content else "nowhere")
        return result("tools", "tool call", "fail", f"no tool_calls (finish_reason={seen.finish_reason}); the call "
                      f"arrived {where}: the server does not parse gpt-oss tool calls (vLLM: serve with {TOOL_FLAGS})",
                      seen.message)
    call = seen.tool_calls[0]
    problems = [p for p in (
        None if seen.finish_reason == "tool_calls" else f"finish_reason is {seen.finish_reason}, not tool_calls",
        None if call.name == "get_weather" else f"unknown function {call.name!r}",
        argument_problem(call.arguments),
        "raw harmony markup in content" if has_harmony(seen.content) else None) if p]
    return result("tools", "tool call", "fail" if problems else "pass",
                  "; ".join(problems) if problems else f"get_weather({call.arguments}) with finish_reason=tool_calls",
                  seen.message)


def round_trip(seen: ChoiceObservation) -> CheckResult:
    """After the tool's result, a clean final answer."""
    if seen.error is not None:
        return result("tools", "tool result round trip", "fail",
                      f"the server rejected the tool result (llama.cpp #17040 / vLLM #22403 class): {seen.error}")
    if seen.content and not has_harmony(seen.content):
        return result("tools", "tool result round trip", "pass", f"final answer: {excerpt(seen.content, 80)}")
    return result("tools", "tool result round trip", "fail", "no clean final answer after the tool result",
                  seen.message)


def tool_required(seen: ChoiceObservation) -> CheckResult:
    """tool_choice=required honoured (unsupported is a warning; another failure is a fail)."""
    if seen.rejected:
        return result("tools", "tool_choice=required", "warn", f"unsupported by this server: {seen.error}")
    if seen.error is not None:
        return result("tools", "tool_choice=required", "fail", f"failed: {seen.error}")
    if seen.tool_calls:
        return result("tools", "tool_choice=required", "pass", "a tool call came back")
    return result("tools", "tool_choice=required", "warn", "accepted, but no tool call came back", seen.message)


# -- responses -----------------------------------------------------------------------------------------------
def responses(exchange: Exchange | None, offered: bool) -> CheckResult:
    """/v1/responses answers with an output message carrying text."""
    if not offered or exchange is None:
        return result("responses", "/v1/responses", "skip", "not offered by this server")
    if exchange.status == 404:
        return result("responses", "/v1/responses", "skip", "not offered by this server (404)")
    if exchange.error is not None:
        return result("responses", "/v1/responses", "fail", f"no answer: {exchange.error}")
    wrapped = error_body(exchange)
    if wrapped is not None:
        return result("responses", "/v1/responses", "fail", f"HTTP 200 with an error body: {wrapped}", exchange.body)
    body = exchange.body
    texts = []
    if isinstance(body, dict) and isinstance(body.get("output"), list):
        texts = [c.get("text", "") for item in body["output"] if isinstance(item, dict) and item.get("type") == "message"
                 for c in item.get("content") or [] if isinstance(c, dict)]
    ok = exchange.status == 200 and any(texts)
    return result("responses", "/v1/responses", "pass" if ok else "fail", "an output message with text" if ok else
                  f"HTTP {exchange.status} without an output message", body if body is not None else exchange.text)


# -- security ------------------------------------------------------------------------------------------------
def is_state_changing(path: str) -> bool:
    """Routes that would change the server (never called)."""
    return any(word in path.lower() for word in STATE_CHANGING) and path not in INFERENCE_ROUTES


def address(host: str, loopback: bool) -> list[CheckResult]:
    """A server reachable off loopback is worth a warning."""
    if loopback:
        return []
    return [result("security", "address", "warn", f"the server is reachable at {host}, not loopback: put an "
                   "allowlisting reverse proxy in front")]


def state_changing(paths: list[str]) -> list[CheckResult]:
    """State-changing routes offered (listed, not called)."""
    skipped = sorted({p for p in paths if is_state_changing(p)})
    if not skipped:
        return []
    return [result("security", "state-changing routes", "warn",
                   f"offered and not called (they would change the server): {', '.join(skipped)}")]


def no_key(status: int | str, loopback: bool) -> CheckResult:
    """A server we were given no key for: open inference is a warning on loopback, a fail elsewhere."""
    open_ = isinstance(status, int) and status < 300
    if open_:
        return result("security", "authentication", "warn" if loopback else "fail",
                      "no API key: anyone who reaches the port can use the model")
    return result("security", "authentication", "pass", f"/v1/chat/completions without a key answered {status}")


def route(answers: RouteAnswers) -> CheckResult:
    """A route without a key / with a wrong key: inference answering 2xx fails, information is a warning."""
    statuses = answers.answers
    open_with = [label for label, status in statuses.items() if isinstance(status, int) and status < 300]
    name = f"{answers.method} {answers.path}"
    if all(status in (401, 403) for status in statuses.values()):
        return result("security", name, "pass", f"refused ({statuses['no key']}, {statuses['wrong key']})")
    if not open_with:
        return result("security", name, "pass",
                      f"no key check, but our probe was not served ({statuses['no key']}, {statuses['wrong key']})")
    if answers.path in INFERENCE_ROUTES:
        return result("security", name, "fail", f"inference open with {' and '.join(open_with)} "
                      f"({statuses['no key']}): the API key does not guard it", statuses)
    return result("security", name, "warn", f"answers with {' and '.join(open_with)}: information (load, versions, "
                  "metrics) visible without the key", statuses)
