"""A bounded HTTP client for talking to servers we do not control (check, serve readiness, the watchdog).

httpx's timeout applies per read: a server that sends one byte every few seconds, or a stream that never ends,
keeps a request alive forever, and a body that never ends grows memory without limit. Here every request has a
total deadline (headers and body: each socket read waits at most the time left) and every response a byte cap.
Both surface as httpx errors (ReadTimeout, ReadError), which callers already record as a failed check.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("gptoss_http_deadline", default=None)


def _left(timeout: float | None) -> float | None:
    """The read/write timeout to use now: the smaller of httpx's and the time left to the deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_tcp(host, port, _left(timeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_unix_socket(path, _left(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _CappedBody(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, max_bytes: int) -> None:
        self._stream, self._max = stream, max_bytes

    def __iter__(self) -> Iterator[bytes]:
        total = 0
        for chunk in self._stream:
            total += len(chunk)
            if total > self._max:
                raise httpx.ReadError(f"the response passed {self._max:,} bytes: stopped reading")
            yield chunk

    def close(self) -> None:
        self._stream.close()


class BoundedTransport(httpx.HTTPTransport):
    """httpx's transport with a total deadline per request and a byte cap per response."""

    def __init__(self, deadline_s: float, max_bytes: int = DEFAULT_MAX_BYTES, **options: Any) -> None:
        super().__init__(**options)
        pool = self._pool
        # httpx 0.28 has no network_backend option: wrap the pool's backend (httpcore's public NetworkBackend API)
        if not hasattr(pool, "_network_backend"):
            raise RuntimeError("httpcore changed: the bounded client cannot wrap its network backend")
        pool._network_backend = _DeadlineBackend(pool._network_backend)
        self.deadline_s, self.max_bytes = deadline_s, max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send with the deadline set for this request (and its body reads, in this thread): the request's own
        timeout (httpx's per-call `timeout=`) taken as the total, else the client's."""
        given = [value for value in (request.extensions.get("timeout") or {}).values() if value]
        _deadline.set(time.monotonic() + (max(given) if given else self.deadline_s))
        response = super().handle_request(request)
        response.stream = _CappedBody(response.stream, self.max_bytes)  # type: ignore[arg-type]
        return response


def bounded_client(deadline_s: float, max_bytes: int = DEFAULT_MAX_BYTES, **options: Any) -> httpx.Client:
    """An httpx.Client whose every request ends within `deadline_s` (connect, headers and body together) and
    reads at most `max_bytes`; redirects are not followed (a key must never go to another origin)."""
    return httpx.Client(transport=BoundedTransport(deadline_s, max_bytes), timeout=deadline_s,
                        follow_redirects=False, **options)
