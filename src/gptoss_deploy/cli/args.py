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


def add_engine_knobs(parser: argparse.ArgumentParser, force_flag: str = "--force") -> None:
    """Engine settings shared by `plan`, `serve` and `render` (None = not given: the planner, env or config decides)."""
    knobs = parser.add_argument_group("engine settings (default: the planner chooses)")
    knobs.add_argument("--engine", choices=["auto", "vllm", "llamacpp"])
    knobs.add_argument("--max-model-len", type=positive_int, help="context length per request")
    knobs.add_argument("--tensor-parallel-size", "--tp", type=positive_int)
    knobs.add_argument("--gpu-memory-utilization", type=fraction, help="fraction in (0, 1]")
    knobs.add_argument("--max-num-batched-tokens", type=positive_int)
    knobs.add_argument("--max-num-seqs", type=positive_int)
    knobs.add_argument("--kv-cache-dtype", choices=["auto", "fp8"])
    knobs.add_argument("--kv-cache-memory-bytes", type=positive_int, help="KV budget per GPU, bypassing util")
    knobs.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / torch.compile")
    knobs.add_argument("--no-tools", action="store_true", help="leave out the tool-calling flags")
    knobs.add_argument(force_flag, dest="force", action="store_true", help="keep a setting the known-issue table refuses")


def read_key_file(path: str) -> str:
    """The one API key in a file (blank lines and # comments ignored); InputError when it is not exactly one."""
    from gptoss_deploy.errors import InputError

    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise InputError(f"cannot read API key file {path}: {exc.strerror}", hint="check the path and permissions") from None
    except UnicodeDecodeError:
        raise InputError(f"API key file {path} is not text", hint="write the key alone on one line") from None
    if len(lines) != 1:
        raise InputError(f"API key file {path} must hold exactly one key (found {len(lines)} lines)",
                         hint="write the key alone on one line")
    return lines[0]
