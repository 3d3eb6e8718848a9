"""Turn what the user typed (--model) into a `ModelSpec`: local dir, GGUF file, catalog id, or Hub repo."""

from __future__ import annotations

import os
from pathlib import Path

from gptoss_deploy.errors import ModelConfigError, UnknownModelError
from gptoss_deploy.models import catalog
from gptoss_deploy.models.gguf_info import arch_from_gguf, read_gguf
from gptoss_deploy.models.hf_config import (
    arch_from_config,
    checkpoint_bytes,
    load_config_file,
    quantization_from_config,
)
from gptoss_deploy.models.spec import ModelSpec


def hub_offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _generic_note(spec: ModelSpec) -> ModelSpec:
    if spec.arch_key is None:
        spec.notes.append(f"architecture {spec.arch.architecture} is not one we know: planned generically from "
                          "its config (no gpt-oss-specific backends or known issues)")
    return spec


def from_directory(directory: Path) -> ModelSpec:
    """A model in a local HF-format directory."""
    config_path = directory / "config.json"
    config = load_config_file(config_path)
    arch = arch_from_config(config, str(config_path))
    spec = ModelSpec(
        id=str(directory), source="local", format="safetensors", quantization=quantization_from_config(config),
        arch=arch, arch_key=catalog.recognise_arch(arch), checkpoint_bytes=checkpoint_bytes(directory),
    )
    if spec.checkpoint_bytes is None:
        spec.notes.append(f"no safetensors files or index in {directory}: weight size computed from the config")
    return _generic_note(spec)


def from_gguf(path: Path) -> ModelSpec:
    """A model in a GGUF file (first shard of a set); its size is the tensor data llama.cpp maps, without metadata."""
    info = read_gguf(path)
    arch = arch_from_gguf(info)
    types = set(info.tensor_types)
    quant = "mxfp4" if "MXFP4" in types else ("bf16" if types <= {"BF16", "F32"} else "other")
    spec = ModelSpec(id=str(path), source="gguf", format="gguf", quantization=quant, arch=arch,
                     arch_key=catalog.recognise_arch(arch), checkpoint_bytes=info.tensor_bytes, gguf_files=info.shards)
    if info.missing_shards:
        spec.notes.append(f"missing GGUF shards: {', '.join(info.missing_shards)}")
    return _generic_note(spec)


def from_hub(repo_id: str) -> ModelSpec:
    """A model read from the Hub's config.json and safetensors index (online only)."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        config_file = hf_hub_download(repo_id, "config.json", etag_timeout=5)
    except LocalEntryNotFoundError as exc:
        raise UnknownModelError(f"{repo_id} is not in the catalog and the Hub cannot be reached",
                                hint="download the model and pass its directory, or use a catalog id "
                                     f"({', '.join(e.id for e in catalog.entries()[:2])}, ...)") from exc
    except HfHubHTTPError as exc:
        raise UnknownModelError(f"{repo_id}: the Hub answered {exc}",
                                hint="check the repo id; gated models need HF_TOKEN") from exc
    config = load_config_file(Path(config_file))
    arch = arch_from_config(config, f"{repo_id}/config.json")
    size = None
    try:
        index = json.loads(Path(hf_hub_download(repo_id, "model.safetensors.index.json", etag_timeout=5)).read_text())
        size = index.get("metadata", {}).get("total_size")
    except Exception:  # single-file repos have no index; the size is then computed from the config
        size = None
    return _generic_note(ModelSpec(id=repo_id, source="hub", format="safetensors",
                                   quantization=quantization_from_config(config), arch=arch,
                                   arch_key=catalog.recognise_arch(arch), checkpoint_bytes=size))


def _in_hub_cache(repo_id: str) -> bool:
    """The repository's config.json is in the Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repository id
        return False


def resolve_model(name: str) -> ModelSpec:
    """Resolve --model: an existing path first, then the catalog, then the Hub (unless offline)."""
    if not name or not name.strip():
        raise UnknownModelError("--model is empty", hint="pass gpt-oss-120b, gpt-oss-20b, a directory or a .gguf file")
    path = Path(name).expanduser()
    if path.is_dir():
        return from_directory(path)
    if path.suffix == ".gguf":
        return from_gguf(path)
    if path.exists():
        raise ModelConfigError(f"{path} is a file but not a .gguf",
                               hint="pass a model directory (with config.json) or a .gguf file")
    if name.startswith(("/", "./", "../", "~")):
        raise ModelConfigError(f"model path {path} does not exist",
                               hint="check the path (a directory with config.json, or a .gguf file), or pass a "
                                    "catalog id such as gpt-oss-20b")
    spec = catalog.lookup(name)
    if spec is not None:
        return spec
    if "/" in name and not name.startswith((".", "/", "~")) and (not hub_offline() or _in_hub_cache(name)):
        return from_hub(name)  # offline, huggingface_hub answers from its cache (a model `gptoss pull`ed before)
    close = catalog.closest_ids(name)
    hint = f"did you mean {', '.join(close)}?" if close else "use gpt-oss-120b or gpt-oss-20b"
    if "/" in name and hub_offline():
        hint += " (HF_HUB_OFFLINE is set, so the Hub was not asked)"
    raise UnknownModelError(f"unknown model {name!r}: not a directory, a .gguf file or a catalog id", hint=hint)
