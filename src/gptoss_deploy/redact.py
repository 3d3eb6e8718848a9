"""One redaction function for everything the tool writes or prints.

`redact` masks: every secret value this process has read (API keys, HF tokens: `remember` registers them where
they are read), URL userinfo (`http://user:KEY@host` -> `http://***@host`), `Authorization:` / `Bearer` values,
`api_key=` / `token=` style pairs and Hugging Face `hf_...` tokens. It is applied to logs, the bench journal,
check reports and their excerpts of server replies, and every message and error on stderr.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"
_known: set[str] = set()
_lock = threading.Lock()
_PATTERNS = [
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]*(:[^/\s@]*)?@"), r"\1***@"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer\s+|basic\s+)?[^\s\"',}]+"), r"\1\2***"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"), r"\1***"),
    (re.compile(r"(?i)\b((?:api[_-]?key|token|hf[_-]?token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]{4,}"),
     r"\1***"),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "hf_***"),
]


def remember(*secrets: str | None) -> None:
    """Register secret values read by this process (keys, tokens): `redact` masks them wherever they appear."""
    with _lock:
        _known.update(s for s in secrets if s and len(s) >= 4)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with every known secret, URL userinfo, Authorization/Bearer value and token pair masked."""
    if not text:
        return text
    with _lock:
        values = sorted(_known.union(s for s in secrets if s and len(s) >= 4), key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_data(data: Any) -> Any:
    """`redact` applied to every string in JSON-like data (dict keys kept)."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(value) for value in data]
    return data
