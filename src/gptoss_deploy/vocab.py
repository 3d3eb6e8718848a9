"""Offline harmony vocabulary: build o200k_base.tiktoken (and cl100k_base) without internet.

vLLM's gpt-oss recipe tells air-gapped users to pre-download these files and point TIKTOKEN_ENCODINGS_BASE
at their folder. We rebuild them from the `quicktok-v1==0.4.0` wheel (PyPI), whose
`quicktok/data/<name>.vocab` holds: u32 count, then per token u16 length, the bytes, u32 rank
(little-endian). Rebuilt as `base64(bytes) rank` lines sorted by rank, each file must have tiktoken's own
expected sha256; a mismatch is refused, never used.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pydantic import BaseModel

from gptoss_deploy.errors import EngineError, InputError, IntegrityError

QUICKTOK_WHEEL = "quicktok-v1==0.4.0"
# tiktoken's expected hashes (tiktoken_ext/openai_public.py).
ENCODINGS = {
    "o200k_base": {"member": "quicktok/data/o200k.vocab",
                   "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"},
    "cl100k_base": {"member": "quicktok/data/cl100k.vocab",
                    "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"},
}


class VocabResult(BaseModel):
    """What `vocab install` wrote."""

    directory: str
    files: dict[str, str]  # encoding -> sha256
    env: dict[str, str]


def default_dir() -> Path:
    """~/.cache/gptoss-deploy/vocab (or $GPTOSS_CACHE/vocab)."""
    return cache_root() / "vocab"


def cache_root() -> Path:
    """The project's cache root: $GPTOSS_CACHE or ~/.cache/gptoss-deploy."""
    return Path(os.environ.get("GPTOSS_CACHE", Path.home() / ".cache" / "gptoss-deploy"))


def tiktoken_from_quicktok(blob: bytes) -> bytes:
    """Convert a quicktok .vocab blob to tiktoken's text format (base64 token, space, rank; sorted by rank)."""
    reader = io.BytesIO(blob)
    try:
        (count,) = struct.unpack("<I", reader.read(4))
        entries = []
        for _ in range(count):
            (length,) = struct.unpack("<H", reader.read(2))
            token = reader.read(length)
            (rank,) = struct.unpack("<I", reader.read(4))
            if len(token) != length:
                raise struct.error("truncated token")
            entries.append((rank, token))
    except struct.error as exc:
        raise IntegrityError(f"quicktok vocab is truncated or malformed ({exc})",
                             hint=f"re-download {QUICKTOK_WHEEL}") from exc
    entries.sort()
    return b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n" for rank, token in entries)


def verify(data: bytes, encoding: str, origin: str) -> str:
    """sha256 of `data`, refusing anything but tiktoken's expected hash."""
    digest = hashlib.sha256(data).hexdigest()
    expected = ENCODINGS[encoding]["sha256"]
    if digest != expected:
        raise IntegrityError(f"{origin}: sha256 {digest} is not tiktoken's {encoding} ({expected})",
                             hint="the file is corrupted or a different vocabulary; it was not installed")
    return digest


def download_wheel(destination: Path) -> Path:
    """Fetch the quicktok wheel from PyPI with pip (the only network access; none when a wheel is given)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--dest", str(destination), QUICKTOK_WHEEL]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(destination.glob("quicktok_v1-*.whl"))
    if result.returncode != 0 or not wheels:
        raise EngineError(f"could not download {QUICKTOK_WHEEL}: {result.stderr.strip()[-300:]}",
                          hint="pass --wheel PATH (a downloaded quicktok_v1 wheel) or --tiktoken FILE")
    return wheels[0]


def install(directory: Path | None = None, wheel: Path | None = None, tiktoken_file: Path | None = None) -> VocabResult:
    """Write verified o200k_base.tiktoken (+ cl100k_base from the wheel) into `directory`.

    Sources: an existing .tiktoken file (`tiktoken_file`, o200k only), a quicktok wheel (`wheel`),
    or the wheel downloaded from PyPI. Files are written atomically and only after verification.
    """
    target = directory or default_dir()
    target.mkdir(parents=True, exist_ok=True)
    built: dict[str, bytes] = {}
    if tiktoken_file is not None:
        if not tiktoken_file.is_file():
            raise InputError(f"{tiktoken_file} does not exist", hint="pass the path of an o200k_base.tiktoken file")
        data = tiktoken_file.read_bytes()
        encoding = next((e for e, spec in ENCODINGS.items() if hashlib.sha256(data).hexdigest() == spec["sha256"]),
                        "o200k_base")
        verify(data, encoding, str(tiktoken_file))
        built[encoding] = data
    else:
        with tempfile.TemporaryDirectory() as scratch:
            source = wheel or download_wheel(Path(scratch))
            if not source.is_file():
                raise InputError(f"{source} does not exist", hint="pass the path of a quicktok_v1 wheel")
            try:
                with zipfile.ZipFile(source) as archive:
                    for encoding, spec in ENCODINGS.items():
                        data = tiktoken_from_quicktok(archive.read(spec["member"]))
                        verify(data, encoding, f"{source.name}:{spec['member']}")
                        built[encoding] = data
            except (zipfile.BadZipFile, KeyError) as exc:
                raise IntegrityError(f"{source} is not a quicktok wheel with o200k/cl100k vocabularies ({exc})",
                                     hint=f"download {QUICKTOK_WHEEL} again") from exc
    files = {}
    for encoding, data in built.items():
        final = target / f"{encoding}.tiktoken"
        partial = final.with_suffix(".tiktoken.partial")
        partial.write_bytes(data)
        partial.replace(final)
        files[encoding] = hashlib.sha256(data).hexdigest()
    _install_tiktoken_cache_aliases(target, built)
    return VocabResult(directory=str(target), files=files, env={"TIKTOKEN_ENCODINGS_BASE": str(target)})


def _install_tiktoken_cache_aliases(target: Path, built: dict[str, bytes]) -> None:
    """Also lay the files out under tiktoken's cache names (sha1 of the URL) for TIKTOKEN_CACHE_DIR users."""
    urls = {"o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
            "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"}
    cache = target / "tiktoken-cache"
    cache.mkdir(exist_ok=True)
    for encoding in built:
        name = hashlib.sha1(urls[encoding].encode()).hexdigest()
        shutil.copyfile(target / f"{encoding}.tiktoken", cache / name)


def is_installed(directory: Path | None = None) -> bool:
    """True when a verified o200k_base.tiktoken is present."""
    path = (directory or default_dir()) / "o200k_base.tiktoken"
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == ENCODINGS["o200k_base"]["sha256"]
