"""One engine across machines: each node's `gptoss serve` runs its part and a small status agent.

vLLM's own multi-node runtime (`--nnodes N --node-rank R --master-addr A --master-port P`, `--headless` on every
node but the head) has no liveness check of remote workers: the head notices a dead node only at its next step,
after VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS (300 s by default) when the output stage was on it, and an idle head
keeps /health at 200 (vllm/v1/executor/multiproc_executor.py: the worker monitor watches local processes only).
So every node's `gptoss serve` answers `GET /gptoss/node` on its own address with its state, and:

- the head polls each worker's agent: an engine that exited, or an agent that stops answering, is reported by node
  rank and address (the head's log and exit status say which node);
- a restart is ordered and pulled, never pushed: the head raises its group epoch and stops its engine; each worker
  sees the new epoch on the head's agent, stops its engine and starts a new one (workers first); the head starts
  its engine once every worker reports the new epoch. Nothing on the network can tell a node to do anything.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from gptoss_deploy.errors import InputError

AGENT_PATH = "/gptoss/node"
DEFAULT_MASTER_PORT = 29501     # vLLM's own default (vllm/config/parallel.py, master_port)
DEFAULT_AGENT_PORT = 29599
LOST_AFTER_S = 6.0              # a worker agent silent this long is reported lost
JOIN_GRACE_S = 600.0            # a worker agent never seen yet: its `gptoss serve` may still be starting
POLL_S = 1.0


@dataclass(frozen=True)
class NodeRole:
    """This machine's part of a multi-node server."""

    rank: int
    nnodes: int
    master_addr: str
    master_port: int = DEFAULT_MASTER_PORT
    address: str = ""                 # this node's own address (VLLM_HOST_IP); the head's is master_addr
    workers: tuple[str, ...] = ()     # the head: worker node addresses, by rank 1..N-1
    agent_port: int = DEFAULT_AGENT_PORT

    @property
    def head(self) -> bool:
        """Node rank 0 serves the API."""
        return self.rank == 0

    @property
    def own_address(self) -> str:
        """The address this node's processes bind to and advertise."""
        return self.address or (self.master_addr if self.head else "")

    def validate(self) -> None:
        """Clear errors for roles that cannot work."""
        if not 0 <= self.rank < self.nnodes:
            raise InputError(f"--node-rank {self.rank} is outside 0..{self.nnodes - 1} (the plan spans "
                             f"{self.nnodes} nodes)", hint="give the head 0 and each worker its own rank")
        if not self.own_address:
            raise InputError("a worker node needs --node-address: the address its engine binds and advertises "
                             "(vLLM's VLLM_HOST_IP)", hint="pass this machine's address on the network the head sees")
        if self.head and len(self.workers) != self.nnodes - 1:
            raise InputError(f"the head needs the {self.nnodes - 1} worker address(es) to watch them; got "
                             f"{len(self.workers)}", hint="pass --worker-address ADDR once per worker node, by rank")


@dataclass
class NodeStatus:
    """What a node's agent reports."""

    rank: int
    epoch: int = 0
    state: str = "starting"          # starting, running, exited, restarting, stopping
    exit_code: int | None = None
    pid: int | None = None
    since: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        """The agent's JSON body."""
        return {"rank": self.rank, "epoch": self.epoch, "state": self.state, "exit_code": self.exit_code,
                "pid": self.pid, "since": self.since}


class NodeAgent:
    """`GET /gptoss/node` on this node's address: its rank, epoch and engine state (read-only)."""

    def __init__(self, host: str, port: int, status: Callable[[], NodeStatus]) -> None:
        self.status = status
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != AGENT_PATH:
                    self.send_error(404)
                    return
                body = json.dumps(agent.status().as_json()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise InputError(f"the node agent cannot listen on {host}:{port}: {exc.strerror}",
                             hint="pass a free --node-agent-port (the same on every node)") from None
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="node-agent", daemon=True)

    def start(self) -> NodeAgent:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def agent_url(address: str, port: int) -> str:
    """A node agent's status URL."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{AGENT_PATH}"


def read_status(client: httpx.Client, address: str, port: int) -> NodeStatus | None:
    """A node's status, or None when its agent does not answer."""
    try:
        reply = client.get(agent_url(address, port), timeout=2.0)
        body = reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    try:
        return NodeStatus(rank=int(body["rank"]), epoch=int(body["epoch"]), state=str(body["state"]),
                          exit_code=body.get("exit_code"), pid=body.get("pid"), since=float(body.get("since", 0)))
    except (KeyError, TypeError, ValueError):
        return None


class WorkerWatch:
    """The head's view of its workers: who is up, who was lost and why."""

    def __init__(self, role: NodeRole, client: httpx.Client, clock: Callable[[], float] = time.monotonic) -> None:
        self.role = role
        self.client = client
        self.clock = clock
        self.started = clock()
        self.last_seen: dict[int, float] = {}
        self.seen: dict[int, NodeStatus] = {}

    def address(self, rank: int) -> str:
        """A worker's address by rank."""
        return self.role.workers[rank - 1]

    def poll(self, epoch: int) -> str | None:
        """None while every worker's engine runs in `epoch`; else which node is lost and why."""
        for rank in range(1, self.role.nnodes):
            address = self.address(rank)
            status = read_status(self.client, address, self.role.agent_port)
            now = self.clock()
            if status is None:
                seen = rank in self.last_seen
                silent = now - self.last_seen.get(rank, self.started)
                if silent > (LOST_AFTER_S if seen else JOIN_GRACE_S):
                    return (f"worker node {rank} ({address}) lost: its gptoss agent at "
                            f"{agent_url(address, self.role.agent_port)} has not answered for {silent:.0f} s"
                            + ("" if seen else " (it never answered: is `gptoss serve --node-rank` running there?)"))
                continue
            self.last_seen[rank] = now
            self.seen[rank] = status
            if status.state == "exited" and status.epoch == epoch:
                return (f"worker node {rank} ({address}) lost: its vLLM engine exited with code "
                        f"{status.exit_code}")
        return None

    def all_in(self, epoch: int) -> bool:
        """Every worker runs (or starts) its engine for `epoch`."""
        for rank in range(1, self.role.nnodes):
            status = read_status(self.client, self.address(rank), self.role.agent_port)
            if status is None or status.epoch != epoch or status.state not in ("starting", "running"):
                return False
            self.last_seen[rank] = self.clock()
        return True
