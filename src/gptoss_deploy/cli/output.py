"""Output discipline, one path for every command: data on stdout (a versioned JSON envelope with --json, tables
otherwise), messages on stderr (silenced by --quiet, except errors).

The envelope: {"schema": "gptoss.<name>/<version>", "tool_version": ..., "data": ...}; each schema is published
under gptoss_deploy/schemas/ (cli/schemas.py generates them) and every --json output validates against its own.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from pydantic import BaseModel

from gptoss_deploy import __version__

# every --json document's schema name and version (the data models are in cli/schemas.py)
SCHEMA_VERSIONS = {"error": 1, "plan": 2, "serve-dry-run": 1, "serve-ready": 1, "check": 1, "bench": 1, "cost": 2,
                   "render": 2, "doctor": 1, "try": 1, "try-dry-run": 1, "gguf-info": 1, "gguf-merge": 1,
                   "detect": 1, "profiles": 1, "vocab": 1, "demo": 1, "pull": 1, "server": 1, "ps": 1, "top": 1,
                   "completion": 1}
WIDE = 1000  # columns of a console that is not a terminal: tables are never cut at 80 columns when piped
_state = {"quiet": False}


def quiet() -> bool:
    """Whether --quiet is on."""
    return _state["quiet"]


def set_quiet(quiet: bool) -> None:
    """--quiet: messages are not shown (errors and data still are)."""
    _state["quiet"] = quiet


def schema_id(name: str) -> str:
    """gptoss.<name>/<version>."""
    return f"gptoss.{name}/{SCHEMA_VERSIONS[name]}"


def envelope(schema: str, data: Any) -> dict[str, Any]:
    """The versioned JSON document around a command's data (pydantic models dumped in JSON mode)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [item.model_dump(mode="json") if isinstance(item, BaseModel) else item for item in data]
    return {"schema": schema_id(schema), "tool_version": __version__, "data": data}


def emit_json(schema: str, data: Any) -> None:
    """Write a command's data to stdout as its versioned envelope (strict JSON: no NaN or Infinity)."""
    from gptoss_deploy.redact import redact_data

    json.dump(redact_data(envelope(schema, data)), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def message(text: str) -> None:
    """A message for the person (stderr), unless --quiet."""
    from gptoss_deploy.redact import redact

    if not _state["quiet"]:
        sys.stderr.write(redact(text).rstrip("\n") + "\n")


def error(text: str) -> None:
    """An error for the person (stderr), shown even with --quiet."""
    from gptoss_deploy.redact import redact

    sys.stderr.write(redact(text).rstrip("\n") + "\n")


def console(stderr: bool = False):
    """A rich Console on stdout (data) or stderr (messages); as wide as the content when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS") or WIDE)
    return Console(file=stream, highlight=False, soft_wrap=False, width=width,
                   quiet=stderr and _state["quiet"])
