"""What every engine knows, as one abstract class: `Engine`.

An engine module (engines/vllm.py, engines/llamacpp.py) implements all of it, so everything about one engine
lives in one place and nothing outside `engines/` compares an engine's name:

- planning: whether it can serve a model, its preference on a host, and the plan (delegated to plan/);
- the command: argv and env from a plan's typed settings, built once, late, for a `Binding` (where the process
  runs and how it is reached); never a shell string; the key never on argv (env or a 0600 key file);
- the install: locate, probe (version, --help), adapt the argv to what the installed build knows;
- the running server: readiness routes, routes a security probe must cover, how to recognise it, Prometheus
  counters and monitoring queries, tokenize/detokenize request shapes;
- the log: patterns -> startup phases, facts and failure classes; plan-vs-actual rows;
- deployment: container images per platform with their real ENTRYPOINT, the Nix package, `try` ladder rungs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, Field

from gptoss_deploy.errors import InputError

if TYPE_CHECKING:
    from gptoss_deploy.engines.probe import EngineInfo
    from gptoss_deploy.hardware.types import Host
    from gptoss_deploy.models.spec import ModelSpec
    from gptoss_deploy.plan.types import Plan, PlanRequest
    from gptoss_deploy.serve.nodes import NodeRole

SERVED_NAME_DEFAULT = "gpt-oss"
HF_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


# -- endpoint, binding and launch --------------------------------------------------------------------------------
class Endpoint(BaseModel):
    """Where the server listens and what it answers to."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    served_name: str = SERVED_NAME_DEFAULT
    api_key: str | None = Field(None, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for requests to this endpoint."""
        return bearer(self.api_key)

    @property
    def base_url(self) -> str:
        """http://host:port as a client on this machine reaches it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


class Binding(BaseModel):
    """What the runtime owns in an engine command: the program, the model as the process sees it, the address,
    and where a key file sits. The plan owns everything else."""

    program: list[str] = Field(min_length=1)
    model: str | None = Field(None, description="model path or id as the process sees it (default: the plan's)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    served_name: str = SERVED_NAME_DEFAULT
    key_file: str | None = Field(None, description="the API key file's path as the process sees it")


class Launch(BaseModel):
    """A ready-to-run engine command."""

    engine: str
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict, repr=False, description="variables set on top of os.environ")
    files: list[str] = Field(default_factory=list, description="files written for the launch (key files)")
    secret_env: list[str] = Field(default_factory=list, description="env names whose values are secrets")

    def masked_env(self) -> dict[str, str]:
        """The env with secrets replaced by '***' (for logs, --dry-run and artifacts)."""
        hidden = set(self.secret_env) | set(HF_TOKEN_ENV)
        return {k: ("***" if k in hidden else v) for k, v in self.env.items()}

    def remove_files(self) -> None:
        """Delete the files written for the launch (key files); safe to call more than once."""
        for path in self.files:
            Path(path).unlink(missing_ok=True)

    def describe(self) -> str:
        """The command as a person would read it, secrets masked."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.masked_env().items()))
        return (env + " " if env else "") + shlex.join(self.argv)


def bearer(api_key: str | None) -> dict[str, str]:
    """The Authorization header for a key (none without one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_auth_off_loopback(endpoint: Endpoint) -> None:
    """Refuse an open endpoint on a non-loopback address."""
    if not is_loopback(endpoint.host) and not endpoint.api_key:
        raise InputError(f"refusing to listen on {endpoint.host} without an API key: anyone who can reach it could "
                         "use the model", hint="set API_KEY (or --api-key-file), or bind to 127.0.0.1")


def hf_token_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """HF token variables to pass through (never printed: masked_env hides them)."""
    source = os.environ if environ is None else environ
    return {k: source[k] for k in HF_TOKEN_ENV if source.get(k)}


def private_run_dir() -> Path:
    """A folder only this user can list (0700), for the files a launch writes."""
    from gptoss_deploy.vocab import cache_root

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "gptoss-deploy" if runtime and Path(runtime).is_dir() else cache_root() / "run"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    return folder


def write_key_file(api_key: str, directory: Path | None = None) -> Path:
    """A 0600 file holding the API key (for engines that read it from a file), by default in a 0700 folder of
    ours ($XDG_RUNTIME_DIR/gptoss-deploy, else the cache's run/): never in a world-listable folder like /tmp."""
    if directory is None:
        directory = private_run_dir()
    handle, name = tempfile.mkstemp(prefix="gptoss-key-", dir=directory)
    os.fchmod(handle, 0o600)
    with os.fdopen(handle, "w") as sink:
        sink.write(api_key + "\n")
    return Path(name)


# -- the log vocabulary ------------------------------------------------------------------------------------------
class Phase(StrEnum):
    """Startup phases in the order an engine goes through them."""

    STARTING = "starting"
    DOWNLOAD = "download"
    WEIGHTS = "loading weights"
    COMPILE = "compiling"
    PROFILE = "profiling memory"
    KV_CACHE = "allocating KV cache"
    CUDA_GRAPHS = "capturing CUDA graphs"
    API = "starting API server"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Pattern:
    """One log pattern: the phase it starts (or None), the failure class it reports, and facts it captures."""

    regex: re.Pattern[str]
    phase: Phase | None = None
    failure: str | None = None
    accumulate: bool = False  # numeric facts add up over matching lines (buffers on several devices)


def pattern(regex: str, phase: Phase | None = None, failure: str | None = None, accumulate: bool = False) -> Pattern:
    """A compiled log pattern."""
    return Pattern(re.compile(regex), phase, failure, accumulate)


class Comparison(BaseModel):
    """One quantity, planned and actual."""

    quantity: str
    planned: str
    actual: str
    relative_difference: float | None = None
    status: Literal["match", "differs", "not logged"]


TOLERANCE = 0.05  # relative difference still called a match for estimated quantities


def numeric_row(quantity: str, planned: float, actual: str | None, fmt: str) -> Comparison:
    """A planned number against a logged one (a match within 5 %)."""
    if actual is None:
        return Comparison(quantity=quantity, planned=fmt.format(planned), actual="-", status="not logged")
    value = float(actual.replace(",", ""))
    difference = (value - planned) / planned if planned else 0.0
    status: Literal["match", "differs"] = "match" if abs(difference) <= TOLERANCE else "differs"
    return Comparison(quantity=quantity, planned=fmt.format(planned), actual=fmt.format(value),
                      relative_difference=round(difference, 4), status=status)


def exact_row(quantity: str, planned: str, actual: str | None) -> Comparison:
    """A planned value against a logged one (equal ignoring case)."""
    if actual is None:
        return Comparison(quantity=quantity, planned=planned, actual="-", status="not logged")
    status: Literal["match", "differs"] = "match" if planned.lower() == actual.lower() else "differs"
    return Comparison(quantity=quantity, planned=planned, actual=actual, status=status)


# -- deployment --------------------------------------------------------------------------------------------------
class ContainerImage(BaseModel):
    """An image we emit, as its own Dockerfile builds it: what its runtime starts (ENTRYPOINT + CMD), its user,
    working folder and environment, its own HEALTHCHECK, and the platforms it is published for."""

    name: str
    entrypoint: list[str]
    cmd: list[str] = Field(default_factory=list)
    program: list[str] = Field(description="how our rendered command starts the engine inside it")
    user: str = "root"
    home: str = "/root"
    workdir: str = "/"
    port: int = Field(8000, description="the port the engine listens on inside the container (the image's own "
                                        "HEALTHCHECK, if any, probes this one)")
    env: dict[str, str] = Field(default_factory=dict)
    healthcheck: list[str] | None = Field(None, description="the image's own HEALTHCHECK (exec form), inherited by "
                                                            "runtimes unless the artifact sets one")
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64"])
    pinned: bool = Field(True, description="the tag names a release (not latest / a moving tag)")
    has_python: bool = Field(description="python3 in the image (health checks, `gptoss serve` images)")
    has_curl: bool = False
    source: str
    note: str | None = None


class Panel(BaseModel):
    """A dashboard panel: its title and one PromQL query per series it names (title "a / b" -> two queries)."""

    title: str
    exprs: list[str] = Field(min_length=1)
    legends: list[str] = Field(default_factory=list)


class AlertRule(BaseModel):
    """A Prometheus alert on the engine's own metrics."""

    alert: str
    expr: str
    summary: str
    for_: str = Field("5m", alias="for")
    severity: str = "warning"

    model_config = {"populate_by_name": True}


class Monitoring(BaseModel):
    """What monitoring reads from the engine's /metrics."""

    panels: list[Panel]
    rules: list[AlertRule]
    needs_key: bool = Field(description="/metrics requires the API key (the scrape sends it)")
    exported: list[str] = Field(default_factory=list, description="metric families the engine's /metrics serves "
                                                                  "(read off the real engine; checked by a test)")


class RungSpec(BaseModel):
    """An engine-specific fallback step for `gptoss try`: what to change and what it guards against."""

    name: str
    expected: str
    settings: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)


# -- the engine --------------------------------------------------------------------------------------------------
class Engine(ABC):
    """Everything the tool knows about one inference engine (see the module docstring)."""

    name: ClassVar[str]
    label: ClassVar[str]
    multi_node: ClassVar[bool] = False
    location_flag: ClassVar[str]
    location_help: ClassVar[str]
    executable_name: ClassVar[str]  # shown in commands when the engine is not installed here (dry runs)
    lane_executable: ClassVar[str | None] = None  # the engine lane's field holding its executable (lane/__init__.py)
    fallback: ClassVar[str | None] = None  # set on a broad fallback engine: what its `try` rung guards against
    key_env: ClassVar[str | None] = None  # the key reaches the engine through this variable ...
    key_file_flag: ClassVar[str | None] = None  # ... or through a 0600 file named by this flag
    key_variable: ClassVar[str | None] = None  # a variable the engine also reads the key from (env-only platforms)
    key_caveat: ClassVar[str | None] = None  # what the engine's key does not guard (said wherever a key is deployed)
    secret_flags: ClassVar[tuple[str, ...]] = ()
    health_path: ClassVar[str] = "/health"
    models_path: ClassVar[str] = "/v1/models"
    security_routes: ClassVar[tuple[tuple[str, str], ...]] = ()
    counters: ClassVar[dict[str, str]] = {}
    gauges: ClassVar[dict[str, str]] = {}  # /metrics gauge -> "running" / "waiting" (the watchdog's queue)
    progress_counter: ClassVar[str | None] = None  # a /metrics counter that grows while the engine makes progress
    live_gauges: ClassVar[dict[str, str]] = {}  # more gauges `gptoss ps` / `top` show (kv_usage)
    histograms: ClassVar[dict[str, str]] = {}  # /metrics histograms -> "ttft" / "itl" (percentiles in `top`)
    log_patterns: ClassVar[tuple[Pattern, ...]] = ()

    # planning
    @abstractmethod
    def can_serve(self, model: ModelSpec) -> str | None:
        """None when this engine can load the model (or a known form of it); else why not."""

    @abstractmethod
    def preference(self, host: Host, model: ModelSpec) -> tuple[int, str]:
        """(rank, why) for choosing an engine on this host: lower ranks are tried first with --engine auto."""

    @abstractmethod
    def plan(self, model: ModelSpec, host: Host, request: PlanRequest, installed_version: str | None,
             with_alternatives: bool) -> Plan:
        """The plan for this engine (any verdict); InputError when the request cannot be planned at all."""

    @abstractmethod
    def uses_gpu(self, plan: Plan) -> bool:
        """True when the plan puts work on a GPU (worth reading GPU memory during startup)."""

    @abstractmethod
    def gpus_used(self, plan: Plan, host: Host) -> int:
        """GPUs the server process uses on one node (0 on a CPU)."""

    @abstractmethod
    def weights_bytes(self, plan: Plan) -> int:
        """The model's resident weights in total (cache volumes and start-up deadlines are sized from it)."""

    @abstractmethod
    def version_of(self, plan: Plan) -> str | None:
        """The engine release the plan was made for (None when the plan pins none)."""

    # the command
    @abstractmethod
    def engine_args(self, plan: Plan) -> list[str]:
        """The planned flags: everything but the program, the model and the endpoint."""

    @abstractmethod
    def engine_env(self, plan: Plan) -> dict[str, str]:
        """The planned environment."""

    @abstractmethod
    def command(self, plan: Plan, binding: Binding) -> list[str]:
        """The full argv: program, model, endpoint, then the planned flags (the one builder)."""

    @abstractmethod
    def display_command(self, plan: Plan) -> list[str]:
        """The command as people type it (`vllm serve MODEL ...`, `llama-server -m ...`), endpoint left out."""

    @abstractmethod
    def default_program(self, executable: str) -> list[str]:
        """How to start the engine with this installed executable (an interpreter, a binary)."""

    @abstractmethod
    def model_reference(self, plan: Plan) -> str:
        """The model as the plan names it for this engine (Hub id, path, hf:<repo>)."""

    def nodes_per_server(self, plan: Plan) -> int:
        """Machines one server of this plan spans (1: every node, if several, runs its own replica)."""
        return 1

    def node_args(self, plan: Plan, rank: str, master_addr: str, master_port: int) -> list[str] | None:
        """Flags that make one node's command a part of the server (rank "0" = the head), or None when the plan
        joins its nodes another way (a Ray cluster)."""
        return None

    def node_launch(self, launch: Launch, plan: Plan, role: NodeRole) -> Launch:
        """The launch of one node of a server that spans machines (engines with `multi_node` override this)."""
        raise InputError(f"{self.label} does not run one server across machines",
                         hint="plan one node, or use an engine that supports it")

    def launch(self, plan: Plan, endpoint: Endpoint, executable: str, model_path: str | None = None,
               key_dir: Path | None = None) -> Launch:
        """A launch on this machine: the command, the planned env, HF tokens, and the key by env or 0600 file."""
        if plan.engine != self.name:
            raise InputError(f"the plan's engine is {plan.engine or 'none'}, not {self.label}",
                             hint=f"plan with --engine {self.name}, or launch with the plan's engine")
        require_auth_off_loopback(endpoint)
        env = self.engine_env(plan) | hf_token_env()
        files: list[str] = []
        key_file = None
        if endpoint.api_key and self.key_env:
            env[self.key_env] = endpoint.api_key
        elif endpoint.api_key and self.key_file_flag:
            key_file = str(write_key_file(endpoint.api_key, key_dir))
            files.append(key_file)
        binding = Binding(program=self.default_program(executable), model=model_path, host=endpoint.host,
                          port=endpoint.port, served_name=endpoint.served_name, key_file=key_file)
        return Launch(engine=self.name, argv=self.command(plan, binding), env=env, files=files,
                      secret_env=[self.key_env] if self.key_env else [])

    # the install
    @abstractmethod
    def locate(self, location: str | None) -> str:
        """The engine's executable here (EngineError with a fix when there is none)."""

    @abstractmethod
    def installed_version(self, executable: str) -> str:
        """The installed release (cheap: no --help); EngineError when the engine is not installed there."""

    @abstractmethod
    def probe(self, executable: str) -> EngineInfo:
        """Version and --help of the installed engine (cached)."""

    @abstractmethod
    def adapt(self, launch: Launch, info: EngineInfo) -> tuple[Launch, list[str]]:
        """Fit the launch to the installed build; notes say what changed."""

    # the running server
    @abstractmethod
    def identify(self, http: httpx.Client, base_url: str, headers: dict[str, str]) -> str | None:
        """This engine's version when the server at base_url is this engine; None otherwise."""

    @abstractmethod
    def tokenize_body(self, model: str, text: str) -> dict[str, Any]:
        """The body of POST /tokenize."""

    @abstractmethod
    def detokenize_body(self, model: str, tokens: list[int]) -> dict[str, Any]:
        """The body of POST /detokenize."""

    def detokenized_text(self, reply: dict[str, Any]) -> str:
        """The text in a /detokenize answer."""
        return str(reply.get("prompt", reply.get("content", "")))

    @abstractmethod
    def monitoring(self, job: str) -> Monitoring:
        """Dashboard panels and alert rules on this engine's metric names."""

    # the log
    @abstractmethod
    def plan_vs_actual(self, plan: Plan, facts: dict[str, str]) -> list[Comparison]:
        """Each planned quantity the log can show, next to what it showed."""

    # deployment
    @abstractmethod
    def image(self, plan: Plan, host: Host) -> ContainerImage:
        """The container image for this plan's platform."""

    @abstractmethod
    def nix_package(self, host: Host) -> tuple[str, str]:
        """(Nix expression of the package, what it is) for the NixOS module."""

    @abstractmethod
    def describe(self, plan: Plan) -> str:
        """The plan's settings in one line (artifact headers, summaries)."""

    def log_level_env(self, level: str) -> dict[str, str]:
        """Variables that set the engine's log level (none by default)."""
        return {}

    def hub_download(self, plan: Plan, model: ModelSpec) -> tuple[str, int | None] | None:
        """(Hub repo, expected bytes) when the engine downloads the model into the HF cache while it starts."""
        return None

    @abstractmethod
    def with_settings(self, plan: Plan, values: dict[str, Any]) -> Plan:
        """The plan with these settings forced (names as `gptoss serve` spells them); InputError for others."""

    def ladder(self, plan: Plan, on_gpu: bool) -> list[RungSpec]:
        """Fallback rungs for `gptoss try` after the planned one (none by default)."""
        return []

    def lane_extras(self) -> tuple[list[str], dict[str, str]]:
        """(argv, env) the engine lane adds for the tiny model on a CPU (nothing by default)."""
        return [], {}


Factory = Callable[[], Engine]
