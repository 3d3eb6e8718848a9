"""The published JSON schemas of every command's --json output, generated from the data models.

`python -m gptoss_deploy.cli.schemas --write` regenerates gptoss_deploy/schemas/*.json; a unit test checks that the
shipped files equal what the models generate, and that each command's output validates against its file.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from gptoss_deploy.bench.cost import CostRow
from gptoss_deploy.bench.sweep import SweepResult
from gptoss_deploy.check.report import CheckReport
from gptoss_deploy.cli.output import SCHEMA_VERSIONS
from gptoss_deploy.cli.servers_cmd import ServerRow
from gptoss_deploy.cli.top_cmd import TopSample
from gptoss_deploy.data.schema import GpuSpec, HostSpec
from gptoss_deploy.doctor.checks import DoctorCheck
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.models.gguf_tools import MergeReport
from gptoss_deploy.models.pull import PullReport
from gptoss_deploy.plan.types import Plan
from gptoss_deploy.render.deployment import Deployment
from gptoss_deploy.render.output import Validation
from gptoss_deploy.serve.state import ServerState
from gptoss_deploy.serve.supervisor import ServeReport
from gptoss_deploy.trial.ladder import Attempt
from gptoss_deploy.vocab import VocabResult


class ErrorData(BaseModel):
    """A failure: the error class, what happened, what to do, and the exit code."""

    error: str
    message: str
    hint: str | None
    exit_code: int


class ServeDryRun(BaseModel):
    """`serve --dry-run`: the exact command that would run (secrets masked) and the plan's part of it."""

    engine: str
    argv: list[str]
    env: dict[str, str]
    engine_args: list[str] = Field(description="the planned engine flags (inside argv, unchanged)")
    plan_env: dict[str, str] = Field(description="the planned engine environment (inside env, unchanged)")
    engine_version: str | None
    notes: list[str]
    endpoint: str
    served_model_name: str


class TryRung(BaseModel):
    """`try --dry-run`: one rung with its exact command, or why it cannot be prepared."""

    rung: str
    expected: str
    settings: dict[str, Any]
    inputs: dict[str, Any]
    verbatim: dict[str, Any]
    engine: str | None = None
    argv: list[str] | None = None
    env: dict[str, str] | None = None
    engine_args: list[str] | None = None
    plan_env: dict[str, str] | None = None
    command: str | None = None
    error: str | None = None


class BenchResult(BaseModel):
    """One benchmark result: `vllm bench serve`'s keys (the headline ones typed here) plus `ext`."""

    model_config = ConfigDict(extra="allow")

    model_id: str
    num_prompts: int
    max_concurrency: int | None
    request_rate: float | Literal["inf"]
    duration: float
    completed: int
    failed: int
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    median_ttft_ms: float
    median_tpot_ms: float
    ext: dict[str, Any]


class BenchOutput(BaseModel):
    """`bench`: each result, and the sweep's summary when there was one."""

    results: list[BenchResult]
    sweep: SweepResult | None = None


class RenderOutput(BaseModel):
    """`render`: the deployment decided, the files written and how each was validated."""

    deployment: Deployment
    written: list[str]
    validation: list[Validation]


class DoctorOutput(BaseModel):
    """`doctor`: every check for this host and model."""

    model: str
    checks: list[DoctorCheck]


class GgufEntry(BaseModel):
    """`gguf info`: one file or shard set."""

    path: str
    architecture: str
    tensor_count: int
    tensor_types: dict[str, int]
    tensor_bytes: int
    file_bytes: int
    shards: list[str]
    missing_shards: list[str]
    complete: bool


class Profiles(BaseModel):
    """`profiles`: every GPU and named host."""

    gpus: dict[str, GpuSpec]
    hosts: dict[str, HostSpec]


class DemoInfo(BaseModel):
    """`demo`: where the demo serves."""

    endpoint: str
    model: str
    log: str
    curl: str


class CompletionScript(BaseModel):
    """`completion`: the shell and its script."""

    shell: Literal["bash", "zsh", "fish"]
    script: str


# name -> the data model (versions: cli/output.py SCHEMA_VERSIONS)
MODELS: dict[str, Any] = {
    "error": ErrorData, "plan": Plan, "serve-dry-run": ServeDryRun, "serve-ready": ServeReport, "check": CheckReport,
    "bench": BenchOutput, "cost": RootModel[list[CostRow]], "render": RenderOutput, "doctor": DoctorOutput,
    "try": RootModel[list[Attempt]], "try-dry-run": RootModel[list[TryRung]], "gguf-info": RootModel[list[GgufEntry]],
    "gguf-merge": MergeReport, "detect": Host, "profiles": Profiles, "vocab": VocabResult, "demo": DemoInfo,
    "pull": PullReport, "server": ServerState, "ps": RootModel[list[ServerRow]],
    "top": TopSample, "completion": CompletionScript,
}
SCHEMAS = {name: (SCHEMA_VERSIONS[name], model) for name, model in MODELS.items()}


def json_schema(name: str) -> dict[str, Any]:
    """The JSON schema of the envelope around `name`'s data."""
    version, model = SCHEMAS[name]
    envelope: type[BaseModel] = create_model(
        f"{''.join(part.title() for part in name.split('-'))}Output",
        schema_=(Literal[f"gptoss.{name}/{version}"], Field(alias="schema")),  # type: ignore[arg-type, maybe-unrecognized-str-typeform]
        tool_version=(str, ...),
        data=(model, ...))
    document = envelope.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"gptoss.{name}/{version}"} | document


def file_name(name: str) -> str:
    """The shipped file of a schema."""
    return f"{name}.v{SCHEMAS[name][0]}.json"


def shipped(name: str) -> dict[str, Any]:
    """The schema as shipped in the package."""
    text = resources.files("gptoss_deploy").joinpath("schemas", file_name(name)).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def write_all(folder: Path) -> list[Path]:
    """Regenerate every schema file."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCHEMAS:
        path = folder / file_name(name)
        path.write_text(json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Regenerate gptoss_deploy/schemas/*.json from the data models.")
    parser.add_argument("--write", action="store_true", help="write the files (default: list what would be written)")
    options = parser.parse_args()
    target = Path(__file__).resolve().parent.parent / "schemas"
    if options.write:
        for written in write_all(target):
            print(written)
    else:
        print("\n".join(str(target / file_name(n)) for n in SCHEMAS))
