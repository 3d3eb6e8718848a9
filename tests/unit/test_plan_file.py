"""The plan file is the deployable unit: `plan --save` -> `serve --plan` runs exactly it, on the host it was made for;
another host or engine release is a clear error or an explicit --replan; rendered units carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptoss_deploy.cli.main import main
from tests.lane_support import data_of

KV_BUDGET = "8000000000"
H100_120B = ["--profile", "h100-80gb", "--model", "gpt-oss-120b", "--max-model-len", "65536",
             "--kv-cache-memory-bytes", KV_BUDGET]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, data_of(out), err


def test_plan_save_then_serve_plan_dry_run_is_the_same_command(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "plan.json"
    code, plan, err = run(capsys, "plan", *H100_120B, "--save", str(saved))
    assert code == 0 and f"saved {saved}" in err
    code, dry, _ = run(capsys, "serve", "--plan", str(saved), "--profile", "h100-80gb", "--dry-run")
    assert code == 0, dry
    assert dry["engine_args"] == plan["engine_args"] and dry["plan_env"] == plan["env"]
    assert dry["argv"][-len(plan["engine_args"]):] == plan["engine_args"]
    assert dry["argv"][dry["argv"].index("--kv-cache-memory-bytes") + 1] == KV_BUDGET
    assert any("serving the saved plan" in note for note in dry["notes"])
    on_disk = json.loads(saved.read_text())
    assert "engine_args" not in on_disk and on_disk["request"]["kv_cache_memory_bytes"] == int(KV_BUDGET)


def test_rendered_systemd_unit_keeps_the_kv_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "render", "systemd", "--out", str(tmp_path), *H100_120B)
    assert code == 0
    unit = (tmp_path / "gptoss.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "serve --plan /etc/gptoss/gptoss.plan.json" in exec_start
    code, dry, _ = run(capsys, "serve", "--plan", str(tmp_path / "gptoss.plan.json"), "--profile", "h100-80gb",
                       "--dry-run")
    assert code == 0 and dry["argv"][dry["argv"].index("--kv-cache-memory-bytes") + 1] == KV_BUDGET
    assert dry["argv"][dry["argv"].index("--max-model-len") + 1] == "65536"


def test_another_gpu_is_refused_unless_replanned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", "--profile", "h100", "--model", "gpt-oss-20b", "--save", str(saved), "--quiet"]) == 0
    capsys.readouterr()
    code, error, _ = run(capsys, "serve", "--plan", str(saved), "--profile", "4xL40S", "--dry-run")
    assert code == 2 and "the plan is for 1x NVIDIA H100" in error["message"] and "--replan" in error["hint"]
    code, dry, _ = run(capsys, "serve", "--plan", str(saved), "--profile", "4xL40S", "--dry-run", "--replan")
    assert code == 0 and "TRITON_ATTN" in dry["engine_args"]  # re-planned for the L40S
    assert any(note.startswith("re-planned (the plan is for") for note in dry["notes"])


def test_settings_given_with_a_plan_need_replan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", "--profile", "h100", "--model", "gpt-oss-20b", "--save", str(saved), "--quiet"]) == 0
    capsys.readouterr()
    code, error, _ = run(capsys, "serve", "--plan", str(saved), "--profile", "h100", "--dry-run",
                         "--max-model-len", "8192")
    assert code == 2 and "max_model_len was given too" in error["message"]
    code, dry, _ = run(capsys, "serve", "--plan", str(saved), "--profile", "h100", "--dry-run",
                       "--max-model-len", "8192", "--replan")
    assert code == 0 and dry["argv"][dry["argv"].index("--max-model-len") + 1] == "8192"


def test_an_installed_engine_of_another_release_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from gptoss_deploy.engines import registry

    saved = tmp_path / "plan.json"
    assert main(["plan", "--profile", "h100", "--model", "gpt-oss-20b", "--vllm-version", "0.23.0", "--save",
                 str(saved), "--quiet"]) == 0
    capsys.readouterr()
    vllm = registry.get("vllm")
    monkeypatch.setattr(type(vllm), "installed_version", lambda self, executable: "0.32.0")
    code, error, _ = run(capsys, "serve", "--plan", str(saved), "--profile", "h100", "--dry-run")
    assert code == 2 and "the plan is for vLLM 0.23.0, 0.32.0 is installed" in error["message"]


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda d: d | {"engine_args": ["--max-model-len", "999"]}, "does not match what its settings build"),
    (lambda d: d | {"schema_version": 1}, "has schema 1"),
    (lambda d: d | {"vllm": d["vllm"] | {"max_model_len": "lots"}}, "vllm.max_model_len"),
    (lambda d: d | {"surprise": 1}, "surprise"),
])
def test_a_broken_plan_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, needle: str) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", "--profile", "h100", "--model", "gpt-oss-20b", "--save", str(saved), "--quiet"]) == 0
    saved.write_text(json.dumps(edit(json.loads(saved.read_text()))))
    capsys.readouterr()
    code, error, _ = run(capsys, "serve", "--plan", str(saved), "--profile", "h100", "--dry-run")
    assert code == 2 and needle in error["message"]
