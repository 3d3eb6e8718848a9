"""GGUF headers: architecture, tensor types, sizes and shard sets (no tensor loads)."""

from __future__ import annotations

import math
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field

from gptoss_deploy.errors import ModelConfigError
from gptoss_deploy.models.spec import ArchConfig

SHARD_PATTERN = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class GgufInfo(BaseModel):
    """What a GGUF file (or shard set) holds."""

    path: str
    architecture: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    tensor_count: int
    tensor_types: dict[str, int] = Field(default_factory=dict, description="ggml type -> tensor count")
    tensor_bytes: int
    file_bytes: int
    shards: list[str] = Field(default_factory=list)
    missing_shards: list[str] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        """All shards of the set are present."""
        return not self.missing_shards


def shard_set(path: Path) -> tuple[list[Path], list[str]]:
    """All shard paths for a (first) shard, and the names of missing ones; a single file is its own set."""
    match = SHARD_PATTERN.match(path.name)
    if not match:
        return [path], []
    count = int(match["count"])
    names = [f"{match['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
    present = [path.parent / n for n in names if (path.parent / n).exists()]
    return present, [n for n in names if not (path.parent / n).exists()]


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


class _Header:
    """A GGUF header parsed from memory, read from the file in large blocks as parsing advances."""

    BLOCK = 8 << 20

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.data = b""
        self.pos = 0

    def need(self, size: int) -> None:
        if self.pos + size > len(self.data):
            self.data = self.data[self.pos:] + self.handle.read(max(size, self.BLOCK))
            self.pos = 0
            if size > len(self.data):
                raise ValueError("unexpected end of file in the header")

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size)
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def raw(self, size: int) -> bytes:
        self.need(size)
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def string(self) -> str:
        return self.raw(self.unpack("<Q")).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, length = self.unpack("<I"), self.unpack("<Q")
            self.skip_items(item_kind, length)
            return length  # arrays (token lists, merges) are summarised by their length
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata value type {kind}")
        return self.unpack(_SCALARS[kind])

    def skip_items(self, kind: int, length: int) -> None:
        if kind in _SCALARS:
            self.raw(struct.calcsize(_SCALARS[kind]) * length)
        elif kind == _STRING:  # a tight loop: gpt-oss has ~650k vocab and merge strings to step over
            length_at = _U64.unpack_from
            left = length
            while left:
                data, pos, end = self.data, self.pos, len(self.data) - 8
                while left and pos <= end:
                    after = pos + 8 + length_at(data, pos)[0]
                    if after > end + 8:
                        break
                    pos, left = after, left - 1
                self.pos = pos
                if left:
                    self.need(8)
                    self.need(8 + _U64.unpack_from(self.data, self.pos)[0])
        else:
            for _ in range(length):
                self.value(kind)


def _read_header(path: Path) -> tuple[dict[str, Any], list[tuple[str, int, int]]]:
    """(metadata, [(tensor name, ggml type, element count)]) without reading tensor data.

    Hand-read with `struct` because gguf.GGUFReader materialises every vocab string as a numpy view
    (~20 s for gpt-oss's 201,088 tokens); type ids and block sizes still come from the gguf package.
    """
    with path.open("rb") as handle:
        header = _Header(handle)
        if header.raw(4) != b"GGUF":
            raise ValueError("no GGUF magic at the start of the file")
        version = header.unpack("<I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is not supported")
        tensors, fields = header.unpack("<Q"), header.unpack("<Q")
        metadata = {}
        for _ in range(fields):
            key = header.string()
            metadata[key] = header.value(header.unpack("<I"))
        infos = []
        for _ in range(tensors):
            name = header.string()
            dims = [header.unpack("<Q") for _ in range(header.unpack("<I"))]
            kind = header.unpack("<I")
            header.unpack("<Q")  # data offset
            infos.append((name, kind, math.prod(dims)))
    return metadata, infos


def _tensor_bytes(kind: int, elements: int) -> tuple[str, int]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    quant = GGMLQuantizationType(kind)
    block, type_size = GGML_QUANT_SIZES[quant]
    return quant.name, elements // block * type_size


def read_gguf(path: Path) -> GgufInfo:
    """Read the header (and shard siblings' headers) of a GGUF file."""
    if not path.exists():
        raise ModelConfigError(f"{path} does not exist", hint="pass the path of a .gguf file (the first shard of a set)")
    files, missing = shard_set(path)
    metadata: dict[str, Any] = {}
    types: Counter[str] = Counter()
    count = tensor_bytes = 0
    for index, file in enumerate(files):
        try:
            fields, tensors = _read_header(file)
            sized = [_tensor_bytes(kind, elements) for _, kind, elements in tensors]
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise ModelConfigError(f"{file} is not a readable GGUF file: {exc}",
                                   hint="re-download it; check it is not a Git LFS pointer") from exc
        if index == 0:
            metadata = {k: v for k, v in fields.items() if not k.startswith("GGUF.")}
        for name, size in sized:
            types[name] += 1
            tensor_bytes += size
        count += len(tensors)
    return GgufInfo(
        path=str(path), architecture=str(metadata.get("general.architecture", "unknown")), metadata=metadata,
        tensor_count=count, tensor_types=dict(types), tensor_bytes=tensor_bytes,
        file_bytes=sum(f.stat().st_size for f in files), shards=[f.name for f in files], missing_shards=missing,
    )


def arch_from_gguf(info: GgufInfo) -> ArchConfig:
    """An `ArchConfig` from GGUF metadata (`<arch>.block_count`, ...)."""
    meta, arch = info.metadata, info.architecture

    def get(key: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{key}", default)

    layers, hidden, heads = get("block_count"), get("embedding_length"), get("attention.head_count")
    if not (layers and hidden and heads):
        raise ModelConfigError(f"{info.path}: GGUF metadata lacks {arch}.block_count/embedding_length/"
                               "attention.head_count", hint="the file may be truncated or not a language model")
    head_dim = get("attention.key_length") or hidden // heads
    return ArchConfig(
        architecture="GptOssForCausalLM" if arch == "gpt-oss" else arch,
        num_hidden_layers=layers, hidden_size=hidden,
        intermediate_size=get("expert_feed_forward_length") or get("feed_forward_length") or 4 * hidden,
        num_attention_heads=heads, num_key_value_heads=get("attention.head_count_kv") or heads, head_dim=head_dim,
        num_local_experts=get("expert_count") or 1, num_experts_per_tok=get("expert_used_count") or 1,
        sliding_window=get("attention.sliding_window"),
        vocab_size=meta.get("tokenizer.ggml.tokens") or get("vocab_size") or 1,
        max_position_embeddings=get("context_length") or 4096,
    )
