"""One input layer: bounded numbers, host addresses and the files a user names, each with a clear error.

Every numeric flag and environment variable goes through `bounded` (finite, in range, an integer where the engine
wants one); every file the user names is read through `read_user_file` (a regular file, a size cap, an encoding);
`user_error` maps what reading user input can raise (OSError, UnicodeDecodeError, a validation error, nesting too
deep, memory) to an InputError that names the file. The CLI's one boundary uses it, so exit 70 is left for bugs.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gptoss_deploy.errors import InputError

KIB = 1024
MIB = 1024 * KIB
# Caps on what a user file may hold: a key or token is a line; a config, plan, price or result file is small JSON
# or YAML; a journal may be long.
SECRET_FILE_MAX = 16 * KIB
DOCUMENT_MAX = 32 * MIB
JOURNAL_MAX = 512 * MIB
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")  # RFC 1123: one label or more
DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")  # a dotted name, as a TLS proxy serves


def bounded(low: float, high: float, *, integer: bool = False, low_open: bool = False, allow_inf: bool = False,
            what: str = "") -> Callable[[str], float]:
    """A parser for a finite number (an integer when `integer`) in [low, high] ((low, high] when `low_open`);
    `inf` only when `allow_inf`. NaN is never accepted. Raises ValueError with the reason."""

    def convert(text: str) -> float:
        cleaned = str(text).strip().replace("_", "").replace(",", "")
        shown = str(text)[:40]
        if not cleaned.isascii() or len(cleaned) > 40:
            raise ValueError(f"{shown!r} is not {'a whole number' if integer else 'a number'}")
        try:
            value: float = int(cleaned) if integer else float(cleaned)
        except (ValueError, OverflowError):
            raise ValueError(f"{shown!r} is not {'a whole number' if integer else 'a number'}") from None
        if not integer and (math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0))):
            raise ValueError(f"{shown!r} is not a finite number")
        if math.isinf(value):
            return value
        if value < low or (low_open and value == low) or value > high:
            raise ValueError(f"{cleaned} is outside {'(' if low_open else '['}{_show(low)}, {_show(high)}]{what}")
        return value

    convert.__name__ = "whole number" if integer else "number"
    return convert


def _show(number: float) -> str:
    """A bound as a person reads it: 1,000,000,000 rather than 1e+09."""
    return f"{int(number):,}" if float(number).is_integer() and abs(number) < 1e16 else f"{number:g}"


def host_address(text: str) -> str:
    """An IP address or a hostname (RFC 1123); ValueError otherwise (spaces, quotes, shell characters...)."""
    value = str(text).strip()
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    if not HOSTNAME.match(value):
        raise ValueError(f"{value[:60]!r} is not an IP address or host name")
    return value


def read_user_file(path: str | Path, what: str, max_bytes: int = DOCUMENT_MAX) -> str:
    """The text of a file the user named: it must be a regular file (not a FIFO, device or folder) of at most
    `max_bytes`, in UTF-8. Every failure is an InputError naming the file and saying what to do."""
    shown = str(path)[:200]
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            os.close(descriptor)
            raise InputError(f"{what} {shown} is not a regular file", hint="name a file (not a folder, FIFO or device)")
        with open(descriptor, "rb", buffering=0) as handle:
            if info.st_size > max_bytes:
                raise InputError(f"{what} {shown} is {info.st_size:,} bytes, more than the {max_bytes:,} allowed",
                                 hint=f"name the right file; a {what} is smaller than that")
            os.set_blocking(handle.fileno(), True)
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} {shown}: {exc.strerror or exc}", hint="check the path and permissions") from None
    if len(data) > max_bytes:
        raise InputError(f"{what} {shown} grew past {max_bytes:,} bytes while it was read", hint="name a finished file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {shown} is not UTF-8 text (byte {exc.start})", hint="name a text file") from None


def check_destination(path: str | Path, what: str) -> None:
    """A file we are about to replace must be a regular file (or absent): writing a plan "to" /dev/null or a FIFO
    would otherwise replace the device node or pipe with a file (the writes are atomic renames)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot use {what} {str(path)[:200]}: {exc.strerror}", hint="choose another path") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {str(path)[:200]} exists and is not a regular file", hint="choose a file path")


def yaml_position(exc: BaseException) -> str:
    """Where a YAML parse failed (" at line L, column C"), without the parser's excerpt of the line: a user's file
    may hold a secret on it."""
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def user_error(exc: BaseException) -> InputError | None:
    """The InputError an exception raised while reading user input stands for (None: not an input error)."""
    from pydantic import ValidationError

    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return InputError(f"cannot use{where}: {exc.strerror or exc}", hint="check the path and permissions")
    if isinstance(exc, OSError) and exc.errno is not None and getattr(exc, "filename", None):
        return InputError(f"cannot use {exc.filename}: {exc.strerror or exc}", hint="check the path, permissions "
                          "and free space")
    if isinstance(exc, UnicodeDecodeError):
        return InputError(f"input is not UTF-8 text (byte {exc.start})", hint="name a text file")
    if isinstance(exc, ValidationError):
        first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())) or "input"
        return InputError(f"{exc.title}: field {field!r}: {first.get('msg', 'invalid')} "
                          f"({exc.error_count()} problem(s))", hint="fix that field")
    if isinstance(exc, RecursionError):
        return InputError("input nests too deeply to read", hint="name a flat JSON/YAML document")
    if isinstance(exc, MemoryError):
        return InputError("input too large to hold in memory", hint="name a smaller file")
    return None
