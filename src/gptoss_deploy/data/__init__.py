"""Versioned YAML data shipped with the package (GPU specs, model catalog, known issues, engine facts, prices),
each loaded into its strict typed model (data/schema.py) once per process."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gptoss_deploy.data.schema import (
    MODELS,
    EngineFacts,
    GpuCatalog,
    KnownIssues,
    ModelCatalog,
    PriceTable,
    QualityCanary,
)
from gptoss_deploy.errors import DataError

T = TypeVar("T", bound=BaseModel)


def describe_validation(exc: ValidationError, limit: int = 3) -> str:
    """'key.path: what is wrong' for the first few problems of a pydantic error."""
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse(model: type[T], content: Any, origin: str) -> T:
    """Validate parsed YAML/JSON against `model`; a DataError names the file and the key."""
    try:
        return model.model_validate(content)
    except ValidationError as exc:
        raise DataError(f"packaged data file {origin} is malformed: {describe_validation(exc)}",
                        hint="reinstall gpt-oss-deploy; this is a bug if it persists") from None


def safe_yaml(text: str) -> Any:
    """YAML's safe subset, parsed with libyaml where PyYAML has it (several times faster on the larger files)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


@functools.cache
def load(name: str) -> Any:
    """`data/<name>.yaml` as its typed model (see data/schema.py); cached for the process."""
    import yaml

    if name not in MODELS:
        raise DataError(f"no packaged data file {name!r}", hint="this is a bug in gpt-oss-deploy")
    try:
        text = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        content = safe_yaml(text)
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"packaged data file {name}.yaml cannot be read: {exc}",
                        hint="reinstall gpt-oss-deploy; this is a bug if it persists") from exc
    return parse(MODELS[name], content, f"{name}.yaml")


def engine_facts() -> EngineFacts:
    """engine_facts.yaml."""
    facts: EngineFacts = load("engine_facts")
    return facts


def known_issues() -> KnownIssues:
    """known_issues.yaml."""
    issues: KnownIssues = load("known_issues")
    return issues


def gpu_catalog() -> GpuCatalog:
    """gpus.yaml."""
    catalog: GpuCatalog = load("gpus")
    return catalog


def model_catalog() -> ModelCatalog:
    """models.yaml."""
    catalog: ModelCatalog = load("models")
    return catalog


def price_table() -> PriceTable:
    """prices.yaml."""
    table: PriceTable = load("prices")
    return table


def quality_canary() -> QualityCanary:
    """quality_canary.yaml."""
    canary: QualityCanary = load("quality_canary")
    return canary
