"""Shared fixtures: isolate tests from the developer's machine (cache folder, HF/vLLM settings) and make the markers
real: tests/unit are `unit` and may not start an engine; tests/engine are `engine`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gptoss_deploy.lane import lane_root
from gptoss_deploy.vocab import cache_root

BEHAVIOUR_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TIKTOKEN_ENCODINGS_BASE", "HF_TOKEN",
                 "HUGGING_FACE_HUB_TOKEN", "VLLM_ATTENTION_BACKEND", "API_KEY", "GPTOSS_CONFIG", "MODEL", "PORT",
                 "HOST", "ENGINE", "MAX_MODEL_LEN")
# The lane is built once, where it would be without the tests' cache isolation; downloads the tests need (the
# quicktok wheel) are kept beside it, keyed by version.
os.environ.setdefault("GPTOSS_LANE_DIR", str(lane_root()))
os.environ.setdefault("GPTOSS_TEST_DOWNLOADS", str(cache_root() / "wheels"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "unit" in parts and "tests" in parts:
            item.add_marker(pytest.mark.unit)
        elif "engine" in parts and "tests" in parts:
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the engine tests of a session (probes of the installed engines are reused)."""
    return tmp_path_factory.mktemp("gptoss-cache")


@pytest.fixture(autouse=True)
def clean_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the caller's HF/vLLM settings or writes to the real home cache; unit tests start no engine."""
    for name in BEHAVIOUR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    if request.node.get_closest_marker("unit"):
        monkeypatch.setenv("GPTOSS_CACHE", str(tmp_path_factory.mktemp("gptoss-cache")))
        monkeypatch.setenv("GPTOSS_NO_LANE", "1")
    else:
        monkeypatch.setenv("GPTOSS_CACHE", str(request.getfixturevalue("session_cache")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The CLI fuzz's own counts (issue #16 asks for them in the output)."""
    import sys

    module = next((m for name, m in list(sys.modules.items()) if name.endswith("test_hardening")), None)
    tally = getattr(module, "TALLY", None)
    if tally is not None and tally.count:
        terminalreporter.write_line(f"CLI fuzz: {tally.count} invocations, exit codes {dict(sorted(tally.codes.items()))}, "
                                    f"max {tally.max_s:.2f} s ({' '.join(tally.slowest)[:160]}), "
                                    f"max RSS {tally.max_rss_mb:.0f} MB")
