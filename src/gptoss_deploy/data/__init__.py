"""Versioned YAML data shipped with the package (GPU specs, model catalog, known issues, engine facts)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from gptoss_deploy.errors import DataError

SUPPORTED_SCHEMA = 1


@functools.cache
def load(name: str) -> dict[str, Any]:
    """Load `data/<name>.yaml`, checking its schema version; cached for the process."""
    import yaml

    try:
        text = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        content = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"packaged data file {name}.yaml cannot be read: {exc}",
                        hint="reinstall gpt-oss-deploy; this is a bug if it persists") from exc
    if not isinstance(content, dict) or content.get("schema_version") != SUPPORTED_SCHEMA:
        raise DataError(f"packaged data file {name}.yaml has schema {content.get('schema_version')!r}, "
                        f"expected {SUPPORTED_SCHEMA}", hint="reinstall gpt-oss-deploy")
    return content
