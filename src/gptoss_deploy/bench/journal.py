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

from gptoss_deploy.errors import InputError

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
        self._thread = threading.Thread(target=self._write_loop, name="bench-journal", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        """Queue one record, or a function making it (then it is built on the writer thread, off the event loop);
        it is on disk (fsynced) shortly after."""
        self._queue.put(record)

    def _write_loop(self) -> None:
        while (record := self._queue.get()) is not _STOP:
            if callable(record):
                record = record()
            line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        """Write everything queued, then close."""
        self._queue.put(_STOP)
        self._thread.join()
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every intact record in the journal (a torn or foreign line is skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", hint="pass the journal written by `gptoss bench`") from None
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "kind" in record:
            records.append(record)
    return records


def results_in(path: Path) -> list[dict[str, Any]]:
    """The benchmark results in a file: a journal's result records, or one `--save-result` / vLLM JSON file."""
    text_start = ""
    try:
        with path.open() as handle:
            text_start = handle.read(1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", hint="pass a results file from `gptoss bench`") from None
    if text_start == "{":
        try:
            whole = json.loads(path.read_text())
            if "kind" not in whole:
                return [whole]
        except ValueError:
            pass  # JSONL: many objects
    return [r["result"] for r in read_journal(path) if r.get("kind") == "result"]
