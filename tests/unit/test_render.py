"""`gptoss render`: the seeds' setups render every target, validate with real tools, carry the plan's engine
args unchanged, never contain a secret, and never overwrite without --force."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from gptoss_deploy.cli.main import main
from gptoss_deploy.render.output import validate
from tests.lane_support import data_of

SETUPS = {
    "4xl40s-20b-tp4": ["--profile", "4xL40S", "--model", "gpt-oss-20b", "--tp", "4"],
    "gb10-120b": ["--profile", "dgx-spark", "--model", "gpt-oss-120b"],
    "strix-halo-120b": ["--profile", "strix-halo-128gb", "--model", "gpt-oss-120b"],
    "h100-120b": ["--profile", "h100", "--model", "gpt-oss-120b"],
    "2x8xh100-120b": ["--profile", "8xh100", "--model", "gpt-oss-120b", "--nodes", "2", "--tp", "8"],
}
PLANTED_KEY = "sk-planted-render-7f3c9e"
PLANTED_TOKEN = "hf_plantedRenderToken123"


def contains(haystack: list[str], needle: list[str]) -> bool:
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def plan_json(setup: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["plan", *setup, "--json"]) == 0
    return data_of(capsys.readouterr().out, "plan")


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    key, token = tmp_path / "api_key", tmp_path / "hf_token"
    key.write_text(PLANTED_KEY + "\n")
    token.write_text(PLANTED_TOKEN + "\n")
    monkeypatch.setenv("HF_TOKEN", PLANTED_TOKEN)
    monkeypatch.setenv("API_KEY", PLANTED_KEY)
    return str(key), str(token)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_every_target_renders_validates_and_carries_the_plan(setup: str, tmp_path: Path, secrets: tuple[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_json(SETUPS[setup], capsys)
    out = tmp_path / "out"
    code = main(["render", "all", "--out", str(out), *SETUPS[setup], "--api-key-file", secrets[0],
                 "--hf-token-file", secrets[1], "--public", "--json"])
    report = data_of(capsys.readouterr().out, "render")
    assert code == 0, [v for v in report["validation"] if v["status"] == "failed"]
    tools = {v["tool"] for v in report["validation"]}
    resolved = [v for v in report["validation"] if v["tool"] == "resolved (runtime semantics)"]
    assert resolved and all(v["status"] == "ok" for v in resolved)  # what each runtime starts is the plan
    assert any(t.startswith("kubernetes-validate (") for t in tools)  # the real schemas, not skipped
    args = plan["engine_args"]  # the planned flags; the model reference is mapped into the container
    if plan["nodes"] == 1:
        assert "systemd-analyze verify" in tools and "bash -n" in tools
        compose = yaml.safe_load((out / "docker-compose.yml").read_text())
        service = compose["services"]["gptoss"]
        assert contains(service["command"], args)
        port = 8080 if plan["engine"] == "llamacpp" else 8000  # the image's own port (its HEALTHCHECK probes it)
        assert service["ports"] == [f"0.0.0.0:8000:{port}"] and set(service["secrets"]) == {"api_key", "hf_token"}
        assert compose["secrets"]["api_key"] == {"file": secrets[0]}
        assert int(service["healthcheck"]["start_period"].rstrip("s")) >= 600
    docs = list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))
    if plan["nodes"] > 1:
        pvc, lws, _service = docs  # the shared weights' cache claim is in the manifest, ReadWriteMany
        assert pvc["kind"] == "PersistentVolumeClaim" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert lws["kind"] == "LeaderWorkerSet" and lws["spec"]["leaderWorkerTemplate"]["size"] == plan["nodes"]
        leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
        assert leader["command"][:2] == ["sh", "-c"] and contains(shlex.split(leader["command"][2]), args)
        assert "--pipeline-parallel-size" in args and "ray" in args
        worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
        assert "$(LWS_LEADER_ADDRESS)" in worker["command"][2]
        assert contains(shlex.split((out / "ray-head.sh").read_text().splitlines()[-1]), args)
        written = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
        assert {"kubernetes.yaml", "ray-head.sh", "ray-worker.sh", "README.md"} <= written
        assert not {"docker-run.sh", "docker-compose.yml", "gptoss.service"} & written  # one machine each
        assert main(["render", "docker", "--out", str(tmp_path / "d"), *SETUPS[setup]]) == 2
        assert "spans 2 nodes" in capsys.readouterr().err
        return
    else:
        _pvc, deployment, _service = docs
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert contains(container["command"], args)
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # sized to the cold start
    if plan["engine"] == "vllm":
        dockerfile = (out / "Dockerfile").read_text()
        assert f"FROM vllm/vllm-openai{'-rocm' if 'mi300' in setup else ''}:v{plan['vllm']['version']}" in dockerfile
        assert 'ENTRYPOINT ["/usr/local/bin/gptoss-entrypoint"]' in dockerfile
        entrypoint = (out / "entrypoint.sh").read_text()
        assert 'exec gptoss serve "$@"' in entrypoint and "PasswordAuthentication no" in entrypoint
        assert "dockerfile-parse" in tools
    quadlet = (out / "gptoss.container").read_text()
    exec_line = next(line for line in quadlet.splitlines() if line.startswith("Exec="))
    assert contains(shlex.split(exec_line.removeprefix("Exec=")), args)
    nix = (out / "gptoss.nix").read_text()
    assert all(f'"{a}"' in nix for a in args) and "services.gptoss" in nix
    if shutil.which("nix-instantiate"):
        assert "nix-instantiate --parse" in tools and not any("skipped" in v["detail"] for v in report["validation"])
    runpod = json.loads((out / "runpod.json").read_text())
    assert contains(shlex.split(runpod["dockerArgs"]), args) and runpod["ports"] == f"{port}/tcp"
    script = (out / "docker-run.sh").read_text()
    assert all(shlex.quote(a) in script for a in args) and "--privileged" not in script
    unit = (out / "gptoss.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "KillMode=mixed" in unit
    assert "DevicePolicy=closed" in unit and "LoadCredential=api_key:" + secrets[0] in unit
    # the unit runs the rendered plan file, whose settings build exactly the planned flags
    assert "--plan /etc/gptoss/gptoss.plan.json" in unit and "AssertPathExists=/etc/gptoss/gptoss.plan.json" in unit
    saved = json.loads((out / "gptoss.plan.json").read_text())
    assert saved["vllm"] == plan["vllm"] and saved["llamacpp"] == plan["llamacpp"] and "engine_args" not in saved
    assert (out / "README.md").exists() and (out / "monitoring" / "alerts.yml").exists()
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert PLANTED_KEY not in text and PLANTED_TOKEN not in text, path
            assert text.startswith(("#", "{", ">")) or path.suffix == ".json", path
            if path.suffix != ".json":
                assert "gpt-oss-deploy" in text.splitlines()[0] + text.splitlines()[1], path


def test_vendor_specifics_amd_strix_halo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "all", "--out", str(tmp_path), *SETUPS["strix-halo-120b"], "--json"]) == 0
    capsys.readouterr()
    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())["services"]["gptoss"]
    assert compose["devices"] == ["/dev/kfd", "/dev/dri"] and "deploy" not in compose
    assert compose["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    # llama.cpp's image has curl, not Python; exec form on the port the server listens on in the image
    assert compose["healthcheck"]["test"] == ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
    assert compose["ports"] == ["127.0.0.1:8000:8080"]  # not public unless asked; the image's port inside
    unit = (tmp_path / "gptoss.service").read_text()
    assert "DeviceAllow=/dev/kfd rw" in unit and "--plan /etc/gptoss/gptoss.plan.json" in unit
    assert json.loads((tmp_path / "gptoss.plan.json").read_text())["engine"] == "llamacpp"
    nix = (tmp_path / "gptoss.nix").read_text()
    assert 'HSA_OVERRIDE_GFX_VERSION = "11.5.1"' in nix and 'HSA_ENABLE_SDMA = "0"' in nix
    assert 'KERNEL=="kfd"' in nix and "# boot.kernelParams = [ \"amd_iommu=off\" \"amdgpu.gttsize=" in nix
    assert "cfg.model" in nix and 'default = "ggml-org/gpt-oss-120b-GGUF"' in nix
    k8s = list(yaml.safe_load_all((tmp_path / "kubernetes.yaml").read_text()))[1]
    assert k8s["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"amd.com/gpu": 1}


def test_no_overwrite_without_overwrite_then_bak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["render", "docker", "--out", str(tmp_path), *SETUPS["h100-120b"]]
    (tmp_path / "docker-run.sh").write_text("mine\n")
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "docker-run.sh").read_text() == "mine\n"
    assert main([*argv, "--overwrite"]) == 0
    assert (tmp_path / "docker-run.sh.bak").read_text() == "mine\n"
    assert "docker run" in (tmp_path / "docker-run.sh").read_text()


@pytest.mark.parametrize("argv, needle", [
    (["render", "docker", "--public", *SETUPS["h100-120b"]], "needs an API key"),
    (["render", "nosuch", *SETUPS["h100-120b"]], "invalid choice"),
    (["render", "docker", "--profile", "h100", "--model", "unsloth/gpt-oss-120b-BF16", "--engine", "vllm"],
     "does not fit"),
])
def test_bad_input_exit_2(argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err


def test_validation_catches_broken_artifacts() -> None:
    from gptoss_deploy.render.targets import Artifact

    bad_unit = Artifact("x.service", "[Service]\nType=notify\nExecStart=/bin/true\nKillMode=sometimes\n")
    bad_k8s = Artifact("kubernetes.yaml", yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment",
                                                          "metadata": {"name": "x"}, "spec": {"replicas": "one"}}))
    results = {(r.artifact, r.tool.split(" ")[0]): r for r in validate([bad_unit, bad_k8s])}
    assert results[("x.service", "systemd-analyze")].failed
    assert results[("kubernetes.yaml", "kubernetes-validate")].failed


def test_a_missing_validator_is_reported_as_skipped_never_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no systemd-analyze here
    code = main(["render", "systemd", "--out", str(tmp_path / "o"), "--profile", "h100", "--json"])
    data = data_of(capsys.readouterr().out, "render")
    statuses = {v["tool"]: v["status"] for v in data["validation"]}
    assert code == 0 and statuses["systemd-analyze"] == "skipped", statuses
    assert statuses["resolved (runtime semantics)"] == "ok"
    main(["render", "systemd", "--out", str(tmp_path / "p"), "--profile", "h100"])
    assert "skipped: gptoss.service: systemd-analyze" in capsys.readouterr().err
