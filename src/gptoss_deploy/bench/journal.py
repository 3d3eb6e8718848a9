"""The results journal: JSONL, one record per line, appended with fsync by a writer thread, never rewritten.

Records: {"kind": "run", ...config} when a run starts, {"kind": "request", ...} for every finished request
(warmup included, marked by phase), {"kind": "result", "result": {...}} at the end (also after Ctrl-C, with
"interrupted": true). A crash loses at most the request being written; a torn last line is skipped on reading.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gptoss_deploy.errors import GptossError, InputError

_STOP = object()


class Journal:
    """Append-only JSONL writer; `append` never blocks the event loop on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot open the results journal {path}: {exc.strerror}",
                             hint="pass a writable path with --journal") from None
        self._queue: queue.Queue[Any] = queue.Queue()
        self.failure: Exception | None = None
        self._thread = threading.Thread(target=self._write_loop, name="bench-journal", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        """Queue one record, or a function making it (then it is built on the writer thread, off the event loop);
        it is on disk (fsynced) shortly after. Raises once an earlier write has failed."""
        self.check()
        self._queue.put(record)

    def _write_loop(self) -> None:
        from gptoss_deploy.redact import redact_data

        while (record := self._queue.get()) is not _STOP:
            if self.failure is not None:
                continue  # after a failed write nothing more is written: the file stays whole
            try:
                if callable(record):
                    record = record()
                line = (json.dumps(redact_data(record), separators=(",", ":"), default=str) + "\n").encode()
                self._write_whole(line)
            except Exception as exc:
                self.failure = exc

    def _write_whole(self, line: bytes) -> None:
        """Write one line completely and fsync it; on failure cut the file back to where the line began."""
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise

    def check(self) -> None:
        """Raise the writer's failure, if any (a full disk, a removed folder): the run must not pretend to have
        recorded what it could not."""
        if self.failure is not None:
            reason = self.failure.strerror if isinstance(self.failure, OSError) else str(self.failure)
            raise GptossError(f"writing the results journal {self.path} failed: {reason}; the records before it are "
                              "whole, later ones were not written", hint="free disk space or pass another --journal")

    def close(self) -> None:
        """Write everything queued, then close; raises when a write failed."""
        self._queue.put(_STOP)
        self._thread.join()
        os.close(self._fd)
        self.check()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an exception is already on its way: close, and let that one speak
            self.close()
        except GptossError:
            pass


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every intact record in the journal (a torn or foreign line is skipped)."""
    from gptoss_deploy.inputs import JOURNAL_MAX, read_user_file

    lines = read_user_file(path, "journal", JOURNAL_MAX).splitlines()
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and "kind" in record:
            records.append(record)
    return records


def results_in(path: Path) -> list[dict[str, Any]]:
    """The benchmark results in a file: a journal's result records, or one `--save-result` / vLLM JSON file."""
    from gptoss_deploy.inputs import JOURNAL_MAX, read_user_file

    text = read_user_file(path, "results file", JOURNAL_MAX)
    if text.lstrip().startswith("{"):
        try:
            whole = json.loads(text)
            if isinstance(whole, dict) and "kind" not in whole:
                return [whole]
        except (ValueError, RecursionError):
            pass  # JSONL: many objects
    return [r["result"] for r in read_journal(path) if r.get("kind") == "result" and isinstance(r.get("result"), dict)]
