"""GGUF headers through the `gguf` package: architecture, tensor types, sizes and shard sets (no tensor loads)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

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


def _field_value(field: Any) -> Any:
    from gguf import GGUFValueType

    if not field.types:
        return None
    if field.types[0] == GGUFValueType.ARRAY:
        return len(field.data)  # arrays (token lists) are summarised by their length
    part = field.parts[field.data[0]]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    return part.tolist()[0] if hasattr(part, "tolist") else part


def read_gguf(path: Path) -> GgufInfo:
    """Read the header (and shard siblings' headers) of a GGUF file."""
    from gguf import GGUFReader

    if not path.exists():
        raise ModelConfigError(f"{path} does not exist", hint="pass the path of a .gguf file (the first shard of a set)")
    files, missing = shard_set(path)
    metadata: dict[str, Any] = {}
    types: Counter[str] = Counter()
    count = tensor_bytes = 0
    for index, file in enumerate(files):
        try:
            reader = GGUFReader(str(file), "r")
        except Exception as exc:  # the gguf package raises ValueError/struct.error/... on bad files
            raise ModelConfigError(f"{file} is not a readable GGUF file: {exc}",
                                   hint="re-download it; check it is not a Git LFS pointer") from exc
        if index == 0:
            metadata = {name: _field_value(field) for name, field in reader.fields.items()
                        if not name.startswith("GGUF.")}
        for tensor in reader.tensors:
            types[tensor.tensor_type.name] += 1
            tensor_bytes += int(tensor.n_bytes)
        count += len(reader.tensors)
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
