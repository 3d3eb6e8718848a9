"""Every rendered deployment, started for real in podman with stand-in images that carry the engine lane.

For each target: render (the resolver's checks pass) -> build / run it the way its runtime would -> the container
becomes healthy by the artifact's own health check (or the image's, run with `podman healthcheck run`) -> `gptoss
check` passes with the key given the way the artifact gives it -> without the key the API answers 401 -> the
documented stop leaves no container. What the harness changes, it says: GPU requests are absent because the plan
is for this CPU host; Kubernetes gets a hostPort on 127.0.0.1 (podman 4.3's play kube cannot publish otherwise);
quadlet's Notify=healthy and --cgroups=split are dropped (podman 4.3 has no --sdnotify=healthy, and there is no
systemd cgroup to split; the health check itself is run);
play kube gets the secret files by hostPath (podman 4.3.1 crashes on secret volumes).

The three defects issue #15 names are regression tests here (quadlet HealthCmd, the image's HEALTHCHECK without
the key, RunPod's start command after the image's ENTRYPOINT), statically and live."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gptoss_deploy.engines import registry
from gptoss_deploy.lane import Lane
from gptoss_deploy.lane.server import free_port, tiny_plan
from gptoss_deploy.plan.types import Plan
from gptoss_deploy.render import runtime
from gptoss_deploy.render.deployment import Deployment, RenderOptions
from gptoss_deploy.render.output import render, validate, write
from tests import containers
from tests.lane_support import data_of

pytestmark = pytest.mark.skipif(containers.unavailable() is not None, reason=str(containers.unavailable()))
PROJECT = Path(__file__).resolve().parents[2]


class Setup:
    """One engine's rendered deployment on this CPU host: plan, deployment, artifacts, secrets, port."""

    def __init__(self, lane: Lane, engine: str, root: Path, plan: Plan | None = None, **options: object) -> None:
        self.lane, self.root, self.engine = lane, root, engine
        self.plan = plan or tiny_plan(lane, engine)
        self.key = "sk-ct-" + secrets.token_hex(12)
        self.key_file = root / "api_key"
        self.key_file.write_text(self.key + "\n")
        self.key_file.chmod(0o600)
        self.token_file = root / "hf_token"
        self.token_file.write_text("hf_ctNotARealToken000\n")
        self.port = free_port()
        self.name = f"gptoss-ct-{engine}-{secrets.token_hex(3)}"
        assert self.plan.hardware is not None
        self.options = RenderOptions(port=self.port, api_key_file=str(self.key_file),
                                     hf_token_file=str(self.token_file), name=self.name,
                                     served_name=f"tiny-{engine}", **options)  # type: ignore[arg-type]
        self.deployment, artifacts = render(["all"], self.plan, self.plan.hardware, self.options,
                                            {"gptoss_path": "/opt/venv/bin/gptoss"})
        self.artifacts = {a.name: a.text for a in artifacts}
        self.out = root / "out"
        write(artifacts, self.out, force=False)
        self.validation = validate(artifacts, self.deployment, self.plan)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# vLLM's key guards /v1, /v2, /inference and /cohere only: its SageMaker POST /invocations runs inference without
# it (vllm/entrypoints/serve/middleware/authenticate.py). `gptoss check` fails it; render says so (key_caveat).
KNOWN_OPEN = {"vllm": {"security/POST /invocations"}, "llamacpp": set()}


# Every target runs for real with llama.cpp (seconds each). A vLLM-CPU run costs ~2 min (start + `gptoss check`),
# so the default (CI) runs vLLM where its artifact starts differently from the others: RunPod (dockerArgs after
# `vllm serve`), the image (HEALTHCHECK with the key, `gptoss serve --plan` inside) and systemd; the monitoring test
# runs vLLM's docker-run.sh to its healthy state. The other vLLM artifacts share those mechanisms, are resolved
# statically on every render (the quadlet HealthCmd defect has its own static regression test), and run with
# GPTOSS_CONTAINERS=all (bench/render_containers.py measures both sets: bench/results/render_containers.json).
FULL = os.environ.get("GPTOSS_CONTAINERS") == "all"
VLLM_FULL_ONLY = pytest.param("vllm", marks=pytest.mark.skipif(
    not FULL, reason="vLLM run of this target only with GPTOSS_CONTAINERS=all (resolved statically; llama.cpp runs)"))


def gptoss_check(setup: Setup) -> dict:
    """`gptoss check` against the deployment, as a client would; every check passes but the engine's known open
    route (which the render notes name)."""
    argv = ["check", setup.base_url, "--api-key-file", str(setup.key_file), "--json"]
    out = subprocess.run([str(PROJECT / ".venv/bin/gptoss"), *argv], capture_output=True, text=True, timeout=900)
    report = data_of(out.stdout, "check")
    failed = {f"{r['group']}/{r['name']}" for r in report["results"] if r["status"] == "fail"}
    assert failed == KNOWN_OPEN[setup.engine], (failed, out.stderr[-1500:])
    assert out.returncode == (1 if failed else 0)
    if failed:
        assert any("/invocations" in note for note in setup.deployment.notes)
    return report


def assert_closed_without_key(setup: Setup) -> None:
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions")):
        reply = httpx.request(method, setup.base_url + path, json={}, timeout=30)
        assert reply.status_code == 401, (method, path, reply.status_code)


def wait_http(setup: Setup, timeout_s: float = 600) -> None:
    """/health answers 200 (for runtimes with no health check); fails at once when the container stopped."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        running = containers.podman("inspect", "--format", "{{.State.Running}}", setup.name, check=False).stdout
        if running.strip() == "false":
            raise AssertionError(f"{setup.name} stopped: {containers.logs(setup.name)}")
        try:
            if httpx.get(setup.base_url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise AssertionError(f"{setup.base_url}/health not 200 after {timeout_s}s")


def run_shell(command: list[str] | str, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(command, cwd=cwd, env=os.environ | containers.environment() | (env or {}),
                         capture_output=True, text=True, timeout=timeout, shell=isinstance(command, str))
    assert out.returncode == 0, f"{command}: {out.stdout[-2000:]} {out.stderr[-2000:]}"
    return out


def serve_and_check(setup: Setup, container: str, health: bool = True) -> None:
    """The container becomes healthy by its own check, `gptoss check` passes, the API is closed without the key."""
    try:
        if health:
            containers.wait_healthy(container)
        else:
            wait_http(setup)
        gptoss_check(setup)
        assert_closed_without_key(setup)
    except BaseException:
        print(containers.logs(container, 80))
        raise


@pytest.fixture(scope="module")
def shared(lane: Lane) -> Iterator[Lane]:
    """The lane with its model, GGUF and vocab hard-linked under /srv: a deployment reads them from outside any
    home folder (a systemd unit with ProtectHome=yes could not see /root/.cache, and the resolver says so)."""
    root = Path("/srv") / f"gptoss-ct-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    paths = {}
    for field in ("model", "vocab_dir", "gguf"):
        source = Path(getattr(lane, field))
        subprocess.run(["cp", "-al", str(source), str(root / source.name)], check=True)
        # readable by the unprivileged users the artifacts run as (safetensors saves 0600 via a temporary file)
        subprocess.run(["chmod", "-R", "a+rX", str(root / source.name)], check=True)
        paths[field] = str(root / source.name)
    yield Lane(**(lane.model_dump() | paths))
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def vllm_image(lane: Lane) -> str:
    return containers.vllm_image(lane)


@pytest.fixture(scope="module")
def llama_image(lane: Lane) -> str:
    return containers.llama_image(lane)


@pytest.fixture
def vllm_setup(shared: Lane, vllm_image: str, tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(shared, "vllm", tmp_path)
    yield setup
    containers.cleanup(setup.name)


@pytest.fixture
def llama_setup(shared: Lane, llama_image: str, tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(shared, "llamacpp", tmp_path)
    yield setup
    containers.cleanup(setup.name)


def assert_resolved_ok(setup: Setup) -> None:
    failed = [v for v in setup.validation if v.status == "failed"]
    assert not failed, failed
    assert any(v.tool.startswith("resolved") for v in setup.validation)


# -- docker ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [VLLM_FULL_ONLY, "llamacpp"])
def test_docker_run_script_serves(engine: str, request: pytest.FixtureRequest) -> None:
    setup: Setup = request.getfixturevalue(f"{'vllm' if engine == 'vllm' else 'llama'}_setup")
    assert_resolved_ok(setup)
    # the script as written, with `docker` -> podman and the key/token files given as the script documents
    run_shell(["bash", str(setup.out / "docker-run.sh")], setup.out,
              {"API_KEY_FILE": str(setup.key_file), "HF_TOKEN_FILE": str(setup.token_file)})
    serve_and_check(setup, setup.name)
    run_shell(["bash", str(setup.out / "docker-run.sh")], setup.out,  # running it again replaces the container
              {"API_KEY_FILE": str(setup.key_file), "HF_TOKEN_FILE": str(setup.token_file)})
    run_shell(f"docker rm -f {setup.name}", setup.out)  # the documented stop
    assert containers.containers(setup.name) == []


# -- compose -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [VLLM_FULL_ONLY, "llamacpp"])
def test_compose_file_serves(engine: str, request: pytest.FixtureRequest) -> None:
    setup: Setup = request.getfixturevalue(f"{'vllm' if engine == 'vllm' else 'llama'}_setup")
    compose = [str(PROJECT / ".venv/bin/podman-compose"), "-f", str(setup.out / "docker-compose.yml")]
    try:
        run_shell([*compose, "up", "-d"], setup.out)
        serve_and_check(setup, setup.name)
    finally:
        run_shell([*compose, "down", "--volumes"], setup.out)
    assert containers.containers(setup.name) == []


# -- kubernetes --------------------------------------------------------------------------------------------------
def _kube_for_podman(setup: Setup) -> Path:
    """The manifest with what podman 4.3's play kube needs to reach it from the host: a hostPort on 127.0.0.1 (it
    has no --publish), the secret files by hostPath (it crashes on secret volumes), and the Secrets the manifest
    says the user creates, made from the key and token files."""
    docs = [doc for doc in yaml.safe_load_all((setup.out / "kubernetes.yaml").read_text()) if doc]
    for doc in docs:
        if doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container["ports"][0].update({"hostPort": setup.port, "hostIP": "127.0.0.1"})
            # podman 4.3.1's play kube dereferences nil on secret volumes (pkg/domain/infra/abi/play.go:455): the
            # same files are mounted by hostPath instead (the env's secretKeyRef it handles, from the Secret below)
            files = {f"{setup.name}-api-key": setup.key_file, f"{setup.name}-hf-token": setup.token_file}
            for volume in doc["spec"]["template"]["spec"]["volumes"]:
                if "secret" in volume:
                    volume["hostPath"] = {"path": str(files[volume.pop("secret")["secretName"]]), "type": "File"}
            for mount in container["volumeMounts"]:
                mount.pop("subPath", None)
    # the Secrets the user creates (kubectl create secret generic ...), as podman 4.3 reads them for secretKeyRef:
    # podman secrets holding the Secret's data as JSON (key -> base64)
    for name, key, path in ((f"{setup.name}-api-key", "api_key", setup.key_file),
                            (f"{setup.name}-hf-token", "hf_token", setup.token_file)):
        secret = {key: base64.b64encode(path.read_bytes()).decode()}
        containers.podman("secret", "rm", name, check=False)
        containers.podman("secret", "create", name, "-", input=json.dumps(secret))
    path = setup.out / "kubernetes-podman.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] != "Service"]))
    return path


@pytest.mark.parametrize("engine", [VLLM_FULL_ONLY, "llamacpp"])
def test_kubernetes_deployment_serves_in_podman_play_kube(engine: str, request: pytest.FixtureRequest) -> None:
    setup: Setup = request.getfixturevalue(f"{'vllm' if engine == 'vllm' else 'llama'}_setup")
    manifest = _kube_for_podman(setup)
    deployment = next(d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    try:
        containers.podman("play", "kube", str(manifest), timeout=900)
        name = next(n for n in containers.containers(setup.name) if n.endswith("-engine"))
        started = time.monotonic()
        while True:  # the startup probe's exact request, then the readiness probe's exact command, in the pod
            try:
                if httpx.get(setup.base_url + container["startupProbe"]["httpGet"]["path"], timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < 600, containers.logs(name)
            time.sleep(2)
        readiness = containers.podman("exec", name, *container["readinessProbe"]["exec"]["command"], check=False)
        assert readiness.returncode == 0, readiness.stderr + containers.logs(name)
        assert httpx.get(setup.base_url + container["livenessProbe"]["httpGet"]["path"], timeout=10).status_code == 200
        gptoss_check(setup)
        assert_closed_without_key(setup)
    finally:
        containers.podman("play", "kube", "--down", str(manifest), check=False, timeout=300)
        containers.podman("volume", "rm", "--force", f"{setup.name}-hf-cache", check=False)
        for suffix in ("api-key", "hf-token"):
            containers.podman("secret", "rm", f"{setup.name}-{suffix}", check=False)
    assert containers.containers(setup.name) == []


# -- quadlet -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [VLLM_FULL_ONLY, "llamacpp"])
def test_quadlet_unit_serves_as_its_podman_run(engine: str, request: pytest.FixtureRequest) -> None:
    setup: Setup = request.getfixturevalue(f"{'vllm' if engine == 'vllm' else 'llama'}_setup")
    unit = (setup.out / f"{setup.name}.container").read_text()
    argv = runtime.quadlet_podman_run(unit)
    at = argv.index("--sdnotify")
    assert argv[at + 1] == "healthy"
    del argv[at:at + 2]  # podman 4.3 has no --sdnotify=healthy (said in the module docstring)
    argv.remove("--cgroups=split")  # systemd's cgroup for the unit: there is no systemd here
    # the secrets as the unit's header says to create them (the key without its trailing newline)
    header = [line.lstrip("# ") for line in unit.splitlines() if "podman secret create" in line]
    assert len(header) == 2, header
    for command in header:
        run_shell(command.replace("KEYFILE", str(setup.key_file)).replace("TOKENFILE", str(setup.token_file)),
                  setup.out)
    try:
        containers.podman(*argv)
        serve_and_check(setup, setup.name)
    finally:
        containers.remove(setup.name)
        for name in (f"{setup.name}-api-key", f"{setup.name}-hf-token"):
            containers.podman("secret", "rm", name, check=False)
    assert containers.containers(setup.name) == []


# -- runpod ------------------------------------------------------------------------------------------------------
def runpod_run(setup: Setup, volume: Path) -> list[str]:
    """The `podman run` a RunPod pod amounts to: the image, its ENTRYPOINT + dockerArgs, env with the RunPod secret
    filled, the network volume at volumeMountPath (a host folder here), the TCP port on 127.0.0.1, and the /dev/shm
    size the README tells the user to check (RunPod sets it, not the template; podman's 64 MiB default stops vLLM)."""
    pod = json.loads((setup.out / "runpod.json").read_text())
    readme = (setup.out / "runpod-README.md").read_text()
    shm = re.search(r"`df -h /dev/shm` must show at least (\d+) GiB", readme)
    assert shm, readme
    argv = ["run", "--detach", "--name", setup.name, "--publish", f"127.0.0.1:{setup.port}:{pod['ports'].split('/')[0]}",
            "--volume", f"{volume}:{pod['volumeMountPath']}", "--shm-size", f"{shm.group(1)}g"]
    for key, value in pod["env"].items():
        value = value.replace("{{ RUNPOD_SECRET_gptoss_api_key }}", setup.key)
        value = value.replace("{{ RUNPOD_SECRET_gptoss_hf_token }}", "hf_ctNotARealToken000")
        argv += ["--env", f"{key}={value}"]
    return argv + [pod["imageName"], *shlex.split(pod["dockerArgs"])]


@pytest.mark.parametrize("engine", ["vllm", "llamacpp"])
def test_runpod_pod_serves(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    setup: Setup = request.getfixturevalue(f"{'vllm' if engine == 'vllm' else 'llama'}_setup")
    volume = tmp_path / "runpod-volume"
    volume.mkdir()
    for host, inside in runtime_uploads(setup).items():  # step 2 of runpod-README.md: upload the local files
        target = volume / Path(inside).relative_to("/root/.cache/huggingface")
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if Path(host).is_dir() else shutil.copy2)(host, target)
    readme = (setup.out / "runpod-README.md").read_text()
    assert all(host in readme for host in runtime_uploads(setup))
    try:
        containers.podman(*runpod_run(setup, volume))
        serve_and_check(setup, setup.name, health=False)  # RunPod runs no health check
    finally:
        containers.remove(setup.name)
    assert containers.containers(setup.name) == []


def runtime_uploads(setup: Setup) -> dict[str, str]:
    from gptoss_deploy.render.targets import runpod_uploads

    return runpod_uploads(setup.deployment)


# -- image -------------------------------------------------------------------------------------------------------
def wheels(tmp: Path) -> Path:
    """dist/ as the Dockerfile's build step makes it: `pip wheel -w dist/ <checkout>` (dependency wheels cached)."""
    cache = containers.ROOT / "wheels"
    dist = tmp / "dist"
    subprocess.run([str(PROJECT / ".venv/bin/pip"), "wheel", "-q", "--wheel-dir", str(cache), str(PROJECT)],
                   check=True, capture_output=True, timeout=900)
    dist.mkdir()
    for wheel in cache.glob("*.whl"):
        if not wheel.name.startswith("gpt_oss_deploy-"):
            shutil.copy2(wheel, dist / wheel.name)
    project = subprocess.run([str(PROJECT / ".venv/bin/pip"), "wheel", "-q", "--no-deps", "--wheel-dir", str(dist),
                              str(PROJECT)], capture_output=True, text=True, timeout=600)
    assert project.returncode == 0, project.stderr
    return dist


def documented_run(setup: Setup, tag: str) -> list[str]:
    """The `docker run` line from the Dockerfile's header, with KEYFILE filled in and docker -> podman."""
    lines = setup.artifacts["Dockerfile"].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Run:"))
    text = " ".join(line.lstrip("#").strip().removeprefix("Run:").strip().rstrip("\\") for line in lines[start:start + 2])
    argv = shlex.split(text.replace("KEYFILE", str(setup.key_file)))
    assert argv[:2] == ["docker", "run"] and argv[-1] == f"{setup.name}:latest"
    return ["run", "--detach", "--name", setup.name, *argv[2:-1], tag]


@pytest.fixture(scope="module")
def gptoss_image(shared: Lane, vllm_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Setup]]:
    """The image target built with podman from the rendered Dockerfile (SSH off: no network for apt here)."""
    setup = Setup(shared, "vllm", tmp_path_factory.mktemp("image"))
    wheels(setup.out)
    tag = f"localhost/{setup.name}:latest"
    containers.podman("build", "--format", "docker", "--network", "none", "--pull=never", "--build-arg", "SSH=0",
                      "-t", tag, str(setup.out), timeout=1800)
    yield tag, setup
    containers.cleanup(setup.name)  # the documented run's HF cache volume
    containers.podman("rmi", "--force", tag, check=False)


def test_image_target_builds_and_serves_with_its_healthcheck(gptoss_image: tuple[str, Setup]) -> None:
    tag, setup = gptoss_image
    assert_resolved_ok(setup)
    try:
        containers.podman(*documented_run(setup, tag))
        serve_and_check(setup, setup.name)  # the Dockerfile's HEALTHCHECK (with the key from the mounted file)
    finally:
        containers.remove(setup.name)
    assert containers.containers(setup.name) == []


@pytest.mark.skipif(not FULL, reason="a second vLLM image run only with GPTOSS_CONTAINERS=all (resolved statically)")
def test_image_healthcheck_reads_the_key_from_api_key_too(gptoss_image: tuple[str, Setup]) -> None:
    """Regression (issue #15): the image's HEALTHCHECK sent no key when it came as API_KEY."""
    tag, setup = gptoss_image
    argv = documented_run(setup, tag)
    at = argv.index(f"{setup.key_file}:/run/secrets/api_key:ro")
    argv[at - 1:at + 1] = ["--env", "API_KEY"]
    try:
        subprocess.run(["podman", *argv], env=os.environ | containers.environment() | {"API_KEY": setup.key},
                       check=True, capture_output=True, timeout=300)
        serve_and_check(setup, setup.name)
    finally:
        containers.remove(setup.name)


# -- systemd -----------------------------------------------------------------------------------------------------
def test_systemd_unit_runs_as_its_dynamic_user_in_its_sandbox(shared: Lane, gptoss_image: tuple[str, Setup],
                                                               tmp_path: Path) -> None:
    """The unit's ExecStart, run as a dynamic (unprivileged, unnamed) user with the unit's environment, in a
    container laid out like its sandbox: everything read-only but StateDirectory / CacheDirectory / PrivateTmp,
    /root and /home hidden (ProtectHome=yes), the credential at %d/api_key, host networking (the unit binds
    127.0.0.1 on the host) and the host's IPC and /dev/shm (the unit has no PrivateDevices=/PrivateIPC=; vLLM
    needs 160 MiB of /dev/shm, more than a container's default 64 MiB). There is no systemd here to boot it: this is the closest real run, and the resolver
    checks the same paths statically."""
    tag, _ = gptoss_image
    setup = Setup(shared, "vllm", tmp_path)
    assert_resolved_ok(setup)
    unit = f"{setup.name}.service"
    resolved = runtime.resolve_systemd(setup.deployment, setup.artifacts, unit)
    assert resolved.user == "<dynamic>" and resolved.argv[0] == "/opt/venv/bin/gptoss"
    uid = 61000 + os.getpid() % 1000
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    shutil.copy2(setup.key_file, credentials / "api_key")  # LoadCredential= makes it readable to the unit's user
    os.chown(credentials / "api_key", uid, uid)
    (credentials / "api_key").chmod(0o400)
    root = str(Path(shared.model).parent)
    argv = ["run", "--detach", "--name", setup.name, "--network", "host", "--ipc", "host", "--user", f"{uid}:{uid}",
            "--read-only",
            "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/root:ro", "--tmpfs", "/home:ro",
            "--volume", f"{setup.name}-state:/var/lib/{setup.name}:U",
            "--volume", f"{setup.name}-cache:/var/cache/{setup.name}:U",
            "--volume", f"{setup.out / f'{setup.name}.plan.json'}:{setup.deployment.plan_file}:ro",
            "--volume", f"{credentials}:/run/credentials/{unit}:ro", "--volume", f"{root}:{root}:ro",
            "--entrypoint", resolved.argv[0]]
    for key, value in resolved.env.items():
        if not key.startswith("<"):
            argv += ["--env", f"{key}={value}"]
    try:
        containers.podman(*argv, tag, *resolved.argv[1:])
        wait_http(setup)
        gptoss_check(setup)
        assert_closed_without_key(setup)
        state = containers.podman("run", "--rm", "--volume", f"{setup.name}-state:/s:ro", "--entrypoint", "ls",
                                  tag, "-A", "/s").stdout.split()
        assert "serve.log" in state  # the log went to StateDirectory (HOME)
    except BaseException:
        print(containers.logs(setup.name, 80))
        log = containers.podman("run", "--rm", "--volume", f"{setup.name}-state:/s:ro", "--entrypoint", "tail",
                                tag, "-n", "300", "/s/serve.log", check=False)
        print("serve.log:", "\n".join(line for line in log.stdout.splitlines() if "Error" in line or "rror:" in line)[-6000:])
        raise
    finally:
        containers.remove(setup.name)
        containers.podman("volume", "rm", "--force", f"{setup.name}-state", f"{setup.name}-cache", check=False)


# -- static regressions for the three named defects (the live runs above are the proof) -----------------------
def test_the_three_named_defects_are_caught_by_the_resolver(shared: Lane, tmp_path: Path) -> None:
    setup = Setup(shared, "vllm", tmp_path)
    d: Deployment = setup.deployment
    unit = setup.artifacts[f"{setup.name}.container"]
    broken_unit = "\n".join("HealthCmd=" + shlex.join(d.health).replace("'", "\\n'", 1) if line.startswith("HealthCmd=")
                            else line for line in unit.splitlines())
    problems = runtime.check_resolved(runtime.resolve_quadlet(d, broken_unit, "x.container"), d, setup.plan)
    assert any("health" in p for p in problems), problems
    dockerfile = setup.artifacts["Dockerfile"].replace("'API_KEY'", "'NO_SUCH_VARIABLE'")
    image = runtime.resolve_image(d, setup.artifacts | {"Dockerfile": dockerfile})
    assert any("API key" in p for p in runtime.check_resolved(image, d, setup.plan))
    pod = json.loads(setup.artifacts["runpod.json"])
    pod["dockerArgs"] = shlex.join(d.command)  # the whole command, appended to the ENTRYPOINT
    problems = runtime.check_resolved(runtime.resolve_runpod(d, json.dumps(pod)), d, setup.plan)
    assert any("RunPod starts `vllm serve vllm serve" in p for p in problems), problems


def test_monitoring_queries_only_what_the_live_engines_export(shared: Lane, vllm_image: str, llama_image: str,
                                                             tmp_path: Path) -> None:
    """Each engine's /metrics, scraped live in its container, serves every family the monitoring reads."""
    for engine in ("vllm", "llamacpp"):
        (tmp_path / engine).mkdir()
        setup = Setup(shared, engine, tmp_path / engine)
        try:
            run_shell(["bash", str(setup.out / "docker-run.sh")], setup.out,
                      {"API_KEY_FILE": str(setup.key_file), "HF_TOKEN_FILE": str(setup.token_file)})
            containers.wait_healthy(setup.name)
            text = httpx.get(setup.base_url + "/metrics", headers={"Authorization": f"Bearer {setup.key}"},
                             timeout=30).text
        finally:
            containers.cleanup(setup.name)
        served = {runtime.metric_family(line.split()[2]) for line in text.splitlines() if line.startswith("# TYPE")}
        spec = registry.get(engine).monitoring(setup.name)
        assert {runtime.metric_family(m) for m in spec.exported} <= served, sorted(
            {runtime.metric_family(m) for m in spec.exported} - served)
        assert not runtime.monitoring_problems(setup.deployment, setup.artifacts)

