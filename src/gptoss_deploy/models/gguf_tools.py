"""`gptoss gguf`: describe GGUF files and shard sets, and merge a split set with llama.cpp's llama-gguf-split.

The merge runs the real tool and then checks its result against the set it came from: same tensors (names,
types, element counts) and the same tensor bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from gptoss_deploy.errors import EngineError, InputError
from gptoss_deploy.models.gguf_info import SHARD_PATTERN, GgufInfo, _read_header, read_gguf, shard_set

GGUF_SPLIT = "llama-gguf-split"


def tensor_table(path: Path) -> list[tuple[str, int, int]]:
    """(name, ggml type, elements) of every tensor in a file or, for a first shard, in the whole set (sorted)."""
    files, missing = shard_set(path)
    if missing:
        raise InputError(f"{path.name}: shards missing: {', '.join(missing)}",
                         hint="download every shard into the same folder")
    return sorted(t for file in files for t in _read_header(file)[1])


def gguf_files(target: Path) -> list[Path]:
    """A file itself, or the GGUF files in a folder (one entry per shard set: its first shard)."""
    if not target.exists():
        raise InputError(f"{target} does not exist", hint="pass a .gguf file or a folder holding GGUF files")
    if target.is_file():
        return [target]
    found = []
    for path in sorted(target.glob("*.gguf")):
        match = SHARD_PATTERN.match(path.name)
        if match and int(match["no"]) != 1:
            first = path.with_name(f"{match['stem']}-00001-of-{match['count']}.gguf")
            if first.exists():
                continue  # described with its first shard
        found.append(path)
    if not found:
        raise InputError(f"no .gguf files in {target}", hint="pass the folder the GGUF was downloaded to")
    return found


def describe(target: Path) -> list[GgufInfo]:
    """GgufInfo for a file or every set in a folder."""
    return [read_gguf(path) for path in gguf_files(target)]


def find_gguf_split(binary: str | None = None) -> str:
    """llama-gguf-split: the given path, else PATH, else next to a llama-server on PATH."""
    candidates = [binary] if binary else [shutil.which(GGUF_SPLIT)]
    server = shutil.which("llama-server")
    if not binary and server:
        candidates.append(str(Path(server).with_name(GGUF_SPLIT)))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EngineError(f"{binary or GGUF_SPLIT} was not found",
                      hint="it ships with llama.cpp: `cmake --build build --target llama-gguf-split` in a llama.cpp "
                           "checkout (or your distribution's llama.cpp package), then pass --llama-gguf-split PATH")


class MergeReport(BaseModel):
    """What the merge produced and how it was checked."""

    output: str
    shards: list[str]
    tensor_count: int
    tensor_bytes: int
    tensors_equal: bool
    bytes_equal: bool


def merge(first_shard: Path, output: Path, binary: str | None = None, force: bool = False) -> MergeReport:
    """`llama-gguf-split --merge FIRST OUT`, then verify OUT holds exactly the set's tensors."""
    if not SHARD_PATTERN.match(first_shard.name):
        raise InputError(f"{first_shard.name} is not a shard name (NAME-00001-of-0000N.gguf)",
                         hint="pass the first shard of a split set")
    source = read_gguf(first_shard)
    if source.missing_shards:
        raise InputError(f"the set is incomplete: missing {', '.join(source.missing_shards)}",
                         hint="download every shard into the same folder, then merge")
    if output.exists() and not force:
        raise InputError(f"{output} already exists", hint="choose another output path, or pass --overwrite")
    tool = find_gguf_split(binary)
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    run = subprocess.run([tool, "--merge", str(first_shard), str(partial)], capture_output=True, text=True)
    if run.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise EngineError(f"{GGUF_SPLIT} --merge failed (exit {run.returncode}): {(run.stderr or run.stdout)[-400:]}",
                          hint="check free disk space and that the shards are intact")
    merged = read_gguf(partial)
    report = MergeReport(output=str(output), shards=source.shards, tensor_count=merged.tensor_count,
                         tensor_bytes=merged.tensor_bytes,
                         tensors_equal=tensor_table(partial) == tensor_table(first_shard),
                         bytes_equal=merged.tensor_bytes == source.tensor_bytes)
    if not (report.tensors_equal and report.bytes_equal):
        partial.unlink(missing_ok=True)
        raise EngineError(f"the merged file does not hold the set's tensors ({merged.tensor_count} vs "
                          f"{source.tensor_count}); nothing was written", hint="re-download the shards and retry")
    partial.replace(output)
    return report
