"""What an installed engine is: its version and the flags its `--help` lists, probed once and cached.

Probing vLLM's `--help` imports vLLM (10-20 s), so the answer is kept under the cache root, keyed by the
executable's real path and the engine version (llama-server: path, size and mtime). Adapting a launch to the
probe drops or renames flags the installed version does not know, and says so.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from gptoss_deploy.errors import EngineError
from gptoss_deploy.util import is_number

PROBE_SCHEMA = 1
HELP_TIMEOUT_S = 180
LONG_FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


class EngineInfo(BaseModel):
    """An installed engine as its own `--version` / `--help` describe it."""

    engine: str
    executable: str
    version: str | None = None
    flags: list[str] = Field(default_factory=list, description="long flags listed by --help")
    help_text: str = ""

    def knows(self, flag: str) -> bool:
        """True when --help lists this long flag."""
        return flag in self.flags


def long_flags(help_text: str) -> list[str]:
    """Every --long-flag a help text mentions, sorted."""
    return sorted(set(LONG_FLAG.findall(help_text)))


def run_text(argv: list[str], timeout_s: float = HELP_TIMEOUT_S, env: dict[str, str] | None = None) -> str:
    """stdout + stderr of a short command; a clear EngineError when it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except FileNotFoundError as exc:
        raise EngineError(f"{argv[0]} not found", hint="install the engine, or point gptoss at it "
                          "(--vllm-python / --llama-server)") from exc
    except PermissionError as exc:
        raise EngineError(f"{argv[0]} is not executable", hint=f"chmod +x {argv[0]}, or pass another path") from exc
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`{' '.join(argv)}` did not finish in {timeout_s:.0f} s",
                          hint="the machine may be overloaded; try again") from exc
    return done.stdout + done.stderr


def cached_probe(kind: str, key_parts: list[str], compute: Callable[[], EngineInfo]) -> EngineInfo:
    """The cached EngineInfo for these key parts, computing and storing it when absent."""
    from gptoss_deploy.vocab import cache_root

    key = hashlib.sha256("\0".join([str(PROBE_SCHEMA), *key_parts]).encode()).hexdigest()[:16]
    path = cache_root() / "probe" / f"{kind}-{key}.json"
    try:
        return EngineInfo.model_validate_json(path.read_text())
    except (OSError, ValueError):
        pass
    info = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.model_dump()))
    tmp.replace(path)
    return info


def split_flags(argv: list[str]) -> list[list[str]]:
    """Group an engine argv (after the program) into [flag, value...] items; positional tokens stand alone."""
    items: list[list[str]] = []
    for token in argv:
        if token.startswith("-") and not is_number(token) or not items:
            items.append([token])
        else:
            items[-1].append(token)
    return items


def executable_key(path: str) -> list[str]:
    """Real path, size and mtime: changes when the file is rebuilt or replaced."""
    real = Path(path).resolve()
    stat = real.stat()
    return [str(real), str(stat.st_size), str(stat.st_mtime_ns)]
