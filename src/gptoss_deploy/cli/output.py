"""Output discipline: data on stdout (JSON with --json), messages on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(payload: Any) -> None:
    """Write JSON data to stdout (pydantic models are dumped in JSON mode)."""
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json")
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def message(text: str) -> None:
    """A message for the person (stderr)."""
    sys.stderr.write(text.rstrip("\n") + "\n")


def console(stderr: bool = False):  # noqa: ANN201 - rich is imported lazily
    """A rich Console on stdout (data) or stderr (messages)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)
