"""A server across nodes: node roles, each node's status agent, and how the head tells a lost worker."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from gptoss_deploy.cli.main import main
from gptoss_deploy.errors import InputError
from gptoss_deploy.hardware.profiles import GpuDescription, describe_gpu
from gptoss_deploy.hardware.types import Host
from gptoss_deploy.models import catalog
from gptoss_deploy.plan.planner import make_plan
from gptoss_deploy.plan.types import PlanRequest
from gptoss_deploy.planning import save_plan
from gptoss_deploy.serve import nodes
from gptoss_deploy.serve.nodes import NodeAgent, NodeRole, NodeStatus, WorkerWatch, read_status

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spanning_plan_file(tmp_path: Path) -> Path:
    gpu = describe_gpu(GpuDescription(name="small", memory_gib=8, compute_capability="9.0", bandwidth_gbs=1000))
    spec = catalog.lookup("gpt-oss-120b")
    assert spec is not None
    plan = make_plan(spec, Host(gpus=[gpu] * 8, source="test"), PlanRequest(nodes=2, engine="vllm"), {})
    assert plan.vllm is not None and plan.vllm.nnodes == 2
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    return path


def test_roles_that_cannot_work_are_clear_errors() -> None:
    with pytest.raises(InputError, match="outside 0..1"):
        NodeRole(rank=2, nnodes=2, master_addr="10.0.0.1", address="10.0.0.3").validate()
    with pytest.raises(InputError, match="--node-address"):
        NodeRole(rank=1, nnodes=2, master_addr="10.0.0.1").validate()
    with pytest.raises(InputError, match="worker address"):
        NodeRole(rank=0, nnodes=3, master_addr="10.0.0.1", workers=("10.0.0.2",)).validate()
    NodeRole(rank=0, nnodes=2, master_addr="10.0.0.1", workers=("10.0.0.2",)).validate()


def test_agent_reports_the_live_status_and_nothing_else() -> None:
    port = free_port()
    status = NodeStatus(rank=1, epoch=3, state="running", pid=1234)
    agent = NodeAgent("127.0.0.1", port, lambda: status).start()
    try:
        with httpx.Client() as client:
            seen = read_status(client, "127.0.0.1", port)
            assert seen is not None and (seen.rank, seen.epoch, seen.state, seen.pid) == (1, 3, "running", 1234)
            status.state, status.exit_code = "exited", -9
            seen = read_status(client, "127.0.0.1", port)
            assert seen is not None and (seen.state, seen.exit_code) == ("exited", -9)
            assert client.get(f"http://127.0.0.1:{port}/other").status_code == 404
            assert client.post(f"http://127.0.0.1:{port}{nodes.AGENT_PATH}").status_code == 501  # read-only
    finally:
        agent.close()
    with httpx.Client() as client:
        assert read_status(client, "127.0.0.1", port) is None


def test_the_head_names_the_worker_whose_engine_exited() -> None:
    port = free_port()
    status = NodeStatus(rank=1, epoch=0, state="running")
    agent = NodeAgent("127.0.0.2", port, lambda: status).start()
    role = NodeRole(rank=0, nnodes=2, master_addr="127.0.0.1", workers=("127.0.0.2",), agent_port=port)
    try:
        with httpx.Client() as client:
            watch = WorkerWatch(role, client)
            assert watch.poll(epoch=0) is None and watch.all_in(0)
            status.state, status.exit_code = "exited", -9
            assert watch.poll(epoch=0) == "worker node 1 (127.0.0.2) lost: its vLLM engine exited with code -9"
            assert watch.poll(epoch=1) is None  # an exit in an older epoch is not news
            assert not watch.all_in(1)
    finally:
        agent.close()


def test_the_head_names_a_silent_worker_after_the_grace() -> None:
    now = [1000.0]
    role = NodeRole(rank=0, nnodes=2, master_addr="127.0.0.1", workers=("127.0.0.2",), agent_port=free_port())
    with httpx.Client() as client:
        watch = WorkerWatch(role, client, clock=lambda: now[0])
        assert watch.poll(0) is None  # never seen: its gptoss serve may still be starting
        now[0] += nodes.JOIN_GRACE_S + 1
        lost = watch.poll(0)
        assert lost is not None and "worker node 1 (127.0.0.2) lost" in lost and "never answered" in lost
        watch.last_seen[1] = now[0]
        now[0] += nodes.LOST_AFTER_S + 1
        lost = watch.poll(0)
        assert lost is not None and "has not answered for" in lost and "never" not in lost


def test_serve_flags_for_nodes_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gptoss_deploy.planning import HostChoice, plan_for

    made = plan_for("gpt-oss-20b", HostChoice(cpu_only=True), PlanRequest(engine="vllm", nodes=2,
                                                                          pipeline_parallel_size=2),
                    detect_installed=False, with_alternatives=False).plan  # this machine, stages on two of them
    assert made.vllm is not None and made.vllm.nnodes == 2, made.reasons
    plan = tmp_path / "cpu-plan.json"
    save_plan(made, plan)
    assert main(["serve", "--plan", str(plan), "--dry-run"]) == 2
    assert "across 2 nodes" in capsys.readouterr().err
    assert main(["serve", "--model", "gpt-oss-20b", "--node-rank", "0", "--master-addr", "10.0.0.1", "--dry-run"]) == 2
    assert "--plan" in capsys.readouterr().err
    assert main(["serve", "--plan", str(plan), "--master-addr", "10.0.0.1", "--dry-run"]) == 2
    assert "need --node-rank" in capsys.readouterr().err


def test_node_commands_are_vllm_serve_with_the_node_flags(tmp_path: Path) -> None:
    from gptoss_deploy.engines import Endpoint, registry
    from gptoss_deploy.engines.vllm import SERVE_LAUNCHER
    from gptoss_deploy.planning import load_plan

    plan = load_plan(spanning_plan_file(tmp_path))
    engine = registry.get("vllm")
    launch = engine.launch(plan, Endpoint(port=9000), "python3")
    head = engine.node_launch(launch, plan, NodeRole(0, 2, "10.0.0.1", workers=("10.0.0.2",)))
    worker = engine.node_launch(launch, plan, NodeRole(1, 2, "10.0.0.1", address="10.0.0.2"))
    assert head.argv[:3] == ["python3", "-c", SERVE_LAUNCHER]  # `vllm serve` (the API module ignores --headless)
    assert head.argv[-6:] == ["--node-rank", "0", "--master-addr", "10.0.0.1", "--master-port", "29501"]
    assert worker.argv[-7:] == ["--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "29501",
                                "--headless"]
    assert head.env["VLLM_HOST_IP"] == "10.0.0.1" and worker.env["VLLM_HOST_IP"] == "10.0.0.2"
    args = plan.engine_args
    assert any(head.argv[i:i + len(args)] == args for i in range(len(head.argv)))  # the planned flags, unchanged
    with pytest.raises(InputError, match="spans 2 nodes, not 3"):
        engine.node_launch(launch, plan, NodeRole(0, 3, "10.0.0.1", workers=("a", "b")))
