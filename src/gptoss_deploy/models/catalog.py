"""The packaged catalog of gpt-oss models and variants (data/models.yaml)."""

from __future__ import annotations

import difflib

from gptoss_deploy import data
from gptoss_deploy.data.schema import ArchEntry, ModelEntry
from gptoss_deploy.hardware.types import GIB
from gptoss_deploy.models.spec import ArchConfig, ModelSpec


def architectures() -> dict[str, ArchEntry]:
    """Architecture key -> config fields."""
    return data.model_catalog().architectures


def arch_config(key: str) -> ArchConfig:
    """The `ArchConfig` of a catalog architecture ('gpt-oss-120b')."""
    fields = {k: v for k, v in architectures()[key].model_dump().items() if k in ArchConfig.model_fields}
    return ArchConfig(**fields)


def entries() -> list[ModelEntry]:
    """All catalog entries."""
    return data.model_catalog().models


def _matches(entry: ModelEntry, name: str) -> bool:
    wanted = name.strip().lower()
    return wanted == entry.id.lower() or wanted in (a.lower() for a in entry.aliases)


def lookup(name: str) -> ModelSpec | None:
    """The catalog model for an id or alias, or None."""
    for entry in entries():
        if _matches(entry, name):
            return spec_from_entry(entry)
    return None


def spec_from_entry(entry: ModelEntry) -> ModelSpec:
    """A `ModelSpec` from one catalog entry."""
    size = entry.checkpoint_gib
    return ModelSpec(
        id=entry.id, source="catalog", format=entry.format, quantization=entry.quantization,
        arch=arch_config(entry.arch), arch_key=entry.arch, checkpoint_bytes=int(size * GIB) if size else None,
        gguf_files=list(entry.gguf_files), gguf_alternative=entry.gguf_alternative,
        official_alternative=entry.official_alternative, download_exclude=list(entry.download_exclude),
    )


def closest_ids(name: str) -> list[str]:
    """Catalog ids and aliases closest to `name` (for error hints)."""
    names = [e.id for e in entries()] + [a for e in entries() for a in e.aliases]
    return difflib.get_close_matches(name, names, n=4, cutoff=0.3)


def recognise_arch(arch: ArchConfig) -> str | None:
    """The catalog architecture a config matches (layers, experts, hidden), or None for a generic model."""
    for key, fields in architectures().items():
        if (arch.architecture == fields.architecture and arch.num_hidden_layers == fields.num_hidden_layers
                and arch.num_local_experts == fields.num_local_experts and arch.hidden_size == fields.hidden_size):
            return key
    return None
