"""Shared fixtures: isolate tests from the developer's machine (cache dirs, HF/vLLM env)."""

from __future__ import annotations

import pytest

BEHAVIOUR_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TIKTOKEN_ENCODINGS_BASE", "HF_TOKEN",
                 "HUGGING_FACE_HUB_TOKEN", "VLLM_ATTENTION_BACKEND")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the caller's HF/vLLM settings or writes to the real home cache."""
    for name in BEHAVIOUR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
