"""Read an HF model directory: config.json, model.safetensors.index.json sizes, quantization_config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gptoss_deploy.errors import ModelConfigError
from gptoss_deploy.models.spec import ArchConfig, Quantization

REQUIRED_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
_ALIASES = {"num_local_experts": ("num_experts", "n_routed_experts"), "num_experts_per_tok": ("experts_per_token",)}


def load_config_file(path: Path) -> dict[str, Any]:
    """Parse config.json, naming the file in every error."""
    from gptoss_deploy.inputs import MIB, read_user_file

    if not path.exists():
        raise ModelConfigError(f"{path} does not exist",
                               hint="point --model at a directory that holds the model's config.json")
    try:
        content = json.loads(read_user_file(path, "model config", 4 * MIB))
    except RecursionError:
        raise ModelConfigError(f"{path} nests too deeply", hint="re-download config.json") from None
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                               hint="re-download config.json from the model repository") from exc
    if not isinstance(content, dict):
        raise ModelConfigError(f"{path} holds a {type(content).__name__}, not a JSON object",
                               hint="re-download config.json from the model repository")
    return content


def arch_from_config(config: dict[str, Any], origin: str) -> ArchConfig:
    """An `ArchConfig` from config.json contents; a missing field is named with the file it is missing from."""
    missing = [name for name in REQUIRED_FIELDS if name not in config]
    if missing:
        raise ModelConfigError(f"{origin} lacks {', '.join(missing)}",
                               hint="a transformer config.json needs these fields; re-download it")
    values = dict(config)
    for name, alternatives in _ALIASES.items():
        for alternative in alternatives:
            if name not in values and alternative in values:
                values[name] = values[alternative]
    for name in ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
                 "moe_intermediate_size", "max_position_embeddings", *REQUIRED_FIELDS):
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31):
            raise ModelConfigError(f"{origin}: field {name} is {str(value)[:40]!r}, not a positive whole number",
                                   hint="fix or re-download config.json")
    if not isinstance(values.get("architectures") or [], list) or not all(
            isinstance(a, str) for a in values.get("architectures") or []):
        raise ModelConfigError(f"{origin}: field architectures must be a list of names",
                               hint="fix or re-download config.json")
    values.setdefault("num_key_value_heads", values["num_attention_heads"])
    values.setdefault("head_dim", values["hidden_size"] // values["num_attention_heads"])
    values.setdefault("intermediate_size", values.get("moe_intermediate_size", 4 * values["hidden_size"]))
    values.setdefault("max_position_embeddings", 4096)
    archs = values.get("architectures") or ["unknown"]
    values["architecture"] = archs[0]
    fields = {k: values[k] for k in ArchConfig.model_fields if k in values and values[k] is not None}
    try:
        return ArchConfig(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ModelConfigError(f"{origin}: field {'.'.join(map(str, first['loc']))} is invalid ({first['msg']})",
                               hint="fix or re-download config.json") from exc


def quantization_from_config(config: dict[str, Any]) -> Quantization:
    """mxfp4 / fp8 / bf16 from quantization_config and torch_dtype."""
    quant = config.get("quantization_config") or {}
    method = str(quant.get("quant_method", "")).lower()
    if method == "mxfp4":
        return "mxfp4"
    if method in ("fp8", "compressed-tensors") and "fp8" in json.dumps(quant).lower():
        return "fp8"
    if method:
        return "other"
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return "fp16" if "float16" in dtype and "b" not in dtype else "bf16"


def checkpoint_bytes(directory: Path) -> int | None:
    """Weight bytes from model.safetensors.index.json metadata.total_size, else the sum of *.safetensors."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
            if isinstance(total, int) and total > 0:
                return total
        except (OSError, json.JSONDecodeError):
            pass
    files = list(directory.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None
