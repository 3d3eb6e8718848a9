"""Test helpers that fetch (once, cached by version) the PyPI artifacts the tests need."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gptoss_deploy.vocab import QUICKTOK_WHEEL, cache_root


@functools.cache
def quicktok_wheel() -> Path:
    """The quicktok-v1 0.4.0 wheel, downloaded from PyPI into the cache on first use."""
    target = Path(os.environ.get("GPTOSS_TEST_DOWNLOADS") or cache_root() / "wheels") / "quicktok-v1-0.4.0"
    wheels = sorted(target.glob("quicktok_v1-0.4.0-*.whl"))
    if not wheels:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "--dest", str(target), QUICKTOK_WHEEL], check=True)
        wheels = sorted(target.glob("quicktok_v1-0.4.0-*.whl"))
    return wheels[0]


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema

    from gptoss_deploy.cli.schemas import shipped

    schema = shipped(name)
    return jsonschema.validators.validator_for(schema)(schema)


def data_of(text: str, schema: str | None = None) -> Any:
    """The data of a `--json` document, after validating it against its published schema (and checking the schema's
    name when given)."""
    document = json.loads(text)
    assert set(document) == {"schema", "tool_version", "data"}, document
    name = document["schema"].removeprefix("gptoss.").split("/")[0]
    if schema is not None:
        assert name == schema, document["schema"]
    _validator(name).validate(document)
    return document["data"]
