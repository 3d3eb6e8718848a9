"""One output path: every --json document is a versioned envelope that validates against its published schema;
usage errors are errors like any other; no abbreviations; --quiet; tables are not cut when piped."""

from __future__ import annotations

import json

import pytest

from gptoss_deploy.cli.main import main
from gptoss_deploy.cli.output import SCHEMA_VERSIONS
from gptoss_deploy.cli.schemas import SCHEMAS, json_schema, shipped
from tests.lane_support import data_of


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_shipped_schemas_are_what_the_models_generate(name: str) -> None:
    assert shipped(name) == json.loads(json.dumps(json_schema(name), sort_keys=True)), (
        "regenerate: python -m gptoss_deploy.cli.schemas --write")


def test_every_schema_has_a_version_and_a_model() -> None:
    assert set(SCHEMA_VERSIONS) == set(SCHEMAS)


@pytest.mark.parametrize(("argv", "schema", "code"), [
    (["plan", "--profile", "4xL40S", "--model", "gpt-oss-120b"], "plan", 0),
    (["plan", "--gpu", "L40S", "--model", "gpt-oss-120b", "--engine", "vllm"], "plan", 1),
    (["plan", "--profile", "nosuchbox"], "error", 2),
    (["plan", "--max-model-len", "not-a-number"], "error", 2),
    (["serve", "--model", "gpt-oss-120b", "--profile", "h100", "--dry-run"], "serve-dry-run", 0),
    (["serve", "--model", "gpt-oss-120b", "--profile", "strix-halo-128gb", "--dry-run"], "serve-dry-run", 0),
    (["try", "--model", "gpt-oss-120b", "--profile", "4xL40S", "--dry-run"], "try-dry-run", 0),
    (["detect"], "detect", 0),
    (["profiles"], "profiles", 0),
    (["cost", "--tok-s", "20", "--price-per-hour", "0.78"], "cost", 0),
])
def test_json_output_validates_against_its_schema(capsys: pytest.CaptureFixture[str], argv: list[str], schema: str,
                                                  code: int) -> None:
    got, out, _ = run(capsys, *argv, "--json")
    assert got == code
    data_of(out, schema)


def test_abbreviations_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--profile", "h100", "--max-model", "4096")
    assert code == 2 and out == "" and "unrecognized arguments: --max-model 4096" in err


def test_usage_errors_are_json_under_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--tp", "two", "--json")
    error = data_of(out, "error")
    assert code == 2 and error["error"] == "UsageError" and "'two' is not a whole number" in error["message"]
    assert "Traceback" not in err


def test_quiet_silences_messages_not_data_or_errors(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    plan_file = tmp_path / "p.json"
    code, out, err = run(capsys, "plan", "--profile", "h100", "--model", "gpt-oss-20b", "--save", str(plan_file),
                         "--quiet")
    assert code == 0 and "FITS" in out and err == "" and plan_file.exists()
    code, out, err = run(capsys, "plan", "--profile", "nosuchbox", "--quiet")
    assert code == 2 and "error: unknown profile" in err


def test_tables_are_not_cut_at_80_columns_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--profile", "4xL40S", "--model", "gpt-oss-120b")
    assert code == 0
    command = next(line for line in out.splitlines() if line.startswith("vllm serve"))
    assert command.endswith("--enable-auto-tool-choice") and len(command) > 80
    assert max(len(line) for line in out.splitlines()) > 120  # the issues table keeps its columns whole
