"""`gptoss serve` settings from flags, the seeds' environment variables, and a config file.

Precedence: flag > environment > config file > default. The environment contract is the seed image's
(MODEL, MAX_MODEL_LEN, ..., API_KEY); a config file (YAML) may use the same names or the setting names.
Every value is parsed and checked here, and a bad one names where it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gptoss_deploy.errors import InputError
from gptoss_deploy.inputs import bounded, host_address, read_user_file, yaml_position

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """1/true/yes/on or 0/false/no/off (any case)."""
    value = str(text).strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


_positive_int = bounded(1, 1 << 24, integer=True)
_gpus = bounded(1, 4096, integer=True)
_fraction = bounded(0, 1, low_open=True)
_port = bounded(1, 65535, integer=True, what=": a TCP port")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = str(text).strip()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value
    return parse


def _engine(text: str) -> str:
    from gptoss_deploy.engines import registry

    return _choice("auto", *registry.names())(text)


def _text(text: str) -> str:
    value = str(text).strip()
    if not value:
        raise ValueError("expected a value")
    return value


# setting -> (environment variable, parser); the seed image's contract plus gptoss's own names.
CONTRACT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "model": ("MODEL", _text),
    "engine": ("ENGINE", _engine),
    "max_model_len": ("MAX_MODEL_LEN", _positive_int),
    "tensor_parallel_size": ("TENSOR_PARALLEL_SIZE", _gpus),
    "gpu_memory_utilization": ("GPU_MEMORY_UTILIZATION", _fraction),
    "quantization": ("QUANTIZATION", _text),
    "kv_cache_dtype": ("KV_CACHE_DTYPE", _choice("auto", "fp8")),
    "max_num_seqs": ("MAX_NUM_SEQS", _positive_int),
    "max_num_batched_tokens": ("MAX_NUM_BATCHED_TOKENS", _positive_int),
    "async_scheduling": ("ASYNC_SCHEDULING", parse_bool),
    "enable_prefix_caching": ("ENABLE_PREFIX_CACHING", parse_bool),
    "enable_chunked_prefill": ("ENABLE_CHUNKED_PREFILL", parse_bool),
    "enable_auto_tool_choice": ("ENABLE_AUTO_TOOL_CHOICE", parse_bool),
    "tool_call_parser": ("TOOL_CALL_PARSER", _text),
    "host": ("HOST", host_address),
    "port": ("PORT", _port),
    "api_key": ("API_KEY", _text),
    "log_level": ("LOG_LEVEL", _choice("debug", "info", "warning", "error", "DEBUG", "INFO", "WARNING", "ERROR")),
    "show_loading_progress": ("SHOW_LOADING_PROGRESS", parse_bool),
    "attention_backend": ("VLLM_ATTENTION_BACKEND_OVERRIDE", _text),
    "served_model_name": ("SERVED_MODEL_NAME", _text),
}


class ServeSettings(BaseModel):
    """Resolved settings for one `gptoss serve`; `sources` says where each non-default came from."""

    model: str = "gpt-oss-20b"
    engine: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    async_scheduling: bool | None = None
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    enable_auto_tool_choice: bool = True
    tool_call_parser: str = "openai"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = Field(None, repr=False, exclude=True)
    log_level: str = "info"
    show_loading_progress: bool = True
    attention_backend: str | None = None
    served_model_name: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)


def load_config_file(path: Path) -> dict[str, Any]:
    """A YAML mapping of settings (setting names or their environment names)."""
    import yaml

    text = read_user_file(path, "config file")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"config file {path} is not valid YAML{yaml_position(exc)}: {problem}",
                         hint="fix the file") from None
    except RecursionError:
        raise InputError(f"config file {path} nests too deeply", hint="a flat mapping of settings") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputError(f"config file {path} must be a mapping of settings", hint="e.g. MAX_MODEL_LEN: 65536")
    by_env = {env: name for name, (env, _) in CONTRACT.items()}
    values: dict[str, Any] = {}
    for key, value in loaded.items():
        name = by_env.get(str(key), str(key).lower().replace("-", "_"))
        if name not in CONTRACT:
            raise InputError(f"config file {path}: unknown setting {key!r}",
                             hint=f"known: {', '.join(sorted(CONTRACT))}")
        if name == "api_key":
            raise InputError(f"config file {path} holds an API key", hint="keep secrets out of config files: use "
                             "API_KEY in the environment or --api-key-file")
        values[name] = value
    return values


def _parse(name: str, raw: Any, origin: str) -> Any:
    _, parser = CONTRACT[name]
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    try:
        return parser(raw)
    except ValueError as exc:
        shown = "***" if name == "api_key" else repr(raw)[:80]
        raise InputError(f"{origin}: {shown} is not a valid {name}: {exc}",
                         hint="fix the value, or unset it to use the default") from None


def resolve_settings(flags: Mapping[str, Any], environ: Mapping[str, str],
                     config_file: Path | None = None) -> ServeSettings:
    """Merge flags (only those given), environment and config file into ServeSettings."""
    from_file = load_config_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (env_name, _) in CONTRACT.items():
        if flags.get(name) is not None:
            values[name], sources[name] = flags[name], "flag"
        elif environ.get(env_name, "").strip():
            values[name] = _parse(name, environ[env_name], f"environment {env_name}")
            sources[name] = f"env {env_name}"
        elif name in from_file:
            values[name] = _parse(name, from_file[name], f"config file {config_file} {name}")
            sources[name] = f"config {config_file}"
    return ServeSettings(**values, sources=sources)


def config_from_plan(plan: Any) -> dict[str, Any]:
    """The settings `serve --config` reads that reproduce `plan` (by their environment names, as the seed image's
    contract uses them); only what the plan chose, never a secret."""
    values: dict[str, Any] = {"MODEL": plan.model, "ENGINE": plan.engine}
    if plan.vllm is not None:
        v = plan.vllm
        values |= {"MAX_MODEL_LEN": v.max_model_len, "TENSOR_PARALLEL_SIZE": v.tensor_parallel_size,
                   "GPU_MEMORY_UTILIZATION": v.gpu_memory_utilization, "KV_CACHE_DTYPE": v.kv_cache_dtype,
                   "MAX_NUM_SEQS": v.max_num_seqs, "MAX_NUM_BATCHED_TOKENS": v.max_num_batched_tokens,
                   "ASYNC_SCHEDULING": v.async_scheduling, "ENABLE_AUTO_TOOL_CHOICE": v.tool_calling}
    elif plan.llamacpp is not None:
        values |= {"MAX_MODEL_LEN": plan.llamacpp.n_ctx // max(plan.llamacpp.n_parallel, 1),
                   "MAX_NUM_SEQS": plan.llamacpp.n_parallel}
    return values


def write_config(plan: Any, path: Path) -> None:
    """Write `config_from_plan` as YAML with a header saying where it came from."""
    import yaml

    header = (f"# gptoss serve --config {path.name}: settings from `gptoss plan` for {plan.model} on {plan.host}\n"
              "# (flags and environment variables still win over these; the API key never goes here)\n")
    path.write_text(header + yaml.safe_dump(config_from_plan(plan), sort_keys=False))
