"""Engine knowledge has one home: nothing outside engines/ compares an engine's name, and a third engine defined
in this module alone is planned, served (dry run), rendered, parsed and probed by the unchanged pipeline."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

import gptoss_deploy
from gptoss_deploy.engines import Binding, registry
from gptoss_deploy.engines.base import (
    AlertRule,
    Comparison,
    ContainerImage,
    Engine,
    Launch,
    Monitoring,
    Panel,
    Phase,
    exact_row,
    pattern,
)
from gptoss_deploy.engines.probe import EngineInfo
from gptoss_deploy.errors import EngineError
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.models.spec import ModelSpec
from gptoss_deploy.plan.types import Plan, PlanRequest

PACKAGE = Path(gptoss_deploy.__file__).parent


def _engine_name_constants(node: ast.AST, names: set[str]) -> list[str]:
    """Engine names among a comparison operand (a string, or a tuple/list/set of strings)."""
    if isinstance(node, ast.Constant) and node.value in names:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
    return []


def engine_name_uses(path: Path, names: set[str]) -> list[str]:
    """Comparisons, match cases and dict keys that name an engine, as 'file:line: what'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        hits: list[str] = []
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                hits += _engine_name_constants(operand, names)
        elif isinstance(node, ast.MatchValue):
            hits += _engine_name_constants(node.value, names)
        elif isinstance(node, ast.Dict):
            hits += [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
        found += [f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}: {hit}" for hit in hits]
    return found


def test_no_engine_name_is_compared_outside_engines() -> None:
    names = set(registry.names())
    outside = [p for p in PACKAGE.rglob("*.py") if "engines" not in p.relative_to(PACKAGE).parts]
    assert len(outside) > 40  # the scan sees the package
    uses = [use for path in outside for use in engine_name_uses(path, names)]
    assert uses == []


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = PACKAGE / "_scan_sample.py"
    try:
        sample.write_text('def f(plan, e):\n    if plan.engine == "vllm" or e in ("x", "llamacpp"):\n'
                          '        return {"vllm": 1}\n    match e:\n        case "llamacpp":\n            return 2\n')
        assert len(engine_name_uses(sample, set(registry.names()))) == 4
    finally:
        sample.unlink()


# -- a third engine, entirely in this module -----------------------------------------------------------------------
class FakeEngine(Engine):
    """An engine the tool has never heard of: `fake-server --model M --ctx N --host H --port P`."""

    name = "fake"
    label = "FakeServe"
    location_flag = "--fake-server"
    location_help = "fake-server binary"
    executable_name = "fake-server"
    key_env = "FAKE_API_KEY"
    secret_flags = ("--fake-key",)
    security_routes = (("GET", "/fake/stats"), ("POST", "/v1/chat/completions"))
    counters: ClassVar[dict[str, str]] = {"fake:tokens_out": "generation_tokens"}
    log_patterns = (pattern(r"fake: ctx=(?P<ctx>\d+)", Phase.KV_CACHE), pattern(r"fake: serving", Phase.READY),
                    pattern(r"fake: no memory", Phase.FAILED, "oom"))

    def can_serve(self, model: ModelSpec) -> str | None:
        return None

    def preference(self, host: Host, model: ModelSpec) -> tuple[int, str]:
        return 9, "last resort"

    def plan(self, model: ModelSpec, host: Host, request: PlanRequest, installed_version: str | None,
             with_alternatives: bool) -> Plan:
        from gptoss_deploy.plan.assembly import base_plan

        ctx = request.max_model_len or 8192
        return base_plan(model, host, verdict="fits", reasons=["FakeServe fits anything"], engine=self.name,
                         other_settings={"ctx": ctx})

    def uses_gpu(self, plan: Plan) -> bool:
        return False

    def gpus_used(self, plan: Plan, host: Host) -> int:
        return len(host.gpus)

    def weights_bytes(self, plan: Plan) -> int:
        return 2**30

    def version_of(self, plan: Plan) -> str | None:
        return None

    def engine_args(self, plan: Plan) -> list[str]:
        return ["--ctx", str(plan.other_settings["ctx"])]

    def engine_env(self, plan: Plan) -> dict[str, str]:
        return {"FAKE_MODE": "fast"}

    def command(self, plan: Plan, binding: Binding) -> list[str]:
        return [*binding.program, "--model", binding.model or plan.model, "--host", binding.host, "--port",
                str(binding.port), *self.engine_args(plan)]

    def display_command(self, plan: Plan) -> list[str]:
        return ["fake-server", "--model", plan.model, *self.engine_args(plan)]

    def default_program(self, executable: str) -> list[str]:
        return [executable]

    def model_reference(self, plan: Plan) -> str:
        return plan.model

    def locate(self, location: str | None) -> str:
        raise EngineError("fake-server is not installed", hint="it is a test double")

    def installed_version(self, executable: str) -> str:
        raise EngineError("fake-server is not installed", hint="it is a test double")

    def probe(self, executable: str) -> EngineInfo:
        raise EngineError("fake-server is not installed", hint="it is a test double")

    def adapt(self, launch: Launch, info: EngineInfo) -> tuple[Launch, list[str]]:
        return launch, []

    def identify(self, http: httpx.Client, base_url: str, headers: dict[str, str]) -> str | None:
        return None

    def tokenize_body(self, model: str, text: str) -> dict[str, Any]:
        return {"text": text}

    def detokenize_body(self, model: str, tokens: list[int]) -> dict[str, Any]:
        return {"ids": tokens}

    def monitoring(self, job: str) -> Monitoring:
        return Monitoring(needs_key=False, panels=[Panel(title="Fake tokens/s", exprs=["rate(fake:tokens_out[1m])"])],
                          rules=[AlertRule(alert="FakeStuck", expr="fake:queue > 9", summary="stuck")],
                          exported=["fake:tokens_out_total", "fake:queue"])

    def plan_vs_actual(self, plan: Plan, facts: dict[str, str]) -> list[Comparison]:
        return [exact_row("context", str(plan.other_settings["ctx"]), facts.get("ctx"))]

    def image(self, plan: Plan, host: Host) -> ContainerImage:
        return ContainerImage(name="example.org/fake:1", entrypoint=["/fake-server"], program=["/fake-server"],
                              has_python=False, has_curl=True, source="this test")

    def nix_package(self, host: Host) -> tuple[str, str]:
        return "pkgs.hello", "a stand-in"

    def describe(self, plan: Plan) -> str:
        return f"FakeServe ctx {plan.other_settings['ctx']}"

    def with_settings(self, plan: Plan, values: dict[str, Any]) -> Plan:
        return plan.model_copy(update={"other_settings": plan.other_settings | values})


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    engine = FakeEngine()
    registry.register(engine)
    try:
        yield engine
    finally:
        registry.unregister(engine.name)


def test_a_third_engine_is_planned_and_its_plan_file_round_trips(fake: FakeEngine, tmp_path: Path) -> None:
    from gptoss_deploy.planning import HostChoice, load_plan, plan_for, save_plan

    plan = plan_for("gpt-oss-20b", HostChoice(profile="h100"), PlanRequest(engine="fake", max_model_len=4096),
                    detect_installed=False).plan
    assert plan.engine == "fake" and plan.engine_args == ["--ctx", "4096"] and plan.env == {"FAKE_MODE": "fast"}
    save_plan(plan, tmp_path / "plan.json")
    assert load_plan(tmp_path / "plan.json").engine_args == plan.engine_args


def test_a_third_engine_is_served_rendered_parsed_and_probed(fake: FakeEngine, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from gptoss_deploy.bench.selfcheck import scrape_counters
    from gptoss_deploy.check.runner import known_routes
    from gptoss_deploy.cli.main import main
    from gptoss_deploy.planning import HostChoice
    from gptoss_deploy.serve.config import resolve_settings
    from gptoss_deploy.serve.logparse import parse_log
    from gptoss_deploy.serve.service import ServeInputs, prepare
    from tests.lane_support import data_of

    settings = resolve_settings({}, {"ENGINE": "fake", "MODEL": "gpt-oss-20b", "MAX_MODEL_LEN": "2048",
                                     "API_KEY": "sk-fake-key-123"})
    prepared = prepare(settings, ServeInputs(require_engine=False, hardware=HostChoice(profile="h100")))
    assert prepared.launch.argv[:2] == ["fake-server", "--model"] and prepared.launch.argv[-2:] == ["--ctx", "2048"]
    assert prepared.launch.env["FAKE_API_KEY"] == "sk-fake-key-123" and prepared.launch.masked_env()["FAKE_API_KEY"] == "***"
    assert any("FakeServe not usable here" in n for n in prepared.notes)

    assert main(["render", "all", "--out", str(tmp_path), "--profile", "h100", "--model", "gpt-oss-20b",
                 "--engine", "fake", "--max-model-len", "2048", "--json"]) == 0
    resolved = [v for v in data_of(capsys.readouterr().out, "render")["validation"] if v["tool"].startswith("resolved")]
    assert len(resolved) >= 6 and all(v["status"] == "ok" for v in resolved)  # the runtimes start its command
    compose = (tmp_path / "docker-compose.yml").read_text()
    assert "example.org/fake:1" in compose and "--ctx" in compose and "FAKE_MODE" in compose
    assert "rate(fake:tokens_out[1m])" in (tmp_path / "monitoring" / "grafana" / "dashboards" / "gptoss.json").read_text()
    assert json.loads((tmp_path / "gptoss.plan.json").read_text())["other_settings"] == {"ctx": 2048}

    state = parse_log("fake: ctx=2048\nfake: serving\n", "fake")
    assert state.phase is Phase.READY and state.facts["ctx"] == "2048"
    assert ("GET", "/fake/stats") in known_routes("fake")
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="# TYPE fake:tokens_out_total counter\nfake:tokens_out_total 7\n"))
    with httpx.Client(transport=transport) as client:
        assert scrape_counters(client, "http://x", {}, "fake") == {"generation_tokens": 7.0}
