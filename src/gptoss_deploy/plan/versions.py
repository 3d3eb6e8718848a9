"""Engine version helpers over data/engine_facts.yaml."""

from __future__ import annotations

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from gptoss_deploy import data
from gptoss_deploy.data.schema import VllmFacts
from gptoss_deploy.errors import DataError, InputError


def vllm_facts() -> VllmFacts:
    """The `vllm` section of engine_facts.yaml."""
    return data.engine_facts().vllm


def parse_version(text: str) -> Version:
    """A PEP 440 version; local tags (+cpu, +cu128) are ignored for comparisons."""
    try:
        return Version(Version(text).base_version)
    except InvalidVersion as exc:
        raise InputError(f"{text!r} is not a version number", hint="use a release such as 0.23.0") from exc


def at_least(version: str, boundary: str) -> bool:
    """version >= boundary."""
    return parse_version(version) >= parse_version(boundary)


def in_range(version: str, spec: str | None) -> bool:
    """True when `version` satisfies the PEP 440 specifier (None = all versions)."""
    if not spec:
        return True
    try:
        return parse_version(version) in SpecifierSet(spec)
    except InvalidSpecifier as exc:
        raise DataError(f"known_issues.yaml has a bad version range {spec!r}") from exc


def default_gpu_memory_utilization(version: str) -> float:
    """vLLM's default --gpu-memory-utilization for a release (0.90, 0.92 since 0.20.0)."""
    value = 0.9
    for step in vllm_facts().default_gpu_memory_utilization:
        if at_least(version, step.since):
            value = step.value
    return value


def new_kv_log_formula(version: str) -> bool:
    """True when 'KV cache size: N tokens' is int(max_concurrency x max_model_len) (>= 0.20.1)."""
    return at_least(version, vllm_facts().kv_log_formula.new_since)


def kv_log_single_line(version: str) -> bool:
    """True when the KV size and concurrency are logged on one line (>= 0.28.0)."""
    return at_least(version, vllm_facts().kv_log_single_line.since)


def cudagraph_estimate_default(version: str) -> bool:
    """True when vLLM subtracts a CUDA-graph memory estimate from the KV budget by default (>= 0.21.0)."""
    return at_least(version, vllm_facts().cudagraph_memory_estimate_default_on.since)


def has_attention_backend_flag(version: str) -> bool:
    """True when `--attention-backend` exists (else VLLM_ATTENTION_BACKEND)."""
    return at_least(version, vllm_facts().attention_backend_flag.since)


def async_scheduling_default(version: str) -> bool:
    """True when async scheduling is on unless disabled."""
    return at_least(version, vllm_facts().async_scheduling_default_auto.since)
