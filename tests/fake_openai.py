"""An in-process OpenAI-compatible server that replays failure shapes a real engine cannot be made to produce on
demand (the fake-server test tier). Healthy by default; each fault changes one behaviour:

  empty_with_tokens   content and reasoning both empty while usage counts completion tokens (vLLM #41902)
  drop_stream_tokens  the stream loses one content piece (vLLM #28635)
  harmony_in_content  raw harmony markup in `content`
  unparsed_tools      the tool call arrives as harmony text in `content`, finish_reason=stop
  error_200           HTTP 200 whose body is {"error": ...}
  no_reasoning        no reasoning field at all
  bad_usage           total_tokens != prompt + completion
  no_finish           no chunk carries finish_reason
  effort_rejected     400 for reasoning_effort=high
  required_ignored    tool_choice=required answered without a tool call
  round_trip_broken   400 for a conversation holding a tool result (llama.cpp #17040)
  open_metrics        /metrics answers without the key; open_inference: chat answers without the key
  bad_arguments       tool arguments that are not JSON

Hostile faults (issue #16: bounded time and memory against any server, nothing leaked):
  drip                every POST answer arrives one byte every 0.3 s, forever
  endless_stream      a streamed answer whose events never end
  endless_models      /v1/models whose body never ends
  malformed_sse       streamed events of the wrong shapes (lists, strings, counts that are not numbers)
  echo_headers        every answer's content is the request's headers (Authorization included)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fake-gpt-oss"
ANSWER = ["Hello", " there,", " friend."]
REASONING = "The user greets me."
HARMONY = "<|channel|>final<|message|>Hello there"
TOOL_ARGUMENTS = '{"location": "Paris"}'


class FakeOpenAI(ThreadingHTTPServer):
    """The server; `faults` names the behaviours to break, `api_key` the key it requires (None: none)."""

    daemon_threads = True

    def __init__(self, faults: set[str], api_key: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.faults, self.api_key = faults, api_key
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    """One request."""

    server: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _authorised(self, open_: bool = False) -> bool:
        key = self.server.api_key
        return open_ or key is None or self.headers.get("Authorization") == f"Bearer {key}"

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Discovery routes."""
        faults = self.server.faults
        routes: dict[str, tuple[bool, Any]] = {
            "/health": (True, {}), "/version": (True, {"version": "fake-0.1"}),
            "/v1/models": (False, {"object": "list", "data": [{"id": MODEL, "object": "model"}]}),
            "/metrics": ("open_metrics" in faults, None),
            "/openapi.json": (True, {"paths": {p: {"post": {}} for p in ("/v1/chat/completions", "/v1/responses",
                                                                         "/pause")}}),
        }
        if self.path not in routes:
            self._json(404, {"error": "not found"})
            return
        open_, body = routes[self.path]
        if self.path == "/v1/models" and "endless_models" in faults:
            self._forever(b'{"object": "list", "data": [', b'{"id": "fake-gpt-oss", "object": "model"}, ')
            return
        if not self._authorised(open_):
            self._json(401, {"error": "unauthorised"})
        elif body is None:
            data = b"# TYPE fake_tokens_total counter\nfake_tokens_total 1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._json(200, body)

    def do_POST(self) -> None:
        """Inference routes."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.requests.append(("POST", self.path, body))
        faults = self.server.faults
        if not self._authorised("open_inference" in faults):
            self._json(401, {"error": "unauthorised"})
        elif "drip" in faults:
            self._forever(b"", b"x", pause_s=0.3)
        elif "endless_stream" in faults and body.get("stream"):
            event = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
            self._forever(b"", f"data: {json.dumps(event)}\n\n".encode(), content_type="text/event-stream")
        elif "malformed_sse" in faults and body.get("stream"):
            self._malformed_stream()
        elif "echo_headers" in faults:
            echoed = json.dumps(dict(self.headers.items()))
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self._event({"choices": [{"index": 0, "delta": {"content": echoed}, "finish_reason": "stop"}]})
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                self._json(200, completion({"role": "assistant", "content": echoed}, "length"))
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        elif self.path == "/v1/responses":
            self._json(200, {"output": [{"type": "message", "content": [{"type": "output_text", "text": "Hello"}]}]})
        else:
            self._json(404, {"error": "not found"})

    def _chat(self, body: dict[str, Any]) -> None:
        faults = self.server.faults
        if "error_200" in faults:
            self._json(200, {"error": {"message": "engine overloaded", "code": 503}})
        elif body.get("reasoning_effort") == "high" and "effort_rejected" in faults:
            self._json(400, {"error": {"message": "reasoning_effort high is not supported"}})
        elif any(m.get("role") == "tool" for m in body.get("messages", [])):
            if "round_trip_broken" in faults:
                self._json(400, {"error": {"message": "Cannot have 2 or more assistant messages at the end"}})
            else:
                self._json(200, completion({"role": "assistant", "content": "It is 18 C in Paris."}, "stop"))
        elif body.get("tools"):
            self._json(200, self._tool_answer(body))
        elif body.get("stream"):
            self._stream()
        else:
            self._json(200, self._answer())

    def _answer(self) -> dict[str, Any]:
        faults = self.server.faults
        message: dict[str, Any] = {"role": "assistant", "content": "".join(ANSWER), "reasoning_content": REASONING}
        if "empty_with_tokens" in faults:
            message = {"role": "assistant", "content": ""}
        if "harmony_in_content" in faults:
            message["content"] = HARMONY
        if "no_reasoning" in faults:
            message.pop("reasoning_content", None)
        answer = completion(message, "stop")
        if "bad_usage" in faults:
            answer["usage"]["total_tokens"] += 3
        return answer

    def _tool_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        faults = self.server.faults
        if "unparsed_tools" in faults or (body.get("tool_choice") == "required" and "required_ignored" in faults):
            content = ("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" + TOOL_ARGUMENTS
                       if "unparsed_tools" in faults else "I will not call a tool.")
            return completion({"role": "assistant", "content": content}, "stop")
        arguments = "{location: Paris" if "bad_arguments" in faults else TOOL_ARGUMENTS
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
        return completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")

    def _stream(self) -> None:
        faults = self.server.faults
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        pieces = [p for i, p in enumerate(ANSWER) if not ("drop_stream_tokens" in faults and i == 1)]
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}, {"reasoning_content": REASONING}]
        deltas += [{"content": piece} for piece in pieces]
        for delta in deltas:
            self._event({"id": "c1", "object": "chat.completion.chunk", "model": MODEL,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        if "no_finish" not in faults:
            self._event({"id": "c1", "object": "chat.completion.chunk", "model": MODEL,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._event({"id": "c1", "object": "chat.completion.chunk", "model": MODEL, "choices": [],
                     "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _forever(self, head: bytes, piece: bytes, pause_s: float = 0.0, content_type: str = "application/json") -> None:
        """Headers, `head`, then `piece` again and again until the client goes away (no length: close-delimited)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(head)
            while True:
                self.wfile.write(piece)
                self.wfile.flush()
                if pause_s:
                    time.sleep(pause_s)
        except OSError:
            return

    def _malformed_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for raw in ('{"choices": "none"}', "[1, 2, 3]", '"text"', '{"choices": [{"delta": 5}]}',
                    '{"choices": [{"index": 0, "delta": {"content": "x"}}], "usage": {"completion_tokens": "many"}}',
                    '{"choices": [7]}', "{not json", '{"usage": {"prompt_tokens": [1]}}'):
            self.wfile.write(f"data: {raw}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()


def completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    """A chat.completion with usage that adds up."""
    return {"id": "c1", "object": "chat.completion", "model": MODEL, "created": 0,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}


@contextmanager
def fake_server(*faults: str, api_key: str | None = None) -> Iterator[FakeOpenAI]:
    """A running fake server on 127.0.0.1 (stopped on exit)."""
    server = FakeOpenAI(set(faults), api_key)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
