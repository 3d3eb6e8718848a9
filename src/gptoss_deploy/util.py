"""Small helpers shared across stages."""

from __future__ import annotations


def is_number(text: str) -> bool:
    """True when `text` parses as a float ("-1", "0.5", "1e3")."""
    try:
        float(text)
    except ValueError:
        return False
    return True
