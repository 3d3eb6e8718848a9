"""One path from plan to process: for generated plan requests, the engine flags and environment in `plan --json`
are exactly those in `serve --dry-run --json`, in the planned rung of `try --dry-run --json`, inside the engine
command of every render target, and in the plan file that `gptoss serve --plan` artifacts carry."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gptoss_deploy.cli.main import main
from gptoss_deploy.planning import load_plan
from gptoss_deploy.render import runtime
from gptoss_deploy.render.deployment import Deployment
from tests.lane_support import data_of

GIB = 2**30
PROFILES = ["4xL40S", "h100", "h200", "a100-80gb", "8xh100", "dgx-spark", "strix-halo-128gb", "rtx-4090", "b200",
            "mi300x", "8xmi300x", "2xl40s", "rtx-pro-6000"]
MODELS = ["gpt-oss-120b", "gpt-oss-20b", "gpt-oss-20b-gguf"]
# render targets whose files run the engine directly (the rest run `gptoss serve --plan`, checked via the plan file)



@st.composite
def plan_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A plan request over profiles, models, TP, context, KV settings, batch and nodes (None = not given)."""
    return {
        "--profile": draw(st.sampled_from(PROFILES)),
        "--model": draw(st.sampled_from(MODELS)),
        "--engine": draw(st.sampled_from([None, None, "vllm", "llamacpp"])),
        "--tensor-parallel-size": draw(st.sampled_from([None, None, 1, 2, 4, 8])),
        "--max-model-len": draw(st.sampled_from([None, 4096, 16384, 65536, 131072])),
        "--kv-cache-dtype": draw(st.sampled_from([None, None, "fp8"])),
        "--kv-cache-memory-bytes": draw(st.sampled_from([None, None, 2 * GIB, 8_000_000_000])),
        "--gpu-memory-utilization": draw(st.sampled_from([None, None, 0.85, 0.95])),
        "--max-num-seqs": draw(st.sampled_from([None, None, 16, 256])),
        "--nodes": draw(st.sampled_from([1, 1, 1, 2])),
    }


def flags(request: dict[str, Any], serve: bool = False) -> list[str]:
    """The request as command-line flags (serve has no --nodes)."""
    out: list[str] = []
    for flag, value in request.items():
        if value is None or (serve and flag == "--nodes"):
            continue
        out += [flag, str(value)]
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, data_of(out) if out.strip() else None


def contains(haystack: list[str], needle: list[str]) -> bool:
    """`needle` appears in `haystack` as one contiguous run."""
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def _nixos(folder: Path) -> tuple[list[str], dict[str, str]]:
    text = (folder / "gptoss.nix").read_text()
    block = text[text.index("escapeShellArgs ([") + 18:text.index("] ++ lib.optionals")]
    words = [json.loads(w) if w.startswith('"') else w for w in block.split()]
    env_block = text[text.index("environment = lib.mkOption"):text.index("apiKeyFile = lib.mkOption")]
    env = {k: json.loads(v) for k, v in re.findall(r"(\w+) = (\"[^\"]*\");", env_block)}
    return words, env




def check_command(where: str, argv: list[str], env: dict[str, str], args: list[str], plan_env: dict[str, str]) -> None:
    assert contains(argv, args), f"{where}: {args} not in {argv}"
    missing = {k: v for k, v in plan_env.items() if env.get(k) != v}
    assert not missing, f"{where}: planned env {missing} not set ({env})"


@settings(max_examples=220, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=plan_requests())
def test_every_path_runs_the_planned_command(request: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    code, plan = run(capsys, "plan", *flags(request))
    assert code in (0, 1, 2)
    assume(code == 0)
    args, env = plan["engine_args"], plan["env"]
    assert args, plan  # a plan that fits has a command
    refused = [c["setting"] for c in plan["changes"] if c["refused"]]
    span = plan["vllm"]["nnodes"] if plan["vllm"] else 1  # machines one server spans (else replicas per node)
    if refused:  # `plan` replaces a refused value and says so; `serve` and `try` stop unless --force
        code, error = run(capsys, "serve", "--dry-run", *flags(request, serve=True))
        assert code == 2 and "refused" in error["message"] and all(s in error["message"] for s in refused)
    elif span == 1:
        code, dry = run(capsys, "serve", "--dry-run", *flags(request, serve=True))
        assert code == 0 and dry["engine_args"] == args and dry["plan_env"] == env
        check_command("serve", dry["argv"], dry["env"], args, env)
        code, rungs = run(capsys, "try", "--dry-run", *flags(request, serve=True))
        planned = next(r for r in rungs if r["rung"] == "planned")
        assert code == 0 and planned["engine_args"] == args and planned["plan_env"] == env
        check_command("try", planned["argv"], planned["env"], args, env)
    out = tmp_path_factory.mktemp("render")
    code, rendered = run(capsys, "render", "all", "--out", str(out), *flags(request))
    assert code == 0, rendered
    assert rendered["deployment"]["engine_args"] == args
    # what each runtime really starts (render/runtime.py: entrypoint rules, interpolation, quadlet, RunPod, serve)
    deployment = Deployment.model_validate(rendered["deployment"])
    texts = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    resolved = runtime.resolve_all(deployment, texts)
    assert {r.target for r in resolved} == ({"kubernetes"} if span > 1 else
                                            {"docker", "compose", "kubernetes", "quadlet", "runpod", "systemd", "image"}
                                            - ({"image"} if plan["engine"] == "llamacpp" else set()))
    for r in resolved:
        if not r.artifact.endswith("(worker)"):
            engine_env = env if r.target in ("image", "systemd") else r.env  # serve sets the plan's env itself
            check_command(r.artifact, r.engine_argv or r.argv, engine_env, args, env)
    if span == 1:
        argv, artifact_env = _nixos(out)
        check_command("nixos", argv, artifact_env, args, env)
        saved = load_plan(out / "gptoss.plan.json")  # what the systemd unit runs
        assert saved.engine_args == args and saved.env == env
    if span > 1 and "ray" in args:
        check_command("ray-head.sh", shlex.split((out / "ray-head.sh").read_text().splitlines()[-1].split("&& exec ")[1]),
                      env, args, {})
