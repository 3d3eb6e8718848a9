"""argparse value checkers that turn bad input into exit code 2 with a clear message."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def _positive(text: str, convert: Callable[[str], Number], kind: str) -> Number:
    try:
        value = convert(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be greater than 0")
    return value


def positive_int(text: str) -> int:
    """An integer > 0 (1_000 and 1,000 accepted)."""
    return _positive(text, int, "a whole number")


def positive_float(text: str) -> float:
    """A number > 0."""
    return _positive(text, float, "a number")


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{value:g} is outside (0, 1]: it is a fraction of GPU memory, e.g. 0.9")
    return value
