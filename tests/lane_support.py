"""Test helpers that fetch (once, cached by version) the PyPI artifacts the tests need."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from gptoss_deploy.vocab import QUICKTOK_WHEEL, cache_root


@functools.cache
def quicktok_wheel() -> Path:
    """The quicktok-v1 0.4.0 wheel, downloaded from PyPI into the cache on first use."""
    target = cache_root() / "wheels" / "quicktok-v1-0.4.0"
    wheels = sorted(target.glob("quicktok_v1-0.4.0-*.whl"))
    if not wheels:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "--dest", str(target), QUICKTOK_WHEEL], check=True)
        wheels = sorted(target.glob("quicktok_v1-0.4.0-*.whl"))
    return wheels[0]
