"""`gptoss render`: the seeds' setups render every target, validate with real tools, carry the plan's engine
args unchanged, never contain a secret, and never overwrite without --force."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from gptoss_deploy.cli.main import main
from tests.lane_support import data_of

SETUPS = {
    "4xl40s-20b-tp4": ["--profile", "4xL40S", "--model", "gpt-oss-20b", "--tp", "4"],
    "gb10-120b": ["--profile", "dgx-spark", "--model", "gpt-oss-120b"],
    "strix-halo-120b": ["--profile", "strix-halo-128gb", "--model", "gpt-oss-120b"],
    "h100-120b": ["--profile", "h100", "--model", "gpt-oss-120b"],
    "2x8xh100-120b": ["--profile", "8xh100", "--model", "gpt-oss-120b", "--nodes", "2", "--tp", "8"],
    "2x8x8gib-120b-pp2": ["--gpu", "small-hopper", "--gpus", "8", "--gpu-memory-gib", "8", "--compute-capability", "9.0",
                          "--model", "gpt-oss-120b", "--engine", "vllm", "--nodes", "2"],
    "2x8x8gib-120b-pp2-ray": ["--gpu", "small-hopper", "--gpus", "8", "--gpu-memory-gib", "8",
                              "--compute-capability", "9.0", "--model", "gpt-oss-120b", "--engine", "vllm",
                              "--nodes", "2", "--vllm-version", "0.10.2"],
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
    span = plan["vllm"]["nnodes"] if plan["vllm"] else 1
    if span == 1:
        assert "systemd-analyze verify" in tools and "bash -n" in tools
        compose = yaml.safe_load((out / "docker-compose.yml").read_text())
        service = compose["services"]["gptoss"]
        assert contains(service["command"], args)
        port = 8080 if plan["engine"] == "llamacpp" else 8000  # the image's own port (its HEALTHCHECK probes it)
        assert service["ports"] == [f"0.0.0.0:8000:{port}"] and set(service["secrets"]) == {"api_key", "hf_token"}
        assert compose["secrets"]["api_key"] == {"file": secrets[0]}
        assert int(service["healthcheck"]["start_period"].rstrip("s")) >= 600
        serve_sh = (out / "serve.sh").read_text()
        assert "gptoss" in serve_sh and '--plan "$here/gptoss.plan.json"' in serve_sh
    docs = list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))
    if span > 1:
        pvc, lws, _service = docs  # the shared weights' cache claim is in the manifest, ReadWriteMany
        assert pvc["kind"] == "PersistentVolumeClaim" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert lws["kind"] == "LeaderWorkerSet" and lws["spec"]["leaderWorkerTemplate"]["size"] == span
        leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
        worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
        assert "--pipeline-parallel-size" in args
        written = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
        assert not {"docker-run.sh", "docker-compose.yml", "gptoss.service"} & written  # one machine each
        if "ray" in args:  # vLLM before --nnodes: a Ray cluster
            assert leader["command"][:2] == ["sh", "-c"] and contains(shlex.split(leader["command"][2]), args)
            assert "$(LWS_LEADER_ADDRESS)" in worker["command"][2]
            assert contains(shlex.split((out / "ray-head.sh").read_text().splitlines()[-1]), args)
            assert {"kubernetes.yaml", "ray-head.sh", "ray-worker.sh", "README.md"} <= written
        else:  # vLLM's own multi-node runtime: rank 0 serves, workers --headless, ranks from LWS
            assert contains(leader["command"], args) and contains(leader["command"], ["--node-rank", "0"])
            assert contains(worker["command"], ["--node-rank", "$(LWS_WORKER_INDEX)"]) and "--headless" in worker["command"]
            assert all(contains(c["command"], ["--master-addr", "$(LWS_LEADER_ADDRESS)"]) for c in (leader, worker))
            assert {"VLLM_HOST_IP"} <= {e["name"] for e in worker["env"]}
            assert {"kubernetes.yaml", "node-head.sh", "node-worker.sh", "gptoss.plan.json"} <= written
            head = (out / "node-head.sh").read_text()
            assert "--node-rank 0" in head and "--worker-address" in head
        assert main(["render", "docker", "--out", str(tmp_path / "d"), *SETUPS[setup]]) == 2
        assert f"spans {span} nodes" in capsys.readouterr().err
        return
    _pvc, deployment, _service = docs
    if plan["nodes"] > 1:  # replicas of a one-node server: one per node, sharing the weights' cache
        assert deployment["spec"]["replicas"] == plan["nodes"]
        assert _pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert "--pipeline-parallel-size" not in args and "--nnodes" not in args
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert contains(container["command"], args)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
