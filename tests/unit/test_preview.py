"""Previews of another machine: `serve --dry-run` and `try --dry-run` take --profile, print the exact commands
(shell-quoted, secrets masked); without --dry-run a --profile is refused (exit 2) before anything starts."""

from __future__ import annotations

import json
import shlex

import pytest

from gptoss_deploy.cli.main import main

KEY = "sk-preview-secret-0123456789"


def key_file_named(argv: list[str]) -> list[str]:
    """argv with the temporary key file's name replaced by KEYFILE."""
    return ["KEYFILE" if i and argv[i - 1] == "--api-key-file" else word for i, word in enumerate(argv)]


@pytest.mark.parametrize("command", ["serve", "try"])
def test_profile_without_dry_run_is_refused(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--model", "gpt-oss-20b", "--profile", "h100", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "only a --dry-run can preview it" in err and "the machine gptoss runs on" in err


def test_try_dry_run_prints_each_rungs_exact_command(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("API_KEY", KEY)
    assert main(["try", "--model", "gpt-oss-20b", "--profile", "h100", "--dry-run", "--json"]) == 0
    rungs = json.loads(capsys.readouterr().out)["data"]
    assert main(["try", "--model", "gpt-oss-20b", "--profile", "h100", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert KEY not in out and "{'" not in out  # no key, no Python dict
    commands = [line.strip() for line in out.splitlines() if line.startswith("   ")]
    assert len(commands) == len(rungs) > 2
    for rung, line in zip(rungs, commands, strict=True):
        words = shlex.split(line)
        env = dict(w.split("=", 1) for w in words[:len(rung["env"])])
        assert env == rung["env"] and env.get("VLLM_API_KEY", "masked") != KEY
        # the argv that would run, word for word (llama-server's key file is a fresh temporary name per run)
        assert key_file_named(words[len(rung["env"]):]) == key_file_named(rung["argv"])
    assert any("--enforce-eager" in r["argv"] for r in rungs)
