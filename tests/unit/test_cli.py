"""The CLI translates flags to library calls: exit codes, stdout/stderr discipline, --json."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptoss_deploy.cli.main import main
from tests.lane_support import data_of


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse rejects a value
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_is_the_full_versioned_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--profile", "4xL40S", "--model", "gpt-oss-120b", "--json")
    assert code == 0
    plan = data_of(out, "plan")
    assert plan["schema_version"] == 2 and plan["verdict"] == "fits"
    layout = plan["parallel"]  # every GPU used: TP x DP covers the four L40S
    assert plan["vllm"]["tensor_parallel_size"] * plan["vllm"]["data_parallel_size"] == 4 and layout["idle_gpus"] == 0
    assert any("KV cache size" in line for line in plan["predicted_log"])


def test_human_plan_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--gpu", "L40S", "--gpus", "4", "--model", "gpt-oss-120b", "--explain")
    assert code == 0 and "FITS" in out and "num_blocks" in out and "vllm serve openai/gpt-oss-120b" in out


def test_does_not_fit_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--gpu", "L40S", "--model", "gpt-oss-120b", "--engine", "vllm")
    assert code == 1 and "DOES NOT FIT" in out


@pytest.mark.parametrize("argv", [
    ("plan", "--profile", "nosuchbox"),
    ("plan", "--profile", "h100", "--gpu-memory-utilization", "0"),
    ("plan", "--profile", "h100", "--gpu-memory-utilization", "1.2"),
    ("plan", "--profile", "h100", "--max-model-len", "262144"),
    ("plan", "--profile", "h100", "--gpu-memory-gib", "-8"),
    ("plan", "--gpu", "H100", "--gpus", "0"),
    ("plan", "--profile", "h100", "--tp", "2"),
])
def test_bad_input_exits_2_without_traceback(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err and "error" in err


def test_malformed_config_exits_2_with_the_file_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    code, _, err = run(capsys, "plan", "--profile", "h100", "--model", str(tmp_path))
    assert code == 2 and "config.json" in err and "hint:" in err and "Traceback" not in err


def test_errors_in_json_mode_are_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--profile", "nosuchbox", "--json")
    assert code == 2 and data_of(out, "error")["error"] == "UnknownProfileError"


def test_profiles_and_detect_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profiles", "--json")
    assert code == 0 and "4xl40s" in data_of(out, "profiles")["hosts"]
    code, out, _ = run(capsys, "detect", "--json")
    assert code == 0 and "cpu" in data_of(out, "detect")


def test_debug_shows_the_traceback_for_a_bug(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import gptoss_deploy.cli.plan_cmd as plan_cmd

    def broken(_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(plan_cmd, "build_plan", broken)
    code, _, err = run(capsys, "plan", "--profile", "h100")
    assert code == 70 and "bug" in err and "Traceback" not in err
    code, _, err = run(capsys, "--debug", "plan", "--profile", "h100")
    assert code == 70 and "Traceback" in err
